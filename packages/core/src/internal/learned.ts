/**
 * The in-memory lane of a limiter: the configured budgets plus what the server's rate-limit headers
 * taught. It is synchronous arithmetic, so the limiter can take a free permit without an effect.
 *
 * A limit the server announces becomes a quota of its own: a sliding window of that many requests over
 * the announced window (from `RateLimit-Policy`, else the longest reset delay seen, else an assumed
 * one), in force beside the configured budgets, so it can only tighten them. With `replace`, the first
 * announcement retires the configured budgets instead (the user's numbers were a starting guess). With
 * no configured budget at all, `probe` requests may be in flight until the first response says
 * something; a server that says nothing in `probe` responses is left to pace us with its 429s.
 *
 * Every permit taken while anything here needs to see it come back is counted in flight, so a quota
 * learned mid-traffic starts with the requests already on their way.
 *
 * A bare 429 (no limit, remaining, reset or `Retry-After`) still teaches a limit: the server refused after
 * admitting what it answered us in the trailing window W (the configured budgets' window, else the learning
 * window) and perhaps some of our requests still in flight, so at most that many requests fit in W. That
 * count becomes a quota of its own (a sliding window over W, started with those answers as its permits
 * still out), and a later bare 429 only lowers it. Each later refusal finds its own request counted in the
 * quota, so it lowers the quota by at least one: against a sliding-window server the quota settles on the
 * real limit, against a fixed window (where the trailing count lies between L and 2L) it comes down with
 * the next refusals. The quota is probed one request higher after `RELAX_WINDOWS` windows without a
 * refusal in which it held requests back, since the refusals may have come from another client sharing the
 * server's budget, or from a plan that has since grown; without demand it stays as it is, and it never
 * goes past the configured limit. A 429 that says when to retry paces us itself: counting over our W could
 * take a server with a shorter window for a far stricter one, so only the gate learns from it.
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

/**
 * Windows without a refusal, with the quota holding requests back, before a quota learned from refusals
 * admits one more request per window. A server whose limit did not change refuses that one probe: at
 * most one 429 per this many windows.
 */
export const RELAX_WINDOWS = 10

class Quota extends SlidingWindow {
  lastSeen = 0
  /**
   * Where the window came from: a policy header is exact, a reset delay a lower bound, else a guess;
   * `refused`: the limit itself was learned from 429s that named none.
   */
  source: "policy" | "reset" | "assumed" | "refused" = "assumed"
  /** A `refused` quota turned a request away since it last relaxed. */
  pressed = false
  /** When a `refused` quota may next relax. */
  relaxAt = 0

  /** Counts a permit taken before this quota existed and answered since (`cost` returns one window later). */
  charge(now: number, cost: number): void {
    this.active += cost
    this.settle(now, cost)
  }
}

/** The permits of the responses the server admitted, by the instant they were answered, over a window. */
class AdmittedLog {
  private times: Array<number> = []
  private costs: Array<number> = []
  private head = 0
  private total = 0

  constructor(readonly window: number) {}

  private purge(now: number): void {
    const times = this.times
    const from = now - this.window
    while (this.head < times.length && times[this.head]! <= from) {
      this.total -= this.costs[this.head]!
      this.head++
    }
    if (this.head > 1024 && this.head * 2 > times.length) {
      this.times = times.slice(this.head)
      this.costs = this.costs.slice(this.head)
      this.head = 0
    }
  }

  record(now: number, cost: number): void {
    this.purge(now)
    const last = this.times.length - 1
    if (last >= this.head && this.times[last] === now) this.costs[last]! += cost
    else {
      this.times.push(now)
      this.costs.push(cost)
    }
    this.total += cost
  }

  /** Permits admitted in `(now − window, now]`. */
  count(now: number): number {
    this.purge(now)
    return this.total
  }

  /** Each entry of `(now − window, now]`, oldest first. */
  forEach(now: number, f: (at: number, cost: number) => void): void {
    this.purge(now)
    for (let i = this.head; i < this.times.length; i++) f(this.times[i]!, this.costs[i]!)
  }
}

const clampWindow = (millis: number): number => Math.min(MAX_PERIOD_MILLIS, Math.max(1, Math.ceil(millis)))

export class LocalLane {
  readonly _tag = "Local" as const
  private active = 0
  private quotas: Array<Quota> = []
  private silent = 0
  private opened = false
  /** An announced limit retired the configured budgets (`replace`). */
  private replaced = false
  /** The quota learned from 429s that named no limit. */
  private refused: Quota | undefined = undefined
  /** What the server admitted lately: the limit a bare 429 teaches. */
  private readonly admitted: AdmittedLog | undefined

  constructor(readonly configured: Budget | undefined, readonly learning: Learning | undefined) {
    this.admitted = learning === undefined ? undefined : new AdmittedLog(clampWindow(learning.window))
  }

  private get useConfigured(): boolean {
    return this.configured !== undefined && !this.replaced
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
    for (const quota of this.quotas) {
      if (quota.inUse(now) + cost > quota.limit) {
        quota.pressed = true
        return REFUSED
      }
    }
    const viaConfigured = this.useConfigured
    if (viaConfigured && configured!.availableAt(now, cost) !== now) return REFUSED
    if (viaConfigured) configured!.tryTake(now, cost)
    for (const quota of this.quotas) quota.tryTake(now, cost)
    this.active += cost
    return viaConfigured ? CONFIGURED | COUNTED : COUNTED
  }

  settle(now: number, cost: number, takenAt: number, receipt: number): void {
    if ((receipt & CONFIGURED) !== 0) this.configured!.settle(now, cost, takenAt)
    if ((receipt & COUNTED) === 0) {
      // In flight, uncounted, when a refusal taught the quota: the server may have counted it.
      this.refused?.charge(now, cost)
      return
    }
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
    if (this.admitted !== undefined) {
      if (observation.throttled !== true) this.admitted.record(now, observation.cost ?? 1)
      else if (
        observation.limit === undefined && observation.remaining === undefined &&
        observation.resetAt === undefined && observation.retryAfter === undefined
      ) this.learnRefused(now, observation.cost ?? 1)
      const refused = this.refused
      if (refused !== undefined && now >= refused.relaxAt) this.relax(now, refused)
    }
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
    let quota = this.quotas.find((q) => q.limit === limit && q.source !== "refused")
    if (quota === undefined) {
      quota = new Quota(limit, clampWindow(observation.window ?? untilReset ?? this.learning!.window), this.active)
      quota.source = observation.window !== undefined ? "policy" : untilReset !== undefined ? "reset" : "assumed"
      this.quotas.push(quota)
      if (this.learning!.replace) this.replaced = true
      const announced = this.quotas.filter((q) => q.source !== "refused")
      if (announced.length > MAX_QUOTAS) {
        let oldest = announced[0]!
        for (const q of announced) if (q.lastSeen < oldest.lastSeen) oldest = q
        this.quotas.splice(this.quotas.indexOf(oldest), 1)
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

  /**
   * A bare 429: what the server admitted us in the trailing window, with what may have been admitted of
   * ours in flight, is at least its limit. Nothing admitted and nothing in flight teaches nothing (the
   * gate's pause still applies: the budget may have gone to another client).
   */
  private learnRefused(now: number, cost: number): void {
    const admitted = this.admitted!
    const count = admitted.count(now)
    // The others still in flight (as far as this lane counts them) may have been admitted before this one
    // was refused: a limit below them would idle what the server admits, and one above the truth is
    // brought down by the refusals they get (each finds itself counted, so each lowers it).
    const flying = Math.max(0, this.active - cost)
    if (count + flying === 0) return
    const limit = Math.min(MAX_COUNT, count + flying)
    const window = admitted.window
    let quota = this.refused
    if (quota === undefined) {
      // The permits of those answers are still out, as they would be had the quota existed all along;
      // requests in flight that it counts settle into it like its own.
      quota = new Quota(limit, window, this.active + count)
      admitted.forEach(now, (at, cost) => quota!.settle(at, cost))
      quota.source = "refused"
      this.refused = quota
      this.quotas.push(quota)
    } else if (limit < quota.limit) {
      quota.reshape(limit, window)
    }
    quota.lastSeen = now
    quota.pressed = false
    quota.relaxAt = now + RELAX_WINDOWS * window
  }

  /** Another stretch without a refusal: one more request per window, if the quota held any back. */
  private relax(now: number, quota: Quota): void {
    if (quota.pressed) {
      const ceiling = this.useConfigured ? this.configured!.limit : MAX_COUNT
      if (quota.limit < ceiling) quota.reshape(quota.limit + 1, quota.window)
    }
    quota.pressed = false
    quota.relaxAt = now + RELAX_WINDOWS * quota.window
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
  learned(): ReadonlyArray<{ readonly limit: number; readonly window: number; readonly refused: boolean }> {
    return this.quotas.map((quota) => ({
      limit: quota.limit,
      window: quota.window,
      refused: quota.source === "refused"
    }))
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
