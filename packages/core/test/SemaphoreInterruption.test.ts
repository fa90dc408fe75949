/**
 * Issue #15.5: Effect's `Semaphore.withPermits` takes the permit inside `restore(take)` and installs its
 * release (`ensuring`) a step later, outside it; Effect 4 moved the take under the release
 * (https://github.com/Effect-TS/effect/pull/6910). Read against the installed Effect 3.22 runtime, that
 * window cannot be hit there:
 *
 * - `take` grants through `asyncInterrupt`: `resume` only queues a message, so the grant (`taken += n`)
 *   runs at the first step of a fresh run loop (its op count reset to 0), and an interrupt queued before
 *   the grant is drained before that step runs (`drainQueueWhileRunning`), so nothing is taken;
 * - the step after the grant pops `restore`'s frame, making the fiber uninterruptible before `ensuring`
 *   is installed; nothing can queue an interrupt in between (a single thread, no yield), and a yield
 *   there needs `maxOpsBeforeYield` below 2. (Tiny values, 8 and below, livelock an interrupted fiber in
 *   Effect 3.22 itself, so the properties use realistic ones, the default 2048 included.)
 *
 * So these tests assert that, for Effect 3.22, the permit is never lost whatever step the interruption
 * lands on. The lanes keep their own tickets anyway (`internal/queue.ts`): that design does not rely on
 * the runtime's scheduling, and carries over to Effect 4 unchanged. Should an upgrade of Effect 3 open
 * the window, these tests fail.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option } from "effect"
import * as fc from "fast-check"

const allFree = (semaphore: Effect.Semaphore, permits: number) =>
  Effect.map(semaphore.withPermitsIfAvailable(permits)(Effect.void), Option.isSome)

describe("Effect 3.22's Semaphore.withPermits under interruption (#15.5)", () => {
  it.effect.prop(
    "a waiter interrupted at any step after the permit is released to it never loses the permit",
    [fc.integer({ min: 0, max: 12 }), fc.constantFrom(64, 256, 2048), fc.boolean()],
    ([steps, maxOps, body]) =>
      Effect.gen(function*() {
        const semaphore = yield* Effect.makeSemaphore(1)
        yield* semaphore.take(1)
        const victim = yield* Effect.fork(
          Effect.withMaxOpsBeforeYield(semaphore.withPermits(1)(body ? Effect.never : Effect.void), maxOps)
        )
        yield* Effect.yieldNow()
        // Releasing wakes the waiter on a scheduled task; the interrupt lands `steps` yields later.
        yield* semaphore.release(1)
        for (let i = 0; i < steps; i++) yield* Effect.yieldNow()
        yield* Fiber.interrupt(victim)
        expect(yield* allFree(semaphore, 1)).toBe(true)
      }),
    { fastCheck: { numRuns: 150 } }
  )

  it.effect.prop(
    "a free permit taken at any op count (so a yield may fall anywhere around it) is never lost",
    [fc.integer({ min: 0, max: 200 }), fc.constantFrom(64, 256, 2048), fc.integer({ min: 0, max: 3 })],
    ([ops, maxOps, steps]) =>
      Effect.gen(function*() {
        const semaphore = yield* Effect.makeSemaphore(2)
        const victim = yield* Effect.fork(Effect.withMaxOpsBeforeYield(
          Effect.zipRight(Effect.repeatN(Effect.void, ops), semaphore.withPermits(2)(Effect.never)),
          maxOps
        ))
        for (let i = 0; i <= steps; i++) yield* Effect.yieldNow()
        yield* Fiber.interrupt(victim)
        expect(yield* allFree(semaphore, 2)).toBe(true)
      }),
    { fastCheck: { numRuns: 150 } }
  )
})
