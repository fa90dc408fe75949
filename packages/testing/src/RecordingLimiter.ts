/**
 * A `RateLimiter` that records what it did: every permit with its key, cost and wait, every pause and
 * every observation. Wrap a real policy to assert on pacing, or use `unlimited` to observe traffic.
 *
 * @since 0.1.0
 */
import { RateLimiter } from "@tollgate/core"
import type { RateLimitHeaders, TollgateError } from "@tollgate/core"
import { Context, Effect, Layer, Option } from "effect"
import type { Scope } from "effect"

/**
 * @since 0.1.0
 * @category models
 */
export type Event =
  | {
    readonly _tag: "Permit"
    readonly key: string | undefined
    readonly cost: number
    readonly requestedAt: number
    readonly grantedAt: number
  }
  | { readonly _tag: "Refused"; readonly key: string | undefined; readonly at: number; readonly reason: string }
  | { readonly _tag: "Pause"; readonly key: string | undefined; readonly until: number; readonly at: number }
  | {
    readonly _tag: "Observe"
    readonly key: string | undefined
    readonly at: number
    readonly remaining: number | undefined
    readonly resetAt: number | undefined
  }

/**
 * @since 0.1.0
 * @category models
 */
export interface RecordingLimiter {
  readonly limiter: RateLimiter.Service
  readonly events: Effect.Effect<ReadonlyArray<Event>>
  /** Permit waits in milliseconds, in grant order. */
  readonly waits: Effect.Effect<ReadonlyArray<number>>
}

/**
 * Gives a test the events of the limiter its Layer installed.
 *
 * @since 0.1.0
 * @category tags
 */
export class Recorder
  extends Context.Tag("@tollgate/testing/RecordingLimiter/Recorder")<Recorder, RecordingLimiter>()
{}

/**
 * Records everything `limiter` does.
 *
 * @since 0.1.0
 * @category constructors
 */
export const wrap = (limiter: RateLimiter.Service): Effect.Effect<RecordingLimiter> =>
  Effect.map(Effect.clock, (clock) => {
    const events: Array<Event> = []
    const now = () => clock.unsafeCurrentTimeMillis()
    const recorded: RateLimiter.Service = {
      provider: limiter.provider,
      withPermit: ((options?: RateLimiter.PermitOptions) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.suspend(() => {
          const requestedAt = now()
          return limiter.withPermit(options as RateLimiter.PermitOptions)(
            Effect.zipRight(
              Effect.sync(() =>
                events.push({
                  _tag: "Permit",
                  key: options?.key,
                  cost: options?.cost ?? 1,
                  requestedAt,
                  grantedAt: now()
                })
              ),
              effect
            )
          ).pipe(
            Effect.tapErrorTag("RateLimited", (error) =>
              Effect.sync(() =>
                events.push({
                  _tag: "Refused",
                  key: options?.key,
                  at: now(),
                  reason: (error as TollgateError.RateLimited).reason
                })
              ))
          )
        })) as RateLimiter.Service["withPermit"],
      pauseUntil: (instant, subject) =>
        Effect.zipRight(
          Effect.sync(() =>
            events.push({ _tag: "Pause", key: subject?.key, until: instant.epochMillis, at: now() })
          ),
          limiter.pauseUntil(instant, subject)
        ),
      observe: (info: RateLimitHeaders.RateLimitInfo, subject) =>
        Effect.zipRight(
          Effect.sync(() => {
            events.push({
              _tag: "Observe",
              key: subject?.key,
              at: now(),
              remaining: Option.getOrUndefined(info.remaining),
              resetAt: Option.getOrUndefined(Option.map(info.resetAt, (d) => d.epochMillis))
            })
            // A 429 reported with its retry instant closes the gate, as `pauseUntil` does.
            const until = subject?.throttledUntil
            if (until !== undefined) {
              events.push({ _tag: "Pause", key: subject?.key, until: until.epochMillis, at: now() })
            }
          }),
          limiter.observe(info, subject)
        ),
      awaitGate: limiter.awaitGate,
      stats: limiter.stats
    }
    return {
      limiter: recorded,
      events: Effect.sync(() => [...events]),
      waits: Effect.sync(() =>
        events.flatMap((event) => (event._tag === "Permit" ? [event.grantedAt - event.requestedAt] : []))
      )
    }
  })

/**
 * A recording limiter enforcing `policy` (default: unlimited).
 *
 * @example
 * ```ts
 * import { RateLimiter } from "@tollgate/core"
 * import { RecordingLimiter } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * Effect.gen(function*() {
 *   const recording = yield* RecordingLimiter.make(RateLimiter.slidingWindow({ limit: 10, window: "1 second" }))
 *   yield* recording.limiter.withPermit({ key: "GET /items" })(Effect.void)
 *   console.log((yield* recording.events).map((event) => event._tag)) // ["Permit"]
 * }).pipe(Effect.scoped, Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  policy: RateLimiter.Policy = RateLimiter.unlimited,
  options?: { readonly provider?: string | undefined }
): Effect.Effect<RecordingLimiter, TollgateError.InvalidArgument, Scope.Scope> =>
  Effect.flatMap(RateLimiter.make(policy, options), wrap)

/**
 * Installs a recording limiter as the `RateLimiter`, and its events as `Recorder`.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "@tollgate/core"
 * import { RecordingLimiter } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * // Installed as the program's `RateLimiter`; the test reads what it saw from `Recorder`.
 * Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.RateLimiter
 *   yield* limiter.withPermit()(Effect.void)
 *   const recording = yield* RecordingLimiter.Recorder
 *   console.log((yield* recording.waits).length) // 1
 * }).pipe(Effect.provide(RecordingLimiter.layer()), Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  policy?: RateLimiter.Policy,
  options?: { readonly provider?: string | undefined }
): Layer.Layer<RateLimiter.RateLimiter | Recorder, TollgateError.InvalidArgument> =>
  Layer.scopedContext(
    Effect.map(make(policy, options), (recording) =>
      Context.make(RateLimiter.RateLimiter, recording.limiter).pipe(Context.add(Recorder, recording)))
  )
