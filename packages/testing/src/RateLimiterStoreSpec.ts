/**
 * The one specification every `RateLimiterStore` must meet: `RateLimiterStoreSpec.run({ name, store })`
 * inside a vitest file. Import it only from test files, by its subpath.
 *
 * The design: `docs/testing.md` in the repository.
 *
 * @since 0.2.0
 */
import { describe, expect, it } from "@effect/vitest"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import type * as RateLimiterStore from "@tollgate/core/RateLimiterStore"
import * as RateLimitHeaders from "@tollgate/core/RateLimitHeaders"
import { DateTime, Effect, Fiber } from "effect"
import type { Scope } from "effect"

/**
 * @since 0.2.0
 * @category models
 */
export interface Subject {
  readonly name: string
  /** A store, as one process would open it; each call for a shared store is another process. */
  readonly store: Effect.Effect<RateLimiterStore.Store, never, Scope.Scope>
  /** Stores made by separate calls share their budgets (Redis); memory does not. */
  readonly shared?: boolean | undefined
  /** Skip the whole spec, e.g. when the server the store needs cannot be started. */
  readonly skip?: boolean | undefined
}

const wallClock = Effect.sync(() => performance.timeOrigin + performance.now())

let limiters = 0

const limiterOn = (store: RateLimiterStore.Store, policy: RateLimiter.Policy, options?: RateLimiter.Options) =>
  Effect.orDie(RateLimiter.makeWithStore(policy, store, { provider: `spec-${limiters++}`, ...options }))

/** Starts `requests` one after another (each queued before the next), holding their permits `hold`. */
const queueUp = (
  limiter: RateLimiter.Service,
  requests: ReadonlyArray<RateLimiter.PermitOptions>,
  seen: Array<number>
) =>
  Effect.forEach(requests.entries(), ([i, options]) =>
    Effect.zipLeft(
      Effect.fork(limiter.withPermit(options)(Effect.sync(() => seen.push(i)))),
      Effect.sleep("15 millis")
    ))

const joinAll = (fibers: ReadonlyArray<Fiber.Fiber<unknown, unknown>>) =>
  Effect.forEach(fibers, (fiber) => Fiber.join(fiber), { discard: true })

/**
 * Declares the specification's tests for `subject`.
 *
 * @since 0.2.0
 * @category tests
 */
export const run = (subject: Subject): void => {
  describe.skipIf(subject.skip === true)(`RateLimiterStore spec: ${subject.name}`, () => {
    it.scopedLive("a sliding window admits its limit at once and the rest one window after a response", () =>
      Effect.gen(function*() {
        const limiter = yield* limiterOn(
          yield* subject.store,
          RateLimiter.slidingWindow({ limit: 3, window: "300 millis" })
        )
        const times = yield* Effect.all(Array.from({ length: 6 }, () => limiter.withPermit()(wallClock)), {
          concurrency: "unbounded"
        })
        const sorted = [...times].sort((a, b) => a - b)
        expect(sorted[2]! - sorted[0]!).toBeLessThan(250)
        expect(sorted[3]! - sorted[0]!).toBeGreaterThanOrEqual(295)
        expect((yield* limiter.stats).queued).toBe(0)
      }))

    it.scopedLive(
      "queued requests go by place: higher priority first, FIFO within one, a retry at its first",
      () =>
        Effect.gen(function*() {
          const limiter = yield* limiterOn(
            yield* subject.store,
            RateLimiter.slidingWindow({ limit: 1, window: "100 millis" })
          )
          const first = Date.now()
          const release = yield* Effect.makeLatch(false)
          const holder = yield* Effect.fork(limiter.withPermit()(release.await))
          yield* Effect.sleep("20 millis")
          const seen: Array<number> = []
          const fibers = yield* queueUp(limiter, [
            {},
            { priority: 1 },
            {},
            { priority: 1 },
            { requestedAt: first }
          ], seen)
          yield* release.open
          yield* joinAll([holder, ...fibers])
          expect(seen).toEqual([1, 3, 4, 0, 2])
        }),
      20_000
    )

    it.scopedLive(
      "learned(): one request until a response announces the limit, then the announced limit",
      () =>
        Effect.gen(function*() {
          const limiter = yield* limiterOn(yield* subject.store, RateLimiter.learned({ window: "1 second" }))
          let running = 0
          const announce = RateLimitHeaders.parse(
            { "x-ratelimit-limit": "4", "x-ratelimit-remaining": "3", "x-ratelimit-reset": "2" } as never,
            yield* DateTime.now
          )
          const probe = yield* Effect.fork(
            limiter.withPermit()(Effect.zipRight(
              Effect.sync(() => running++),
              Effect.zipRight(Effect.sleep("100 millis"), limiter.observe(announce))
            ))
          )
          yield* Effect.sleep("20 millis")
          const rest = yield* Effect.forEach(
            Array.from({ length: 6 }),
            () => Effect.fork(limiter.withPermit()(Effect.zipRight(Effect.sync(() => running++), Effect.never)))
          )
          yield* Effect.sleep("60 millis")
          expect(running).toBe(1)
          yield* Fiber.join(probe)
          yield* Effect.sleep("300 millis")
          // The probe's own request counts: three more in this window.
          expect(running).toBe(4)
          yield* Effect.forEach(rest, Fiber.interrupt)
        }),
      20_000
    )

    it.scopedLive(
      "a bare 429 teaches what was admitted in the trailing window: it tightens a configured limit",
      () =>
        Effect.gen(function*() {
          const limiter = yield* limiterOn(
            yield* subject.store,
            RateLimiter.slidingWindow({ limit: 10, window: "1 second" })
          )
          const admitted = limiter.withPermit()(limiter.observe(RateLimitHeaders.empty))
          yield* Effect.forEach(Array.from({ length: 6 }), () => admitted, { discard: true })
          yield* limiter.withPermit()(limiter.observe(RateLimitHeaders.empty, { throttled: true }))
          let running = 0
          const rest = yield* Effect.forEach(
            Array.from({ length: 12 }),
            () => Effect.fork(limiter.withPermit()(Effect.zipRight(Effect.sync(() => running++), Effect.never)))
          )
          // Once the window has passed, six run (not the configured ten) and stay the only ones.
          while (running < 6) yield* Effect.sleep("20 millis")
          yield* Effect.sleep("300 millis")
          expect(running).toBe(6)
          yield* Effect.forEach(rest, Fiber.interrupt)
        }),
      20_000
    )

    it.scopedLive(
      "an announced limit tightens a configured one; Remaining: 0 closes the gate until the reset",
      () =>
        Effect.gen(function*() {
          const limiter = yield* limiterOn(
            yield* subject.store,
            RateLimiter.slidingWindow({ limit: 10, window: "1 second" })
          )
          const now = yield* DateTime.now
          const announce = (remaining: number) =>
            RateLimitHeaders.parse(
              {
                "x-ratelimit-limit": "3",
                "x-ratelimit-remaining": String(remaining),
                "x-ratelimit-reset": String(now.epochMillis + 400)
              } as never,
              now
            )
          yield* limiter.withPermit()(limiter.observe(announce(2)))
          let running = 0
          const held = yield* Effect.forEach(
            Array.from({ length: 5 }),
            () => Effect.fork(limiter.withPermit()(Effect.zipRight(Effect.sync(() => running++), Effect.never)))
          )
          yield* Effect.sleep("150 millis")
          expect(running).toBe(2)
          yield* Effect.forEach(held, Fiber.interrupt)
          const closedAt = yield* wallClock
          yield* limiter.observe(announce(0))
          const admitted = yield* limiter.withPermit()(wallClock)
          expect(admitted).toBeGreaterThanOrEqual(Math.min(closedAt, now.epochMillis + 400) - 5)
        }),
      20_000
    )

    it.scopedLive("a cost above the limit fails at once; a deadline that cannot be met fails without queueing", () =>
      Effect.gen(function*() {
        const limiter = yield* limiterOn(
          yield* subject.store,
          RateLimiter.slidingWindow({ limit: 2, window: "2 seconds" })
        )
        expect(yield* Effect.flip(limiter.withPermit({ cost: 3 })(Effect.void))).toMatchObject({ reason: "cost" })
        yield* limiter.withPermit({ cost: 2 })(Effect.void)
        const error = yield* Effect.flip(limiter.withPermit({ deadline: "500 millis" })(Effect.void))
        expect(error).toMatchObject({ _tag: "RateLimited", reason: "deadline" })
        expect((yield* limiter.stats).queued).toBe(0)
      }))

    it.scopedLive("keyed lanes are independent, and interrupting queued requests loses no permit", () =>
      Effect.gen(function*() {
        const limiter = yield* limiterOn(
          yield* subject.store,
          RateLimiter.keyed(RateLimiter.slidingWindow({ limit: 1, window: "200 millis" }))
        )
        const t0 = yield* wallClock
        yield* Effect.all([
          limiter.withPermit({ key: "a" })(Effect.void),
          limiter.withPermit({ key: "b" })(Effect.void)
        ])
        expect((yield* wallClock) - t0).toBeLessThan(180)
        const victims = yield* Effect.forEach(
          Array.from({ length: 5 }),
          () => Effect.fork(limiter.withPermit({ key: "a" })(Effect.void))
        )
        yield* Effect.sleep("30 millis")
        yield* Effect.forEach(victims, Fiber.interrupt)
        expect((yield* limiter.stats).queued).toBe(0)
        yield* Effect.sleep("250 millis")
        const start = yield* wallClock
        yield* limiter.withPermit({ key: "a" })(Effect.void)
        expect((yield* wallClock) - start).toBeLessThan(150)
      }))

    if (subject.shared === true) {
      it.scopedLive("separate processes spend one budget and wait in one queue by place", () =>
        Effect.gen(function*() {
          const policy = RateLimiter.slidingWindow({ limit: 1, window: "150 millis" })
          const name = `fleet-${Date.now()}-${limiters++}`
          const a = yield* Effect.orDie(RateLimiter.makeWithStore(policy, yield* subject.store, { provider: name }))
          const b = yield* Effect.orDie(RateLimiter.makeWithStore(policy, yield* subject.store, { provider: name }))
          const release = yield* Effect.makeLatch(false)
          const holder = yield* Effect.fork(a.withPermit()(release.await))
          yield* Effect.sleep("30 millis")
          const seen: Array<string> = []
          const early = yield* Effect.fork(a.withPermit()(Effect.sync(() => seen.push("a: asked first"))))
          yield* Effect.sleep("40 millis")
          const late = yield* Effect.fork(b.withPermit()(Effect.sync(() => seen.push("b: asked later"))))
          yield* Effect.sleep("40 millis")
          const urgent = yield* Effect.fork(
            b.withPermit({ priority: 1 })(Effect.sync(() => seen.push("b: priority 1")))
          )
          yield* Effect.sleep("40 millis")
          yield* release.open
          yield* joinAll([holder, early, late, urgent])
          expect(seen).toEqual(["b: priority 1", "a: asked first", "b: asked later"])
        }), 20_000)
    }
  })
}
