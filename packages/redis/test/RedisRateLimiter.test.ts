/**
 * The shared limiter through core's `RateLimiter.Service` interface, several limiters on separate
 * connections standing for separate processes, against a private redis-server.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as RateLimitHeaders from "@tollgate/core/RateLimitHeaders"
import { DateTime, Duration, Effect, Exit, Fiber, Option, Schedule, Scope } from "effect"
import * as fc from "fast-check"
import * as Scripts from "../src/internal/limiterScripts.js"
import * as RedisConnection from "../src/RedisConnection.js"
import * as RedisRateLimiter from "../src/RedisRateLimiter.js"
import { connect, inspector, maxInWindow, preciseNow, promise, uniquePrefix } from "./utils/Redis.js"
import * as RedisServer from "./utils/RedisServer.js"

const available = await RedisServer.requireRedis("RedisRateLimiter")

/** A limiter on a connection of its own: one "process" of the fleet. */
const worker = (
  url: string,
  prefix: string,
  policy: RateLimiter.Policy,
  options?: RedisRateLimiter.Options
) =>
  Effect.flatMap(connect(url, prefix), (connection) =>
    RedisRateLimiter.make(policy, { name: "api", ...options }).pipe(
      Effect.provideService(RedisConnection.RedisConnection, connection)
    ))

const stamp = Effect.sync(preciseNow)

describe.skipIf(!available)("RedisRateLimiter", () => {
  let server: RedisServer.Server
  beforeAll(async () => {
    server = await RedisServer.start()
  })
  afterAll(async () => {
    await server?.stop()
  })

  describe("slidingWindow across processes (invariant 4)", () => {
    it.live.prop(
      "no interval of one window sees more than limit arrivals, whatever the latency",
      {
        limit: fc.integer({ min: 1, max: 5 }),
        windowMs: fc.integer({ min: 60, max: 150 }),
        workers: fc.integer({ min: 2, max: 4 }),
        fibers: fc.integer({ min: 1, max: 4 }),
        // Latency before and after the server sees the request, as a percentage of the window.
        latency: fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 40 })), {
          minLength: 1,
          maxLength: 8
        })
      },
      ({ fibers, latency, limit, windowMs, workers }) =>
        Effect.gen(function*() {
          const prefix = uniquePrefix("swp")
          const policy = RateLimiter.slidingWindow({ limit, window: Duration.millis(windowMs) })
          const limiters = yield* Effect.forEach(Array.from({ length: workers }), () =>
            worker(server.url, prefix, policy))
          const arrivals: Array<number> = []
          const requests = limit * 4
          let sent = 0
          const request = (limiter: RateLimiter.Service, i: number) => {
            const [up, down] = latency[i % latency.length]!
            return limiter.withPermit()(
              Effect.gen(function*() {
                yield* Effect.sleep(Duration.millis(Math.floor((windowMs * up) / 100)))
                arrivals.push(yield* stamp)
                yield* Effect.sleep(Duration.millis(Math.floor((windowMs * down) / 100)))
              })
            )
          }
          const loop = (limiter: RateLimiter.Service) =>
            Effect.gen(function*() {
              while (sent < requests) {
                yield* request(limiter, sent++)
              }
            })
          yield* Effect.forEach(
            limiters.flatMap((limiter) =>
              Array.from({ length: fibers }, () => loop(limiter))
            ),
            (effect) => effect,
            { concurrency: "unbounded", discard: true }
          )
          expect(arrivals.length).toBeGreaterThanOrEqual(requests)
          expect(maxInWindow(arrivals, windowMs)).toBeLessThanOrEqual(limit)
        }).pipe(Effect.scoped),
      { fastCheck: { numRuns: 8 } }
    )

    it.scopedLive("with saturating demand the fleet uses its budget: at least 90% of limit per window", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("util")
        const limit = 20
        const window = 200
        const policy = RateLimiter.slidingWindow({ limit, window: Duration.millis(window) })
        const limiters = yield* Effect.forEach(Array.from({ length: 3 }), () => worker(server.url, prefix, policy))
        const arrivals: Array<number> = []
        const until = preciseNow() + window * 8
        const loop = (limiter: RateLimiter.Service) =>
          Effect.gen(function*() {
            while (preciseNow() < until) {
              yield* limiter.withPermit()(Effect.flatMap(stamp, (t) => Effect.sync(() => arrivals.push(t))))
            }
          })
        yield* Effect.forEach(
          limiters.flatMap((limiter) => Array.from({ length: 10 }, () => loop(limiter))),
          (e) => e,
          {
            concurrency: "unbounded",
            discard: true
          }
        )
        expect(maxInWindow(arrivals, window)).toBeLessThanOrEqual(limit)
        // 8 windows of saturating demand, the last one possibly cut short.
        expect(arrivals.length).toBeGreaterThanOrEqual(Math.floor(0.9 * limit * 7))
      }))
  })

  describe("the shared gate (invariant 6)", () => {
    it.scopedLive("a pause set by one process holds every other process until the reset", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("gate")
        const policy = RateLimiter.slidingWindow({ limit: 100, window: "1 second" })
        const a = yield* worker(server.url, prefix, policy)
        const b = yield* worker(server.url, prefix, policy)
        const now = yield* DateTime.now
        const reset = now.epochMillis + 300
        yield* a.pauseUntil(DateTime.unsafeMake(reset))
        // It only moves later.
        yield* a.pauseUntil(DateTime.unsafeMake(reset - 200))
        const admitted = yield* b.withPermit()(stamp)
        expect(admitted).toBeGreaterThanOrEqual(reset - 2)
        // awaitGate, too, sees another process's pause.
        const until = preciseNow() + 200
        yield* a.pauseUntil(DateTime.unsafeMake(until))
        yield* b.awaitGate()
        expect(preciseNow()).toBeGreaterThanOrEqual(until - 2)
      }))

    it.scopedLive("Remaining: 0 observed by one process closes the gate for all; a lower Remaining tightens the budget", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("observe")
        const policy = RateLimiter.slidingWindow({ limit: 10, window: "2 seconds" })
        const a = yield* worker(server.url, prefix, policy)
        const b = yield* worker(server.url, prefix, policy)
        // The reset as epoch milliseconds (read as such by magnitude), so the test can use short resets.
        const info = (remaining: number, resetAt: number) =>
          RateLimitHeaders.parse(
            {
              "x-ratelimit-limit": "10",
              "x-ratelimit-remaining": String(remaining),
              "x-ratelimit-reset": String(resetAt)
            } as never,
            DateTime.unsafeMake(Date.now())
          )
        // We count 1 used; the server says 2 left: only 2 more before its reset.
        const resetAt = Date.now() + 1_000
        yield* a.withPermit()(a.observe(info(2, resetAt)))
        const t0 = preciseNow()
        const times = yield* Effect.all(Array.from({ length: 3 }, () => b.withPermit()(stamp)), {
          concurrency: "unbounded"
        })
        times.sort((x, y) => x - y)
        expect(times[1]! - t0).toBeLessThan(800)
        expect(times[2]!).toBeGreaterThanOrEqual(resetAt - 2)
        const closedUntil = Date.now() + 300
        yield* b.observe(info(0, closedUntil))
        expect(yield* a.withPermit()(stamp)).toBeGreaterThanOrEqual(closedUntil - 2)
      }))
  })

  describe("waiting", () => {
    it.scopedLive("deadline: fails at once, without queueing, when the predicted wait is longer", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("deadline")
        const policy = RateLimiter.slidingWindow({ limit: 1, window: "2 seconds" })
        const a = yield* worker(server.url, prefix, policy)
        const b = yield* worker(server.url, prefix, policy)
        yield* a.withPermit()(Effect.void)
        const start = preciseNow()
        const error = yield* Effect.flip(b.withPermit({ deadline: "1 second" })(Effect.void))
        // At once: well before the deadline a queued request would have spent.
        expect(preciseNow() - start).toBeLessThan(1_000)
        expect(error).toMatchObject({ _tag: "RateLimited", reason: "deadline" })
        expect(error._tag === "RateLimited" && error.retryAt!.epochMillis).toBeGreaterThan(Date.now() + 1_000)
        expect((yield* b.stats).queued).toBe(0)
        // A deadline the fleet can meet waits.
        yield* b.withPermit({ deadline: "3 seconds" })(Effect.void)
      }))

    it.scopedLive("timeout: a request that waits too long fails with a typed error; cost above the limit fails at once", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("timeout")
        const limiter = yield* worker(server.url, prefix, RateLimiter.slidingWindow({ limit: 2, window: "1 minute" }))
        yield* limiter.withPermit({ cost: 2 })(Effect.void)
        const error = yield* Effect.flip(limiter.withPermit({ timeout: "150 millis" })(Effect.void))
        expect(error).toMatchObject({ _tag: "RateLimited", reason: "timeout" })
        expect((yield* limiter.stats).queued).toBe(0)
        const cost = yield* Effect.flip(limiter.withPermit({ cost: 3 })(Effect.void))
        expect(cost).toMatchObject({ _tag: "RateLimited", reason: "cost" })
      }))

    it.scopedLive("interrupting requests at any step never leaks or steals a permit", () =>
      Effect.gen(function*() {
        const client = yield* inspector(server.url)
        for (let delay = 0; delay < 9; delay++) {
          const prefix = uniquePrefix("interrupt")
          const policy = RateLimiter.slidingWindow({ limit: 2, window: "200 millis" })
          const a = yield* worker(server.url, prefix, policy)
          const b = yield* worker(server.url, prefix, policy)
          const holder = yield* Effect.fork(a.withPermit()(Effect.sleep("30 millis")))
          const ahead = yield* Effect.fork(b.withPermit()(Effect.sleep("30 millis")))
          const victims = yield* Effect.forEach(Array.from({ length: 3 }), () =>
            Effect.fork(b.withPermit()(Effect.sleep("30 millis"))))
          yield* Effect.sleep(Duration.millis(delay * 30))
          yield* Effect.forEach(victims, Fiber.interrupt)
          yield* Effect.forEach([holder, ahead], Fiber.join)
          // Once every used permit has returned, the whole budget is free again: no more, no less.
          yield* Effect.sleep("260 millis")
          const held = yield* promise(() =>
            client.keys(`${prefix}:*sw0:held`)
          )
          const inFlight = held.length === 0 ? 0 : yield* promise(() => client.zcard(held[0]!))
          expect(inFlight).toBe(0)
          const times = yield* Effect.all(Array.from({ length: 3 }, () => a.withPermit()(stamp)), {
            concurrency: "unbounded"
          })
          // Two admitted together and the third one window later: measured from the first admission, so
          // a slow round trip on a loaded machine does not count.
          const [first, second, third] = [...times].sort((x, y) => x - y) as [number, number, number]
          expect(second - first).toBeLessThan(150)
          expect(third - first).toBeGreaterThanOrEqual(190)
          expect((yield* a.stats).queued + (yield* b.stats).queued).toBe(0)
        }
      }), 30_000)

    it.scopedLive("a permit granted in the instant its waiter is interrupted is either used or given back", () =>
      Effect.gen(function*() {
        for (let delay = 0; delay < 8; delay++) {
          const prefix = uniquePrefix("refund")
          const limiter = yield* worker(server.url, prefix, RateLimiter.slidingWindow({ limit: 2, window: "1 hour" }))
          yield* limiter.pauseUntil(DateTime.unsafeMake(Date.now() + 100))
          let ran = false
          const victim = yield* Effect.fork(limiter.withPermit()(Effect.sync(() => (ran = true))))
          // The gate opens at 100 ms and the victim is granted; the interrupt lands around that instant.
          yield* Effect.sleep(Duration.millis(96 + delay))
          yield* Fiber.interrupt(victim)
          yield* Effect.sleep("120 millis")
          const t0 = preciseNow()
          const free = yield* Effect.forEach(Array.from({ length: 2 }), () => Effect.fork(limiter.withPermit()(stamp)))
          yield* Effect.sleep("300 millis")
          const admitted = (yield* Effect.forEach(free, Fiber.poll)).filter((exit) =>
            Option.isSome(exit) && Exit.isSuccess(exit.value) && exit.value.value - t0 < 300
          ).length
          // One hour-long permit is gone only if the victim's request really ran.
          expect(admitted).toBe(ran ? 1 : 2)
          yield* Effect.forEach(free, Fiber.interrupt)
        }
      }))
  })

  describe("leases", () => {
    it.scopedLive("the permits of a crashed process come back one window after their lease ends", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("lease")
        const limiter = yield* worker(
          server.url,
          prefix,
          RateLimiter.slidingWindow({ limit: 2, window: "200 millis" }),
          {
            name: "lease"
          }
        )
        // A "process" takes both permits with a 300 ms lease and dies without settling them.
        const connection = yield* connect(server.url, prefix)
        const tag = `${RedisRateLimiter.tagPrefix("lease")}:`
        const key = (name: string) => RedisConnection.key(connection, tag, name)
        const keys = [key("gate"), key("epoch"), key("sw0:held"), key("sw0:ret"), key("sw0:ext")]
        // Before the first permit is taken: its lease and window run from a server instant after this.
        const t0 = preciseNow()
        for (const id of ["dead.1", "dead.2"]) {
          const reply = yield* connection.run(Scripts.acquire, keys, [
            "sw:2:200",
            id,
            1,
            300,
            0,
            "1",
            "",
            "e",
            86_400_000,
            200
          ])
          expect((reply as Array<string>)[0]).toBe("1")
        }
        yield* limiter.withPermit()(Effect.void)
        const waited = preciseNow() - t0
        expect(waited).toBeGreaterThanOrEqual(495)
        expect(waited).toBeLessThan(1_500)
      }))

    it.scopedLive("a live process renews the leases of its long requests", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("renew")
        const policy = RateLimiter.slidingWindow({ limit: 1, window: "100 millis" })
        // Leases long enough that a loaded machine's stall cannot make a renewal late, and a request four
        // leases long.
        const a = yield* worker(server.url, prefix, policy, { lease: "500 millis" })
        const b = yield* worker(server.url, prefix, policy, { lease: "500 millis" })
        let finished = 0
        const long = yield* Effect.fork(a.withPermit()(Effect.zipRight(Effect.sleep("2 seconds"), stamp)))
        yield* Effect.sleep("20 millis")
        const next = yield* b.withPermit()(stamp)
        finished = yield* Fiber.join(long)
        // b waited for the long request's response plus one window, far beyond the lease.
        expect(next - finished).toBeGreaterThanOrEqual(95)
      }))
  })

  describe("policies", () => {
    it.scopedLive("keyed: one shared budget per key", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("keyed")
        const policy = RateLimiter.keyed(RateLimiter.slidingWindow({ limit: 1, window: "1 second" }))
        const a = yield* worker(server.url, prefix, policy)
        const b = yield* worker(server.url, prefix, policy)
        const t0 = preciseNow()
        const times = yield* Effect.all([
          a.withPermit({ key: "GET /a" })(stamp),
          b.withPermit({ key: "GET /b" })(stamp),
          b.withPermit({ key: "GET /c" })(stamp)
        ], { concurrency: "unbounded" })
        for (const t of times) expect(t - t0).toBeLessThan(800)
        const again = yield* b.withPermit({ key: "GET /a" })(stamp)
        expect(again - times[0]!).toBeGreaterThanOrEqual(990)
        // A pause for one key leaves the others open.
        yield* a.pauseUntil(DateTime.unsafeMake(Date.now() + 10_000), { key: "GET /b" })
        const t1 = preciseNow()
        yield* b.withPermit({ key: "GET /d" })(Effect.void)
        expect(preciseNow() - t1).toBeLessThan(1_000)
      }))

    it.scopedLive("tokenBucket: a burst, then the refill rate, for the whole fleet", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("bucket")
        const policy = RateLimiter.tokenBucket({ rate: 5, interval: "1 second", burst: 5 })
        const limiters = yield* Effect.forEach(Array.from({ length: 3 }), () => worker(server.url, prefix, policy))
        const times: Array<number> = []
        const t0 = preciseNow()
        yield* Effect.forEach(Array.from({ length: 9 }, (_, i) => limiters[i % 3]!), (limiter) =>
          limiter.withPermit()(Effect.flatMap(stamp, (t) => Effect.sync(() => times.push(t - t0)))), {
          concurrency: "unbounded",
          discard: true
        })
        times.sort((x, y) =>
          x - y
        )
        // The burst together (measured from the first admission, so a slow round trip does not count),
        // then four more at 5 per second: the sixth no sooner than 200 ms in, the last 800 ms.
        expect(times[4]! - times[0]!).toBeLessThan(150)
        expect(times[5]!).toBeGreaterThanOrEqual(190)
        expect(times[8]!).toBeGreaterThanOrEqual(790)
        expect(times[8]!).toBeLessThan(2_000)
      }))

    it.scopedLive("fixedWindow: at most limit per clock-aligned window across processes", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("fixed")
        const policy = RateLimiter.fixedWindow({ limit: 3, window: "200 millis" })
        const limiters = yield* Effect.forEach(Array.from({ length: 2 }), () => worker(server.url, prefix, policy))
        const times: Array<number> = []
        yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => limiters[i % 2]!), (limiter) =>
          limiter.withPermit()(Effect.flatMap(
            Effect.sync(() =>
              Date.now()
            ),
            (t) => Effect.sync(() => times.push(t))
          )), {
          concurrency: "unbounded",
          discard: true
        })
        const perWindow = new Map<number, number>()
        for (const t of times) {
          perWindow.set(Math.floor(t / 200), (perWindow.get(Math.floor(t / 200)) ?? 0) + 1)
        }
        expect(Math.max(...perWindow.values())).toBeLessThanOrEqual(3)
        expect(times.length).toBe(10)
      }))

    it.scopedLive("fixedWindow: a permit held across the turn of a window still counts there after it settles", () =>
      Effect.gen(function*() {
        const windowMs = 300
        const prefix = uniquePrefix("fixed-turn")
        const policy = RateLimiter.fixedWindow({ limit: 2, window: Duration.millis(windowMs) })
        const [a, b] = yield* Effect.forEach(Array.from({ length: 2 }), () => worker(server.url, prefix, policy))
        // Start just after a window begins so both permits are surely taken inside it.
        yield* Effect.sleep(Duration.millis(windowMs - (Date.now() % windowMs) + 10))
        const release = yield* Effect.makeLatch(false)
        const holders = yield* Effect.forEach([a!, b!], (limiter) => Effect.fork(limiter.withPermit()(release.await)))
        yield* Effect.sleep(Duration.millis(windowMs - (Date.now() % windowMs) + 20))
        const settledIn = Math.floor(Date.now() / windowMs)
        yield* release.open
        yield* Effect.forEach(holders, Fiber.join)
        // Both held permits may have reached the server in this window: a third waits for the next.
        const grantedIn = yield* a!.withPermit()(Effect.sync(() => Math.floor(Date.now() / windowMs)))
        expect(grantedIn).toBeGreaterThan(settledIn)
      }))
  })

  describe("a paused Redis (SIGSTOP, issue 18)", () => {
    it.scopedLive(
      "after a 10 s pause a 10/s limiter is back to 10/s within 2 s: late takes take nothing",
      () =>
        Effect.gen(function*() {
          const own = yield* RedisServer.scoped
          yield* Effect.addFinalizer(() => Effect.sync(() => own.signal("SIGCONT")))
          const prefix = uniquePrefix("paused")
          const limiter = yield* worker(own.url, prefix, RateLimiter.slidingWindow({ limit: 10, window: "1 second" }), {
            fence: "1 second"
          })
          const admitted: Array<number> = []
          let stop = false
          const caller = Effect.gen(function*() {
            while (!stop) {
              yield* limiter.withPermit()(Effect.flatMap(stamp, (t) => Effect.sync(() => admitted.push(t)))).pipe(
                Effect.catchAll(() => Effect.sleep("20 millis"))
              )
            }
          })
          const callers = yield* Effect.fork(
            Effect.all(Array.from({ length: 20 }, () => caller), { concurrency: "unbounded", discard: true })
          )
          yield* Effect.sleep("1 second")
          expect(admitted.length).toBeGreaterThanOrEqual(8)
          own.signal("SIGSTOP")
          yield* Effect.sleep("10 seconds")
          const pausedAdmissions = admitted.length
          own.signal("SIGCONT")
          const resumed = preciseNow()
          yield* Effect.sleep("3 seconds")
          stop = true
          yield* Fiber.interrupt(callers)
          // From 2 s after the resume, the full rate again: no permit counted for a caller that left.
          const inThirdSecond = admitted.filter((t) => t >= resumed + 2_000 && t < resumed + 3_000).length
          expect(inThirdSecond).toBeGreaterThanOrEqual(8)
          expect(maxInWindow(admitted.filter((t) => t >= resumed), 1_000)).toBeLessThanOrEqual(10)
          expect(pausedAdmissions).toBeLessThan(admitted.length)
        }),
      30_000
    )
  })

  describe("failing closed", () => {
    it.scopedLive("Redis down: typed failures at once and nothing sent; back: permits again", () =>
      Effect.gen(function*() {
        const own = yield* RedisServer.scoped
        const prefix = uniquePrefix("down")
        const limiter = yield* worker(own.url, prefix, RateLimiter.slidingWindow({ limit: 1, window: "300 millis" }))
        yield* limiter.withPermit()(Effect.void)
        // One waiter queued behind the window when Redis dies.
        const queued = yield* Effect.fork(Effect.flip(limiter.withPermit()(Effect.void)))
        yield* Effect.sleep("20 millis")
        yield* promise(() => own.kill("SIGKILL"))
        let sent = 0
        const errors = yield* Effect.forEach(
          Array.from({ length: 5 }),
          () => Effect.flip(limiter.withPermit()(Effect.sync(() => sent++)))
        )
        expect(sent).toBe(0)
        for (const error of errors) expect(error).toMatchObject({ _tag: "RateLimited", reason: "unavailable" })
        expect(errors[0]!.message).toContain("cannot reach its store")
        expect(yield* Fiber.join(queued)).toMatchObject({ _tag: "RateLimited", reason: "unavailable" })
        yield* promise(() => own.restart())
        // The client reconnects in the background; a restart without persistence lost the window, so the
        // first permit waits one quarantine window.
        const recovered = yield* limiter.withPermit()(Effect.sync(() => sent++)).pipe(
          Effect.retry({
            times: 100,
            while: (error) => error.reason === "unavailable",
            schedule: Schedule.spaced("50 millis")
          }),
          Effect.either
        )
        expect(recovered._tag).toBe("Right")
        expect(sent).toBe(1)
      }))

    it.scopedLive("closing the scope fails waiters with reason closed", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("closed")
        const scope = yield* Scope.make()
        const connection = yield* connect(server.url, prefix)
        const limiter = yield* RedisRateLimiter.make(RateLimiter.slidingWindow({ limit: 1, window: "1 hour" })).pipe(
          Effect.provideService(RedisConnection.RedisConnection, connection),
          Scope.extend(scope)
        )
        yield* limiter.withPermit()(Effect.void)
        const waiter = yield* Effect.fork(Effect.flip(limiter.withPermit()(Effect.void)))
        yield* Effect.sleep("30 millis")
        yield* Scope.close(scope, Exit.void)
        expect(yield* Fiber.join(waiter)).toMatchObject({ _tag: "RateLimited", reason: "closed" })
      }))
  })
})
