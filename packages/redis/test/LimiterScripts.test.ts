/**
 * The limiter's Lua scripts on their own, driven by several clients at once against a private
 * redis-server. Instants are the server's own (`TIME`, as the scripts answer them), so the properties
 * are checked on the clock the scripts decide with.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import { DateTime, Duration, Effect, Option } from "effect"
import * as fc from "fast-check"
import * as Scripts from "../src/internal/limiterScripts.js"
import * as RedisConnection from "../src/RedisConnection.js"
import * as RedisRateLimiter from "../src/RedisRateLimiter.js"
import { connect, inspector, promise, ttls, uniquePrefix } from "./utils/Redis.js"
import * as RedisServer from "./utils/RedisServer.js"

const available = await RedisServer.requireRedis("LimiterScripts")

const DAY = 86_400_000

/** The keys of one sliding-window lane, as the limiter lays them out. */
const slidingKeys = (prefix: string) => {
  const tag = `rl.test:${prefix}`
  const key = (name: string) => RedisConnection.key({ prefix }, tag, name)
  return [key("gate"), key("epoch"), key("sw0:held"), key("sw0:ret"), key("sw0:ext")]
}

const bucketKeys = (prefix: string) => {
  const tag = `rl.test:${prefix}`
  const key = (name: string) => RedisConnection.key({ prefix }, tag, name)
  return [key("gate"), key("epoch"), key("tb0")]
}

const strings = (reply: unknown): ReadonlyArray<string> => (Array.isArray(reply) ? reply.map(String) : [])

let counter = 0

describe.skipIf(!available)("limiter scripts", () => {
  let server: RedisServer.Server
  beforeAll(async () => {
    server = await RedisServer.start()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it.live.prop(
    "sliding window: no interval of one window can hold more than limit arrivals, for any client and latency",
    {
      limit: fc.integer({ min: 1, max: 6 }),
      windowMs: fc.integer({ min: 30, max: 120 }),
      clients: fc.integer({ min: 1, max: 4 }),
      loops: fc.integer({ min: 1, max: 3 }),
      // How long each request holds its permit, as a percentage of the window.
      holds: fc.array(fc.integer({ min: 0, max: 80 }), { minLength: 1, maxLength: 12 }),
      costs: fc.array(fc.integer({ min: 1, max: 2 }), { minLength: 1, maxLength: 5 })
    },
    ({ clients, costs, holds, limit, loops, windowMs }) =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("sw")
        const keys = slidingKeys(prefix)
        const spec = `sw:${limit}:${windowMs}`
        // Each permit: granted at g, settled at s (server time); its request may arrive anywhere between.
        const permits: Array<{ g: number; s: number; cost: number }> = []
        const target = limit * 5
        let n = 0
        const loop = (connection: RedisConnection.Service) =>
          Effect.gen(function*() {
            while (permits.length < target) {
              const i = n++
              const cost = limit >= 2 ? costs[i % costs.length]! : 1
              const id = `p${i}`
              const reply = strings(
                yield* connection.run(Scripts.acquire, keys, [spec, id, cost, 10_000, 0, "1", "", "e", DAY, windowMs])
              )
              if (reply[0] !== "1") {
                const wait = Math.max(1, Math.min(20, Math.ceil(Number(reply[3]) - Number(reply[1]))))
                yield* Effect.sleep(Duration.millis(wait))
                continue
              }
              const g = Number(reply[1])
              yield* Effect.sleep(Duration.millis(Math.floor((windowMs * holds[i % holds.length]!) / 100)))
              const settled = strings(yield* connection.run(Scripts.settle, keys, [spec, id, cost]))
              permits.push({ g, s: Number(settled[0]), cost })
            }
          })
        const connections = yield* Effect.forEach(Array.from({ length: clients }), () => connect(server.url, prefix))
        yield* Effect.forEach(
          connections.flatMap((c) => Array.from({ length: loops }, () => loop(c))),
          (effect) => effect,
          { concurrency: "unbounded", discard: true }
        )
        // For any T, the permits whose [g, s] meets [T, T + window) could all place an arrival there;
        // the worst T is some settle instant.
        let worst = 0
        for (const p of permits) {
          let load = 0
          for (const q of permits) if (q.s >= p.s && q.g < p.s + windowMs) load += q.cost
          worst = Math.max(worst, load)
        }
        expect(worst).toBeLessThanOrEqual(limit)
        expect(permits.length).toBeGreaterThanOrEqual(target)
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 12 } }
  )

  it.live.prop(
    "token bucket: never more than burst + rate × t grants in any interval of length t",
    {
      ratePerSecond: fc.integer({ min: 20, max: 400 }),
      burst: fc.integer({ min: 1, max: 12 }),
      clients: fc.integer({ min: 1, max: 4 }),
      gaps: fc.array(fc.integer({ min: 0, max: 15 }), { minLength: 1, maxLength: 10 })
    },
    ({ burst, clients, gaps, ratePerSecond }) =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("tb")
        const keys = bucketKeys(prefix)
        const perMillis = ratePerSecond / 1000
        const spec = `tb:${perMillis}:${burst}`
        const grants: Array<number> = []
        const deadline = Date.now() + 400
        const loop = (connection: RedisConnection.Service, offset: number) =>
          Effect.gen(function*() {
            let i = offset
            while (Date.now() < deadline) {
              const reply = strings(
                yield* connection.run(Scripts.acquire, keys, [
                  spec,
                  `p${counter++}`,
                  1,
                  10_000,
                  0,
                  "1",
                  "",
                  "e",
                  DAY,
                  1
                ])
              )
              if (reply[0] === "1") grants.push(Number(reply[1]))
              yield* Effect.sleep(Duration.millis(gaps[i++ % gaps.length]!))
            }
          })
        const connections = yield* Effect.forEach(Array.from({ length: clients }), () => connect(server.url, prefix))
        yield* Effect.forEach(connections.map((c, i) => loop(c, i)), (effect) => effect, {
          concurrency: "unbounded",
          discard: true
        })
        grants.sort((a, b) => a - b)
        expect(grants.length).toBeGreaterThanOrEqual(Math.min(burst, 1))
        for (let i = 0; i < grants.length; i++) {
          for (let j = i; j < grants.length; j++) {
            expect(j - i + 1).toBeLessThanOrEqual(burst + perMillis * (grants[j]! - grants[i]!) + 1e-6)
          }
        }
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 10 } }
  )

  it.scopedLive("every key a limiter writes carries a TTL", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("ttl")
      const connection = yield* connect(server.url, prefix)
      const client = yield* inspector(server.url)
      const make = (policy: RateLimiter.Policy, name: string) =>
        RedisRateLimiter.make(policy, { name }).pipe(Effect.provideService(RedisConnection.RedisConnection, connection))
      const limiter = yield* make(
        RateLimiter.all(
          RateLimiter.slidingWindow({ limit: 5, window: "2 seconds" }),
          RateLimiter.tokenBucket({ rate: 1, interval: "1 second", burst: 3 }),
          RateLimiter.fixedWindow({ limit: 4, window: "1 second" })
        ),
        "all"
      )
      const keyed = yield* make(RateLimiter.keyed(RateLimiter.slidingWindow({ limit: 2, window: "1 second" })), "keyed")
      yield* limiter.withPermit()(Effect.void)
      yield* limiter.withPermit()(Effect.void)
      yield* keyed.withPermit({ key: "GET /a" })(Effect.void)
      yield* keyed.withPermit({ key: "weird {key} with braces" })(Effect.void)
      const now = yield* DateTime.now
      yield* limiter.pauseUntil(DateTime.add(now, { seconds: 5 }))
      yield* limiter.observe({
        limit: Option.some(5),
        remaining: Option.some(1),
        resetAt: Option.some(DateTime.add(now, { seconds: 3 })),
        retryAt: Option.none(),
        window: Option.none()
      })
      // A permit in flight while we look.
      yield* Effect.forkScoped(limiter.withPermit()(Effect.never))
      yield* Effect.sleep("50 millis")
      const found = yield* ttls(client, prefix)
      expect(found.length).toBeGreaterThanOrEqual(8)
      for (const [key, ttl] of found) {
        expect({ key, ttl: ttl > 0 }).toEqual({ key, ttl: true })
      }
      // Every key of a lane shares one hash tag: one Cluster slot per lane.
      const tags = new Set(found.filter(([key]) => key.includes("keyed")).map(([key]) => /\{([^}]*)\}/.exec(key)![1]))
      expect(tags.size).toBe(2)
    }))

  it.scopedLive("falls back from EVALSHA to EVAL when the server has forgotten the scripts", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("flush")
      const connection = yield* connect(server.url, prefix)
      const client = yield* inspector(server.url)
      const limiter = yield* RedisRateLimiter.make(RateLimiter.slidingWindow({ limit: 100, window: "1 second" })).pipe(
        Effect.provideService(RedisConnection.RedisConnection, connection)
      )
      const evals = () =>
        promise(async () => {
          const info = await client.info("commandstats")
          return Number(/cmdstat_eval:calls=(\d+)/.exec(info)?.[1] ?? "0")
        })
      yield* limiter.withPermit()(Effect.void)
      const before = yield* connection.reloads
      yield* promise(() => client.script("FLUSH"))
      const evalsBefore = yield* evals()
      yield* limiter.withPermit()(Effect.void)
      yield* limiter.withPermit()(Effect.void)
      expect(yield* connection.reloads).toBeGreaterThan(before)
      expect(yield* evals()).toBeGreaterThan(evalsBefore)
      // Reloaded once, then found by digest again.
      const reloads = yield* connection.reloads
      yield* limiter.withPermit()(Effect.void)
      expect(yield* connection.reloads).toBe(reloads)
    }))

  it.scopedLive("a lost state (flush, restart without persistence) closes the gate for one window", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("epoch")
      const connection = yield* connect(server.url, prefix)
      const client = yield* inspector(server.url)
      const limiter = yield* RedisRateLimiter.make(RateLimiter.slidingWindow({ limit: 3, window: "300 millis" }), {
        name: "epoch"
      }).pipe(Effect.provideService(RedisConnection.RedisConnection, connection))
      yield* limiter.withPermit()(Effect.void)
      const keys = yield* promise(() => client.keys(`${prefix}:*`))
      yield* promise(() => client.del(...keys))
      const start = Date.now()
      yield* limiter.withPermit()(Effect.void)
      expect(Date.now() - start).toBeGreaterThanOrEqual(280)
    }))
})
