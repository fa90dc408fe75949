/**
 * The connection: failing fast while Redis is away, recovering when it is back, the Config Layers that
 * swap core's local backends for the shared ones in one line, and no password in any error.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import * as ApiClient from "@tollgate/core/ApiClient"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as TokenCache from "@tollgate/core/TokenCache"
import * as TokenSource from "@tollgate/core/TokenSource"
import { ConfigProvider, Effect, Layer, Redacted, Schedule } from "effect"
import * as RedisConnection from "../src/RedisConnection.js"
import * as RedisRateLimiter from "../src/RedisRateLimiter.js"
import * as RedisTokenCache from "../src/RedisTokenCache.js"
import * as FakeSource from "./utils/FakeSource.js"
import { inspector, promise, uniquePrefix } from "./utils/Redis.js"
import * as RedisServer from "./utils/RedisServer.js"

const available = await RedisServer.requireRedis("RedisConnection")

const probe = RedisConnection.script("probe", "return redis.call('TIME')[1]")

describe("RedisConnection errors", () => {
  it.each(
    [
      ["OOM command not allowed when used memory > 'maxmemory'.", undefined, "oom"],
      ["WRONGPASS invalid username-password pair or user is disabled.", undefined, "auth"],
      ["NOAUTH Authentication required.", undefined, "auth"],
      ["READONLY You can't write against a read only replica.", undefined, "readonly"],
      ["Command timed out", undefined, "timeout"],
      ["Stream isn't writeable and enableOfflineQueue options is false", undefined, "unreachable"],
      [
        "Stream isn't writeable and enableOfflineQueue options is false",
        "connect ECONNREFUSED 127.0.0.1:1",
        "unreachable"
      ],
      [
        "Stream isn't writeable and enableOfflineQueue options is false",
        "WRONGPASS invalid username-password pair",
        "auth"
      ],
      ["ERR user_script:3: attempt to compare nil with number", undefined, "other"]
    ] as const
  )("classifies %j (connection: %j) as %s", (message, last, kind) => {
    const classified = RedisConnection.classify(new Error(message), last)
    expect(classified.kind).toBe(kind)
    expect(classified.reason).not.toContain("Stream isn't writeable")
  })

  it("never quotes URL credentials in a reason", () => {
    const classified = RedisConnection.classify(new Error("connect failed for redis://user:s3cret@host:6379"))
    expect(classified.reason).not.toContain("s3cret")
  })

  // Issue #18: `%ZZ` in the user-info made ioredis throw a URIError, a defect.
  it.effect("a malformed REDIS_URL is a typed error that does not quote the credentials", () =>
    Effect.gen(function*() {
      for (
        const url of ["redis://:%ZZpa55@127.0.0.1:6379", "redis://user%:pa55@127.0.0.1:6379", "http://127.0.0.1:6379"]
      ) {
        const error = yield* Effect.flip(Effect.scoped(RedisConnection.make({ url: Redacted.make(url) })))
        expect(error).toMatchObject({ _tag: "RedisError", operation: "connect", kind: "config" })
        expect(error.message).not.toContain("pa55")
      }
      const fromEnv = yield* Effect.flip(
        Effect.scoped(Layer.build(RedisConnection.layerFromEnv)).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["REDIS_URL", "redis://:%ZZpa55@127.0.0.1:6379"]])))
        )
      )
      expect(fromEnv).toMatchObject({ _tag: "RedisError", kind: "config" })
    }))
})

describe.skipIf(!available)("RedisConnection", () => {
  it.scopedLive("failIfUnreachable: building the connection fails with a typed error", () =>
    Effect.gen(function*() {
      const port = yield* promise(() => RedisServer.freePort())
      const error = yield* Effect.flip(
        RedisConnection.make({
          url: `redis://127.0.0.1:${port}`,
          failIfUnreachable: true,
          connectTimeout: "300 millis"
        })
      )
      expect(error._tag).toBe("RedisError")
      expect(error.operation).toBe("connect")
    }))

  it.scopedLive("started while Redis is down: commands fail at once, then work once Redis answers", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.scoped
      yield* promise(() => server.kill())
      const connection = yield* RedisConnection.make({
        url: server.url,
        connectTimeout: "2 seconds",
        reconnect: { max: "100 millis" }
      })
      const started = Date.now()
      const error = yield* Effect.flip(connection.run(probe, [], []))
      // At once: well before the connect timeout a queued command would wait for.
      expect(Date.now() - started).toBeLessThan(1_000)
      expect(error).toMatchObject({ _tag: "RedisError", operation: "probe" })
      expect(yield* connection.isReady).toBe(false)
      yield* promise(() => server.restart())
      const time = yield* connection.run(probe, [], []).pipe(
        Effect.retry({ times: 100, schedule: Schedule.spaced("50 millis") })
      )
      expect(Number(time)).toBeGreaterThan(1_600_000_000)
      expect(yield* connection.isReady).toBe(true)
    }))

  it.scopedLive("no password in any error, whatever goes wrong", () =>
    Effect.gen(function*() {
      const password = "pa55word-that-must-not-leak"
      const server = yield* RedisServer.scopedWith(["--requirepass", password])
      const wrong = yield* RedisConnection.make({
        url: Redacted.make(`redis://:not-${password}@127.0.0.1:${server.port}`),
        connectTimeout: "300 millis"
      })
      const error = yield* Effect.flip(wrong.run(probe, [], []))
      expect(`${error.message} ${JSON.stringify(error)} ${String(error)}`).not.toContain(password)
      const right = yield* RedisConnection.make({ url: Redacted.make(`redis://:${password}@127.0.0.1:${server.port}`) })
      expect(Number(yield* right.run(probe, [], []))).toBeGreaterThan(0)
    }))

  it.scopedLive("layerConfig: one line per service swaps core's local cache and limiter for the shared ones, over one connection", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.scoped
      const prefix = uniquePrefix("layers")
      const client = yield* inspector(server.url)
      const { calls, source } = yield* FakeSource.make()
      const clientsBefore = String(yield* promise(() => client.client("LIST"))).trim().split("\n").length
      const transport = HttpClient.make((request) =>
        Effect.succeed(HttpClientResponse.fromWeb(request, new Response("{}", { status: 200 })))
      )
      // A single-API program: exactly core's wiring, with the two backends from @tollgate/redis.
      const program = Layer.mergeAll(
        RedisTokenCache.layerConfig(), // was: TokenCache.layer()
        RedisRateLimiter.layerConfig(RateLimiter.slidingWindow({ limit: 5, window: "1 second" }), { name: "api" }) // was: RateLimiter.layer(...)
      ).pipe(Layer.provide(TokenSource.layer(source)))
      const live = ApiClient.layer({ provider: "fake", baseUrl: "https://api.test" }).pipe(
        Layer.provideMerge(program),
        Layer.provide(Layer.succeed(HttpClient.HttpClient, transport)),
        Layer.provide(Layer.setConfigProvider(
          ConfigProvider.fromMap(new Map([["REDIS_URL", server.url], ["TOLLGATE_REDIS_PREFIX", prefix]]))
        ))
      )
      yield* Effect.gen(function*() {
        const api = yield* ApiClient.ApiClient
        const tokens = yield* TokenCache.TokenCache
        yield* api.get("/things")
        yield* api.get("/things")
        expect(calls.fetch).toBe(1)
        expect((yield* tokens.stats).fetches).toBe(1)
        const keys = yield* promise(() => client.keys(`${prefix}:*`))
        expect(keys.some((key) => key.endsWith(":token"))).toBe(true)
        expect(keys.some((key) => key.includes("rl.api"))).toBe(true)
        const clientsNow = String(yield* promise(() => client.client("LIST"))).trim().split("\n").length
        expect(clientsNow - clientsBefore).toBe(1)
      }).pipe(Effect.provide(live), Effect.scoped)
    }))
})
