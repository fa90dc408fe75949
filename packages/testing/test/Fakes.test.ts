import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { ApiClient, RateLimiter, TokenCache, TollgateError, Transport } from "@tollgate/core"
import { Duration, Effect, Fiber, Layer, Redacted, TestClock } from "effect"
import * as FakeTokenSource from "../src/FakeTokenSource.js"
import * as MemoryHttp from "../src/MemoryHttp.js"
import * as RecordingLimiter from "../src/RecordingLimiter.js"

// The whole stack of a single-API program, with every outside dependency replaced by a fake.
const seen: Array<string | undefined> = []
const Api = ApiClient.layer({ provider: "example", baseUrl: "https://api.example.test" }).pipe(
  Layer.provideMerge(TokenCache.layer()),
  Layer.provideMerge(FakeTokenSource.layer({ lifetime: "10 minutes", latency: "100 millis" })),
  Layer.provideMerge(RecordingLimiter.layer(RateLimiter.slidingWindow({ limit: 2, window: "1 second" }))),
  Layer.provideMerge(MemoryHttp.layer((request) =>
    Effect.sync(() => {
      seen.push(request.headers["authorization"])
      return request.url.endsWith("/missing") ? { status: 404, body: { error: "not found" } } : { body: { ok: true } }
    })
  ))
)

describe("fake Layers", () => {
  it.layer(Api)("a user's integration test", (it) => {
    it.effect("swaps the token source, limiter and transport, and records all three", () =>
      Effect.gen(function*() {
        const client = yield* ApiClient.ApiClient
        const fiber = yield* Effect.fork(
          Effect.forEach(Array.from({ length: 5 }), () => Effect.flatMap(client.get("/items"), (r) => r.json), {
            concurrency: "unbounded"
          })
        )
        yield* TestClock.adjust("3 seconds")
        const bodies = yield* Fiber.join(fiber)
        expect(bodies).toEqual(Array.from({ length: 5 }, () => ({ ok: true })))
        const recording = yield* (yield* FakeTokenSource.FakeTokenSourceRecorder).recording
        expect(recording.fetches).toBe(1)
        expect(seen.every((h) => h === "Bearer fake-fetch-token-1")).toBe(true)
        const limiter = yield* RecordingLimiter.Recorder
        const permits = (yield* limiter.events).filter((e) => e._tag === "Permit")
        expect(permits).toHaveLength(5)
        // Two per second: the fifth permit waits for the second window to end.
        expect(Math.max(...(yield* limiter.waits))).toBeGreaterThanOrEqual(2_000)
        const missing = yield* client.get("/missing")
        expect(missing.status).toBe(404)
        expect(yield* missing.json).toEqual({ error: "not found" })
        // What the client hands back never prints the bearer token, even outside a fiber.
        expect(seen.at(-1)).toBe("Bearer fake-fetch-token-1")
        expect(JSON.stringify(missing)).not.toContain("fake-fetch-token-1")
        expect(String(missing)).not.toContain("fake-fetch-token-1")
      }))
  })

  it.scoped("a scripted source fails exactly when told, and the cache shares one failure", () =>
    Effect.gen(function*() {
      const fake = yield* FakeTokenSource.make({
        script: [new TollgateError.InvalidCredentials({ provider: "fake", status: 401 }), "ok"],
        latency: "10 millis"
      })
      const cache = yield* TokenCache.make(fake.source, { cooldown: { base: "1 millis", max: "1 millis" } })
      const fiber = yield* Effect.fork(Effect.all([Effect.flip(cache.get), Effect.flip(cache.get)], { concurrency: 2 }))
      yield* TestClock.adjust("10 millis")
      const [a, b] = yield* Fiber.join(fiber)
      expect(a).toBe(b)
      expect(a._tag).toBe("InvalidCredentials")
      yield* TestClock.adjust("1 millis")
      const next = Effect.fork(cache.get)
      const f = yield* next
      yield* TestClock.adjust("10 millis")
      expect(Redacted.value((yield* Fiber.join(f)).value)).toBe("fake-fetch-token-2")
      const recording = yield* fake.recording
      expect(recording.calls.map((c) => c.grant)).toEqual(["fetch", "fetch"])
      expect(recording.maxConcurrent).toBe(1)
    }))

  it.effect("memory responses are plain effects, readable without promises", () =>
    Effect.gen(function*() {
      const client = MemoryHttp.client((request) =>
        Effect.succeed({ status: 201, headers: { "x-test": "1" }, body: MemoryHttp.requestText(request) })
      )
      const response = yield* client.post("https://x.test/echo", {
        body: HttpBody.unsafeJson({ hello: "world" })
      })
      expect(response.status).toBe(201)
      expect(response.headers["x-test"]).toBe("1")
      expect(yield* response.json).toEqual({ hello: "world" })
      expect(new TextDecoder().decode(yield* response.arrayBuffer)).toBe("{\"hello\":\"world\"}")
      const failing = MemoryHttp.client((request) => Effect.fail(MemoryHttp.transportError(request)))
      const error = yield* Effect.flip(failing.get("https://x.test/"))
      expect(error).toMatchObject({ _tag: "RequestError", reason: "Transport" })
      yield* TestClock.adjust(Duration.zero)
    }))

  it.scoped("a recorded limiter shows the pause a 429 reported, with its retry instant", () =>
    Effect.gen(function*() {
      const recording = yield* RecordingLimiter.wrap(yield* RateLimiter.make(RateLimiter.unlimited))
      const transport = MemoryHttp.client(() => Effect.succeed({ status: 429, headers: { "retry-after": "60" } }))
      const client = yield* ApiClient.make({
        provider: "memory",
        baseUrl: "https://api.test",
        limiter: recording.limiter,
        retry: { rateLimited: 0 }
      }).pipe(Effect.provideService(HttpClient.HttpClient, transport))
      expect(yield* Effect.flip(client.get("/x"))).toMatchObject({ _tag: "RateLimited" })
      expect((yield* recording.events).filter((event) => event._tag === "Pause")).toEqual([
        { _tag: "Pause", key: "GET /x", until: 60_000, at: 0 }
      ])
    }))

  it.scoped("memory transports honour the abort signal, so Tollgate hands them its deadlines", () =>
    Effect.gen(function*() {
      const log = { started: 0, interrupted: 0 }
      const transport = MemoryHttp.client(() =>
        Effect.sync(() => log.started++).pipe(
          Effect.zipRight(Effect.sleep("1 minute")),
          Effect.onInterrupt(() => Effect.sync(() => log.interrupted++)),
          Effect.as({ status: 200 })
        )
      )
      expect(Transport.isAbortable(transport)).toBe(true)
      const client = yield* ApiClient.make({
        provider: "memory",
        baseUrl: "https://api.test",
        timeout: "1 second",
        retry: { transient: 0 }
      }).pipe(Effect.provideService(HttpClient.HttpClient, transport))
      const fiber = yield* Effect.fork(Effect.flip(client.get("/slow")))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "Timeout", operation: "API request" })
      // The handler was interrupted before the request failed.
      expect(log).toEqual({ started: 1, interrupted: 1 })
    }))
})
