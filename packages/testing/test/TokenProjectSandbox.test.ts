import { HttpClientRequest } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, TestClock } from "effect"
import * as fc from "fast-check"
import * as TokenProjectSandbox from "../src/TokenProjectSandbox.js"
import type { Answer } from "./utils/http.js"
import { base, clientFor, getWith, jwtPayload, postJson, send } from "./utils/http.js"

const creds = TokenProjectSandbox.defaultCredentials

const tokenRequest = (key: string, secret: string) =>
  HttpClientRequest.post(`${base}/auth/token`).pipe(HttpClientRequest.setUrlParams({ key, secret }))

const setup = (options?: TokenProjectSandbox.Options) =>
  Effect.gen(function*() {
    const tp = yield* TokenProjectSandbox.make(options)
    const client = clientFor(tp)
    const token = (app: TokenProjectSandbox.Credentials = creds) =>
      Effect.map(send(client, tokenRequest(app.key, app.secret)), (a) => a.body.access_token as string)
    const stamps = (t: string | undefined) => send(client, getWith(`${base}/notarizations/stamps`, t))
    const files = (t: string | undefined) => send(client, getWith(`${base}/storage/files`, t))
    const stamp = (t: string) =>
      send(
        client,
        postJson(`${base}/notarizations/stamps`, { hash: "ab".repeat(32) }).pipe(HttpClientRequest.bearerToken(t))
      )
    return { tp, client, token, stamps, files, stamp }
  })

const limitHeaders = (answer: Answer) => ({
  limit: answer.headers["x-ratelimit-limit"],
  remaining: answer.headers["x-ratelimit-remaining"],
  reset: answer.headers["x-ratelimit-reset"]
})

describe("TokenProjectSandbox", () => {
  it.effect("issues a bearer JWT for key and secret query parameters, with iat and no exp", () =>
    Effect.gen(function*() {
      const { client } = yield* setup()
      yield* TestClock.adjust("42 seconds")
      const answer = yield* send(client, tokenRequest(creds.key, creds.secret))
      expect(answer.status).toBe(200)
      expect(Object.keys(answer.body).sort()).toEqual(["access_token", "token_type"])
      expect(answer.body.token_type).toBe("bearer")
      const payload = jwtPayload(answer.body.access_token)
      expect(payload).toMatchObject({
        sub: creds.key,
        app_name: creds.appName,
        aud: "https://developers.token-project.eu",
        grant_type: "client_credentials",
        iat: 42
      })
      expect(payload.scope).toContain("notarization:*")
      expect(payload.owner).toHaveProperty("uid")
      expect(typeof payload.jti).toBe("string")
      expect(payload).not.toHaveProperty("exp")
    }))

  it.effect("answers 401 for a wrong key or secret and 400 without them", () =>
    Effect.gen(function*() {
      const { client } = yield* setup()
      const wrong = yield* send(client, tokenRequest(creds.key, "nope"))
      expect(wrong.status).toBe(401)
      expect(wrong.body.errors[0].code).toBe(32)
      expect(wrong.text).not.toContain("nope")
      expect((yield* send(client, tokenRequest("nobody", creds.secret))).status).toBe(401)
      expect((yield* send(client, HttpClientRequest.post(`${base}/auth/token`))).status).toBe(400)
      expect((yield* send(client, HttpClientRequest.get(`${base}/auth/token`))).status).toBe(404)
    }))

  it.effect("tokens do not expire by default", () =>
    Effect.gen(function*() {
      const { stamps, token } = yield* setup()
      const t = yield* token()
      yield* TestClock.adjust("30 days")
      expect((yield* stamps(t)).status).toBe(200)
    }))

  it.effect("a server-side lifetime makes tokens 401 without telling the client", () =>
    Effect.gen(function*() {
      const { stamps, token } = yield* setup({ tokenLifetimeSeconds: 3600 })
      const t = yield* token()
      expect(jwtPayload(t)).not.toHaveProperty("exp")
      yield* TestClock.adjust(3_600_000 - 1)
      expect((yield* stamps(t)).status).toBe(200)
      yield* TestClock.adjust(1)
      const expired = yield* stamps(t)
      expect(expired.status).toBe(401)
      expect(expired.headers["www-authenticate"]).toBe("Bearer error=\"invalid_token\"")
      expect((yield* stamps(yield* token())).status).toBe(200)
    }))

  it.effect("deleting the app revokes all its tokens and refuses its credentials until restored", () =>
    Effect.gen(function*() {
      const other = { key: "other-app-key", secret: "other-app-secret", appName: "Other" }
      const { client, files, stamps, token, tp } = yield* setup({ clients: [other] })
      const a = yield* token()
      const b = yield* token()
      const c = yield* token(other)
      expect(yield* tp.deleteApp()).toBe(2)
      expect((yield* stamps(a)).status).toBe(401)
      expect((yield* files(b)).status).toBe(401)
      expect((yield* stamps(c)).status).toBe(200)
      expect((yield* send(client, tokenRequest(creds.key, creds.secret))).status).toBe(401)
      yield* tp.restoreApp()
      const d = yield* token()
      expect((yield* stamps(d)).status).toBe(200)
      expect((yield* stamps(a)).status).toBe(401)
      expect((yield* tp.recording).tokensRevoked).toBe(2)
    }))

  describe("rate limit: 10 per endpoint per app over any 2 minutes", () => {
    it.effect("counts down X-RateLimit-Remaining, then answers 429 with code 88 and the same headers", () =>
      Effect.gen(function*() {
        const { files, stamp, stamps, token, tp } = yield* setup()
        const t = yield* token()
        yield* TestClock.adjust(500)
        for (let i = 0; i < 10; i++) {
          const answer = yield* stamps(t)
          expect(answer.status).toBe(200)
          // The oldest request (t = 500 ms) leaves the window at 120.5 s: rounded up, 121.
          expect(limitHeaders(answer)).toEqual({ limit: "10", remaining: String(9 - i), reset: "121" })
        }
        const limited = yield* stamps(t)
        expect(limited.status).toBe(429)
        expect(limited.body).toEqual({ errors: [{ code: 88, message: "Rate limit exceeded" }] })
        expect(limitHeaders(limited)).toEqual({ limit: "10", remaining: "0", reset: "121" })
        // Other endpoints have their own windows: another method on the same path, another path.
        expect((yield* stamp(t)).status).toBe(201)
        expect(limitHeaders(yield* files(t)).remaining).toBe("9")
        yield* TestClock.adjust(119_999)
        expect((yield* stamps(t)).status).toBe(429)
        yield* TestClock.adjust(1)
        // 429s were not counted: the whole window is free again.
        for (let i = 0; i < 10; i++) expect((yield* stamps(t)).status).toBe(200)
        expect((yield* stamps(t)).status).toBe(429)
        const recording = yield* tp.recording
        expect(recording.maxArrivalsInWindow(120_000, (a) => a.route === "GET /notarizations/stamps")).toEqual({
          admitted: 10,
          all: 12
        })
      }))

    it.effect("every API response carries the headers, 401s and 404s for known apps included", () =>
      Effect.gen(function*() {
        const { client, stamps, token, tp } = yield* setup()
        const t = yield* token()
        yield* stamps(t)
        const missing = yield* stamps(undefined)
        expect(missing.status).toBe(401)
        expect(limitHeaders(missing)).toEqual({ limit: "10", remaining: "10", reset: "0" })
        yield* tp.revokeAll
        const revoked = yield* stamps(t)
        expect(revoked.status).toBe(401)
        expect(limitHeaders(revoked)).toEqual({ limit: "10", remaining: "9", reset: "120" })
        const fresh = yield* token()
        const bad = yield* send(
          client,
          postJson(`${base}/notarizations/stamps`, { hash: "xyz" }).pipe(HttpClientRequest.bearerToken(fresh))
        )
        expect(bad.status).toBe(400)
        expect(limitHeaders(bad)).toEqual({ limit: "10", remaining: "9", reset: "120" })
      }))

    it.effect("resetFormat: \"delta-seconds\" sends the seconds until a slot frees, rounded up", () =>
      Effect.gen(function*() {
        const { stamps, token, tp } = yield* setup({ resetFormat: "delta-seconds" })
        expect(tp.resetFormat).toBe("delta-seconds")
        const t = yield* token()
        yield* TestClock.adjust(500)
        expect(limitHeaders(yield* stamps(t))).toEqual({ limit: "10", remaining: "9", reset: "120" })
        yield* TestClock.adjust("30 seconds")
        for (let i = 0; i < 9; i++) yield* stamps(t)
        const limited = yield* stamps(t)
        expect(limited.status).toBe(429)
        // The oldest admission (at 0.5 s) leaves the window at 120.5 s, 90 s from now.
        expect(limitHeaders(limited)).toEqual({ limit: "10", remaining: "0", reset: "90" })
        const epoch = yield* setup()
        expect(epoch.tp.resetFormat).toBe("epoch-seconds")
      }))

    it.effect("endpointLimits gives an endpoint its own limit, announced in X-RateLimit-Limit", () =>
      Effect.gen(function*() {
        const { files, stamps, token, tp } = yield* setup({
          endpointLimits: { "GET /storage/files": { limit: 3, windowMillis: 60_000 } }
        })
        expect(tp.endpointLimits).toEqual({
          "GET /notarizations/stamps": { limit: 10, windowMillis: 120_000 },
          "POST /notarizations/stamps": { limit: 10, windowMillis: 120_000 },
          "GET /storage/files": { limit: 3, windowMillis: 60_000 }
        })
        const t = yield* token()
        for (let i = 0; i < 3; i++) expect(limitHeaders(yield* files(t))).toMatchObject({ limit: "3" })
        const limited = yield* files(t)
        expect(limited.status).toBe(429)
        expect(limitHeaders(limited)).toEqual({ limit: "3", remaining: "0", reset: "60" })
        expect(limitHeaders(yield* stamps(t))).toMatchObject({ limit: "10", remaining: "9" })
        yield* TestClock.adjust("1 minute")
        expect((yield* files(t)).status).toBe(200)
        // A route the sandbox does not serve is a mistake in the test, not a limit nobody meets.
        const exit = yield* Effect.exit(
          TokenProjectSandbox.make({ endpointLimits: { "GET /nowhere": { limit: 1, windowMillis: 1 } } as never })
        )
        expect(exit._tag).toBe("Failure")
      }))

    it.effect("rateLimit: a real limit other than the documented one (plans change), for every endpoint", () =>
      Effect.gen(function*() {
        const { stamps, token, tp } = yield* setup({ rateLimit: { limit: 4, windowMillis: 60_000 } })
        expect(tp.rateLimit).toEqual({ limit: 4, windowMillis: 60_000 })
        const t = yield* token()
        for (let i = 0; i < 4; i++) expect((yield* stamps(t)).status).toBe(200)
        const limited = yield* stamps(t)
        expect(limitHeaders(limited)).toMatchObject({ limit: "4", remaining: "0" })
      }))

    it.effect("counts each app separately", () =>
      Effect.gen(function*() {
        const other = { key: "other-app-key", secret: "other-app-secret", appName: "Other" }
        const { stamps, token } = yield* setup({ clients: [other] })
        const mine = yield* token()
        const theirs = yield* token(other)
        for (let i = 0; i < 10; i++) yield* stamps(mine)
        expect((yield* stamps(mine)).status).toBe(429)
        expect((yield* stamps(theirs)).status).toBe(200)
      }))

    it.effect.prop(
      "admits at most 10 in any 2-minute interval, refuses only when full, and Reset is when a slot frees",
      { gaps: fc.array(fc.integer({ min: 0, max: 40_000 }), { minLength: 1, maxLength: 60 }) },
      ({ gaps }) =>
        Effect.gen(function*() {
          const { stamps, token, tp } = yield* setup()
          const t = yield* token()
          const admitted: Array<number> = []
          for (const gap of gaps) {
            yield* TestClock.adjust(gap)
            const now = yield* Clock.currentTimeMillis
            const inWindow = admitted.filter((a) => a > now - 120_000)
            const answer = yield* stamps(t)
            expect(answer.status).toBe(inWindow.length < 10 ? 200 : 429)
            if (answer.status === 200) {
              inWindow.push(now)
              admitted.push(now)
            }
            expect(Number(answer.headers["x-ratelimit-remaining"])).toBe(10 - inWindow.length)
            expect(Number(answer.headers["x-ratelimit-reset"])).toBe(Math.ceil((inWindow[0]! + 120_000) / 1000))
          }
          expect((yield* tp.recording).maxArrivalsInWindow(120_000).admitted).toBeLessThanOrEqual(10)
        }),
      { fastCheck: { numRuns: 15 } }
    )
  })

  it.effect("timeScale 60 turns 10 per 2 minutes into 10 per 2 seconds", () =>
    Effect.gen(function*() {
      const { stamps, token, tp } = yield* setup({ timeScale: 60 })
      expect(tp.rateLimit).toEqual({ limit: 10, windowMillis: 2000 })
      const t = yield* token()
      for (let i = 0; i < 10; i++) yield* stamps(t)
      const limited = yield* stamps(t)
      expect(limited.status).toBe(429)
      expect(limited.headers["x-ratelimit-reset"]).toBe("2")
      yield* TestClock.adjust("2 seconds")
      expect((yield* stamps(t)).status).toBe(200)
    }))
})
