/**
 * The one-Layer move from one process to a fleet for provider modules: with the Redis backends
 * provided, two independent copies of the Nora Layer (two processes, as far as they can tell) share
 * one token and one request budget.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as Nora from "@tollgate/providers/nora"
import { NoraSandbox, Sandbox } from "@tollgate/testing"
import { Effect, Layer, Redacted } from "effect"
import * as RedisConnection from "../src/RedisConnection.js"
import * as RedisRateLimiter from "../src/RedisRateLimiter.js"
import * as RedisTokenCache from "../src/RedisTokenCache.js"
import { maxInWindow, promise, uniquePrefix } from "./utils/Redis.js"
import * as RedisServer from "./utils/RedisServer.js"

const available = await RedisServer.requireRedis("Backend")

describe.skipIf(!available)("Redis backends for provider modules", () => {
  it.scopedLive("two copies of Nora's Layer share one token and one budget", () =>
    Effect.gen(function*() {
      const server = yield* Effect.acquireRelease(promise(() => RedisServer.start()), (s) => promise(() => s.stop()))
      // 60 per second instead of per minute, so the shared window binds within a test.
      const emulator = yield* NoraSandbox.make({ timeScale: 60 })
      const http = Layer.succeed(HttpClient.HttpClient, Sandbox.makeClient(() => emulator.app))
      const connection = RedisConnection.layer({ url: server.url, prefix: uniquePrefix("backend") })
      const nora = Nora.layer({
        clientId: NoraSandbox.defaultCredentials.clientId,
        clientSecret: Redacted.make(NoraSandbox.defaultCredentials.clientSecret),
        organizationId: NoraSandbox.defaultCredentials.organizationId,
        baseUrl: "https://nora.sandbox.test",
        limits: RateLimiter.slidingWindow({ limit: 60, window: "1 second" })
      }).pipe(
        // The whole move to a fleet: these two lines.
        Layer.provide(RedisTokenCache.layerBackend()),
        Layer.provide(RedisRateLimiter.layerBackend()),
        Layer.provide(connection),
        Layer.provide(http),
        Layer.fresh
      )
      const worker = Effect.gen(function*() {
        const client = yield* Nora.NoraClient
        yield* Effect.forEach(Array.from({ length: 60 }), () => client.get("/api/forms"), { concurrency: 10 })
      })
      yield* Effect.all([Effect.provide(worker, nora), Effect.provide(worker, nora)], { concurrency: 2 })
      const recording = yield* emulator.recording
      expect(recording.tokenCounts.issue).toBe(1)
      expect(recording.rateLimited.api).toBe(0)
      expect(recording.arrivals).toHaveLength(120)
      expect(maxInWindow(recording.arrivals.map((a) => a.at), 1_000)).toBeLessThanOrEqual(60)
      // Without the backends each copy would have spent its own 60: both windows would be full at once.
      expect(maxInWindow(recording.arrivals.map((a) => a.at), 1_000)).toBeGreaterThanOrEqual(50)
    }), 30_000)
})
