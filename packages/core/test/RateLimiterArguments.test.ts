/**
 * Every number a limiter is given goes through one validation path: bad ones fail as a typed
 * `InvalidArgument` in the Effect channel (never a throw, never a defect), and whatever is accepted
 * works and never over-admits. Also `keyed`'s `maxKeys` as a real cap.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Clock, Duration, Effect, Exit, Fiber, TestClock } from "effect"
import * as fc from "fast-check"
import * as RateLimiter from "../src/RateLimiter.js"
import { anyNumber } from "./utils/Hostile.js"

const now = Clock.currentTimeMillis

/** Builds the limiter; a failure must be a typed InvalidArgument, never a defect. */
const build = (policy: () => RateLimiter.Policy) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(Effect.suspend(() => RateLimiter.make(policy())))
    if (Exit.isFailure(exit)) {
      expect(Cause.isFailType(exit.cause) ? exit.cause.error._tag : Cause.pretty(exit.cause)).toBe("InvalidArgument")
      return undefined
    }
    return exit.value
  })

/** Admissions at one instant, each holding its permit: never more than the policy allows at once. */
const admittedAtOnce = (limiter: RateLimiter.Service, attempts: number) =>
  Effect.gen(function*() {
    let admitted = 0
    const fibers = yield* Effect.forEach(
      Array.from({ length: attempts }),
      () => Effect.fork(limiter.withPermit()(Effect.zipRight(Effect.sync(() => admitted++), Effect.never)))
    )
    yield* Effect.yieldNow()
    const count = admitted
    yield* Effect.forEach(fibers, Fiber.interrupt)
    return count
  })

describe("RateLimiter arguments", () => {
  describe("regressions (issue 18)", () => {
    it.scoped("a NaN or negative cost is refused as InvalidArgument and never switches the limiter off", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 10, window: "1 second" }))
        for (const cost of [Number.NaN, -1, 0.5, Infinity, -Infinity, 0]) {
          const error = yield* Effect.flip(limiter.withPermit({ cost })(Effect.void))
          expect(error).toMatchObject({ _tag: "InvalidArgument", module: "RateLimiter.withPermit", argument: "cost" })
        }
        expect(yield* admittedAtOnce(limiter, 1_000)).toBe(10)
        // Interrupted after they started, the holders' permits are kept one window more (they may have
        // reached a server), then a window from there.
        yield* TestClock.adjust("1 second")
        expect(yield* admittedAtOnce(limiter, 1_000)).toBe(0)
        yield* TestClock.adjust("1 second")
        expect(yield* admittedAtOnce(limiter, 1_000)).toBe(10)
      }))

    it.scoped("per-request priority, instant and durations are checked the same way", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 10, window: "1 second" }))
        const bad: ReadonlyArray<RateLimiter.PermitOptions> = [
          { priority: Number.NaN },
          { priority: 1e9 },
          { requestedAt: Infinity },
          { deadline: -5 },
          { timeout: Number.NaN },
          { timeout: "soon" as Duration.DurationInput }
        ]
        for (const options of bad) {
          expect((yield* Effect.flip(limiter.withPermit(options)(Effect.void)))._tag).toBe("InvalidArgument")
        }
        expect((yield* limiter.stats).granted).toBe(0)
      }))

    it.effect("fixedWindow({ offset: Infinity }) and tokenBucket({ rate: Number.MIN_VALUE }) fail at make", () =>
      Effect.gen(function*() {
        const offset = yield* Effect.flip(
          Effect.scoped(RateLimiter.make(RateLimiter.fixedWindow({ limit: 1, window: "1 second", offset: Infinity })))
        )
        expect(offset).toMatchObject({ _tag: "InvalidArgument", module: "RateLimiter.fixedWindow", argument: "offset" })
        const rate = yield* Effect.flip(
          Effect.scoped(RateLimiter.make(RateLimiter.tokenBucket({ rate: Number.MIN_VALUE, burst: 1 })))
        )
        expect(rate).toMatchObject({ _tag: "InvalidArgument", module: "RateLimiter.tokenBucket", argument: "rate" })
        expect(rate.message).toContain("RateLimiter.tokenBucket: rate must be")
      }))

    it.effect("constructors never throw, even on durations that cannot be decoded; validate says what is wrong", () =>
      Effect.gen(function*() {
        const policy = RateLimiter.slidingWindow({ limit: 5, window: "forever" as Duration.DurationInput })
        const error = yield* Effect.flip(RateLimiter.validate(policy))
        expect(error).toMatchObject({ argument: "window", received: "a string" })
        // A policy object built by hand goes through the same checks.
        const forged: RateLimiter.Policy = { _tag: "SlidingWindow", limit: Number.NaN, window: Duration.seconds(1) }
        expect((yield* Effect.flip(RateLimiter.validate(forged))).argument).toBe("limit")
      }))
  })

  describe("property: arbitrary numbers give a typed error or a limiter that never over-admits", () => {
    it.effect.prop(
      "slidingWindow and fixedWindow",
      { limit: anyNumber, window: anyNumber, offset: anyNumber, fixed: fc.boolean() },
      ({ fixed, limit, offset, window }) =>
        Effect.gen(function*() {
          const limiter = yield* build(() =>
            fixed
              ? RateLimiter.fixedWindow({ limit, window, offset })
              : RateLimiter.slidingWindow({ limit, window })
          )
          if (limiter === undefined) return
          expect(Number.isInteger(limit) && limit >= 1).toBe(true)
          expect(yield* admittedAtOnce(limiter, Math.min(limit, 200) + 3)).toBeLessThanOrEqual(limit)
        }).pipe(Effect.scoped),
      { fastCheck: { numRuns: 200 } }
    )

    it.effect.prop(
      "tokenBucket, keyed, learned",
      { rate: anyNumber, burst: anyNumber, interval: anyNumber, maxKeys: anyNumber, probe: anyNumber },
      ({ burst, interval, maxKeys, probe, rate }) =>
        Effect.gen(function*() {
          const bucket = yield* build(() => RateLimiter.tokenBucket({ rate, burst, interval }))
          if (bucket !== undefined) {
            expect(yield* admittedAtOnce(bucket, Math.min(burst, 200) + 3)).toBeLessThanOrEqual(burst)
          }
          const keyedLimiter = yield* build(() =>
            RateLimiter.keyed(RateLimiter.slidingWindow({ limit: 2, window: "1 second" }), { maxKeys })
          )
          if (keyedLimiter !== undefined) expect(yield* admittedAtOnce(keyedLimiter, 5)).toBeLessThanOrEqual(2)
          const learnedLimiter = yield* build(() => RateLimiter.learned({ probe }))
          if (learnedLimiter !== undefined) {
            expect(yield* admittedAtOnce(learnedLimiter, Math.min(probe, 200) + 3)).toBeLessThanOrEqual(probe)
          }
        }).pipe(Effect.scoped),
      { fastCheck: { numRuns: 200 } }
    )

    it.effect.prop(
      "per-request cost, priority, instant, deadline and timeout",
      { cost: anyNumber, priority: anyNumber, requestedAt: anyNumber, deadline: anyNumber, timeout: anyNumber },
      (options) =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 3, window: "1 second" }))
          let used = 0
          const fibers = yield* Effect.forEach(Array.from({ length: 4 }), () =>
            Effect.fork(Effect.exit(
              limiter.withPermit(options)(Effect.sync(() => (used += options.cost))).pipe(
                Effect.timeoutFail({ duration: "50 millis", onTimeout: () => "still waiting" })
              )
            )))
          yield* TestClock.adjust("100 millis")
          // Whatever was accepted never spends more than the limit in one window.
          expect(used).toBeLessThanOrEqual(3)
          for (const exit of yield* Effect.forEach(fibers, Fiber.join)) {
            if (Exit.isFailure(exit) && Cause.isFailType(exit.cause)) {
              const error = exit.cause.error
              expect(typeof error === "string" ? error : error._tag).toMatch(
                /^(InvalidArgument|RateLimited|still waiting)$/
              )
            } else if (Exit.isFailure(exit)) expect(Cause.isInterruptedOnly(exit.cause)).toBe(true)
          }
        }).pipe(Effect.scoped),
      { fastCheck: { numRuns: 200 } }
    )
  })

  describe("keyed maxKeys (issue 18)", () => {
    it.scoped("holds under any key stream: busy lanes are never exceeded, past them keys share one lane", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make(
          RateLimiter.keyed(RateLimiter.slidingWindow({ limit: 1, window: "10 seconds" }), { maxKeys: 1_000 })
        )
        const admitted: Array<number> = []
        const fibers = yield* Effect.forEach(
          Array.from({ length: 3_000 }, (_, i) => `k${i}`),
          (key) =>
            Effect.fork(limiter.withPermit({ key })(Effect.flatMap(now, (t) => Effect.sync(() => admitted.push(t)))))
        )
        yield* Effect.yieldNow()
        expect((yield* limiter.stats).lanes).toBeLessThanOrEqual(1_001)
        // 1,000 keys got lanes of their own; the other 2,000 share the overflow lane: one per window.
        expect(admitted.length).toBe(1_001)
        yield* Effect.forEach(fibers, Fiber.interrupt)
      }))

    it.scoped("a new key replaces an idle lane, and idle lanes are dropped after traffic stops", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make(
          RateLimiter.keyed(RateLimiter.slidingWindow({ limit: 2, window: "1 second" }), { maxKeys: 100 })
        )
        for (let round = 0; round < 50; round++) {
          for (let i = 0; i < 100; i++) yield* limiter.withPermit({ key: `r${round}-${i}` })(Effect.void)
          yield* TestClock.adjust("1001 millis")
          expect((yield* limiter.stats).lanes).toBeLessThanOrEqual(101)
        }
        // Every key of every round got a fresh lane of its own: nothing waited.
        expect((yield* limiter.stats).waited).toBe(0)
        yield* TestClock.adjust("3 seconds")
        expect((yield* limiter.stats).lanes).toBe(0)
      }))

    it.scoped("a key once served by the overflow lane cannot get a fresh budget while that lane is busy", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make(
          RateLimiter.keyed(RateLimiter.slidingWindow({ limit: 1, window: "1 minute" }), { maxKeys: 1 })
        )
        yield* limiter.withPermit({ key: "a" })(Effect.void)
        yield* limiter.withPermit({ key: "b" })(Effect.void)
        const t0 = yield* now
        const again = yield* Effect.fork(limiter.withPermit({ key: "b" })(now))
        yield* TestClock.adjust("1 minute")
        expect((yield* Fiber.join(again)) - t0).toBeGreaterThanOrEqual(60_000)
      }))
  })
})
