/**
 * Spends a provider's request budget without overdrawing it. A limiter is a queue of requests in front
 * of a counting semaphore whose permits come back on a schedule set by the policy, plus a gate that a
 * 429 or `Remaining: 0` closes for every fiber until the server's reset.
 *
 * Policies compose: `slidingWindow`, `tokenBucket`, `fixedWindow` (aligned to the clock), `unlimited`,
 * `keyed` (one limiter per endpoint or account, idle keys forgotten) and `all` (several limits on one
 * request).
 *
 * @since 0.1.0
 */
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Context, DateTime, Duration, Effect, Layer, Option } from "effect"
import type { Scope } from "effect"
import * as Budget from "./internal/budget.js"
import * as Lane from "./internal/lane.js"
import * as Time from "./internal/time.js"
import type * as RateLimitHeaders from "./RateLimitHeaders.js"
import * as TollgateError from "./TollgateError.js"

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
 * @since 0.1.0
 * @category models
 */
export interface PermitOptions extends Subject {
  /** Permits the request consumes. Default: 1. */
  readonly cost?: number | undefined
  /**
   * Fail at once, without queueing, when the limiter predicts a longer wait than this; otherwise wait
   * at most this long.
   */
  readonly deadline?: Duration.DurationInput | undefined
  /** Wait at most this long in the queue. */
  readonly timeout?: Duration.DurationInput | undefined
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
  /** Runs an effect holding a permit; the permit returns as the policy says once the effect ends. */
  readonly withPermit: (
    options?: PermitOptions
  ) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | TollgateError.RateLimited, R>
  /**
   * Closes the gate until `instant` for every fiber, queued requests and retries included. It only ever
   * moves later. `limit`, when given, routes the pause to the policy enforcing that quota.
   */
  readonly pauseUntil: (
    instant: DateTime.Utc,
    subject?: Subject & { readonly limit?: number | undefined }
  ) => Effect.Effect<void>
  /**
   * Keeps the budget in step with the server after any response: fewer `Remaining` than we count
   * tightens it, `Remaining: 0` closes the gate until the reset.
   */
  readonly observe: (info: RateLimitHeaders.RateLimitInfo, subject?: Subject) => Effect.Effect<void>
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
 * @since 0.1.0
 * @category policies
 */
export type Policy =
  | { readonly _tag: "SlidingWindow"; readonly limit: number; readonly window: Duration.Duration }
  | {
    readonly _tag: "TokenBucket"
    readonly rate: number
    readonly interval: Duration.Duration
    readonly burst: number
  }
  | {
    readonly _tag: "FixedWindow"
    readonly limit: number
    readonly window: Duration.Duration
    readonly offset: Duration.Duration
  }
  | { readonly _tag: "Unlimited" }
  | {
    readonly _tag: "Keyed"
    readonly keyOf: (subject: Subject) => string
    readonly policy: Policy
    readonly maxKeys: number
  }
  | { readonly _tag: "All"; readonly policies: ReadonlyArray<Policy> }

const positiveInteger = (name: string, value: number): number => {
  if (!Number.isInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer, got ${value}`)
  return value
}

const positiveDuration = (name: string, value: Duration.DurationInput): Duration.Duration => {
  const duration = Duration.decode(value)
  if (!Duration.isFinite(duration) || Duration.toMillis(duration) <= 0) {
    throw new RangeError(`${name} must be a positive, finite duration`)
  }
  return duration
}

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
}): Policy => ({
  _tag: "SlidingWindow",
  limit: positiveInteger("limit", options.limit),
  window: positiveDuration("window", options.window)
})

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
  if (!(options.rate > 0) || !Number.isFinite(options.rate)) {
    throw new RangeError(`rate must be a positive number, got ${options.rate}`)
  }
  return {
    _tag: "TokenBucket",
    rate: options.rate,
    interval: positiveDuration("interval", options.interval ?? Duration.seconds(1)),
    burst: positiveInteger("burst", options.burst)
  }
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
}): Policy => ({
  _tag: "FixedWindow",
  limit: positiveInteger("limit", options.limit),
  window: positiveDuration("window", options.window),
  offset: Duration.decode(options.offset ?? Duration.zero)
})

/**
 * No limit of our own; the gate still pauses requests when the server says so.
 *
 * @since 0.1.0
 * @category policies
 */
export const unlimited: Policy = { _tag: "Unlimited" }

/**
 * One limiter per key (per endpoint, per account), created on first use. Memory is bounded: beyond
 * `maxKeys` (default 10,000) idle keys are forgotten, which loses nothing because an idle limiter is
 * indistinguishable from a new one. The policy itself has no keys; combine a keyed and a global
 * limit with `all(keyed(...), global)`.
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
  if (!isSimple(policy)) throw new RangeError("keyed takes a policy without keys of its own")
  return { _tag: "Keyed", keyOf, policy, maxKeys: positiveInteger("maxKeys", options?.maxKeys ?? 10_000) }
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

// A compiled policy: a tree whose leaves are lanes.
interface Node {
  readonly limits: ReadonlyArray<number>
  withPermit<A, E, R>(
    effect: Effect.Effect<A, E, R>,
    subject: Subject,
    cost: number,
    deadline: number | undefined,
    timeout: number | undefined
  ): Effect.Effect<A, E | TollgateError.RateLimited, R>
  pauseUntil(at: number, subject: Subject): void
  observe(observation: Budget.Observation, subject: Subject): void
  awaitGate(subject: Subject): Effect.Effect<void>
  close(): void
  collect(stats: MutableStats): void
}

type MutableStats = { -readonly [K in keyof Stats]: Stats[K] }

function isSimple(policy: Policy): boolean {
  return policy._tag !== "Keyed" && (policy._tag !== "All" || policy.policies.every(isSimple))
}

const toBudget = (policy: Policy): Budget.Budget => {
  switch (policy._tag) {
    case "SlidingWindow":
      return new Budget.SlidingWindow(policy.limit, Duration.toMillis(policy.window))
    case "TokenBucket":
      return new Budget.TokenBucket(policy.rate / Duration.toMillis(policy.interval), policy.burst)
    case "FixedWindow":
      return new Budget.FixedWindow(policy.limit, Duration.toMillis(policy.window), Duration.toMillis(policy.offset))
    case "Unlimited":
      return new Budget.Unlimited()
    case "All":
      return new Budget.All(policy.policies.map(toBudget))
    case "Keyed":
      throw new Error("a keyed policy has no single budget")
  }
}

const budgetLimits = (policy: Policy): ReadonlyArray<number> => {
  switch (policy._tag) {
    case "SlidingWindow":
    case "FixedWindow":
      return [policy.limit]
    case "TokenBucket":
      return [policy.burst, policy.rate]
    case "Unlimited":
      return []
    case "All":
      return policy.policies.flatMap(budgetLimits)
    case "Keyed":
      return budgetLimits(policy.policy)
  }
}

const addStats = (stats: MutableStats, lane: Lane.Lane): void => {
  stats.granted += lane.stats.granted
  stats.waited += lane.stats.waited
  stats.totalWaitMillis += lane.stats.totalWaitMillis
  stats.maxWaitMillis = Math.max(stats.maxWaitMillis, lane.stats.maxWaitMillis)
  stats.refunded += lane.stats.refunded
  stats.rejected += lane.stats.rejected
  stats.timedOut += lane.stats.timedOut
  stats.queued += lane.queueLength
  stats.lanes += 1
}

const laneNode = (lane: Lane.Lane, limits: ReadonlyArray<number>): Node => ({
  limits,
  withPermit: (effect, _subject, cost, deadline, timeout) => Lane.withPermit(lane, effect, cost, deadline, timeout),
  pauseUntil: (at) => lane.pauseUntil(at),
  observe: (observation) => lane.observe(observation),
  awaitGate: () => lane.awaitGate(),
  close: () => lane.close(),
  collect: (stats) => addStats(stats, lane)
})

interface Environment extends Lane.LaneEnvironment {
  readonly provider: string
}

const keyedNode = (policy: Extract<Policy, { _tag: "Keyed" }>, env: Environment): Node => {
  const lanes = new Map<string, Node & { readonly lane: Lane.Lane }>()
  const limits = budgetLimits(policy.policy)
  let closed = false
  const evictIdle = (now: number) => {
    for (const [key, node] of lanes) {
      if (node.lane.idle(now)) lanes.delete(key)
    }
  }
  const nodeFor = (subject: Subject) => {
    const key = policy.keyOf(subject)
    let node = lanes.get(key)
    if (node === undefined) {
      if (lanes.size >= policy.maxKeys) evictIdle(env.clock.unsafeCurrentTimeMillis())
      const lane = new Lane.Lane(toBudget(policy.policy), env, { provider: env.provider, key })
      if (closed) lane.close()
      node = { ...laneNode(lane, limits), lane }
      lanes.set(key, node)
    }
    return node
  }
  return {
    limits,
    withPermit: (effect, subject, cost, deadline, timeout) =>
      nodeFor(subject).withPermit(effect, subject, cost, deadline, timeout),
    pauseUntil: (at, subject) => nodeFor(subject).pauseUntil(at, subject),
    observe: (observation, subject) => nodeFor(subject).observe(observation, subject),
    awaitGate: (subject) => nodeFor(subject).awaitGate(subject),
    close: () => {
      closed = true
      for (const node of lanes.values()) node.close()
    },
    collect: (stats) => {
      for (const node of lanes.values()) node.collect(stats)
    }
  }
}

const sequenceNode = (nodes: ReadonlyArray<Node>): Node => {
  // A server names the quota it counted against; only the matching limiters learn from it, unless
  // none matches, when all do.
  const route = (limit: number | undefined): ReadonlyArray<Node> => {
    if (limit === undefined) return nodes
    const matching = nodes.filter((node) => node.limits.includes(limit))
    return matching.length > 0 ? matching : nodes
  }
  return {
    limits: nodes.flatMap((node) => node.limits),
    withPermit: (effect, subject, cost, deadline, timeout) =>
      nodes.reduceRight<Effect.Effect<any, any, any>>(
        (inner, node) => node.withPermit(inner, subject, cost, deadline, timeout),
        effect
      ),
    pauseUntil: (at, subject) => {
      for (const node of route((subject as { limit?: number }).limit)) node.pauseUntil(at, subject)
    },
    observe: (observation, subject) => {
      for (const node of route(observation.limit)) node.observe(observation, subject)
    },
    awaitGate: (subject) => Effect.forEach(nodes, (node) => node.awaitGate(subject), { discard: true }),
    close: () => nodes.forEach((node) => node.close()),
    collect: (stats) => nodes.forEach((node) => node.collect(stats))
  }
}

const compile = (policy: Policy, env: Environment): Node => {
  if (isSimple(policy)) {
    return laneNode(
      new Lane.Lane(toBudget(policy), env, { provider: env.provider, key: undefined }),
      budgetLimits(policy)
    )
  }
  if (policy._tag === "Keyed") return keyedNode(policy, env)
  // An `all` mixing keyed and plain policies: the plain ones share one atomic lane.
  const plain = (policy as Extract<Policy, { _tag: "All" }>).policies.filter(isSimple)
  const rest = (policy as Extract<Policy, { _tag: "All" }>).policies.filter((p) => !isSimple(p))
  const nodes = rest.map((p) => compile(p, env))
  if (plain.length > 0) nodes.push(compile(all(...plain), env))
  return sequenceNode(nodes)
}

const toMillis = (input: Duration.DurationInput | undefined): number | undefined =>
  input === undefined ? undefined : Duration.toMillis(input)

const toObservation = (info: RateLimitHeaders.RateLimitInfo): Budget.Observation => ({
  limit: Option.getOrUndefined(info.limit),
  remaining: Option.getOrUndefined(info.remaining),
  resetAt: Option.getOrUndefined(Option.map(info.resetAt, DateTime.toEpochMillis))
})

/**
 * Builds a limiter for `policy`. Its wake-up timer lives in the current scope: closing the scope fails
 * every waiting request with `RateLimited` (reason "closed") and leaves no timer behind.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  policy: Policy,
  options?: { readonly provider?: string | undefined }
): Effect.Effect<Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const provider = options?.provider ?? "api"
    const env: Environment = { clock: yield* Effect.clock, runtime: yield* Effect.runtime<never>(), provider }
    const root = compile(policy, env)
    yield* Effect.addFinalizer(() => Effect.sync(() => root.close()))
    const noSubject: Subject = {}

    const withPermit = (permitOptions?: PermitOptions) => {
      const subject = permitOptions ?? noSubject
      const cost = permitOptions?.cost ?? 1
      const deadline = toMillis(permitOptions?.deadline)
      const timeout = toMillis(permitOptions?.timeout)
      return <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | TollgateError.RateLimited, R> =>
        root.withPermit(effect, subject, cost, deadline, timeout)
    }

    return {
      provider,
      withPermit,
      pauseUntil: (instant, subject) =>
        Effect.sync(() => root.pauseUntil(DateTime.toEpochMillis(instant), subject ?? noSubject)),
      observe: (info, subject) => Effect.sync(() => root.observe(toObservation(info), subject ?? noSubject)),
      awaitGate: (subject) => Effect.suspend(() => root.awaitGate(subject ?? noSubject)),
      stats: Effect.sync(() => {
        const stats: MutableStats = {
          granted: 0,
          waited: 0,
          totalWaitMillis: 0,
          maxWaitMillis: 0,
          refunded: 0,
          rejected: 0,
          timedOut: 0,
          queued: 0,
          lanes: 0
        }
        root.collect(stats)
        return stats
      })
    } satisfies Service
  })

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
    options?: { readonly provider?: string | undefined }
  ) => Effect.Effect<Service, never, Scope.Scope>
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
 * @since 0.1.0
 * @category constructors
 */
export const makeWithBackend = (
  policy: Policy,
  options?: { readonly provider?: string | undefined }
): Effect.Effect<Service, never, Scope.Scope> =>
  Effect.flatMap(RateLimiterBackend, (backend) => backend.make(policy, options))

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  policy: Policy,
  options?: { readonly provider?: string | undefined }
): Layer.Layer<RateLimiter> => Layer.scoped(RateLimiter, makeWithBackend(policy, options))

/**
 * Sleeps until the clock reads at least `targetMillis`, however far away that is: waits longer than a
 * `setTimeout` can hold (about 24.8 days) are taken in chunks that re-read the clock. For backends that
 * wait on gates and refresh instants the way the local limiter does.
 *
 * @since 0.1.0
 * @category utils
 */
export const sleepUntil: (targetMillis: number) => Effect.Effect<void> = Time.sleepUntil
