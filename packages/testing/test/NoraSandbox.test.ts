import { HttpClientRequest, HttpRouter, HttpServerResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Stream, TestClock } from "effect"
import * as fc from "fast-check"
import * as NoraSandbox from "../src/NoraSandbox.js"
import * as Sandbox from "../src/Sandbox.js"
import { base, clientFor, getWith, jwtHeader, jwtPayload, postJson, send } from "./utils/http.js"

const creds = NoraSandbox.defaultCredentials

const setup = (options?: NoraSandbox.Options) =>
  Effect.gen(function*() {
    const nora = yield* NoraSandbox.make(options)
    const client = clientFor(nora)
    const token = (credentials: NoraSandbox.Credentials = nora.credentials) =>
      Effect.map(
        send(client, postJson(`${base}/api/token`, credentials)),
        (answer) => answer.body.token as string
      )
    const forms = (token: string | undefined) => send(client, getWith(`${base}/api/forms`, token))
    return { nora, client, token, forms }
  })

describe("NoraSandbox", () => {
  describe("POST /api/token", () => {
    it.effect("exchanges clientId, clientSecret and organizationId for a one-hour Bearer JWT", () =>
      Effect.gen(function*() {
        const { client } = yield* setup()
        yield* TestClock.adjust("10 seconds")
        const answer = yield* send(client, postJson(`${base}/api/token`, creds, { accept: "application/json" }))
        expect(answer.status).toBe(200)
        expect(answer.headers["content-type"]).toContain("application/json")
        expect(Object.keys(answer.body).sort()).toEqual(["expires_in", "token", "token_type"])
        expect(answer.body.expires_in).toBe(3600)
        expect(answer.body.token_type).toBe("Bearer")
        const token: string = answer.body.token
        expect(token.split(".")).toHaveLength(3)
        expect(jwtHeader(token)).toMatchObject({ alg: "HS256", typ: "JWT" })
        const payload = jwtPayload(token)
        expect(payload.sub).toBe(creds.clientId)
        expect(payload.iat).toBe(10)
        expect(payload.exp).toBe(3610)
        expect(typeof payload.jti).toBe("string")
        const second = yield* send(client, postJson(`${base}/api/token`, creds))
        expect(jwtPayload(second.body.token).jti).not.toBe(payload.jti)
      }))

    it.effect("answers 400 for a wrong content type, malformed JSON, or missing and invalid parameters", () =>
      Effect.gen(function*() {
        const { client, nora } = yield* setup()
        const url = `${base}/api/token`
        const asText = yield* send(
          client,
          HttpClientRequest.post(url).pipe(HttpClientRequest.bodyText(JSON.stringify(creds), "text/plain"))
        )
        expect(asText.status).toBe(400)
        expect(asText.body).toMatchObject({ statusCode: 400, error: "Bad Request" })
        const form = yield* send(
          client,
          HttpClientRequest.post(url).pipe(HttpClientRequest.bodyUrlParams({ ...creds }))
        )
        expect(form.status).toBe(400)
        const malformed = yield* send(
          client,
          HttpClientRequest.post(url).pipe(HttpClientRequest.bodyText("{\"clientId\":", "application/json"))
        )
        expect(malformed.status).toBe(400)
        const missing = yield* send(client, postJson(url, { clientId: creds.clientId }))
        expect(missing.status).toBe(400)
        expect(missing.body.message).toEqual(["clientSecret must be a string", "organizationId must be a string"])
        const wrongType = yield* send(client, postJson(url, { ...creds, organizationId: 42 }))
        expect(wrongType.status).toBe(400)
        const empty = yield* send(client, postJson(url, { ...creds, clientSecret: "" }))
        expect(empty.status).toBe(400)
        const array = yield* send(client, postJson(url, [creds]))
        expect(array.status).toBe(400)
        const withCharset = yield* send(
          client,
          HttpClientRequest.post(url).pipe(
            HttpClientRequest.bodyText(JSON.stringify(creds), "application/json; charset=utf-8")
          )
        )
        expect(withCharset.status).toBe(200)
        const recording = yield* nora.recording
        expect(recording.tokenCounts).toMatchObject({ issue: 8, granted: 1, refused: 7 })
        // The sandbox never echoes a secret back.
        expect(recording.tokenRequests.map((r) => r.reason).join(" ")).not.toContain(creds.clientSecret)
      }))

    it.effect("answers 401 for wrong credentials", () =>
      Effect.gen(function*() {
        const { client } = yield* setup()
        for (const wrong of [{ clientSecret: "nope" }, { organizationId: "other-org" }, { clientId: "other" }]) {
          const answer = yield* send(client, postJson(`${base}/api/token`, { ...creds, ...wrong }))
          expect(answer.status).toBe(401)
          expect(answer.body).toEqual({ statusCode: 401, message: "Invalid credentials", error: "Unauthorized" })
          expect(answer.text).not.toContain("nope")
        }
      }))
  })

  describe("API routes", () => {
    it.effect("serve forms to a Bearer token", () =>
      Effect.gen(function*() {
        const { client, forms, token } = yield* setup()
        const t = yield* token()
        const list = yield* forms(t)
        expect(list.status).toBe(200)
        expect(list.body.data.length).toBeGreaterThan(0)
        const id: string = list.body.data[0].id
        const one = yield* send(client, getWith(`${base}/api/forms/${id}`, t))
        expect(one.status).toBe(200)
        expect(one.body.id).toBe(id)
        const missing = yield* send(client, getWith(`${base}/api/forms/frm_nope`, t))
        expect(missing.status).toBe(404)
        const submission = yield* send(
          client,
          postJson(`${base}/api/forms/${id}/submissions`, { data: { driverAge: 30 } }).pipe(
            HttpClientRequest.bearerToken(t)
          )
        )
        expect(submission.status).toBe(201)
        expect(submission.body).toMatchObject({ formId: id, status: "received" })
        const unknown = yield* send(client, getWith(`${base}/api/nothing`, t))
        expect(unknown.status).toBe(404)
      }))

    it.effect("answer the same bytes every time, whatever a reader does to the bytes it streamed", () =>
      Effect.gen(function*() {
        const { client, token } = yield* setup()
        const t = yield* token()
        const first = yield* send(client, getWith(`${base}/api/forms`, t))
        const response = yield* client.execute(getWith(`${base}/api/forms`, t))
        const chunks = yield* Stream.runCollect(response.stream)
        for (const chunk of chunks) chunk.fill(0x20)
        const again = yield* send(client, getWith(`${base}/api/forms`, t))
        expect(again.text).toBe(first.text)
        expect(JSON.parse(again.text).total).toBeGreaterThan(0)
      }))

    it.effect("are matched as the platform's HttpRouter matches them", () =>
      Effect.gen(function*() {
        const { client, nora, token } = yield* setup()
        const t = yield* token()
        // The same templates in the platform's router, answering with the route and the parameters it found.
        const templates = ["GET /api/forms", "GET /api/forms/:formId", "POST /api/forms/:formId/submissions"] as const
        const router = templates.reduce(
          (router, template) => {
            const [method, path] = template.split(" ") as ["GET" | "POST", `/${string}`]
            return HttpRouter.route(method)(
              path,
              Effect.map(HttpRouter.params, (params) => HttpServerResponse.unsafeJson({ route: template, params }))
            )(router)
          },
          HttpRouter.empty
        )
        const platform = Sandbox.makeClient(() =>
          Effect.catchTag(router, "RouteNotFound", () =>
            Effect.succeed(HttpServerResponse.unsafeJson({ route: "*", params: {} })))
        )
        const cases: ReadonlyArray<readonly ["GET" | "HEAD" | "POST", string]> = [
          ["GET", "/api/forms"],
          ["HEAD", "/api/forms"],
          ["GET", "/api/forms/"],
          ["GET", "/api/forms?page=2&page=3"],
          ["GET", "/API/forms"],
          ["GET", "/api//forms"],
          ["GET", "/api/forms/frm_motor_quote"],
          ["GET", "/api/forms/frm%5Fmotor_quote"],
          ["GET", "/api/forms/a%2Fb"],
          ["GET", "/api/forms/%E2%9C%93?x=1"],
          ["POST", "/api/forms"],
          ["POST", "/api/forms/frm_home_claim/submissions"],
          ["GET", "/api/forms/frm_home_claim/submissions"],
          ["GET", "/api/token"],
          ["HEAD", "/nothing"]
        ]
        // Twice: the second pass finds every resolution cached.
        for (const [method, path] of [...cases, ...cases]) {
          const request = HttpClientRequest.make(method)(`${base}${path}`).pipe(HttpClientRequest.bearerToken(t))
          const expected = (yield* send(platform, request)).body as {
            readonly route: string
            readonly params: Record<string, string>
          }
          const answer = yield* send(client, request)
          const arrivals = (yield* nora.recording).arrivals
          const recorded = arrivals[arrivals.length - 1]!
          expect([method, path, recorded.route]).toEqual([
            method,
            path,
            expected.route === "*" ? `${method} *` : expected.route
          ])
          if (expected.route === "GET /api/forms/:formId" && method === "GET") {
            const formId = expected.params.formId
            expect([path, answer.body.id ?? answer.body.message]).toEqual([
              path,
              answer.status === 200 ? formId : `Form ${formId} not found`
            ])
          }
        }
      }))

    it.effect("answer 401 with WWW-Authenticate without a token, with a forged one, or a malformed header", () =>
      Effect.gen(function*() {
        const { client, forms, token } = yield* setup()
        const none = yield* forms(undefined)
        expect(none.status).toBe(401)
        expect(none.headers["www-authenticate"]).toBe("Bearer")
        const t = yield* token()
        const forged = `${t.slice(0, t.lastIndexOf(".") + 1)}${"A".repeat(43)}`
        const bad = yield* forms(forged)
        expect(bad.status).toBe(401)
        expect(bad.headers["www-authenticate"]).toBe("Bearer error=\"invalid_token\"")
        const basic = yield* send(client, getWith(`${base}/api/forms`, undefined, { authorization: `Basic ${t}` }))
        expect(basic.status).toBe(401)
        // A token from another emulator instance is not valid here.
        const other = yield* setup()
        const foreign = yield* other.token()
        expect((yield* forms(foreign)).status).toBe(401)
      }))

    it.effect("check the signature of every token string, also after the genuine token was accepted", () =>
      Effect.gen(function*() {
        const { forms, token } = yield* setup()
        const t = yield* token()
        expect((yield* forms(t)).status).toBe(200)
        const [header, body, signature] = t.split(".") as [string, string, string]
        const forged = `${header}.${body}.${signature.slice(0, -2)}${signature.endsWith("AA") ? "BB" : "AA"}`
        expect((yield* forms(forged)).status).toBe(401)
        // The same claims re-encoded (a different string) under the genuine signature.
        const claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8"))
        const altered = Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 3600 })).toString("base64url")
        expect((yield* forms(`${header}.${altered}.${signature}`)).status).toBe(401)
        expect((yield* forms(t)).status).toBe(200)
      }))

    it.effect("expire a token 3600 s after issue by the server's Clock", () =>
      Effect.gen(function*() {
        const { forms, token } = yield* setup()
        const t = yield* token()
        yield* TestClock.adjust(3_600_000 - 1)
        expect((yield* forms(t)).status).toBe(200)
        yield* TestClock.adjust(1)
        const expired = yield* forms(t)
        expect(expired.status).toBe(401)
        expect(expired.headers["www-authenticate"]).toBe("Bearer error=\"invalid_token\"")
        expect((yield* forms(yield* token())).status).toBe(200)
      }))

    it.effect("answer 401 after revokeAll", () =>
      Effect.gen(function*() {
        const { forms, nora, token } = yield* setup()
        const t = yield* token()
        expect((yield* forms(t)).status).toBe(200)
        expect(yield* nora.revokeAll).toBe(1)
        const revoked = yield* forms(t)
        expect(revoked.status).toBe(401)
        expect(revoked.headers["www-authenticate"]).toBe("Bearer error=\"invalid_token\"")
        const recording = yield* nora.recording
        expect(recording.tokensRevoked).toBe(1)
        expect(recording.unauthorized.api).toBe(1)
      }))
  })

  describe("rate limit: 60 requests per minute per client, sliding log, token requests included", () => {
    it.effect("counts the token request: admits 59 more, answers the next 429 without Retry-After, frees slots 60 s later", () =>
      Effect.gen(function*() {
        const { forms, nora, token } = yield* setup()
        const t = yield* token()
        for (let i = 0; i < 59; i++) expect((yield* forms(t)).status).toBe(200)
        const limited = yield* forms(t)
        expect(limited.status).toBe(429)
        expect(limited.body).toEqual({ statusCode: 429, message: "Too Many Requests" })
        expect(limited.headers["retry-after"]).toBeUndefined()
        yield* TestClock.adjust(59_999)
        expect((yield* forms(t)).status).toBe(429)
        yield* TestClock.adjust(1)
        // The 429s were not counted: all 60 slots free at once.
        for (let i = 0; i < 60; i++) expect((yield* forms(t)).status).toBe(200)
        expect((yield* forms(t)).status).toBe(429)
        const recording = yield* nora.recording
        expect(recording.rateLimited.api).toBe(3)
        expect(recording.maxArrivalsInWindow(60_000)).toEqual({ admitted: 60, all: 62 })
      }))

    it.effect("a token request over the limit is a 429 too; one naming no client is not counted", () =>
      Effect.gen(function*() {
        const { client, forms, nora, token } = yield* setup()
        const t = yield* token()
        for (let i = 0; i < 58; i++) expect((yield* forms(t)).status).toBe(200)
        // Refused for its credentials, but it names the client: it counts.
        const wrong = yield* send(client, postJson(`${base}/api/token`, { ...creds, clientSecret: "nope" }))
        expect(wrong.status).toBe(401)
        const limited = yield* send(client, postJson(`${base}/api/token`, creds))
        expect(limited.status).toBe(429)
        expect(limited.body).toEqual({ statusCode: 429, message: "Too Many Requests" })
        const stranger = yield* send(client, postJson(`${base}/api/token`, { ...creds, clientId: "stranger" }))
        expect(stranger.status).toBe(401)
        expect((yield* forms(t)).status).toBe(429)
        const recording = yield* nora.recording
        expect(recording.rateLimited.token).toBe(1)
        expect(recording.tokenRequests.map((r) => r.status)).toEqual([200, 401, 429, 401])
      }))

    it.effect("countTokenRequests: false leaves token requests out (the lenient reading)", () =>
      Effect.gen(function*() {
        const { client, forms, nora, token } = yield* setup({ countTokenRequests: false })
        expect(nora.countTokenRequests).toBe(false)
        const t = yield* token()
        for (let i = 0; i < 60; i++) expect((yield* forms(t)).status).toBe(200)
        expect((yield* forms(t)).status).toBe(429)
        expect((yield* send(client, postJson(`${base}/api/token`, creds))).status).toBe(200)
      }))

    it.effect("is a sliding log, not a fixed window: slots free one window after each admission", () =>
      Effect.gen(function*() {
        const { forms, token } = yield* setup()
        const t = yield* token()
        for (let i = 0; i < 29; i++) expect((yield* forms(t)).status).toBe(200)
        yield* TestClock.adjust("30 seconds")
        for (let i = 0; i < 30; i++) expect((yield* forms(t)).status).toBe(200)
        expect((yield* forms(t)).status).toBe(429)
        yield* TestClock.adjust("30 seconds")
        // Only the 30 requests of t = 0 (the token request among them) left the window.
        for (let i = 0; i < 30; i++) expect((yield* forms(t)).status).toBe(200)
        expect((yield* forms(t)).status).toBe(429)
      }))

    it.effect("counts each client separately", () =>
      Effect.gen(function*() {
        const other = { clientId: "second-client", clientSecret: "second-secret", organizationId: "second-org" }
        const { forms, token } = yield* setup({ clients: [other] })
        const first = yield* token()
        const second = yield* token(other)
        for (let i = 0; i < 59; i++) yield* forms(first)
        expect((yield* forms(first)).status).toBe(429)
        expect((yield* forms(second)).status).toBe(200)
      }))

    it.effect("sends Retry-After when asked, in whole seconds until a slot frees", () =>
      Effect.gen(function*() {
        const { forms, token } = yield* setup({ retryAfter: true })
        const t = yield* token()
        for (let i = 0; i < 59; i++) yield* forms(t)
        yield* TestClock.adjust("20500 millis")
        const limited = yield* forms(t)
        expect(limited.status).toBe(429)
        expect(limited.headers["retry-after"]).toBe("40")
      }))

    it.effect("a real limit other than the documented one (plans change)", () =>
      Effect.gen(function*() {
        const { forms, nora, token } = yield* setup({ rateLimit: { limit: 30, windowMillis: 60_000 } })
        expect(nora.rateLimit).toEqual({ limit: 30, windowMillis: 60_000 })
        const t = yield* token()
        for (let i = 0; i < 29; i++) expect((yield* forms(t)).status).toBe(200)
        expect((yield* forms(t)).status).toBe(429)
      }))

    it.effect.prop(
      "never admits more than 60 in any 60 s interval and refuses only when the window is full",
      { gaps: fc.array(fc.integer({ min: 0, max: 3_000 }), { minLength: 1, maxLength: 150 }) },
      ({ gaps }) =>
        Effect.gen(function*() {
          const { forms, nora, token } = yield* setup()
          const t = yield* token()
          // The token request is the first admission.
          const admittedAt: Array<number> = [yield* Clock.currentTimeMillis]
          for (const gap of gaps) {
            yield* TestClock.adjust(gap)
            const now = yield* Clock.currentTimeMillis
            const inWindow = admittedAt.filter((a) => a > now - 60_000).length
            const answer = yield* forms(t)
            expect(answer.status).toBe(inWindow < 60 ? 200 : 429)
            if (answer.status === 200) admittedAt.push(now)
          }
          const recording = yield* nora.recording
          expect(recording.maxArrivalsInWindow(60_000).admitted).toBeLessThanOrEqual(60)
          expect(recording.arrivals.filter((a) => a.admitted).length).toBe(admittedAt.length - 1)
        }),
      { fastCheck: { numRuns: 15 } }
    )
  })

  it.effect("timeScale 60 turns the hour into a minute and 60 per minute into 60 per second", () =>
    Effect.gen(function*() {
      const { forms, nora, token } = yield* setup({ timeScale: 60 })
      expect(nora.tokenLifetimeSeconds).toBe(60)
      expect(nora.rateLimit).toEqual({ limit: 60, windowMillis: 1000 })
      const t = yield* token()
      for (let i = 0; i < 59; i++) expect((yield* forms(t)).status).toBe(200)
      expect((yield* forms(t)).status).toBe(429)
      yield* TestClock.adjust("1 second")
      expect((yield* forms(t)).status).toBe(200)
      yield* TestClock.adjust("59 seconds")
      expect((yield* forms(t)).status).toBe(401)
    }))
})
