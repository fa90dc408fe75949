import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as ApiClient from "@tollgate/core/ApiClient"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import { NoraSandbox, Sandbox } from "@tollgate/testing"
import { Cause, Clock, Duration, Effect, Exit, Fiber, Layer, Option, Redacted, TestClock } from "effect"
import * as Nora from "../src/Nora.js"
import * as Loopback from "./utils/Loopback.js"
import * as Memory from "./utils/Memory.js"

// The docs' own example credentials: the secret holds quotes, backticks, braces, "$", "+" and ":".
const secret = "{zPYnGM$c&p+NLH0JNm-xdD'6+VHVuE`1R/xe(7+*eSAIOW^C~)M:8H_32Vd#{J"
const credentials = {
  clientId: "2mvc4Ev4qpU8Y0FbADRq4xpZOhf",
  clientSecret: Redacted.make(secret),
  organizationId: "2nHy8pbeoD5CM9WbjvyGj1VKoUu"
}

/** Nora as its docs describe it, strict about the request shape (NestJS error bodies). */
const noraServer = (options: { readonly echoSecretIn400?: boolean } = {}) => {
  let issued = 0
  const tokens = new Set<string>()
  return Loopback.serve((request) => {
    if (request.path === "/api/token") {
      if (request.method !== "POST") return { status: 404, body: { statusCode: 404, message: "Not Found" } }
      if (request.headers["content-type"] !== "application/json" || request.headers.accept !== "application/json") {
        return { status: 400, body: { statusCode: 400, message: "Unsupported content type", error: "Bad Request" } }
      }
      const body = JSON.parse(request.rawBody) as Record<string, unknown>
      const problems = ["clientId", "clientSecret", "organizationId"]
        .filter((field) => typeof body[field] !== "string")
        .map((field) => `${field} must be a string`)
      if (typeof body["organizationId"] === "string" && !/^[0-9A-Za-z]{27}$/.test(body["organizationId"])) {
        problems.push("organizationId must be a 27-character id")
      }
      if (Object.keys(body).length !== 3 || problems.length > 0) {
        const message = options.echoSecretIn400 ? [...problems, `received ${JSON.stringify(body)}`] : problems
        return { status: 400, body: { statusCode: 400, message, error: "Bad Request" } }
      }
      if (body["clientId"] !== credentials.clientId || body["clientSecret"] !== secret) {
        return { status: 401, body: { statusCode: 401, message: "Invalid credentials", error: "Unauthorized" } }
      }
      const token = Loopback.jwt({ sub: body["clientId"], n: ++issued })
      tokens.add(token)
      return { status: 200, body: { token, expires_in: 3600, token_type: "Bearer" } }
    }
    if (request.method === "GET" && request.path === "/api/forms") {
      const auth = request.headers.authorization ?? ""
      return tokens.has(auth.replace(/^Bearer /, ""))
        ? { status: 200, body: [{ id: "form-1" }] }
        : { status: 401, body: { statusCode: 401, message: "Unauthorized" } }
    }
    return { status: 404, body: { statusCode: 404, message: "Not Found" } }
  })
}

describe("Nora", () => {
  describe("against a loopback server", () => {
    it.scopedLive("POST /api/token with the exact JSON body and headers; API requests carry the token", () =>
      Effect.gen(function*() {
        const server = yield* noraServer()
        const { client, tokens } = yield* Nora.make({
          ...credentials,
          baseUrl: server.url,
          allowInsecureLoopback: true
        })
        const response = yield* client.get("/api/forms")
        expect(response.status).toBe(200)
        expect(yield* response.json).toEqual([{ id: "form-1" }])

        expect(server.requests).toHaveLength(2)
        const [token, api] = server.requests
        expect(token).toMatchObject({ method: "POST", path: "/api/token" })
        expect(token!.headers["content-type"]).toBe("application/json")
        expect(token!.headers.accept).toBe("application/json")
        expect(token!.headers.authorization).toBeUndefined()
        expect(JSON.parse(token!.rawBody)).toEqual({
          clientId: credentials.clientId,
          clientSecret: secret,
          organizationId: credentials.organizationId
        })
        const held = Option.getOrThrow(yield* tokens.current)
        expect(api).toMatchObject({ method: "GET", path: "/api/forms" })
        expect(api!.headers.authorization).toBe(`Bearer ${Redacted.value(held.value)}`)
        expect(Duration.toSeconds(Option.getOrThrow(held.lifetime))).toBe(3600)
        expect(tokens.identity).toMatchObject({ provider: "nora", endpoint: `${server.url}/api/token` })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("400 is a ProviderError with the body's description, scrubbed of the secret, not retried", () =>
      Effect.gen(function*() {
        const server = yield* noraServer({ echoSecretIn400: true })
        // An organisation id the server does not accept makes it answer 400 and echo the body it got.
        const { client } = yield* Nora.make({
          ...credentials,
          organizationId: "not-an-organization-id",
          baseUrl: server.url,
          allowInsecureLoopback: true
        })
        const error = yield* Effect.flip(client.get("/api/forms"))
        expect(error).toMatchObject({ _tag: "ProviderError", provider: "nora", status: 400, code: "Bad Request" })
        expect(error.message).toContain("organizationId must be a 27-character id")
        expect(error.message).not.toContain(secret)
        expect(JSON.stringify(error)).not.toContain(secret)
        expect(server.requests.map((r) => r.path)).toEqual(["/api/token"])
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("401 is InvalidCredentials: never retried, and no API request is sent", () =>
      Effect.gen(function*() {
        const server = yield* noraServer()
        const { client } = yield* Nora.make({
          ...credentials,
          clientSecret: Redacted.make("wrong-secret-value"),
          baseUrl: server.url,
          allowInsecureLoopback: true
        })
        const error = yield* Effect.flip(client.get("/api/forms"))
        expect(error).toMatchObject({ _tag: "InvalidCredentials", provider: "nora", status: 401 })
        expect(error.message).toContain("Invalid credentials")
        expect(error.message).not.toContain("wrong-secret-value")
        expect(server.requests.map((r) => r.path)).toEqual(["/api/token"])
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })

  describe("defaults, in virtual time", () => {
    const memoryNora = () =>
      Memory.make((request) =>
        request.url.pathname === "/api/token"
          ? { body: { token: Loopback.jwt({ at: request.at }), expires_in: 7200, token_type: "Bearer" } }
          : { body: [] }
      )

    it.scoped("a lifetime above 3600 s is clamped to it; the base URL defaults to the documented host", () =>
      Effect.gen(function*() {
        const memory = memoryNora()
        const { client, tokens } = yield* Nora.make(credentials).pipe(
          Effect.provideService(HttpClient.HttpClient, memory.client)
        )
        yield* client.get("/api/forms")
        expect(memory.seen.map((r) => r.url.href)).toEqual([
          "https://main.formflow-dev.net/api/token",
          "https://main.formflow-dev.net/api/forms"
        ])
        const held = Option.getOrThrow(yield* tokens.current)
        expect(Duration.toSeconds(Option.getOrThrow(held.lifetime))).toBe(3600)
      }))

    it.scoped("at most 60 requests per minute by default, the token request included; the limit is overridable", () =>
      Effect.gen(function*() {
        const memory = memoryNora()
        const { client, limiter } = yield* Nora.make(credentials).pipe(
          Effect.provideService(HttpClient.HttpClient, memory.client)
        )
        const fibers = yield* Effect.forEach(
          Array.from({ length: 61 }),
          () => Effect.fork(client.get("/api/forms")),
          { concurrency: "unbounded" }
        )
        yield* TestClock.adjust("1 second")
        const api = () => memory.seen.filter((r) => r.url.pathname === "/api/forms")
        expect(memory.seen.filter((r) => r.url.pathname === "/api/token")).toHaveLength(1)
        expect(api()).toHaveLength(59)
        yield* TestClock.adjust("1 minute")
        yield* Effect.forEach(fibers, Fiber.join)
        expect(api()).toHaveLength(61)
        expect(api()[59]!.at).toBeGreaterThanOrEqual(60_000)
        expect((yield* limiter.stats).waited).toBe(2)

        const other = memoryNora()
        const unlimited = yield* Nora.make({ ...credentials, limits: RateLimiter.unlimited }).pipe(
          Effect.provideService(HttpClient.HttpClient, other.client)
        )
        yield* Effect.forEach(Array.from({ length: 61 }), () => unlimited.client.get("/api/forms"), {
          concurrency: "unbounded"
        })
        expect(other.seen.filter((r) => r.url.pathname === "/api/forms")).toHaveLength(61)
      }))

    it.effect("a token source built directly with an unacceptable URL fails with a ConfigError before sending anything", () =>
      Effect.gen(function*() {
        const memory = memoryNora()
        const exit = yield* Effect.exit(
          Nora.tokenSource({ ...credentials, baseUrl: "http://main.formflow-dev.net" }).pipe(
            Effect.provideService(HttpClient.HttpClient, memory.client)
          )
        )
        expect(Exit.isFailure(exit) && Cause.isFailType(exit.cause)).toBe(true)
        expect(Exit.isFailure(exit) ? String(Cause.squash(exit.cause)) : "").toContain("plain http is refused")
        expect(memory.seen).toHaveLength(0)
        const typed = yield* Effect.scoped(Effect.flip(
          Nora.make({ ...credentials, baseUrl: "http://main.formflow-dev.net" }).pipe(
            Effect.provideService(HttpClient.HttpClient, memory.client)
          )
        ))
        expect(String(typed)).toContain("plain http is refused")
      }))

    it.scoped("layer provides the client, the token cache and the limiter under Nora's own Tags", () =>
      Effect.gen(function*() {
        const memory = memoryNora()
        const program = Effect.gen(function*() {
          const client = yield* Nora.NoraClient
          const tokens = yield* Nora.NoraTokens
          const limiter = yield* Nora.NoraLimiter
          yield* client.get("/api/forms")
          return { stats: yield* tokens.stats, granted: (yield* limiter.stats).granted }
        })
        const result = yield* program.pipe(
          Effect.provide(
            Nora.layer(credentials).pipe(Layer.provide(Layer.succeed(HttpClient.HttpClient, memory.client)))
          )
        )
        // Two permits: the token request's and the API request's.
        expect(result).toMatchObject({ stats: { fetches: 1 }, granted: 2 })
      }))
  })

  describe("a wait for a token that waits for a permit of the shared budget, in virtual time", () => {
    const api = (seen: ReadonlyArray<Memory.Seen>) => seen.filter((r) => r.url.pathname === "/api/forms")
    const tokenRequests = (seen: ReadonlyArray<Memory.Seen>) => seen.filter((r) => r.url.pathname === "/api/token")
    /** Tokens for an hour; every API request answered with `answer`. */
    const serving = (answer: Memory.Reply) =>
      Memory.make((request) =>
        request.url.pathname === "/api/token"
          ? { body: { token: Loopback.jwt({ at: request.at }), expires_in: 3600, token_type: "Bearer" } }
          : answer
      )

    it.scoped("permitDeadline 0 fails RateLimited at once; the token request goes on and serves the others", () =>
      Effect.gen(function*() {
        const memory = serving({ body: [] })
        const { client, limiter, tokens } = yield* Nora.make({
          ...credentials,
          limits: RateLimiter.slidingWindow({ limit: 2, window: "1 minute" })
        }).pipe(Effect.provideService(HttpClient.HttpClient, memory.client))
        // The token request and one API request spend the budget until 60 s; the token is then dropped.
        yield* client.get("/api/forms")
        yield* tokens.invalidate(Option.getOrThrow(yield* tokens.current))

        // A patient caller starts the token request, which queues for its permit (free at 60 s).
        const patient = yield* Effect.fork(client.get("/api/forms"))
        yield* TestClock.adjust("1 second")
        expect(tokenRequests(memory.seen)).toHaveLength(1)

        const impatient = yield* Effect.flip(
          client.get("/api/forms").pipe(ApiClient.withRequestOptions({ permitDeadline: 0 }))
        )
        expect(impatient).toMatchObject({ _tag: "RateLimited", provider: "nora", reason: "deadline" })
        expect(impatient._tag === "RateLimited" && impatient.retryAt?.epochMillis).toBe(60_000)
        // A deadline shorter than the predicted wait is refused at once too, as the limiter refuses it.
        const short = yield* Effect.flip(
          client.get("/api/forms").pipe(ApiClient.withRequestOptions({ permitDeadline: "30 seconds" }))
        )
        expect(short).toMatchObject({ _tag: "RateLimited", reason: "deadline" })
        expect(yield* Clock.currentTimeMillis).toBe(1_000)

        // Their giving up cancelled nothing: the one token request completes and serves later requests.
        yield* TestClock.adjust("1 minute")
        expect((yield* Fiber.join(patient)).status).toBe(200)
        yield* TestClock.adjust("2 minutes")
        const later = yield* client.get("/api/forms").pipe(ApiClient.withRequestOptions({ permitDeadline: 0 }))
        expect(later.status).toBe(200)
        expect(tokenRequests(memory.seen).map((r) => r.at)).toEqual([0, 60_000])
        expect(api(memory.seen)).toHaveLength(3)
        expect((yield* limiter.stats).queued).toBe(0)
      }))

    it.scoped("a deadline longer than the predicted wait waits for the token like a permit", () =>
      Effect.gen(function*() {
        const memory = serving({ body: [] })
        const { client, tokens } = yield* Nora.make({
          ...credentials,
          limits: RateLimiter.slidingWindow({ limit: 2, window: "1 minute" })
        }).pipe(Effect.provideService(HttpClient.HttpClient, memory.client))
        yield* client.get("/api/forms")
        yield* tokens.invalidate(Option.getOrThrow(yield* tokens.current))
        const fiber = yield* Effect.fork(
          client.get("/api/forms").pipe(ApiClient.withRequestOptions({ permitDeadline: "90 seconds" }))
        )
        yield* TestClock.adjust("61 seconds")
        expect((yield* Fiber.join(fiber)).status).toBe(200)
        expect(tokenRequests(memory.seen).map((r) => r.at)).toEqual([0, 60_000])
      }))

    it.scoped("a 401 announcing a budget of 1 ends a request with permitDeadline 0 at once, not after a minute", () =>
      Effect.gen(function*() {
        const memory = serving({ status: 401, headers: { "ratelimit-policy": "1" }, body: "\"\"" })
        const { client } = yield* Nora.make({
          ...credentials,
          client: { retry: { rateLimited: 0, transient: 0, maxWait: 0 }, permitDeadline: 0 },
          tokenCache: { retry: { attempts: 1 } }
        }).pipe(Effect.provideService(HttpClient.HttpClient, memory.client))
        const error = yield* Effect.flip(client.get("/api/forms"))
        expect(error).toMatchObject({ _tag: "RateLimited", provider: "nora", reason: "deadline" })
        expect(yield* Clock.currentTimeMillis).toBe(0)
        expect(tokenRequests(memory.seen)).toHaveLength(1)
      }))
  })

  describe("token requests count against the 60 per minute, against the emulator that counts them", () => {
    /** The most requests (API and token) the emulator saw in any interval of a minute. */
    const busiestMinute = (recording: {
      readonly arrivals: ReadonlyArray<{ readonly at: number }>
      readonly tokenRequests: ReadonlyArray<{ readonly at: number }>
    }) => {
      const times = [...recording.arrivals, ...recording.tokenRequests].map((r) => r.at).sort((a, b) => a - b)
      let max = 0
      for (let i = 0, j = 0; i < times.length; i++) {
        while (times[i]! - times[j]! >= 60_000) j++
        max = Math.max(max, i - j + 1)
      }
      return max
    }

    /** `n` concurrent requests through Nora's client, run to the end on TestClock; `during` runs after `at`. */
    const run = (
      n: number,
      emulatorOptions?: NoraSandbox.Options,
      during?: {
        readonly at: Duration.DurationInput
        readonly effect: (nora: NoraSandbox.NoraSandbox) => Effect.Effect<unknown>
      }
    ) =>
      Effect.gen(function*() {
        const nora = yield* NoraSandbox.make(emulatorOptions)
        const { client } = yield* Nora.make({
          clientId: nora.credentials.clientId,
          clientSecret: Redacted.make(nora.credentials.clientSecret),
          organizationId: nora.credentials.organizationId,
          baseUrl: "https://nora.sandbox.test"
        }).pipe(Effect.provideService(HttpClient.HttpClient, Sandbox.makeClient(() => nora.app)))
        const fiber = yield* Effect.fork(
          Effect.forEach(Array.from({ length: n }), () =>
            Effect.flatMap(client.get("/api/forms"), (r) => Effect.succeed(r.status)), {
            concurrency: "unbounded"
          })
        )
        let elapsed = 0
        while (fiber.unsafePoll() === null && elapsed < 60 * 60_000) {
          if (during !== undefined && elapsed === Duration.toMillis(during.at)) {
            yield* during.effect(nora)
          }
          yield* TestClock.adjust("1 second")
          elapsed += 1_000
        }
        if (fiber.unsafePoll() === null) {
          yield* Fiber.interrupt(fiber)
          return yield* Effect.dieMessage("the requests were still waiting after an hour: a deadlock")
        }
        const statuses = yield* Fiber.join(fiber)
        return { statuses, recording: yield* nora.recording }
      })

    it.scoped("a cold start of 500 callers: one token request, no 429, never 61 in a minute", () =>
      Effect.gen(function*() {
        const { recording, statuses } = yield* run(500)
        expect(statuses.every((s) => s === 200)).toBe(true)
        expect(recording.tokenCounts.issue).toBe(1)
        expect(recording.rateLimited).toEqual({ token: 0, api: 0 })
        expect(busiestMinute(recording)).toBe(60)
      }))

    it.scoped("a token revoked under a backlog of 300: renewed once, no deadlock, no 429", () =>
      Effect.gen(function*() {
        const { recording, statuses } = yield* run(300, undefined, {
          at: "90 seconds",
          effect: (nora) => nora.revokeAll
        })
        expect(statuses.every((s) => s === 200)).toBe(true)
        expect(recording.tokenCounts.issue).toBe(2)
        expect(recording.rateLimited).toEqual({ token: 0, api: 0 })
        expect(busiestMinute(recording)).toBeLessThanOrEqual(60)
      }))

    it.scoped("a backlog that outlasts the token (2-minute tokens, 7 minutes of requests): no deadlock, no 429", () =>
      Effect.gen(function*() {
        const { recording, statuses } = yield* run(420, { tokenLifetimeSeconds: 120 })
        expect(statuses.every((s) => s === 200)).toBe(true)
        expect(recording.tokenCounts.issue).toBeGreaterThanOrEqual(4)
        expect(recording.rateLimited).toEqual({ token: 0, api: 0 })
        expect(recording.unauthorized.api).toBe(0)
        expect(busiestMinute(recording)).toBeLessThanOrEqual(60)
      }))
  })
})
