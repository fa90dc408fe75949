import { HttpClientRequest } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, TestClock } from "effect"
import * as fc from "fast-check"
import * as NorceSandbox from "../src/NorceSandbox.js"
import { base, clientFor, getWith, jwtPayload, postForm, postJson, send } from "./utils/http.js"

const creds = NorceSandbox.defaultCredentials
const tokenUrl = `${base}/identity/1.0/connect/token`
const bodyFields = {
  grant_type: "client_credentials",
  client_id: creds.clientId,
  client_secret: creds.clientSecret,
  scope: "playground"
}

/** RFC 6749 §2.3.1: form-urlencode id and secret, then base64 `id:secret`. */
const basic = (id: string, secret: string) => {
  const encode = (s: string) => new URLSearchParams({ s }).toString().slice(2)
  return `Basic ${Buffer.from(`${encode(id)}:${encode(secret)}`).toString("base64")}`
}

const setup = (options?: NorceSandbox.Options) =>
  Effect.gen(function*() {
    const norce = yield* NorceSandbox.make(options)
    const client = clientFor(norce)
    const token = Effect.map(send(client, postForm(tokenUrl, bodyFields)), (a) => a.body.access_token as string)
    const getApplication = (token: string | undefined, headers: Record<string, string> = { ApplicationId: "1000" }) =>
      send(client, getWith(`${base}/commerce/metadata/1.1/GetApplication?format=json`, token, headers))
    return { norce, client, token, getApplication }
  })

describe("NorceSandbox", () => {
  describe("token endpoint", () => {
    it.effect("issues a token for form-encoded client credentials in the body", () =>
      Effect.gen(function*() {
        const { client } = yield* setup()
        const answer = yield* send(client, postForm(tokenUrl, bodyFields))
        expect(answer.status).toBe(200)
        expect(answer.headers["cache-control"]).toBe("no-store")
        expect(answer.headers["pragma"]).toBe("no-cache")
        expect(answer.body).toMatchObject({ expires_in: 600, token_type: "Bearer", scope: "playground" })
        const payload = jwtPayload(answer.body.access_token)
        expect(payload).toMatchObject({ client_id: creds.clientId, scope: ["playground"], iat: 0, exp: 600 })
        const storm = yield* send(client, postForm(`${base}/1.0/connect/token`, { ...bodyFields, scope: "stage prod" }))
        expect(storm.status).toBe(200)
        expect(storm.body.scope).toBe("stage prod")
        expect(jwtPayload(storm.body.access_token).iss).toBe("https://identity.storm.io/1.0/")
      }))

    it.effect("requires scope (the docs give it no default); requireScope: false grants all the client's scopes", () =>
      Effect.gen(function*() {
        const { client } = yield* setup()
        const { scope: _, ...noScope } = bodyFields
        const refused = yield* send(client, postForm(tokenUrl, noScope))
        expect(refused.status).toBe(400)
        expect(refused.body).toEqual({
          error: "invalid_scope",
          error_description: "A scope is required: playground, stage, prod"
        })
        const lenient = yield* setup({ requireScope: false })
        const answer = yield* send(lenient.client, postForm(tokenUrl, noScope))
        expect(answer.status).toBe(200)
        expect(answer.body.scope).toBe("playground stage prod")
      }))

    it.effect("grants the scopes a client was given: lab and production (the docs' examples) when configured", () =>
      Effect.gen(function*() {
        const lab = { ...creds, scopes: ["lab", "production"] }
        const { client } = yield* setup({ credentials: lab })
        for (const scope of ["lab", "production", "production lab"]) {
          const answer = yield* send(client, postForm(tokenUrl, { ...bodyFields, scope }))
          expect(answer.status).toBe(200)
          expect(answer.body.scope).toBe(scope)
          expect(jwtPayload(answer.body.access_token).scope).toEqual(scope.split(" "))
        }
        const refused = yield* send(client, postForm(tokenUrl, { ...bodyFields, scope: "playground" }))
        expect(refused.body.error).toBe("invalid_scope")
        // Not space-delimited scope values (RFC 6749 §3.3): refused, even when each value is allowed.
        for (const scope of ["lab  production", " lab", "lab ", "lab\tproduction", "lab,production"]) {
          const malformed = yield* send(client, postForm(tokenUrl, { ...bodyFields, scope }))
          expect(malformed.status).toBe(400)
          expect(malformed.body.error).toBe("invalid_scope")
        }
      }))

    it.effect("refuses HTTP Basic by default: the docs say to send client credentials in the body", () =>
      Effect.gen(function*() {
        const { client, norce } = yield* setup()
        const answer = yield* send(
          client,
          postForm(tokenUrl, { grant_type: "client_credentials", scope: "stage" }, {
            authorization: basic(creds.clientId, creds.clientSecret)
          })
        )
        expect(answer.status).toBe(401)
        expect(answer.body.error).toBe("invalid_client")
        expect(answer.body.error_description).toContain("in the body")
        expect(answer.headers["www-authenticate"]).toMatch(/^Basic realm=/)
        expect((yield* norce.recording).tokensIssued).toBe(0)
      }))

    it.effect("acceptBasicAuth: HTTP Basic with id and secret form-urlencoded before base64 (RFC 6749 §2.3.1)", () =>
      Effect.gen(function*() {
        const odd = {
          clientId: "client:with spaces&more",
          clientSecret: "s3cr+t/=:é%",
          scopes: ["stage"],
          applicationId: "7"
        }
        const { client } = yield* setup({ clients: [odd], acceptBasicAuth: true })
        const answer = yield* send(
          client,
          postForm(tokenUrl, { grant_type: "client_credentials", scope: "stage" }, {
            authorization: basic(odd.clientId, odd.clientSecret)
          })
        )
        expect(answer.status).toBe(200)
        expect(answer.body.scope).toBe("stage")
        const wrong = yield* send(
          client,
          postForm(tokenUrl, { grant_type: "client_credentials", scope: "stage" }, {
            authorization: basic(odd.clientId, "nope")
          })
        )
        expect(wrong.status).toBe(401)
        expect(wrong.headers["www-authenticate"]).toMatch(/^Basic realm=/)
        expect(wrong.body).toEqual({ error: "invalid_client", error_description: expect.any(String) })
      }))

    it.effect("answers RFC 6749 §5.2 errors", () =>
      Effect.gen(function*() {
        const restricted = {
          clientId: "playground-only",
          clientSecret: "pw",
          scopes: ["playground"],
          applicationId: "9"
        }
        const { client } = yield* setup({ clients: [restricted] })
        const expectError = (request: HttpClientRequest.HttpClientRequest, status: number, error: string) =>
          Effect.map(send(client, request), (answer) => {
            expect(answer.status).toBe(status)
            expect(answer.body.error).toBe(error)
            expect(typeof answer.body.error_description).toBe("string")
            expect(answer.headers["cache-control"]).toBe("no-store")
          })
        yield* expectError(postForm(tokenUrl, { ...bodyFields, client_secret: "nope" }), 400, "invalid_client")
        yield* expectError(postForm(tokenUrl, { ...bodyFields, client_id: "nobody" }), 400, "invalid_client")
        const { client_secret: _, ...noSecret } = bodyFields
        yield* expectError(postForm(tokenUrl, noSecret), 400, "invalid_client")
        yield* expectError(postForm(tokenUrl, { ...bodyFields, scope: "lab" }), 400, "invalid_scope")
        yield* expectError(postForm(tokenUrl, { ...bodyFields, scope: "" }), 400, "invalid_scope")
        yield* expectError(
          postForm(tokenUrl, {
            grant_type: "client_credentials",
            client_id: restricted.clientId,
            client_secret: restricted.clientSecret,
            scope: "playground prod"
          }),
          400,
          "invalid_scope"
        )
        yield* expectError(postForm(tokenUrl, { ...bodyFields, grant_type: "password" }), 400, "unsupported_grant_type")
        const { grant_type: __, ...noGrant } = bodyFields
        yield* expectError(postForm(tokenUrl, noGrant), 400, "invalid_request")
        yield* expectError(postJson(tokenUrl, bodyFields), 400, "invalid_request")
        yield* expectError(
          postForm(tokenUrl, `${new URLSearchParams(bodyFields).toString()}&scope=stage`),
          400,
          "invalid_request"
        )
        yield* expectError(
          postForm(tokenUrl, bodyFields, { authorization: basic(creds.clientId, creds.clientSecret) }),
          400,
          "invalid_request"
        )
        yield* expectError(
          postForm(tokenUrl, { grant_type: "client_credentials" }, { authorization: "Basic ***" }),
          401,
          "invalid_client"
        )
        const lenient = yield* setup({ acceptBasicAuth: true })
        const malformed = yield* send(
          lenient.client,
          postForm(tokenUrl, { grant_type: "client_credentials" }, { authorization: "Basic ***" })
        )
        expect(malformed.status).toBe(400)
        expect(malformed.body.error).toBe("invalid_request")
      }))

    it.effect("limits token requests to a bucket of 20 per IP (the strict reading), refilled at 3 per minute", () =>
      Effect.gen(function*() {
        const { client, norce } = yield* setup()
        expect(norce.tokenRateLimit).toEqual({ capacity: 20, refillIntervalMillis: 20_000 })
        // Failed requests count too: the limit is on the endpoint, per IP.
        for (let i = 0; i < 19; i++) expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(200)
        expect((yield* send(client, postForm(tokenUrl, { ...bodyFields, client_secret: "x" }))).status).toBe(400)
        const limited = yield* send(client, postForm(tokenUrl, bodyFields))
        expect(limited.status).toBe(429)
        expect(limited.body).toEqual({
          error: "too_many_requests",
          error_description: "Max 3 token requests per minute per IP address, with a possibility to burst 20"
        })
        expect(limited.headers["retry-after"]).toBeUndefined()
        yield* TestClock.adjust(19_999)
        expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(429)
        yield* TestClock.adjust(1)
        expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(200)
        expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(429)
        yield* TestClock.adjust("1 minute")
        for (let i = 0; i < 3; i++) expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(200)
        expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(429)
        // Another address has its own bucket.
        const elsewhere = clientFor(norce, { remoteAddress: "10.1.2.3" })
        expect((yield* send(elsewhere, postForm(tokenUrl, bodyFields))).status).toBe(200)
        const recording = yield* norce.recording
        expect(recording.rateLimited.token).toBe(4)
        expect(recording.tokenCounts.refused).toBe(5)
      }))

    it.effect("burstOnTopOfRate: the lenient reading, a bucket of 3 + 20", () =>
      Effect.gen(function*() {
        const { client, norce } = yield* setup({ burstOnTopOfRate: true })
        expect(norce.tokenRateLimit).toEqual({ capacity: 23, refillIntervalMillis: 20_000 })
        for (let i = 0; i < 23; i++) expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(200)
        expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(429)
      }))

    it.effect("a real limit other than the documented one (plans change)", () =>
      Effect.gen(function*() {
        const { client, norce } = yield* setup({ tokenRateLimit: { perMinute: 6, burst: 5 } })
        expect(norce.tokenRateLimit).toEqual({ capacity: 5, refillIntervalMillis: 10_000 })
        for (let i = 0; i < 5; i++) expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(200)
        expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(429)
        yield* TestClock.adjust("10 seconds")
        expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(200)
      }))

    it.effect("sends Retry-After with token 429s when asked, and refills a burst after an idle period", () =>
      Effect.gen(function*() {
        const { client } = yield* setup({ retryAfter: true })
        for (let i = 0; i < 20; i++) yield* send(client, postForm(tokenUrl, bodyFields))
        yield* TestClock.adjust("5 seconds")
        const limited = yield* send(client, postForm(tokenUrl, bodyFields))
        expect(limited.status).toBe(429)
        expect(limited.headers["retry-after"]).toBe("15")
        yield* TestClock.adjust("1 hour")
        for (let i = 0; i < 20; i++) expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(200)
        expect((yield* send(client, postForm(tokenUrl, bodyFields))).status).toBe(429)
      }))

    it.effect.prop(
      "never admits more than 20 + 3 × t/min token requests in any interval t",
      { gaps: fc.array(fc.integer({ min: 0, max: 30_000 }), { minLength: 1, maxLength: 80 }) },
      ({ gaps }) =>
        Effect.gen(function*() {
          const { client } = yield* setup()
          const admitted: Array<number> = []
          for (const gap of gaps) {
            yield* TestClock.adjust(gap)
            const answer = yield* send(client, postForm(tokenUrl, bodyFields))
            if (answer.status === 200) admitted.push(yield* Clock.currentTimeMillis)
          }
          for (let i = 0; i < admitted.length; i++) {
            for (let j = i; j < admitted.length; j++) {
              expect(j - i + 1).toBeLessThanOrEqual(20 + 3 * (admitted[j]! - admitted[i]!) / 60_000 + 1e-9)
            }
          }
        }),
      { fastCheck: { numRuns: 15 } }
    )

    it.effect("answers the configured lifetime (the docs say 600 may change) and scales it", () =>
      Effect.gen(function*() {
        const { client } = yield* setup({ tokenLifetimeSeconds: 3600 })
        expect((yield* send(client, postForm(tokenUrl, bodyFields))).body.expires_in).toBe(3600)
        const scaled = yield* setup({ timeScale: 60 })
        expect((yield* send(scaled.client, postForm(tokenUrl, bodyFields))).body.expires_in).toBe(10)
        expect(scaled.norce.tokenRateLimit.refillIntervalMillis).toBeCloseTo(333.333, 2)
      }))
  })

  describe("API", () => {
    it.effect("GetApplication requires the Bearer token and the ApplicationId header", () =>
      Effect.gen(function*() {
        const { client, getApplication, token } = yield* setup()
        const t = yield* token
        const ok = yield* getApplication(t)
        expect(ok.status).toBe(200)
        expect(ok.body.ApplicationId).toBe(1000)
        const missingApp = yield* getApplication(t, {})
        expect(missingApp.status).toBe(400)
        expect(missingApp.body.error).toBe("missing_application_id")
        const wrongApp = yield* getApplication(t, { ApplicationId: "2000" })
        expect(wrongApp.status).toBe(403)
        expect(wrongApp.body.error).toBe("forbidden_application")
        const noToken = yield* getApplication(undefined)
        expect(noToken.status).toBe(401)
        expect(noToken.headers["www-authenticate"]).toBe("Bearer")
        const product = yield* send(
          client,
          getWith(`${base}/commerce/products/1.1/GetProduct?id=1001&format=json`, t, { ApplicationId: "1000" })
        )
        expect(product.status).toBe(200)
        expect(product.body.ProductId).toBe(1001)
        const list = yield* send(
          client,
          getWith(`${base}/commerce/products/1.1/ListProducts`, t, { ApplicationId: "1000" })
        )
        expect(list.body.ItemCount).toBe(list.body.Items.length)
      }))

    it.effect("has no limit by default (none is documented); rateLimit sets one, per client", () =>
      Effect.gen(function*() {
        const open = yield* setup()
        expect(open.norce.rateLimit).toBeUndefined()
        const t = yield* open.token
        for (let i = 0; i < 200; i++) expect((yield* open.getApplication(t)).status).toBe(200)
        const limited = yield* setup({ rateLimit: { limit: 5, windowMillis: 60_000 } })
        const u = yield* limited.token
        for (let i = 0; i < 5; i++) expect((yield* limited.getApplication(u)).status).toBe(200)
        const refused = yield* limited.getApplication(u)
        expect(refused.status).toBe(429)
        expect(refused.body.error).toBe("too_many_requests")
        yield* TestClock.adjust("1 minute")
        expect((yield* limited.getApplication(u)).status).toBe(200)
      }))

    it.effect("refuses a token after its expires_in and after revokeAll", () =>
      Effect.gen(function*() {
        const { getApplication, norce, token } = yield* setup()
        const t = yield* token
        yield* TestClock.adjust(599_999)
        expect((yield* getApplication(t)).status).toBe(200)
        yield* TestClock.adjust(1)
        const expired = yield* getApplication(t)
        expect(expired.status).toBe(401)
        expect(expired.headers["www-authenticate"]).toBe("Bearer error=\"invalid_token\"")
        const fresh = yield* token
        expect((yield* getApplication(fresh)).status).toBe(200)
        expect(yield* norce.revokeAll).toBe(1)
        expect((yield* getApplication(fresh)).status).toBe(401)
      }))
  })
})
