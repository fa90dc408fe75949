/**
 * Spends a provider's request budget without overdrawing it: a queue of requests in front of a counting
 * semaphore whose permits come back on the policy's schedule, plus a gate that a 429 or `Remaining: 0`
 * closes for every fiber until the server's reset.
 *
 * The design: `docs/rate-limiting.md` in the repository.
 *
 * @since 0.1.0
 */
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Context, DateTime, Duration, Effect, Layer } from "effect"
import type { Scope } from "effect"
import * as Compile from "./internal/compile.js"
import { serve, toPlan } from "./internal/plan.js"
import * as Time from "./internal/time.js"
import { Checker, MAX_COUNT, MAX_PERIOD_MILLIS, MAX_PRIORITY } from "./internal/validate.js"
import * as RateLimiterStore from "./RateLimiterStore.js"
import type * as RateLimitHeaders from "./RateLimitHeaders.js"
import type * as TollgateError from "./TollgateError.js"

/**
 * What a permit is for. `key` selects the limiter of a `keyed` policy; `request` lets a custom
 * `keyOf` look at the HTTP request.
 *
 * @since 0.1.0
 * @category models
 */
export interface Subject {
  readonly key?: string | undefined
  readonly request?: HttpClientRequest.HttpClientRequest | undefined
}

/**
 * Options that can never be invalid: a key and decoded durations.
 *
 * @since 0.2.0
 * @category models
 */
export interface PlainPermitOptions extends Subject {
  readonly deadline?: Duration.Duration | undefined
  readonly timeout?: Duration.Duration | undefined
  readonly cost?: undefined
  readonly priority?: undefined
  readonly requestedAt?: undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface PermitOptions extends Subject {
  /** Permits the request consumes: a whole number. Default: 1. */
  readonly cost?: number | undefined
  /**
   * Fail at once, without queueing, when the limiter predicts a longer wait than this; otherwise wait
   * at most this long.
   */
  readonly deadline?: Duration.DurationInput | undefined
  /** Wait at most this long in the queue. */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * Higher goes first, from -1000 to 1000. Default: 0. A request of priority `p` waits as if it had
   * asked `p × priorityAging` earlier: FIFO within a priority, and no request is overtaken by a
   * lower-priority one, nor by a higher one that asked more than that much later.
   */
  readonly priority?: number | undefined
  /**
   * When the request first asked for a permit (epoch milliseconds): a retry passes its first instant
   * and is admitted before the requests that asked after it. Default: now.
   */
  readonly requestedAt?: number | undefined
}

/**
 * What the client reports with each response: the request's permit options (its `cost` counts), and
 * for a 429 the instant retries may start, which closes the gate until then for the quota the response
 * named (as `pauseUntil` does).
 *
 * @since 0.2.0
 * @category models
 */
export interface Report extends PermitOptions {
  readonly throttledUntil?: DateTime.Utc | undefined
  /**
   * The response was a 429 (implied by `throttledUntil`; set it for a 429 without a retry instant). A 429
   * that names no limit teaches one: what the server admitted in the trailing window.
   */
  readonly throttled?: boolean | undefined
}

/**
 * Counters for dashboards and the demo's summary.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** Permits granted, immediately or after waiting. */
  readonly granted: number
  /** Permits granted after waiting in the queue. */
  readonly waited: number
  readonly totalWaitMillis: number
  readonly maxWaitMillis: number
  /** Permits granted but given back unused (the request was interrupted before it was sent). */
  readonly refunded: number
  /** Requests refused at once (predicted wait past the deadline, or cost above capacity). */
  readonly rejected: number
  /** Requests that waited past their timeout. */
  readonly timedOut: number
  /** Requests waiting now. */
  readonly queued: number
  /** Limiters alive now (more than one for keyed policies). */
  readonly lanes: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Names the provider in errors. */
  readonly provider: string
  /**
   * Runs an effect holding a permit; the permit returns as the policy says once the effect ends. Options
   * with numbers of their own (cost, priority, instants, durations as input) can fail `InvalidArgument`.
   */
  readonly withPermit: {
    (
      options?: PlainPermitOptions
    ): <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | TollgateError.RateLimited, R>
    (
      options: PermitOptions
    ): <A, E, R>(
      effect: Effect.Effect<A, E, R>
    ) => Effect.Effect<A, E | TollgateError.RateLimited | TollgateError.InvalidArgument, R>
  }
  /**
   * Closes the gate until `instant` for every fiber, queued requests and retries included. It only ever
   * moves later. `limit`, when given, routes the pause to the policy enforcing that quota.
   */
  readonly pauseUntil: (
    instant: DateTime.Utc,
    subject?: Subject & { readonly limit?: number | undefined }
  ) => Effect.Effect<void>
  /**
   * What one response said, reported once for every response (one that said nothing too): its limit
   * and window teach the budget, its `Remaining` keeps the budget in step with the server, `Remaining: 0`
   * closes the gate until the reset, and a 429 (`report.throttledUntil`) closes it until the retry
   * instant. `report` is the request's permit options (its `cost` counts).
   */
  readonly observe: (info: RateLimitHeaders.RateLimitInfo, report?: Report) => Effect.Effect<void>
  /** Waits while the gate for `subject` is closed, without taking a permit. */
  readonly awaitGate: (subject?: Subject) => Effect.Effect<void>
  readonly stats: Effect.Effect<Stats>
}

/**
 * The limiter of a program that talks to one API. Programs with several build each provider's
 * limiter with `make`.
 *
 * @since 0.1.0
 * @category tags
 */
export class RateLimiter extends Context.Tag("@tollgate/core/RateLimiter")<RateLimiter, Service>() {}

/**
 * A policy. Its constructors never throw: a number they cannot work with is kept as `issue`, and
 * `make` (or `validate`) fails with it.
 *
 * @since 0.1.0
 * @category policies
 */
export type Policy =
  | {
    readonly _tag: "SlidingWindow"
    readonly limit: number
    readonly window: Duration.Duration
    readonly issue?: TollgateError.InvalidArgument | undefined
  }
  | {
    readonly _tag: "TokenBucket"
    readonly rate: number
    readonly interval: Duration.Duration
    readonly burst: number
    readonly issue?: TollgateError.InvalidArgument | undefined
  }
  | {
    readonly _tag: "FixedWindow"
    readonly limit: number
    readonly window: Duration.Duration
    readonly offset: Duration.Duration
    readonly issue?: TollgateError.InvalidArgument | undefined
  }
  | { readonly _tag: "Unlimited" }
  | {
    readonly _tag: "Learned"
    readonly probe: number
    readonly window: Duration.Duration
    readonly initial: Policy | undefined
    readonly issue?: TollgateError.InvalidArgument | undefined
  }
  | {
    readonly _tag: "Keyed"
    readonly keyOf: (subject: Subject) => string
    readonly policy: Policy
    readonly maxKeys: number
    readonly issue?: TollgateError.InvalidArgument | undefined
  }
  | { readonly _tag: "All"; readonly policies: ReadonlyArray<Policy> }

// A policy duration as given: decoded, or kept as an issue. Bare numbers are milliseconds.
const period = (check: Checker, name: string, input: unknown, positive = true): Duration.Duration => {
  const millis = check.duration(name, input, { positive, infinite: false })
  return Duration.millis(millis)
}

const withIssue = <P extends Policy>(policy: P, check: Checker): P =>
  check.issue === undefined ? policy : { ...policy, issue: check.issue }

/**
 * At most `limit` requests in any interval of length `window` at the server, whatever the latency: a
 * permit is taken before the request is sent and returns one `window` after its response. This is
 * "10 requests over any 2-minute interval" and "60 requests per minute".
 *
 * @since 0.1.0
 * @category policies
 */
export const slidingWindow = (options: {
  readonly limit: number
  readonly window: Duration.DurationInput
}): Policy => {
  const check = new Checker("RateLimiter.slidingWindow")
  return withIssue({
    _tag: "SlidingWindow",
    limit: check.count("limit", options.limit),
    window: period(check, "window", options.window)
  }, check)
}

/**
 * `rate` requests per `interval` on average, with up to `burst` at once: never more than
 * `burst + rate × t` in any interval of length `t`. Norce's token endpoint ("3 per minute with a burst
 * of 20 more") is `tokenBucket({ rate: 3, interval: "1 minute", burst: 20 })`.
 *
 * @since 0.1.0
 * @category policies
 */
export const tokenBucket = (options: {
  readonly rate: number
  /** Default: 1 second. */
  readonly interval?: Duration.DurationInput | undefined
  readonly burst: number
}): Policy => {
  const check = new Checker("RateLimiter.tokenBucket")
  const interval = period(check, "interval", options.interval ?? Duration.seconds(1))
  const rate = check.number("rate", options.rate, Number.MIN_VALUE, MAX_COUNT)
  // One permit must come back within the longest period a limiter plans for.
  if (check.issue === undefined && Duration.toMillis(interval) / rate > MAX_PERIOD_MILLIS) {
    check.fail("rate", `at least one per ${MAX_PERIOD_MILLIS} ms`, options.rate)
  }
  return withIssue({ _tag: "TokenBucket", rate, interval, burst: check.count("burst", options.burst) }, check)
}

/**
 * At most `limit` requests per window, with windows aligned to the clock (`offset` after each multiple
 * of `window` since the epoch), for servers that reset at fixed times. A request in flight across a
 * window boundary counts in both windows, and a server's reset instant re-aligns the windows.
 *
 * @since 0.1.0
 * @category policies
 */
export const fixedWindow = (options: {
  readonly limit: number
  readonly window: Duration.DurationInput
  readonly offset?: Duration.DurationInput | undefined
}): Policy => {
  const check = new Checker("RateLimiter.fixedWindow")
  return withIssue({
    _tag: "FixedWindow",
    limit: check.count("limit", options.limit),
    window: period(check, "window", options.window),
    offset: period(check, "offset", options.offset ?? Duration.zero, false)
  }, check)
}

/**
 * No limit of our own and nothing learned; the gate still pauses requests when the server says so.
 *
 * @since 0.1.0
 * @category policies
 */
export const unlimited: Policy = { _tag: "Unlimited" }

/**
 * The budget the server announces, for APIs whose limits are only known from their headers (and the
 * `ApiClient`'s default). Until the first response says something, `probe` requests may be in flight
 * (default 1); every announced limit then becomes a sliding window over the announced window
 * (`RateLimit-Policy`'s `w`, else the longest reset delay seen, else `window`, default 1 minute), and
 * `Remaining` keeps it in step with the server. A server that says nothing in `probe` responses paces
 * requests with its 429s: a bare one teaches a limit, what it admitted in the trailing `window` (and
 * so does a configured policy's lane, over its own window).
 *
 * With `initial`, that policy applies until the server announces its own limit, which then replaces it
 * (up or down): the opt-in for loosening a configured policy. Without `learned`, a configured policy is
 * a ceiling the server can only tighten.
 *
 * @since 0.2.0
 * @category policies
 */
export const learned = (options?: {
  readonly probe?: number | undefined
  readonly window?: Duration.DurationInput | undefined
  readonly initial?: Policy | undefined
}): Policy => {
  const check = new Checker("RateLimiter.learned")
  const initial = options?.initial
  if (initial !== undefined && !isSimple(initial)) check.fail("initial", "a policy without keys", initial._tag)
  if (initial !== undefined && hasLearned(initial)) check.fail("initial", "a policy that does not learn", "learned")
  return withIssue({
    _tag: "Learned",
    probe: check.count("probe", options?.probe ?? 1),
    window: period(check, "window", options?.window ?? Duration.minutes(1)),
    initial
  }, check)
}

/**
 * One limiter per key (per endpoint, per account), created on first use. `maxKeys` (default 10,000)
 * bounds the lanes: a new key past it replaces an idle lane (finding one costs O(1)), or, when every
 * lane is busy, shares one overflow lane of the same policy with the other such keys until that lane is
 * idle again. Idle lanes are also dropped about one window after traffic stops.
 *
 * @since 0.1.0
 * @category policies
 */
export const keyed: {
  (policy: Policy, options?: { readonly maxKeys?: number | undefined }): Policy
  (
    keyOf: (subject: Subject) => string,
    policy: Policy,
    options?: { readonly maxKeys?: number | undefined }
  ): Policy
} = (...args: ReadonlyArray<unknown>): Policy => {
  const [keyOf, policy, options] = typeof args[0] === "function"
    ? [
      args[0] as (subject: Subject) => string,
      args[1] as Policy,
      args[2] as { readonly maxKeys?: number | undefined } | undefined
    ]
    : [defaultKeyOf, args[0] as Policy, args[1] as { readonly maxKeys?: number | undefined } | undefined]
  const check = new Checker("RateLimiter.keyed")
  if (!isSimple(policy)) check.fail("policy", "a policy without keys of its own", "keyed")
  return withIssue({ _tag: "Keyed", keyOf, policy, maxKeys: check.count("maxKeys", options?.maxKeys ?? 10_000) }, check)
}

function defaultKeyOf(subject: Subject): string {
  return subject.key ?? ""
}

/**
 * Every policy must admit the request. Plain policies are checked together and taken atomically;
 * keyed ones are taken in the order given.
 *
 * @since 0.1.0
 * @category policies
 */
export const all = (...policies: ReadonlyArray<Policy>): Policy => {
  if (policies.length === 0) return unlimited
  return policies.length === 1 ? policies[0]! : { _tag: "All", policies }
}

function isSimple(policy: Policy): boolean {
  return policy._tag !== "Keyed" && (policy._tag !== "All" || policy.policies.every(isSimple))
}

function hasLearned(policy: Policy): boolean {
  return policy._tag === "Learned" || (policy._tag === "All" && policy.policies.some(hasLearned))
}

/**
 * Checks every number of `policy` (however it was built), failing with the first problem.
 *
 * @since 0.2.0
 * @category validation
 */
export const validate = (policy: Policy): Effect.Effect<Policy, TollgateError.InvalidArgument> =>
  Effect.suspend(() => {
    const check = new Checker("RateLimiter")
    toPlan(policy, check)
    return check.issue === undefined ? Effect.succeed(policy) : Effect.fail(check.issue)
  })

/**
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** Names the provider in errors. Default: "api". */
  readonly provider?: string | undefined
  /** The waiting one unit of priority is worth (see `PermitOptions.priority`). Default: 1 minute. */
  readonly priorityAging?: Duration.DurationInput | undefined
}

/**
 * Builds a limiter for `policy` over `store` (see `RateLimiterStore`). Its timers live in the current
 * scope: closing the scope fails every waiting request with `RateLimited` (reason "closed").
 *
 * @example
 * ```ts
 * import { RateLimiter } from "@tollgate/core"
 * import * as RateLimiterStore from "@tollgate/core/RateLimiterStore"
 * import { Effect } from "effect"
 *
 * // The policy compiled over a store: `memory` here, a Redis store for a fleet (`@tollgate/redis`).
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.makeWithStore(
 *     RateLimiter.tokenBucket({ rate: 3, interval: "1 minute", burst: 20 }),
 *     RateLimiterStore.memory,
 *     { provider: "acme" }
 *   )
 *   const answer = yield* limiter.withPermit()(Effect.succeed("sent"))
 *   console.log(answer) // "sent"
 * }).pipe(Effect.scoped)
 *
 * Effect.runPromise(program)
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeWithStore = (
  policy: Policy,
  store: RateLimiterStore.Store,
  options?: Options
): Effect.Effect<Service, TollgateError.InvalidArgument, Scope.Scope> =>
  Effect.gen(function*() {
    const check = new Checker("RateLimiter.make")
    const plan = toPlan(policy, check)
    const aging = check.duration("priorityAging", options?.priorityAging ?? Duration.minutes(1), {
      positive: true,
      infinite: false,
      max: MAX_PERIOD_MILLIS / MAX_PRIORITY
    })
    if (check.issue !== undefined) return yield* Effect.fail(check.issue)
    const provider = options?.provider ?? "api"
    const root = Compile.compile(plan, {
      clock: yield* Effect.clock,
      runtime: yield* Effect.runtime<never>(),
      provider,
      aging,
      store
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => root.close()))

    return serve(root, provider)
  })

/**
 * Builds a limiter for `policy` in this process's memory.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "@tollgate/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 5, window: "1 second" }), {
 *     provider: "acme"
 *   })
 *   // Each call holds a permit; the sixth within a second would wait for the window to slide.
 *   yield* Effect.forEach([1, 2, 3, 4, 5], (i) => limiter.withPermit()(Effect.succeed(i)), { concurrency: 5 })
 *   console.log((yield* limiter.stats).granted) // 5
 * }).pipe(Effect.scoped)
 *
 * Effect.runPromise(program)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  policy: Policy,
  options?: Options
): Effect.Effect<Service, TollgateError.InvalidArgument, Scope.Scope> =>
  makeWithStore(policy, RateLimiterStore.memory, options)

/**
 * How limiters are built: in this process by default, or shared by a fleet when a Layer provides
 * another backend (`@tollgate/redis`). Provider modules build their limiters through it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Backend {
  readonly make: (
    policy: Policy,
    options?: Options
  ) => Effect.Effect<Service, TollgateError.InvalidArgument, Scope.Scope>
}

/**
 * The backend in use; `make` (this process) unless a Layer provides another.
 *
 * @since 0.1.0
 * @category tags
 */
export class RateLimiterBackend extends Context.Reference<RateLimiterBackend>()("@tollgate/core/RateLimiter/Backend", {
  defaultValue: (): Backend => ({ make: (policy, options) => make(policy, options) })
}) {}

/**
 * Builds a limiter with the backend in context.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "@tollgate/core"
 * import { Effect } from "effect"
 *
 * // In this process's memory, unless a Layer such as `RedisRateLimiter.layerBackend` provides a shared backend.
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.makeWithBackend(RateLimiter.fixedWindow({ limit: 100, window: "1 minute" }))
 *   const answer = yield* limiter.withPermit()(Effect.succeed("sent"))
 *   console.log(answer) // "sent"
 * }).pipe(Effect.scoped)
 *
 * Effect.runPromise(program)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWithBackend = (
  policy: Policy,
  options?: Options
): Effect.Effect<Service, TollgateError.InvalidArgument, Scope.Scope> =>
  Effect.flatMap(RateLimiterBackend, (backend) => backend.make(policy, options))

/**
 * @example
 * ```ts
 * import { RateLimiter } from "@tollgate/core"
 * import { Effect } from "effect"
 *
 * // Two budgets at once: 10 per second and 600 per hour.
 * const LimiterLive = RateLimiter.layer(
 *   RateLimiter.all(
 *     RateLimiter.slidingWindow({ limit: 10, window: "1 second" }),
 *     RateLimiter.slidingWindow({ limit: 600, window: "1 hour" })
 *   ),
 *   { provider: "acme" }
 * )
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.RateLimiter
 *   console.log(yield* limiter.withPermit()(Effect.succeed("sent"))) // "sent"
 * })
 * Effect.runPromise(Effect.provide(program, LimiterLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  policy: Policy,
  options?: Options
): Layer.Layer<RateLimiter, TollgateError.InvalidArgument> =>
  Layer.scoped(RateLimiter, makeWithBackend(policy, options))

/**
 * Sleeps until the clock reads at least `targetMillis`, however far away that is: waits longer than a
 * `setTimeout` can hold (about 24.8 days) are taken in chunks that re-read the clock. For backends that
 * wait on gates and refresh instants the way the local limiter does.
 *
 * @since 0.1.0
 * @category utils
 */
export const sleepUntil: (targetMillis: number) => Effect.Effect<void> = Time.sleepUntil
