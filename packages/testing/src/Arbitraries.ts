/**
 * fast-check arbitraries for property tests of your own integration: latencies, token lifetimes,
 * workloads and fault schedules, shaped like what providers really do (a lifetime is more often an
 * hour than 17 seconds; an outage has a start and an end).
 *
 * @since 0.1.0
 */
import { Duration } from "effect"
import * as fc from "fast-check"
import type * as Faults from "./Faults.js"

/**
 * A latency range in milliseconds, from loopback-fast to a slow API.
 *
 * @since 0.1.0
 * @category arbitraries
 */
export const latency: fc.Arbitrary<{ readonly min: number; readonly max: number }> = fc
  .tuple(fc.integer({ min: 0, max: 2_000 }), fc.integer({ min: 0, max: 2_000 }))
  .map(([a, b]) => ({ min: Math.min(a, b), max: Math.max(a, b) }))

/**
 * A token lifetime in seconds: the common ones (10 minutes, 30 minutes, an hour, a day) most of the
 * time, anything from 20 seconds to a day otherwise.
 *
 * @since 0.1.0
 * @category arbitraries
 */
export const lifetimeSeconds: fc.Arbitrary<number> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(600, 1_800, 3_600, 86_400) },
  { weight: 2, arbitrary: fc.integer({ min: 20, max: 86_400 }) }
)

/**
 * The demand on one target: how many workers, for how long, and how long each pauses between
 * requests (`undefined` saturates the limit).
 *
 * @since 0.1.0
 * @category models
 */
export interface Workload {
  readonly fibers: number
  readonly duration: Duration.Duration
  readonly think: Duration.Duration | undefined
}

/**
 * @since 0.1.0
 * @category arbitraries
 */
export const workload = (options?: {
  readonly maxFibers?: number | undefined
  readonly maxMinutes?: number | undefined
}): fc.Arbitrary<Workload> =>
  fc.record({
    fibers: fc.integer({ min: 1, max: options?.maxFibers ?? 20 }),
    duration: fc.integer({ min: 1, max: options?.maxMinutes ?? 60 }).map(Duration.minutes),
    think: fc.option(fc.integer({ min: 1, max: 10_000 }).map(Duration.millis), { nil: undefined })
  })

/**
 * One fault, switched on at `at` (milliseconds into the run) for `lasting` milliseconds, on the token
 * endpoint or the API; `revokeAll` revokes every live token at `at`.
 *
 * @since 0.1.0
 * @category models
 */
export type FaultEvent =
  | {
    readonly _tag: "Faults"
    readonly at: number
    readonly lasting: number
    readonly target: Faults.Target
    readonly options: Faults.Options
  }
  | { readonly _tag: "RevokeAll"; readonly at: number }

const faultOptions: fc.Arbitrary<Faults.Options> = fc.oneof(
  fc.record({ errorRate: fc.double({ min: 0.05, max: 1, noNaN: true }), errorBody: fc.constantFrom("html", "json") }),
  fc.record({ dropRate: fc.double({ min: 0.05, max: 1, noNaN: true }), dropMode: fc.constantFrom("reset", "partial") }),
  fc.record({ timeoutRate: fc.double({ min: 0.05, max: 0.5, noNaN: true }) }),
  latency.map(({ max, min }) => ({ latency: { min: Duration.millis(min), max: Duration.millis(max) } }))
) as fc.Arbitrary<Faults.Options>

/**
 * A schedule of faults within a run of `durationMillis`: outages of the token endpoint, API errors,
 * dropped connections, slow answers, and mass revocations.
 *
 * @since 0.1.0
 * @category arbitraries
 */
export const faultSchedule = (durationMillis: number, maxEvents = 6): fc.Arbitrary<ReadonlyArray<FaultEvent>> =>
  fc.array(
    fc.oneof(
      fc.record({
        _tag: fc.constant("Faults" as const),
        at: fc.integer({ min: 0, max: durationMillis }),
        lasting: fc.integer({ min: 1_000, max: Math.max(1_000, Math.floor(durationMillis / 4)) }),
        target: fc.constantFrom<Faults.Target>("token", "api"),
        options: faultOptions
      }),
      fc.record({ _tag: fc.constant("RevokeAll" as const), at: fc.integer({ min: 0, max: durationMillis }) })
    ),
    { maxLength: maxEvents }
  ).map((events) => [...events].sort((a, b) => a.at - b.at))

/**
 * Numbers a caller should never pass and a library must refuse or survive: NaN, ±∞, ±0, subnormals,
 * huge values, fractions where whole numbers are due, negatives, mixed with ordinary ones. For argument
 * properties: every public constructor fed these answers with a typed error or works.
 *
 * @since 0.2.0
 * @category arbitraries
 */
export const hostileNumber: fc.Arbitrary<number> = fc.oneof(
  fc.double(),
  fc.constantFrom(Number.NaN, Infinity, -Infinity, Number.MIN_VALUE, -Number.MIN_VALUE, 0, -0, 1e300, 2 ** 53, 0.5),
  fc.integer({ min: -5, max: 50 })
)

/**
 * Strings a caller should never pass: empty, blank, CR/LF (header injection), NUL, non-ASCII, and
 * nonsense durations, mixed with arbitrary ones.
 *
 * @since 0.2.0
 * @category arbitraries
 */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string(),
  fc.constantFrom("", " ", "\t", "a\r\nb", "x\nInjected: 1", "nul\0", "é", "😀", "soon", "5 parsecs", "-5 seconds")
)

/**
 * Duration inputs of every kind a caller can pass: hostile numbers and strings, and real durations
 * (zero, infinity, one millisecond) or none.
 *
 * @since 0.2.0
 * @category arbitraries
 */
export const hostileDuration: fc.Arbitrary<unknown> = fc.oneof(
  hostileNumber,
  hostileString,
  fc.constantFrom(Duration.infinity, Duration.zero, Duration.millis(1), "1 second", "10 minutes", undefined)
)

/**
 * URLs a base URL option should refuse or handle: user-info with a password, plain http, no scheme,
 * spaces, bad percent-encoding, other schemes, mixed with valid web URLs and hostile strings.
 *
 * @since 0.2.0
 * @category arbitraries
 */
export const hostileUrl: fc.Arbitrary<string> = fc.oneof(
  fc.webUrl(),
  hostileString,
  fc.constantFrom(
    "https://user:s3cret@api.test",
    "https://:s3cret@api.test/x",
    "http://api.test",
    "http://127.0.0.1:1",
    "api.test/v1",
    "//api.test",
    "https://exa mple.com",
    "https://api.test/%ZZ",
    "ftp://api.test",
    "https://api.test?x=1#y",
    "javascript:alert(1)"
  )
)
