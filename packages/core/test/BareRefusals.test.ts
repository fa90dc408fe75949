/**
 * A server that says nothing but a bare 429 (no limit, remaining, reset or `Retry-After`, as Nora's, Norce's
 * and Nomba's do) and whose real limit is lower than the client was told: the client learns the limit from
 * what the server admitted in the trailing window before refusing. Driven through the ApiClient on virtual
 * time against a fixed-window server (refusals count, like `@fastify/rate-limit`) and a sliding-log one
 * (refusals do not count, like the provider emulators), with real limits of half and a third of the
 * configured one and with none configured (`RateLimiter.learned()`).
 *
 * Asserted: no request fails; 429s only in the first two server windows (the first refusal teaches at
 * most the trailing count, which is the real limit against a sliding log and at most twice it against a
 * fixed window; every later refusal finds the refused request counted in the quota and lowers it by at
 * least one, within the second window here); every window from the third on within the real limit with no
 * 429; and the run ends within two windows of what the real limit allows.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Fiber, Option, TestClock } from "effect"
import * as fc from "fast-check"
import * as ApiClient from "../src/ApiClient.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as RateLimitHeaders from "../src/RateLimitHeaders.js"
import { drive } from "./utils/Drive.js"
import * as FakeServer from "./utils/FakeServer.js"

type Kind = "fixed" | "sliding"

const empty = RateLimitHeaders.empty

interface Arrival {
  readonly at: number
  readonly status: number
}

/** A bare server: 200 or 429 and not a word about limits. */
const bareServer = (kind: Kind, limit: number, windowMillis: number) => {
  const arrivals: Array<Arrival> = []
  let start = Number.NEGATIVE_INFINITY
  let count = 0
  const log: Array<number> = []
  const admit = (now: number): boolean => {
    if (kind === "fixed") {
      if (now >= start + windowMillis) {
        start = now
        count = 0
      }
      count++
      return count <= limit
    }
    while (log.length > 0 && log[0]! + windowMillis <= now) log.shift()
    if (log.length >= limit) return false
    log.push(now)
    return true
  }
  const handle = (now: number): FakeServer.Reply => {
    const status = admit(now) ? 200 : 429
    arrivals.push({ at: now, status })
    return { status, body: status === 429 ? "Too Many Requests" : "{}" }
  }
  return { handle, arrivals }
}

/** Arrivals per window of `windowMillis` from the first one. */
const perWindow = (arrivals: ReadonlyArray<Arrival>, windowMillis: number) => {
  const first = arrivals[0]?.at ?? 0
  const windows: Array<{ admitted: number; refused: number }> = []
  for (const arrival of arrivals) {
    const i = Math.floor((arrival.at - first) / windowMillis)
    while (windows.length <= i) windows.push({ admitted: 0, refused: 0 })
    if (arrival.status === 429) windows[i]!.refused++
    else windows[i]!.admitted++
  }
  return windows
}

interface Scenario {
  readonly kind: Kind
  readonly real: number
  /** The configured limit, or `undefined` for `RateLimiter.learned()`. */
  readonly configured: number | undefined
  readonly windowMillis: number
  readonly concurrency: number
  readonly total: number
  readonly latency: ReadonlyArray<readonly [number, number]>
  /** The learning window of `learned()` (its default: 1 minute). */
  readonly learningWindow?: number | undefined
}

const run = (scenario: Scenario) =>
  Effect.gen(function*() {
    const { configured, kind, latency, real, total, windowMillis } = scenario
    const server = bareServer(kind, real, windowMillis)
    const fake = FakeServer.make({
      latency: (n) => latency[n % latency.length]!,
      handle: (_, { now }) => server.handle(now)
    })
    const policy = configured === undefined
      ? RateLimiter.learned(
        scenario.learningWindow === undefined ? undefined : { window: Duration.millis(scenario.learningWindow) }
      )
      : RateLimiter.slidingWindow({ limit: configured, window: Duration.millis(windowMillis) })
    const limiter = yield* RateLimiter.make(policy)
    const client = yield* ApiClient.make({ provider: "test", baseUrl: "https://api.test", limiter }).pipe(
      Effect.provideService(HttpClient.HttpClient, fake.client)
    )
    const fiber = yield* Effect.fork(drive(client, total, scenario.concurrency))
    // What the real limit allows, plus two windows (the first two, where the client learns); a run
    // still going then is reported, not joined forever on the TestClock. A configured limit counts the
    // requests in flight at the first refusal (the server may have admitted them), so the limit learned is
    // the real one; `learned()` takes its free permits without counting them, so it may learn as little as
    // the real limit less the requests in flight then (one of the callers is the refused one).
    const learnedAtLeast = configured === undefined ? Math.max(1, real - scenario.concurrency + 1) : real
    const allowance = Math.ceil(total / learnedAtLeast) + 2
    let windows = 0
    for (; windows < allowance + 4 && (yield* Fiber.poll(fiber))._tag === "None"; windows++) {
      yield* TestClock.adjust(Duration.millis(windowMillis))
    }
    const finished = (yield* Fiber.poll(fiber))._tag === "Some"
    const failures = finished ? (yield* Fiber.join(fiber)).length : -1
    const counts = perWindow(server.arrivals, windowMillis)
    return { finished, windows, allowance, failures, counts, arrivals: server.arrivals }
  }).pipe(Effect.scoped)

const expectLearned = (scenario: Scenario, result: Effect.Effect.Success<ReturnType<typeof run>>) => {
  const label = JSON.stringify({ ...scenario, latency: scenario.latency.length })
  expect({ label, finished: result.finished, failures: result.failures }).toEqual({
    label,
    finished: true,
    failures: 0
  })
  expect(result.arrivals.filter((a) => a.status === 200), label).toHaveLength(scenario.total)
  const later = result.counts.slice(2)
  expect({ label, refusedLater: later.reduce((sum, w) => sum + w.refused, 0) }).toEqual({ label, refusedLater: 0 })
  for (const window of later) expect(window.admitted, label).toBeLessThanOrEqual(scenario.real)
  expect(result.windows, label).toBeLessThanOrEqual(result.allowance)
}

describe("a limit learned from bare 429s", () => {
  const configured = 60
  const windowMillis = 60_000
  const latency: ReadonlyArray<readonly [number, number]> = [[20, 30], [5, 80], [40, 10]]
  const scenarios: ReadonlyArray<Scenario> = (["fixed", "sliding"] as const).flatMap((kind) => [
    // Half and a third of the configured limit.
    { kind, real: 30, configured, windowMillis, concurrency: 16, total: 150, latency },
    { kind, real: 20, configured, windowMillis, concurrency: 16, total: 100, latency },
    // Nothing configured: the client's default, learning over its default window of a minute.
    { kind, real: 30, configured: undefined, windowMillis, concurrency: 16, total: 150, latency }
  ])

  for (const scenario of scenarios) {
    const name = `${scenario.kind} window, real ${scenario.real}/min, ${
      scenario.configured === undefined ? "nothing configured" : `configured ${scenario.configured}/min`
    }: no failure, 429s in the first two windows only, then within the real limit`
    it.effect(name, () =>
      Effect.gen(function*() {
        const result = yield* run(scenario)
        expectLearned(scenario, result)
        // The figures for the report: 429s per window.
        console.log(`${name}: 429s per window ${JSON.stringify(result.counts.map((w) => w.refused))}`)
      }))
  }

  it.scoped("the learned quota only tightens, and is probed one higher after ten quiet windows that pressed on it", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 10, window: "1 second" }))
      const answer = (throttled: boolean) => limiter.observe({ ...empty }, throttled ? { throttled: true } : undefined)
      // Six admitted, then a bare 429: six per second.
      for (let i = 0; i < 6; i++) yield* limiter.withPermit()(answer(false))
      yield* limiter.withPermit()(answer(true))
      const admittedWithin = (millis: number) =>
        Effect.gen(function*() {
          let admitted = 0
          const fibers = yield* Effect.forEach(Array.from({ length: 20 }), () =>
            Effect.fork(limiter.withPermit()(Effect.sync(() => admitted++))))
          yield* TestClock.adjust(Duration.millis(millis))
          yield* Effect.forEach(fibers, Fiber.interrupt)
          return admitted
        })
      // The six answers and the refused request hold the window: nothing until they return.
      expect(yield* admittedWithin(999)).toBe(0)
      yield* TestClock.adjust("2 seconds")
      expect(yield* admittedWithin(1)).toBe(6)
      // A later bare 429 with more admitted in the trailing window (answers to requests it did not see)
      // does not loosen it.
      yield* TestClock.adjust("2 seconds")
      for (let i = 0; i < 8; i++) yield* answer(false)
      yield* limiter.withPermit()(answer(true))
      yield* TestClock.adjust("2 seconds")
      expect(yield* admittedWithin(1)).toBe(6)
      // Ten windows without a refusal, pressed on: one more.
      for (let i = 0; i < 10; i++) {
        yield* admittedWithin(1)
        yield* TestClock.adjust("1 second")
      }
      yield* limiter.withPermit()(answer(false))
      yield* TestClock.adjust("2 seconds")
      expect(yield* admittedWithin(1)).toBe(7)
    }))

  it.scoped("a 429 that says when to retry, or a bare one with nothing admitted, teaches no limit", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 10, window: "1 second" }))
      yield* limiter.withPermit()(limiter.observe({ ...empty }, { throttled: true }))
      for (let i = 0; i < 3; i++) yield* limiter.withPermit()(limiter.observe({ ...empty }))
      yield* limiter.withPermit()(
        limiter.observe({ ...empty, retryAt: Option.some(DateTime.unsafeMake(500)) }, { throttled: true })
      )
      let admitted = 0
      const fibers = yield* Effect.forEach(
        Array.from({ length: 20 }),
        () => Effect.fork(limiter.withPermit()(Effect.sync(() => admitted++)))
      )
      yield* Effect.yieldNow()
      // The configured ten, less the five taken in the last second.
      expect(admitted).toBe(5)
      yield* Effect.forEach(fibers, Fiber.interrupt)
    }))

  it.effect.prop(
    "any real limit, window, latency, concurrency and server kind: no failure, 429s in the first two windows only",
    {
      kind: fc.constantFrom<Kind>("fixed", "sliding"),
      real: fc.integer({ min: 2, max: 16 }),
      ratio: fc.constantFrom(2, 3, 0),
      windowSeconds: fc.integer({ min: 1, max: 4 }),
      callersPerLimit: fc.integer({ min: 1, max: 3 }),
      requestsPerLimit: fc.integer({ min: 3, max: 6 }),
      latency: fc.array(fc.tuple(fc.integer({ min: 0, max: 80 }), fc.integer({ min: 0, max: 80 })), {
        minLength: 1,
        maxLength: 8
      })
    },
    ({ callersPerLimit, kind, latency, ratio, real, requestsPerLimit, windowSeconds }) =>
      Effect.gen(function*() {
        const windowMillis = windowSeconds * 1000
        const scenario: Scenario = {
          kind,
          real,
          // 0: nothing configured, learning over the server's window.
          configured: ratio === 0 ? undefined : ratio * real,
          learningWindow: windowMillis,
          windowMillis,
          concurrency: callersPerLimit * real,
          total: requestsPerLimit * real,
          latency
        }
        expectLearned(scenario, yield* run(scenario))
      }),
    { fastCheck: { numRuns: 60 }, timeout: 120_000 }
  )
})
