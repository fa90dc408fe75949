import { HttpClientRequest } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Option, TestClock } from "effect"
import * as Faults from "../src/Faults.js"
import * as NombaSandbox from "../src/NombaSandbox.js"
import * as NoraSandbox from "../src/NoraSandbox.js"
import { base, clientFor, getWith, jwtPayload, postJson, send } from "./utils/http.js"

const setup = Effect.gen(function*() {
  const nora = yield* NoraSandbox.make()
  const client = clientFor(nora)
  const tokenRequest = postJson(`${base}/api/token`, nora.credentials)
  const token = Effect.map(send(client, tokenRequest), (a) => a.body.token as string)
  const forms = (t: string | undefined) => send(client, getWith(`${base}/api/forms`, t))
  return { nora, client, tokenRequest, token, forms }
})

describe("Faults", () => {
  describe("latency", () => {
    it.effect("a fixed latency delays the answer by exactly that much of the emulator's clock", () =>
      Effect.gen(function*() {
        const { client, nora, tokenRequest } = yield* setup
        yield* nora.faults.set("token", { latency: "2 seconds" })
        const fiber = yield* Effect.fork(send(client, tokenRequest))
        yield* TestClock.adjust(1999)
        expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
        yield* TestClock.adjust(1)
        const answer = yield* Fiber.join(fiber)
        expect(answer.status).toBe(200)
        expect(jwtPayload(answer.body.token).iat).toBe(2)
        const recording = yield* nora.recording
        expect(recording.tokenRequests[0]?.at).toBe(2000)
      }))

    it.effect("a latency range draws each request's latency within [min, max] from Effect's Random", () =>
      Effect.gen(function*() {
        const { forms, nora, token } = yield* setup
        const t = yield* token
        yield* nora.faults.set("api", { latency: { min: "100 millis", max: "300 millis" } })
        const fiber = yield* Effect.fork(Effect.all(Array.from({ length: 30 }, () => forms(t)), { concurrency: 30 }))
        yield* TestClock.adjust(99)
        expect((yield* nora.recording).arrivals).toHaveLength(0)
        yield* TestClock.adjust(201)
        const answers = yield* Fiber.join(fiber)
        expect(answers.every((a) => a.status === 200)).toBe(true)
        const times = (yield* nora.recording).arrivals.map((a) => a.at)
        expect(Math.min(...times)).toBeGreaterThanOrEqual(100)
        expect(Math.max(...times)).toBeLessThanOrEqual(300)
        expect(new Set(times).size).toBeGreaterThan(1)
        yield* nora.faults.set("api", { latency: null })
        expect((yield* nora.faults.config("api")).latency).toBeUndefined()
      }))
  })

  describe("5xx at a rate", () => {
    it.effect("answers an HTML error page or a JSON body, on the chosen target only", () =>
      Effect.gen(function*() {
        const { client, forms, nora, token, tokenRequest } = yield* setup
        const t = yield* token
        yield* nora.faults.set("api", { errorRate: 1 })
        expect((yield* send(client, tokenRequest)).status).toBe(200)
        const page = yield* forms(t)
        expect(page.status).toBe(503)
        expect(page.headers["content-type"]).toContain("text/html")
        expect(page.text).toContain("<h1>503 Service Unavailable</h1>")
        yield* nora.faults.set("api", { errorBody: "json", errorStatus: 502 })
        const json = yield* forms(t)
        expect(json.status).toBe(502)
        expect(json.body).toEqual({ statusCode: 502, message: "Bad Gateway" })
        yield* nora.faults.set("api", { errorRate: 0 })
        yield* nora.faults.set("token", { errorRate: 1 })
        // The token target has its own configuration: the default 503 HTML page.
        expect((yield* send(client, tokenRequest)).status).toBe(503)
        expect((yield* forms(t)).status).toBe(200)
        const recording = yield* nora.recording
        expect(recording.arrivals.map((a) => [a.status, a.fault, a.admitted])).toEqual([
          [503, "error", false],
          [502, "error", false],
          [200, undefined, true]
        ])
        expect(recording.tokenRequests.map((r) => r.outcome)).toEqual(["granted", "granted", "fault"])
      }))

    it.effect("at a fractional rate, about that share of requests fail", () =>
      Effect.gen(function*() {
        const nomba = yield* NombaSandbox.make()
        const client = clientFor(nomba)
        yield* nomba.faults.set("token", { errorRate: 0.25 })
        const body = {
          grant_type: "client_credentials",
          client_id: nomba.credentials.clientId,
          client_secret: nomba.credentials.clientSecret
        }
        let failed = 0
        for (let i = 0; i < 400; i++) {
          const answer = yield* send(
            client,
            postJson(`${base}/v1/auth/token/issue`, body, { accountId: nomba.credentials.accountId })
          )
          if (answer.status === 503) failed++
          else expect(answer.body.code).toBe("00")
        }
        // Binomial(400, 0.25): mean 100, standard deviation ~8.7.
        expect(failed).toBeGreaterThan(50)
        expect(failed).toBeLessThan(150)
        expect((yield* nomba.recording).tokenCounts.faults).toBe(failed)
      }))
  })

  it.effect("timeouts: the request is never answered, until the client gives up", () =>
    Effect.gen(function*() {
      const { client, nora, tokenRequest } = yield* setup
      yield* nora.faults.set("token", { timeoutRate: 1 })
      const fiber = yield* Effect.fork(Effect.either(Effect.timeout(send(client, tokenRequest), "30 seconds")))
      yield* TestClock.adjust("29 seconds")
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* TestClock.adjust("1 second")
      const result = yield* Fiber.join(fiber)
      expect(result._tag === "Left" && result.left._tag).toBe("TimeoutException")
      const recording = yield* nora.recording
      expect(recording.tokenRequests[0]).toMatchObject({ status: 0, outcome: "fault", reason: "timeout" })
    }))

  it.effect("dropped connections: a transport error in memory, or a partial body", () =>
    Effect.gen(function*() {
      const { client, forms, nora, token } = yield* setup
      const t = yield* token
      yield* nora.faults.set("api", { dropRate: 1 })
      const error = yield* Effect.flip(forms(t))
      expect(error._tag).toBe("RequestError")
      expect(error._tag === "RequestError" && error.reason).toBe("Transport")
      yield* nora.faults.set("api", { dropMode: "partial" })
      const response = yield* client.execute(getWith(`${base}/api/forms`, t))
      expect(response.status).toBe(200)
      const bodyError = yield* Effect.flip(response.text)
      expect(bodyError._tag).toBe("ResponseError")
      const recording = yield* nora.recording
      expect(recording.arrivals.map((a) => [a.status, a.fault])).toEqual([[0, "drop"], [0, "drop"]])
    }))

  describe("scripted responses", () => {
    it.effect("decide the next N answers exactly, per target, then the emulator answers again", () =>
      Effect.gen(function*() {
        const { client, forms, nora, token, tokenRequest } = yield* setup
        yield* nora.faults.script(
          "token",
          Faults.json(200, { token: "x", expires_in: "abc", token_type: "Bearer" }),
          Faults.json(200, { token: "x", expires_in: -5, token_type: "Bearer" }),
          Faults.respond({
            status: 200,
            headers: { "content-type": "application/json" },
            body: "{\"token\":\"abc\",\"expires_in\":36"
          }),
          Faults.html(502, "<html><body>Bad gateway</body></html>"),
          Faults.respond({ status: 429 }),
          Faults.passThrough()
        )
        yield* nora.faults.script("api", Faults.json(429, { statusCode: 429 }, { headers: { "retry-after": "7" } }))
        expect(yield* nora.faults.pending("token")).toBe(6)
        const abc = yield* send(client, tokenRequest)
        expect(abc.body.expires_in).toBe("abc")
        expect((yield* send(client, tokenRequest)).body.expires_in).toBe(-5)
        const truncated = yield* send(client, tokenRequest)
        expect(truncated.text).toBe("{\"token\":\"abc\",\"expires_in\":36")
        expect(truncated.body).toBeUndefined()
        const html = yield* send(client, tokenRequest)
        expect(html.status).toBe(502)
        expect(html.headers["content-type"]).toContain("text/html")
        const bare = yield* send(client, tokenRequest)
        expect(bare.status).toBe(429)
        expect(bare.text).toBe("")
        expect(bare.headers["retry-after"]).toBeUndefined()
        expect(bare.headers["content-type"]).toBeUndefined()
        expect(yield* nora.faults.pending("token")).toBe(1)
        const passed = yield* send(client, tokenRequest)
        expect(passed.status).toBe(200)
        expect(typeof passed.body.token).toBe("string")
        expect(yield* nora.faults.pending("token")).toBe(0)
        // The API script is separate, and answers before authentication.
        const limited = yield* forms(undefined)
        expect(limited.status).toBe(429)
        expect(limited.headers["retry-after"]).toBe("7")
        expect((yield* forms(yield* token)).status).toBe(200)
        const recording = yield* nora.recording
        expect(recording.tokenRequests.map((r) => r.reason)).toEqual([
          "scripted",
          "scripted",
          "scripted",
          "scripted",
          "scripted",
          undefined,
          undefined
        ])
        expect(recording.rateLimited).toEqual({ token: 1, api: 1 })
      }))

    it.effect("script provider envelopes, delays, timeouts and drops", () =>
      Effect.gen(function*() {
        const nomba = yield* NombaSandbox.make()
        const client = clientFor(nomba)
        const issue = send(
          client,
          postJson(`${base}/v1/auth/token/issue`, {}, { accountId: nomba.credentials.accountId })
        )
        yield* nomba.faults.script(
          "token",
          Faults.json(200, { code: "99", description: "System malfunction" }),
          Faults.json(200, {
            code: "00",
            description: "Success",
            data: { businessId: "b", access_token: "a", refresh_token: "r", expiresAt: "2000-01-01T00:00:00Z" }
          }, { delay: "3 seconds" }),
          Faults.timeout(),
          Faults.drop()
        )
        const ninetyNine = yield* issue
        expect(ninetyNine.status).toBe(200)
        expect(ninetyNine.body.code).toBe("99")
        const delayed = yield* Effect.fork(issue)
        yield* TestClock.adjust("3 seconds")
        expect((yield* Fiber.join(delayed)).body.data.expiresAt).toBe("2000-01-01T00:00:00Z")
        const hanging = yield* Effect.fork(Effect.timeout(issue, "1 second"))
        yield* TestClock.adjust("1 second")
        expect(Exit.isFailure(yield* Fiber.await(hanging))).toBe(true)
        const dropped = yield* Effect.flip(issue)
        expect(dropped._tag).toBe("RequestError")
        const after = yield* issue
        expect(after.status).toBe(400)
        expect(after.body.code).toBe(NombaSandbox.codes.badRequest)
      }))
  })

  it.effect("clock skew shifts issued timestamps, not the Date header nor validity", () =>
    Effect.gen(function*() {
      const { client, forms, nora, token, tokenRequest } = yield* setup
      yield* TestClock.adjust("1000 seconds")
      yield* nora.faults.setClockSkew(300_000)
      const answer = yield* send(client, tokenRequest)
      const payload = jwtPayload(answer.body.token)
      expect(payload.iat).toBe(1300)
      expect(payload.exp).toBe(4900)
      expect(answer.headers["date"]).toBe(new Date(1_000_000).toUTCString())
      yield* TestClock.adjust(3_600_000 - 1)
      expect((yield* forms(answer.body.token)).status).toBe(200)
      yield* TestClock.adjust(1)
      expect((yield* forms(answer.body.token)).status).toBe(401)
      yield* nora.faults.setClockSkew(-60_000)
      expect(jwtPayload(yield* token).iat).toBe(4600 - 60)
    }))

  it.effect("revokeAll revokes access and refresh tokens", () =>
    Effect.gen(function*() {
      const nomba = yield* NombaSandbox.make()
      const client = clientFor(nomba)
      const headers = { accountId: nomba.credentials.accountId }
      const body = {
        grant_type: "client_credentials",
        client_id: nomba.credentials.clientId,
        client_secret: nomba.credentials.clientSecret
      }
      const data = (yield* send(client, postJson(`${base}/v1/auth/token/issue`, body, headers))).body.data
      expect(yield* nomba.revokeAll).toBe(1)
      const api = yield* send(client, getWith(`${base}/v1/accounts`, data.access_token, headers))
      expect(api.status).toBe(401)
      const refresh = yield* send(
        client,
        postJson(
          `${base}/v1/auth/token/refresh`,
          { grant_type: "refresh_token", refresh_token: data.refresh_token },
          headers
        )
          .pipe(HttpClientRequest.bearerToken(data.access_token))
      )
      expect(refresh.status).toBe(401)
    }))

  it.effect("knobs change at runtime, reset clears them all, and invalid values are refused", () =>
    Effect.gen(function*() {
      const { nora } = yield* setup
      yield* nora.faults.set("all", { errorRate: 0.5, timeoutRate: 0.1, dropRate: 0.1, latency: "1 second" })
      yield* nora.faults.script("api", Faults.passThrough())
      yield* nora.faults.setClockSkew(5)
      expect((yield* nora.faults.config("token")).errorRate).toBe(0.5)
      expect((yield* nora.faults.config("api")).dropRate).toBe(0.1)
      yield* nora.faults.reset
      expect(yield* nora.faults.config("token")).toEqual(Faults.none)
      expect(yield* nora.faults.config("api")).toEqual(Faults.none)
      expect(yield* nora.faults.pending("api")).toBe(0)
      const bad = yield* Effect.exit(nora.faults.set("api", { errorRate: 2 }))
      expect(Exit.isFailure(bad) && Cause.pretty(bad.cause)).toContain("errorRate must be within [0, 1]")
      const notServer = yield* Effect.exit(nora.faults.set("api", { errorStatus: 404 }))
      expect(Exit.isFailure(notServer)).toBe(true)
    }))
})
