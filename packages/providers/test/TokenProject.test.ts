import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import * as ApiClient from "@tollgate/core/ApiClient"
import { Sandbox, TokenProjectSandbox } from "@tollgate/testing"
import { Clock, Duration, Effect, Fiber, Option, Redacted, TestClock } from "effect"
import * as TokenProject from "../src/TokenProject.js"
import * as Loopback from "./utils/Loopback.js"
import * as Memory from "./utils/Memory.js"

const key = "LJHyxcBqWKLhZdxZo9X5yBFvJQpWYfCT"
const secret = "vbQ6esJgef9ktKymZ9HKKmMaHZCLRmGN"
const credentials = { key, secret: Redacted.make(secret) }
const rateLimitBody = { errors: [{ code: 88, message: "Rate limit exceeded" }] }

/** The Token project: credentials in the query, JWTs with `iat` and no `exp`, revocable by the server. */
const tokenLogic = (claims: (n: number, now: number) => Record<string, unknown> = (n, now) => ({ iat: now, n })) => {
  const issued: Array<string> = []
  const revoked = new Set<string>()
  const issue = (query: URLSearchParams, now: number) => {
    if (query.get("key") !== key || query.get("secret") !== secret) {
      return { status: 401, body: { errors: [{ code: 32, message: "Could not authenticate you" }] } }
    }
    const token = Loopback.jwt({ sub: key, grant_type: "client_credentials", ...claims(issued.length, now) })
    issued.push(token)
    return { status: 200, body: { token_type: "bearer", access_token: token } }
  }
  const authorized = (authorization: string | undefined) => {
    const token = (authorization ?? "").replace(/^Bearer /, "")
    return issued.includes(token) && !revoked.has(token)
  }
  return { issued, revoked, issue, authorized }
}

describe("TokenProject", () => {
  describe("endpoint keys", () => {
    it("method and path, ID-like segments replaced by :id, no query", () => {
      const keyOf = (method: "GET" | "POST", url: string) =>
        TokenProject.endpointKey(HttpClientRequest.make(method)(url))
      expect(keyOf("GET", "https://api.token-project.eu/notarizations/stamps")).toBe("GET /notarizations/stamps")
      expect(keyOf("GET", "https://api.token-project.eu/notarizations/stamps/5f8d0d55b54764421b7156c9?x=1")).toBe(
        "GET /notarizations/stamps/:id"
      )
      expect(keyOf("GET", "https://a.test/apps/123/keys/2242b79d-f2cf-4ccc-ada1-e890bd1a9f0d/")).toBe(
        "GET /apps/:id/keys/:id"
      )
      expect(keyOf("POST", "https://a.test/ipfs/QmXoypizjW3WknFiJnKLwHCnL72vedxjQkDDP1mXWo6uco")).toBe("POST /ipfs/:id")
      expect(keyOf("GET", "https://a.test/streams/0x52908400098527886E0F7030069857D2E4169EE7")).toBe("GET /streams/:id")
      expect(keyOf("GET", "https://a.test/v1/storage/files/list")).toBe("GET /v1/storage/files/list")
      expect(keyOf("GET", "https://a.test/")).toBe("GET /")
      expect(TokenProject.endpointOf({ key: "given" })).toBe("given")
      expect(TokenProject.endpointOf({ request: HttpClientRequest.get("https://a.test/x/42") })).toBe("GET /x/:id")
    })
  })

  describe("against a loopback server", () => {
    it.scopedLive("POST /auth/token with key and secret as query parameters and no body; Bearer on API calls", () =>
      Effect.gen(function*() {
        const logic = tokenLogic((n) => ({ iat: 1606787228 + n }))
        const server = yield* Loopback.serve((request) =>
          request.path === "/auth/token"
            ? logic.issue(request.query, Date.now())
            : logic.authorized(request.headers.authorization)
            ? { status: 200, body: { stamps: [] } }
            : { status: 401, body: { errors: [{ code: 89, message: "Invalid or expired token" }] } }
        )
        const { client, tokens } = yield* TokenProject.make({
          ...credentials,
          baseUrl: server.url,
          allowInsecureLoopback: true
        })
        expect((yield* client.get("/notarizations/stamps")).status).toBe(200)
        const [token, api] = server.requests
        expect(token).toMatchObject({ method: "POST", path: "/auth/token", rawBody: "" })
        expect(Object.fromEntries(token!.query)).toEqual({ key, secret })
        expect(token!.headers["content-type"]).toBeUndefined()
        expect(token!.headers.authorization).toBeUndefined()
        expect(api!.headers.authorization).toBe(`Bearer ${logic.issued[0]}`)
        // No `exp` in the JWT: the configured default lifetime (1 hour) applies.
        const held = Option.getOrThrow(yield* tokens.current)
        expect(Duration.toMillis(Option.getOrThrow(held.lifetime))).toBe(
          Duration.toMillis(TokenProject.defaultLifetime)
        )
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("a 401 from the API (the app was deleted and recreated) renews the token and retries once", () =>
      Effect.gen(function*() {
        const logic = tokenLogic()
        const server = yield* Loopback.serve((request) => {
          if (request.path === "/auth/token") return logic.issue(request.query, Date.now())
          if (!logic.authorized(request.headers.authorization)) {
            return { status: 401, body: { errors: [{ code: 89, message: "Invalid or expired token" }] } }
          }
          return { status: 200, body: {} }
        })
        const { client, tokens } = yield* TokenProject.make({
          ...credentials,
          baseUrl: server.url,
          allowInsecureLoopback: true
        })
        yield* client.get("/notarizations/stamps")
        logic.revoked.add(logic.issued[0]!)
        expect((yield* client.get("/notarizations/stamps")).status).toBe(200)
        expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
          "POST /auth/token",
          "GET /notarizations/stamps",
          "GET /notarizations/stamps",
          "POST /auth/token",
          "GET /notarizations/stamps"
        ])
        expect(server.requests.map((r) => r.headers.authorization).filter((a) => a !== undefined)).toEqual([
          `Bearer ${logic.issued[0]}`,
          `Bearer ${logic.issued[0]}`,
          `Bearer ${logic.issued[1]}`
        ])
        expect(yield* tokens.stats).toMatchObject({ fetches: 2, invalidations: 1 })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("a 429 with code 88 closes that endpoint's gate until X-RateLimit-Reset (epoch seconds)", () =>
      Effect.gen(function*() {
        const logic = tokenLogic()
        let resetSeconds = 0
        const server = yield* Loopback.serve((request, n) => {
          if (request.path === "/auth/token") return logic.issue(request.query, Date.now())
          if (n === 1 || n === 3) {
            // First: the window resets within a second or two; second: in ten minutes.
            resetSeconds = Math.ceil(Date.now() / 1000) + (n === 1 ? 1 : 600)
            return {
              status: 429,
              headers: {
                "x-ratelimit-limit": "10",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": String(resetSeconds)
              },
              body: rateLimitBody
            }
          }
          return { status: 200, body: {}, headers: { "x-ratelimit-limit": "10", "x-ratelimit-remaining": "5" } }
        })
        const { client } = yield* TokenProject.make({
          ...credentials,
          baseUrl: server.url,
          allowInsecureLoopback: true
        })

        expect((yield* client.get("/notarizations/stamps/5f8d0d55b54764421b7156c9")).status).toBe(200)
        const firstReset = resetSeconds * 1000
        expect(server.requests[2]!.at).toBeGreaterThanOrEqual(firstReset - 5)

        const error = yield* Effect.flip(client.get("/notarizations/stamps/5f8d0d55b54764421b7156ca"))
        expect(error).toMatchObject({
          _tag: "RateLimited",
          reason: "server",
          provider: "token-project",
          key: "GET /notarizations/stamps/:id"
        })
        expect((error as { retryAt?: { epochMillis: number } }).retryAt?.epochMillis).toBe(resetSeconds * 1000)

        // The same endpoint (another id) is still closed; another endpoint is not.
        const waiting = yield* Effect.flip(
          client.get("/notarizations/stamps/77").pipe(ApiClient.withRequestOptions({ permitDeadline: "1 second" }))
        )
        expect(waiting).toMatchObject({ _tag: "RateLimited", reason: "deadline", key: "GET /notarizations/stamps/:id" })
        expect((yield* client.get("/storage/files")).status).toBe(200)
        expect(server.requests).toHaveLength(5)
        expect(TokenProject.isRateLimitBody(rateLimitBody)).toBe(true)
        expect(TokenProject.isRateLimitBody({ errors: [{ code: 89 }] })).toBe(false)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("wrong credentials are InvalidCredentials, and the secret is in no error", () =>
      Effect.gen(function*() {
        const logic = tokenLogic()
        const server = yield* Loopback.serve((request) => logic.issue(request.query, Date.now()))
        const { client } = yield* TokenProject.make({
          key,
          secret: Redacted.make("wrong-secret-0123"),
          baseUrl: server.url,
          allowInsecureLoopback: true
        })
        const error = yield* Effect.flip(client.get("/notarizations/stamps"))
        expect(error).toMatchObject({ _tag: "InvalidCredentials", status: 401 })
        expect(`${error.message} ${String(error)} ${JSON.stringify(error)}`).not.toContain("wrong-secret-0123")
        expect(server.requests).toHaveLength(1)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })

  describe("in virtual time, against an in-memory Token project", () => {
    const memoryServer = (
      logic: ReturnType<typeof tokenLogic>,
      api: (request: Memory.Seen, n: number) => Memory.Reply = () => ({ body: {} })
    ) =>
      Memory.make((request, n) =>
        request.url.pathname === "/auth/token"
          ? logic.issue(request.url.searchParams, Math.floor(request.at / 1000))
          : logic.authorized(request.headers["authorization"])
          ? api(request, n)
          : { status: 401, body: { errors: [{ code: 89, message: "Invalid or expired token" }] } }
      )

    it.scoped("no exp: renewed after the default lifetime (overridable); a JWT exp wins", () =>
      Effect.gen(function*() {
        const logic = tokenLogic()
        const memory = memoryServer(logic)
        const provide = Effect.provideService(HttpClient.HttpClient, memory.client)
        const fetchTimes = () => memory.seen.filter((r) => r.url.pathname === "/auth/token").map((r) => r.at)
        const { tokens } = yield* provide(TokenProject.make(credentials))
        // In use every minute for two hours: refreshed 5 minutes before each hour ends.
        yield* tokens.get
        for (let minute = 0; minute < 120; minute++) {
          yield* TestClock.adjust("1 minute")
          yield* tokens.get
        }
        expect(fetchTimes()).toEqual([0, 55 * 60_000, 110 * 60_000])

        const short = tokenLogic()
        const other = memoryServer(short)
        const custom = yield* TokenProject.make({ ...credentials, defaultLifetime: "10 minutes" }).pipe(
          Effect.provideService(HttpClient.HttpClient, other.client)
        )
        const start = yield* TestClock.currentTimeMillis
        const token = yield* custom.tokens.get
        expect(Duration.toMinutes(Option.getOrThrow(token.lifetime))).toBe(10)

        const expiring = tokenLogic((n, now) => ({ iat: now, exp: now + 300 }))
        const third = memoryServer(expiring)
        const withExp = yield* TokenProject.make(credentials).pipe(
          Effect.provideService(HttpClient.HttpClient, third.client)
        )
        const fromExp = yield* withExp.tokens.get
        expect(Option.getOrThrow(fromExp.expiresAt).epochMillis - start).toBe(300_000)
      }))

    it.scoped("a token without exp is renewed when the API answers 401", () =>
      Effect.gen(function*() {
        const logic = tokenLogic()
        const memory = memoryServer(logic)
        const { client, tokens } = yield* TokenProject.make(credentials).pipe(
          Effect.provideService(HttpClient.HttpClient, memory.client)
        )
        yield* client.get("/notarizations/stamps")
        yield* TestClock.adjust("10 minutes")
        logic.revoked.add(logic.issued[0]!)
        expect((yield* client.get("/notarizations/stamps")).status).toBe(200)
        expect(memory.seen.map((r) => `${r.at} ${r.url.pathname}`)).toEqual([
          "0 /auth/token",
          "0 /notarizations/stamps",
          "600000 /notarizations/stamps",
          "600000 /auth/token",
          "600000 /notarizations/stamps"
        ])
        expect(memory.seen[4]!.headers["authorization"]).toBe(`Bearer ${logic.issued[1]}`)
        expect(yield* tokens.stats).toMatchObject({ fetches: 2, invalidations: 1 })
      }))

    it.scoped("10 requests per 2 minutes per endpoint; IDs share their endpoint's budget; endpointOf overrides", () =>
      Effect.gen(function*() {
        const run = (options: Partial<TokenProject.Options>) =>
          Effect.gen(function*() {
            const memory = memoryServer(tokenLogic())
            const { client, limiter } = yield* TokenProject.make({ ...credentials, ...options }).pipe(
              Effect.provideService(HttpClient.HttpClient, memory.client)
            )
            const fibers = yield* Effect.forEach(
              Array.from({ length: 11 }, (_, i) => `/notarizations/stamps/${1000 + i}`),
              (path) => Effect.fork(client.get(path)),
              { concurrency: "unbounded" }
            )
            const other = yield* Effect.fork(client.get("/storage/files"))
            yield* TestClock.adjust("1 second")
            const arrivals = () => memory.seen.filter((r) => r.url.pathname !== "/auth/token")
            const early = arrivals().length
            // Lanes while traffic runs (idle ones are dropped about a window after it stops).
            const lanes = (yield* limiter.stats).lanes
            yield* TestClock.adjust("3 minutes")
            yield* Effect.forEach([...fibers, other], Fiber.join)
            return { early, arrivals: arrivals(), lanes }
          })
        const byEndpoint = yield* run({})
        expect(byEndpoint.early).toBe(11)
        expect(byEndpoint.arrivals.filter((r) => r.url.pathname.startsWith("/storage"))[0]!.at).toBe(0)
        expect(byEndpoint.arrivals.filter((r) => r.at >= 120_000)).toHaveLength(1)
        expect(byEndpoint.lanes).toBe(2)

        const oneBudget = yield* run({ endpointOf: () => "everything" })
        expect(oneBudget.early).toBe(10)
        expect(oneBudget.lanes).toBe(1)
      }))

    it.scoped("against the emulator in either reset format, an endpoint's own lower limit closes the gate in time", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(Date.UTC(2026, 0, 1))
        for (const resetFormat of ["epoch-seconds", "delta-seconds"] as const) {
          const emulator = yield* TokenProjectSandbox.make({
            resetFormat,
            endpointLimits: { "GET /storage/files": { limit: 5, windowMillis: 90_000 } }
          })
          const { client } = yield* TokenProject.make({
            key: emulator.credentials.key,
            secret: Redacted.make(emulator.credentials.secret),
            baseUrl: "https://token-project.sandbox.test"
          }).pipe(Effect.provideService(HttpClient.HttpClient, Sandbox.makeClient(() => emulator.app)))
          const started = yield* Clock.currentTimeMillis
          const fiber = yield* Effect.fork(
            Effect.forEach(Array.from({ length: 12 }), () => Effect.map(client.get("/storage/files"), (r) => r.status))
          )
          yield* TestClock.adjust("10 minutes")
          expect(yield* Fiber.join(fiber)).toEqual(Array.from({ length: 12 }, () => 200))
          const recording = yield* emulator.recording
          // "Remaining: 0" on the fifth answer closed the gate until the announced reset: no 429, nothing early.
          expect(recording.rateLimited.api).toBe(0)
          expect(recording.maxArrivalsInWindow(90_000).admitted).toBe(5)
          expect(recording.arrivals[5]!.at - started).toBeGreaterThanOrEqual(90_000)
        }
      }))

    it.scoped("X-RateLimit-Reset is read as epoch seconds or as seconds until the reset: the docs say both", () =>
      Effect.gen(function*() {
        // A realistic instant: what tells the two readings apart is that epoch seconds are large.
        const start = Date.UTC(2026, 0, 1)
        yield* TestClock.setTime(start)
        for (const format of ["epoch", "delta"] as const) {
          const logic = tokenLogic()
          const memory = memoryServer(logic, (request, n) =>
            n === 2
              ? {
                status: 429,
                headers: {
                  "x-ratelimit-limit": "10",
                  "x-ratelimit-remaining": "0",
                  // 90 seconds from the 429, each way (not the 2-minute window the client would fall back to).
                  "x-ratelimit-reset": format === "epoch" ? String(request.at / 1000 + 90) : "90"
                },
                body: rateLimitBody
              }
              : { body: {} })
          const { client } = yield* TokenProject.make(credentials).pipe(
            Effect.provideService(HttpClient.HttpClient, memory.client)
          )
          const at = yield* Clock.currentTimeMillis
          yield* client.get("/notarizations/stamps")
          yield* TestClock.adjust("1 minute")
          const fiber = yield* Effect.fork(client.get("/notarizations/stamps"))
          yield* TestClock.adjust("3 minutes")
          yield* Fiber.join(fiber)
          expect(memory.seen.map((r) => r.at - at)).toEqual([0, 0, 60_000, 150_000])
        }
      }))
  })
})
