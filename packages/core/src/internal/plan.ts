/**
 * The one path every policy and per-request number goes through: a policy (however it was built) becomes
 * the compiler's plan, per-request options become a request, and the first value that cannot work becomes
 * `InvalidArgument`.
 */
import { DateTime, Duration, Effect, Option } from "effect"
import type * as RateLimiter from "../RateLimiter.js"
import type * as RateLimiterStore from "../RateLimiterStore.js"
import type * as RateLimitHeaders from "../RateLimitHeaders.js"
import * as TollgateError from "../TollgateError.js"
import type * as Compile from "./compile.js"
import * as Facets from "./facets.js"
import type { Request } from "./queue.js"
import { Checker, invalid, MAX_COUNT, MAX_PERIOD_MILLIS, MAX_PRIORITY } from "./validate.js"

type LanePlan = Extract<Compile.Plan, { _tag: "Lane" }>

const tighten = (window: number): RateLimiterStore.Learning => ({ replace: false, probe: 1, window })

// The one path every policy number goes through, whoever built the policy object.
export const toPlan = (policy: RateLimiter.Policy, outer: Checker): Compile.Plan => {
  const issue = "issue" in policy ? policy.issue : undefined
  if (issue !== undefined && outer.issue === undefined) outer.issue = issue
  switch (policy._tag) {
    case "SlidingWindow": {
      const check = new Checker("RateLimiter.slidingWindow")
      const limit = check.count("limit", policy.limit)
      const window = check.duration("window", policy.window, { positive: true, infinite: false })
      outer.issue ??= check.issue
      return {
        _tag: "Lane",
        budgets: [{ _tag: "SlidingWindow", limit, window }],
        learning: tighten(window),
        limits: [limit]
      }
    }
    case "TokenBucket": {
      const check = new Checker("RateLimiter.tokenBucket")
      const interval = check.duration("interval", policy.interval, { positive: true, infinite: false })
      const rate = check.number("rate", policy.rate, Number.MIN_VALUE, MAX_COUNT)
      const burst = check.count("burst", policy.burst)
      if (interval / rate > MAX_PERIOD_MILLIS) check.fail("rate", `at least one per ${MAX_PERIOD_MILLIS} ms`, rate)
      outer.issue ??= check.issue
      return {
        _tag: "Lane",
        budgets: [{ _tag: "TokenBucket", perMillis: rate / interval, burst }],
        learning: tighten(interval),
        limits: [burst, rate]
      }
    }
    case "FixedWindow": {
      const check = new Checker("RateLimiter.fixedWindow")
      const limit = check.count("limit", policy.limit)
      const window = check.duration("window", policy.window, { positive: true, infinite: false })
      const offset = check.duration("offset", policy.offset, { positive: false, infinite: false })
      outer.issue ??= check.issue
      return {
        _tag: "Lane",
        budgets: [{ _tag: "FixedWindow", limit, window, offset: offset % window }],
        learning: tighten(window),
        limits: [limit]
      }
    }
    case "Unlimited":
      return { _tag: "Lane", budgets: [], learning: undefined, limits: [] }
    case "Learned": {
      const check = new Checker("RateLimiter.learned")
      const probe = check.count("probe", policy.probe)
      const window = check.duration("window", policy.window, { positive: true, infinite: false })
      outer.issue ??= check.issue
      const initial = policy.initial === undefined ? undefined : toPlan(policy.initial, outer)
      if (initial !== undefined && initial._tag !== "Lane") {
        outer.issue ??= invalid("RateLimiter.learned", "initial", "a policy without keys", "keyed")
        return { _tag: "Lane", budgets: [], learning: { replace: false, probe, window }, limits: [] }
      }
      return {
        _tag: "Lane",
        budgets: initial?.budgets ?? [],
        learning: { replace: initial !== undefined, probe, window },
        limits: initial?.limits ?? []
      }
    }
    case "Keyed": {
      const check = new Checker("RateLimiter.keyed")
      const maxKeys = check.count("maxKeys", policy.maxKeys)
      outer.issue ??= check.issue
      const lane = toPlan(policy.policy, outer)
      if (lane._tag !== "Lane") {
        outer.issue ??= invalid("RateLimiter.keyed", "policy", "a policy without keys of its own", "keyed")
        return lane
      }
      return { _tag: "Keyed", keyOf: policy.keyOf, lane, maxKeys }
    }
    case "All": {
      const parts = policy.policies.map((part) => toPlan(part, outer))
      const lanes = parts.filter((part): part is LanePlan => part._tag === "Lane")
      const rest = parts.filter((part) => part._tag !== "Lane")
      // The plain parts share one lane, so their budgets are taken atomically.
      const learnings = lanes.flatMap((lane) => (lane.learning === undefined ? [] : [lane.learning]))
      const merged: LanePlan = {
        _tag: "Lane",
        budgets: lanes.flatMap((lane) => lane.budgets),
        learning: learnings.length === 0 ? undefined : {
          replace: false,
          probe: Math.min(...learnings.map((l) => l.probe)),
          window: Math.max(...learnings.map((l) => l.window))
        },
        limits: lanes.flatMap((lane) => lane.limits)
      }
      if (rest.length === 0) return merged
      return { _tag: "All", parts: lanes.length === 0 ? rest : [...rest, merged] }
    }
  }
}

export const noSubject: RateLimiter.Subject = {}
export const defaultRequest: Request = {
  cost: 1,
  deadline: undefined,
  timeout: undefined,
  requestedAt: undefined,
  priority: 0
}

// The per-request path of the same checks.
export const toRequest = (options: RateLimiter.PermitOptions): Request | TollgateError.InvalidArgument => {
  const check = new Checker("RateLimiter.withPermit")
  const limit = { positive: false, infinite: true, max: Number.POSITIVE_INFINITY }
  const toBound = (name: string, input: Duration.DurationInput | undefined) => {
    if (input === undefined) return undefined
    const millis = check.duration(name, input, limit)
    return millis === Number.POSITIVE_INFINITY ? undefined : millis
  }
  const request = {
    cost: options.cost === undefined ? 1 : check.count("cost", options.cost),
    deadline: toBound("deadline", options.deadline),
    timeout: toBound("timeout", options.timeout),
    requestedAt: options.requestedAt === undefined
      ? undefined
      : check.number("requestedAt", options.requestedAt, -MAX_PERIOD_MILLIS * 1000, MAX_PERIOD_MILLIS * 1000),
    priority: options.priority === undefined
      ? 0
      : check.number("priority", options.priority, -MAX_PRIORITY, MAX_PRIORITY)
  }
  return check.issue ?? request
}

export const toObservation = (
  info: RateLimitHeaders.RateLimitInfo,
  cost: number,
  throttled = false
): RateLimiterStore.Observation => ({
  limit: Option.getOrUndefined(info.limit),
  remaining: Option.getOrUndefined(info.remaining),
  resetAt: Option.getOrUndefined(Option.map(info.resetAt, DateTime.toEpochMillis)),
  window: Option.getOrUndefined(Option.map(info.window, Duration.toMillis)),
  cost,
  throttled,
  retryAfter: throttled ? Option.getOrUndefined(Option.map(info.retryAt, DateTime.toEpochMillis)) : undefined
})

/** The limiter's service over a compiled policy. */
export const serve = (root: Compile.Node, provider: string): RateLimiter.Service => {
  // Without options every call guards the same way: one function, not one per call.
  const plain = <A, E, R>(effect: Effect.Effect<A, E, R>) => root.withPermit(effect, noSubject, defaultRequest)
  const withPermit = (permitOptions?: RateLimiter.PermitOptions) => {
    if (permitOptions === undefined) return plain
    const request = toRequest(permitOptions)
    if (request instanceof TollgateError.InvalidArgument) {
      return <A, E, R>(_: Effect.Effect<A, E, R>) => Effect.fail(request)
    }
    return <A, E, R>(effect: Effect.Effect<A, E, R>) => root.withPermit(effect, permitOptions, request)
  }

  const service: RateLimiter.Service = {
    provider,
    withPermit: withPermit as RateLimiter.Service["withPermit"],
    pauseUntil: (instant, subject) =>
      Effect.suspend(() => root.pauseUntil(DateTime.toEpochMillis(instant), subject ?? noSubject)),
    observe: (info, report) =>
      Effect.suspend(() => {
        const cost = report?.cost
        const until = report?.throttledUntil
        const throttled = report?.throttled === true || until !== undefined
        const observation = toObservation(info, typeof cost === "number" && cost >= 1 ? cost : 1, throttled)
        const observed = root.observe(observation, report ?? noSubject)
        if (until === undefined) return observed
        // A 429: the gate closes for the quota the server named, as `pauseUntil` would close it.
        const paused = root.pauseUntil(DateTime.toEpochMillis(until), { ...report, limit: observation.limit })
        return observed === Effect.void ? paused : Effect.zipRight(observed, paused)
      }),
    awaitGate: (subject) => Effect.suspend(() => root.awaitGate(subject ?? noSubject)),
    stats: Effect.sync(() => {
      const counters: Compile.Counters = {
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
      root.collect(counters)
      return counters
    })
  }
  Facets.registerLimiter(service, root)
  return service
}
