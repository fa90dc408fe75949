import { describe, expect, it } from "@effect/vitest"
import { RateLimiter, TokenCache, TokenSource } from "@tollgate/core"
import * as AccessToken from "@tollgate/core/AccessToken"
import { Clock, DateTime, Duration, Effect, Either, Exit, Fiber, Option, Redacted } from "effect"
import * as VirtualTime from "../src/VirtualTime.js"

const now = Clock.currentTimeMillis

describe("VirtualTime", () => {
  it("wakes sleepers in time order and jumps the clock between them", async () => {
    const log: Array<[string, number]> = []
    const program = Effect.gen(function*() {
      const t0 = yield* now
      const sleeper = (name: string, ms: number) =>
        Effect.zipRight(
          Effect.sleep(Duration.millis(ms)),
          Effect.flatMap(now, (t) => Effect.sync(() => void log.push([name, t - t0])))
        )
      yield* Effect.all([sleeper("c", 3_000), sleeper("a", 1_000), sleeper("b", 2_000), sleeper("a2", 1_000)], {
        concurrency: "unbounded"
      })
      return (yield* now) - t0
    })
    const result = await VirtualTime.run(program)
    expect(Exit.isSuccess(result.exit) && result.exit.value).toBe(3_000)
    expect(log).toEqual([["a", 1_000], ["a2", 1_000], ["b", 2_000], ["c", 3_000]])
    expect(result.elapsed).toBe(3_000)
  })

  it("starts at a realistic instant unless told otherwise", async () => {
    const result = await VirtualTime.run(DateTime.now, { start: new Date("2030-05-01T00:00:00Z") })
    expect(Exit.isSuccess(result.exit) && DateTime.formatIso(result.exit.value)).toBe("2030-05-01T00:00:00.000Z")
    const defaulted = await VirtualTime.run(now)
    expect(Exit.isSuccess(defaulted.exit) && defaulted.exit.value).toBe(Date.UTC(2026, 0, 1))
  })

  it("reports a deadlock instead of hanging", async () => {
    const result = await VirtualTime.run(Effect.never)
    expect(Exit.isFailure(result.exit)).toBe(true)
    expect(String(Exit.isFailure(result.exit) ? result.exit.cause : "")).toContain("deadlock")
  })

  it("reports a livelock when work never lets the clock move", async () => {
    const result = await VirtualTime.run(Effect.forever(Effect.yieldNow()), { maxTasksPerInstant: 100_000 })
    expect(Exit.isFailure(result.exit)).toBe(true)
    expect(String(Exit.isFailure(result.exit) ? result.exit.cause : "")).toContain("livelock")
  })

  it("gives the event loop a turn during a long simulation", async () => {
    let fired = 0
    const timer = setInterval(() => fired++, 1)
    await VirtualTime.run(Effect.forEach(Array.from({ length: 300_000 }), () => Effect.sleep("1 millis")), {
      settlePromises: false
    })
    clearInterval(timer)
    expect(fired).toBeGreaterThan(0)
  })

  it("interrupts a program that runs past the limit", async () => {
    let ticks = 0
    const result = await VirtualTime.run(
      Effect.forever(Effect.zipRight(Effect.sleep("1 minute"), Effect.sync(() => ticks++))),
      {
        limit: "1 hour"
      }
    )
    expect(Exit.isInterrupted(result.exit)).toBe(true)
    expect(ticks).toBe(60)
  })

  it("supports timeouts, races and interruption of sleepers", async () => {
    const program = Effect.gen(function*() {
      const timedOut = yield* Effect.sleep("1 hour").pipe(Effect.timeout("1 second"), Effect.option)
      const raced = yield* Effect.race(
        Effect.as(Effect.sleep("5 seconds"), "slow"),
        Effect.as(Effect.sleep("1 second"), "fast")
      )
      const fiber = yield* Effect.fork(Effect.sleep("1 day"))
      yield* Effect.sleep("1 second")
      yield* Fiber.interrupt(fiber)
      return { timedOut, raced }
    })
    const result = await VirtualTime.run(program)
    expect(Exit.isSuccess(result.exit) && result.exit.value).toEqual({ timedOut: Option.none(), raced: "fast" })
    // The interrupted day-long sleep must not hold the run open.
    expect(result.elapsed).toBe(3_000)
  })

  it("drives Tollgate's limiter and token cache through a simulated day", async () => {
    let fetches = 0
    const source = TokenSource.make({
      identity: { provider: "sim", endpoint: "https://sim.test/token", clientId: "c" },
      fetch: Effect.gen(function*() {
        fetches++
        yield* Effect.sleep("200 millis")
        const receivedAt = yield* DateTime.now
        return Either.getOrThrow(AccessToken.make({ value: Redacted.make(`t${fetches}`), receivedAt, expiresIn: 3600 }))
      })
    })
    const admitted: Array<number> = []
    const program = Effect.gen(function*() {
      const tokens = yield* TokenCache.make(source)
      const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 60, window: "1 minute" }))
      const end = (yield* now) + Duration.toMillis(Duration.days(1))
      const worker = Effect.gen(function*() {
        while ((yield* now) < end) {
          yield* limiter.withPermit()(
            Effect.gen(function*() {
              yield* tokens.get
              yield* Effect.sleep("20 millis")
              admitted.push(yield* now)
              yield* Effect.sleep("20 millis")
            })
          )
        }
      })
      yield* Effect.all(Array.from({ length: 8 }, () => worker), { concurrency: "unbounded" })
    }).pipe(Effect.scoped)
    const result = await VirtualTime.run(program, { settlePromises: false })
    expect(Exit.isSuccess(result.exit)).toBe(true)
    // 60 per minute for a day, less what latency costs: about 1,440 windows of 60.
    expect(admitted.length).toBeGreaterThan(0.99 * 60 * 1_440 * (60_000 / 60_040))
    let max = 0
    for (let i = 0, j = 0; i < admitted.length; i++) {
      while (admitted[i]! - admitted[j]! >= 60_000) j++
      max = Math.max(max, i - j + 1)
    }
    expect(max).toBeLessThanOrEqual(60)
    // One token per lifetime, renewed five minutes early: 24 hours / 55 minutes, plus the first.
    expect(fetches).toBeLessThanOrEqual(Math.ceil((24 * 60) / 55) + 1)
  })

  it.effect("simulate runs a program as an Effect", () =>
    Effect.gen(function*() {
      const elapsed = yield* VirtualTime.simulate(Effect.zipRight(Effect.sleep("3 days"), Effect.succeed("done")))
      expect(elapsed).toBe("done")
    }))
})
