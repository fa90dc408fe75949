/**
 * The in-memory lane of a limiter: the configured budgets plus what the server's rate-limit headers
 * taught. It is synchronous arithmetic, so the limiter can take a free permit without an effect.
 *
 * A limit the server announces becomes a quota of its own: a sliding window of that many requests over
 * the announced window (from `RateLimit-Policy`, else the longest reset delay seen, else an assumed
 * one), in force beside the configured budgets, so it can only tighten them. With `replace`, the first
 * announcement retires the configured budgets instead (the user's numbers were a starting guess). With
 * no configured budget at all, `probe` requests may be in flight until the first response says
 * something; a server that says nothing in `probe` responses is left to pace us with its 429s alone.
 *
 * Every permit taken while anything here needs to see it come back is counted in flight, so a quota
 * learned mid-traffic starts with the requests already on their way.
 */
import type { Budget, Observation } from "./budget.js"
import { All, SlidingWindow, Unlimited } from "./budget.js"
import { MAX_COUNT, MAX_PERIOD_MILLIS } from "./validate.js"

/** `take` refused the permit. */
export const REFUSED = -1
/** Receipt bit: the permit is counted in flight and must be settled or refunded. */
export const COUNTED = 1
/** Receipt bit: the configured budgets took the permit. */
export const CONFIGURED = 2

/** How a lane learns from the server's headers. */
export interface Learning {
  /** The first announced limit retires the configured budgets (they were a starting guess). */
  readonly replace: boolean
  /** Requests in flight at once while nothing is known (only without configured budgets). */
  readonly probe: number
  /** The window of an announced limit when no header says how long it is, in milliseconds. */
  readonly window: number
}

/** Announced limits remembered per lane: a burst quota and a longer one are common, more are not. */
const MAX_QUOTAS = 2

class Quota extends SlidingWindow {
  lastSeen = 0
  /** Where the window came from: a policy header is exact, a reset delay a lower bound, else a guess. */
  source: "policy" | "reset" | "assumed" = "assumed"
}

const clampWindow = (millis: number): number => Math.min(MAX_PERIOD_MILLIS, Math.max(1, Math.ceil(millis)))

export class LocalLane {
  readonly _tag = "Local" as const
  private active = 0
  private quotas: Array<Quota> = []
  private silent = 0
  private opened = false

  constructor(readonly configured: Budget | undefined, readonly learning: Learning | undefined) {}

  private get useConfigured(): boolean {
    return this.configured !== undefined && !(this.learning?.replace === true && this.quotas.length > 0)
  }

  private get probing(): boolean {
    return this.learning !== undefined && this.configured === undefined && this.quotas.length === 0 &&
      !this.opened
  }

  /** Whether a permit taken now must be settled or refunded when its request ends. */
  get settles(): boolean {
    return this.quotas.length > 0 || this.probing || (this.useConfigured && this.configured!.settles)
  }

  /** The largest cost that can be admitted at once. */
  get capacity(): number {
    let capacity = this.useConfigured ? this.configured!.capacity : Number.POSITIVE_INFINITY
    for (const quota of this.quotas) capacity = Math.min(capacity, quota.limit)
    return this.probing ? Math.min(capacity, this.learning!.probe) : capacity
  }

  /** How long the server's "no requests left" lasts when it does not say. */
  get period(): number {
    let period = this.useConfigured ? this.configured!.period : 0
    for (const quota of this.quotas) period = Math.max(period, quota.window)
    return period > 0 ? period : 1000
  }

  /** The configured quota, to route a server's `Limit` to the budget enforcing it. */
  get limit(): number {
    return this.configured?.limit ?? Number.POSITIVE_INFINITY
  }

  /** Takes `cost` permits if they are free now: a receipt for `settle`/`refund`, or `REFUSED`. */
  take(now: number, cost: number): number {
    const configured = this.configured
    if (this.quotas.length === 0 && !this.probing) {
      // Nothing learned: the configured budgets alone, at the cost of one branch.
      if (configured === undefined) return 0
      if (!configured.tryTake(now, cost)) return REFUSED
      if (this.learning === undefined || !configured.settles) return CONFIGURED
      this.active += cost
      return CONFIGURED | COUNTED
    }
    if (this.probing && this.active + cost > this.learning!.probe) return REFUSED
    for (const quota of this.quotas) if (quota.inUse(now) + cost > quota.limit) return REFUSED
    const viaConfigured = this.useConfigured
    if (viaConfigured && configured!.availableAt(now, cost) !== now) return REFUSED
    if (viaConfigured) configured!.tryTake(now, cost)
    for (const quota of this.quotas) quota.tryTake(now, cost)
    this.active += cost
    return viaConfigured ? CONFIGURED | COUNTED : COUNTED
  }

  settle(now: number, cost: number, takenAt: number, receipt: number): void {
    if ((receipt & CONFIGURED) !== 0) this.configured!.settle(now, cost, takenAt)
    if ((receipt & COUNTED) === 0) return
    this.active -= cost
    for (const quota of this.quotas) quota.settle(now, cost)
  }

  refund(now: number, cost: number, takenAt: number, receipt: number): void {
    if ((receipt & CONFIGURED) !== 0) this.configured!.refund(now, cost, takenAt)
    if ((receipt & COUNTED) === 0) return
    this.active -= cost
    for (const quota of this.quotas) quota.refund(now, cost)
  }

  /**
   * The instant `cost` permits become free if nothing else changes, or `undefined` when that waits on
   * requests in flight (the lane is woken by their settling).
   */
  availableAt(now: number, cost: number): number | undefined {
    if (this.probing && this.active + cost > this.learning!.probe) return undefined
    let at = now
    if (this.useConfigured) {
      const next = this.configured!.availableAt(now, cost)
      if (next === undefined) return undefined
      at = Math.max(at, next)
    }
    for (const quota of this.quotas) {
      const next = quota.availableAt(now, cost)
      if (next === undefined) return undefined
      at = Math.max(at, next)
    }
    return at
  }

  /** A lower bound on that instant, always known. */
  earliest(now: number, cost: number): number {
    let at = now
    if (this.useConfigured) at = Math.max(at, this.configured!.earliest(now, cost))
    for (const quota of this.quotas) at = Math.max(at, quota.earliest(now, cost))
    return at
  }

  /** What one response said. A response that said nothing counts towards giving up on probing. */
  observe(now: number, observation: Observation): void {
    if (
      observation.limit === undefined && observation.remaining === undefined && observation.resetAt === undefined
    ) {
      if (this.probing && ++this.silent >= this.learning!.probe) this.opened = true
      return
    }
    const limit = observation.limit
    if (this.learning !== undefined && limit !== undefined && limit >= 1) {
      this.learn(now, Math.min(MAX_COUNT, Math.floor(limit)), observation)
      if (this.useConfigured && this.configured!.limit === limit) this.configured!.observe(now, observation)
      return
    }
    if (this.useConfigured) this.configured!.observe(now, observation)
    // No limit named: every learned quota takes the cautious reading.
    for (const quota of this.quotas) quota.observe(now, observation)
  }

  private learn(now: number, limit: number, observation: Observation): void {
    const untilReset = observation.resetAt !== undefined && observation.resetAt > now
      ? observation.resetAt - now
      : undefined
    let quota = this.quotas.find((q) => q.limit === limit)
    if (quota === undefined) {
      quota = new Quota(limit, clampWindow(observation.window ?? untilReset ?? this.learning!.window), this.active)
      quota.source = observation.window !== undefined ? "policy" : untilReset !== undefined ? "reset" : "assumed"
      this.quotas.push(quota)
      if (this.quotas.length > MAX_QUOTAS) {
        let oldest = 0
        for (let i = 1; i < this.quotas.length; i++) {
          if (this.quotas[i]!.lastSeen < this.quotas[oldest]!.lastSeen) oldest = i
        }
        this.quotas.splice(oldest, 1)
      }
    } else if (observation.window !== undefined) {
      quota.reshape(limit, clampWindow(observation.window))
      quota.source = "policy"
    } else if (
      untilReset !== undefined && quota.source !== "policy" &&
      (quota.source === "assumed" || untilReset > quota.window)
    ) {
      // A reset delay is at most the window: the longest one seen is the best estimate.
      quota.reshape(limit, clampWindow(untilReset))
      quota.source = "reset"
    }
    quota.lastSeen = now
    quota.observe(now, observation)
  }

  /** Nothing in flight, nothing pending: the lane can be forgotten and rebuilt (what it learned goes too). */
  idle(now: number): boolean {
    if (this.active !== 0 || (this.configured !== undefined && !this.configured.idle(now))) return false
    for (const quota of this.quotas) if (!quota.idle(now)) return false
    return true
  }

  /** Permits currently unavailable, by the strictest budget. */
  inUse(now: number): number {
    let used = this.configured === undefined ? this.active : Math.max(this.active, this.configured.inUse(now))
    for (const quota of this.quotas) used = Math.max(used, quota.inUse(now))
    return used
  }

  /** What was learned, for stats and tests: the announced limits and their windows. */
  learned(): ReadonlyArray<{ readonly limit: number; readonly window: number }> {
    return this.quotas.map((quota) => ({ limit: quota.limit, window: quota.window }))
  }
}

/** The lane for a set of configured budgets (none: unlimited, or nothing until learned). */
export const makeLocalLane = (budgets: ReadonlyArray<Budget>, learning: Learning | undefined): LocalLane =>
  new LocalLane(
    budgets.length === 0 ? (learning === undefined ? new Unlimited() : undefined) : budgets.length === 1
      ? budgets[0]
      : new All(budgets),
    learning
  )
