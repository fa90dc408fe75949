/**
 * The arithmetic of each rate-limit policy, free of effects so the limiter can call it synchronously on
 * its fast path. Times are epoch milliseconds read from the Effect `Clock` (so `TestClock` drives them).
 */

/** What one response told us, in milliseconds. */
export interface Observation {
  readonly limit?: number | undefined
  readonly remaining?: number | undefined
  readonly resetAt?: number | undefined
  /** The window of the announced limit, when a policy header says it. */
  readonly window?: number | undefined
  /** The permits of the request whose response this is (it is still counted in flight). Default: 1. */
  readonly cost?: number | undefined
  /** The response was a 429: the server refused the request. */
  readonly throttled?: boolean | undefined
  /** The instant a 429's `Retry-After` said retries may start. */
  readonly retryAfter?: number | undefined
}

/**
 * Requests in flight other than the one reporting: the server had not counted them yet when it answered,
 * so its `Remaining` leaves room for them that we must not spend twice.
 */
export const uncounted = (active: number, observation: Observation): number =>
  Math.max(0, active - (observation.cost ?? 1))

export interface Budget {
  /** The quota this budget enforces, used to route a server's `Limit` header to the right budget. */
  readonly limit: number
  /** The largest cost that can ever be admitted at once. */
  readonly capacity: number
  /** How long the server's "no requests left" lasts when it does not say. */
  readonly period: number
  /**
   * Whether a permit comes back when its request ends (windows), rather than never (a bucket spends
   * it, `unlimited` never takes it). Without it, a free permit needs no release at all.
   */
  readonly settles: boolean
  /** Takes `cost` permits if they are free now. */
  tryTake(now: number, cost: number): boolean
  /**
   * The instant `cost` permits become free if nothing else changes, or `undefined` when that depends on
   * requests still in flight (the limiter is then woken by `settle`).
   */
  availableAt(now: number, cost: number): number | undefined
  /** A lower bound on that instant, always known: what a deadline is checked against. */
  earliest(now: number, cost: number): number
  /** The request that took the permits got its response (or failed) at `now`. */
  settle(now: number, cost: number, takenAt: number): void
  /** The permits were taken but the request was never sent. */
  refund(now: number, cost: number, takenAt: number): void
  /** The server's view: tighten ours when it has fewer requests left than we think. */
  observe(now: number, observation: Observation): void
  /** Nothing in use, nothing pending: the budget can be forgotten and rebuilt identically. */
  idle(now: number): boolean
  /** Permits currently unavailable. */
  inUse(now: number): number
}

// Floating-point refill must not leave a waiter one rounding error short of its permit.
const EPSILON = 1e-9

/**
 * A permit returns one `window` after the response of the request that took it. Any interval of
 * length `window` at the server then sees at most `limit` arrivals, because an arrival happens between
 * taking the permit and the response, whatever the latency.
 */
export class SlidingWindow implements Budget {
  readonly settles = true
  capacity: number
  period: number
  // Settled permits waiting to return, ordered by return time.
  private times: Array<number> = []
  private costs: Array<number> = []
  private head = 0
  private pending = 0
  // Requests the server counted that we did not send (another process, an earlier run).
  private externalCost = 0
  private externalUntil = 0

  /**
   * `active` starts at the permits already in flight when a window is learned mid-traffic: they settle
   * into it like its own.
   */
  constructor(public limit: number, public window: number, protected active = 0) {
    this.capacity = limit
    this.period = window
  }

  /** A learned limit or window changed. */
  reshape(limit: number, window: number): void {
    this.limit = limit
    this.capacity = limit
    this.window = window
    this.period = window
  }

  private purge(now: number): void {
    const times = this.times
    while (this.head < times.length && times[this.head]! <= now) {
      this.pending -= this.costs[this.head]!
      this.head++
    }
    if (this.head > 1024 && this.head * 2 > times.length) {
      this.times = times.slice(this.head)
      this.costs = this.costs.slice(this.head)
      this.head = 0
    }
    if (this.externalCost > 0 && this.externalUntil <= now) this.externalCost = 0
  }

  private used(now: number): number {
    this.purge(now)
    return this.active + this.pending + this.externalCost
  }

  inUse(now: number): number {
    return this.used(now)
  }

  tryTake(now: number, cost: number): boolean {
    if (this.used(now) + cost > this.limit) return false
    this.active += cost
    return true
  }

  availableAt(now: number, cost: number): number | undefined {
    const need = this.used(now) + cost - this.limit
    if (need <= 0) return now
    let freed = 0
    let i = this.head
    let externalPending = this.externalCost > 0
    while (true) {
      const release = i < this.times.length ? this.times[i]! : Infinity
      const external = externalPending ? this.externalUntil : Infinity
      if (release === Infinity && external === Infinity) return undefined
      if (external <= release) {
        freed += this.externalCost
        externalPending = false
        if (freed >= need) return external
      } else {
        freed += this.costs[i]!
        i++
        if (freed >= need) return release
      }
    }
  }

  earliest(now: number, cost: number): number {
    const at = this.availableAt(now, cost)
    if (at !== undefined) return at
    // What is not already scheduled to return must come from requests in flight: each such permit
    // returns a full window after a response that has not happened yet.
    const unscheduled = this.used(now) + cost - this.limit - this.pending - this.externalCost
    return now + Math.max(1, Math.ceil(unscheduled / this.limit)) * this.window
  }

  settle(now: number, cost: number): void {
    this.active -= cost
    const at = now + this.window
    const times = this.times
    if (times.length === this.head || times[times.length - 1]! <= at) {
      times.push(at)
      this.costs.push(cost)
    } else {
      // The clock went backwards: keep the queue ordered.
      let i = times.length
      while (i > this.head && times[i - 1]! > at) i--
      times.splice(i, 0, at)
      this.costs.splice(i, 0, cost)
    }
    this.pending += cost
  }

  refund(_now: number, cost: number): void {
    this.active -= cost
  }

  /**
   * The server's `Remaining` excludes our requests it has not seen yet; what it leaves beyond them is
   * what we may still send before its reset. Less than we count means others spend this budget too (or
   * the server counts differently): the difference is held as external use until the reset. More means an
   * earlier such estimate was too cautious, and it is given back.
   */
  observe(now: number, observation: Observation): void {
    if (observation.remaining === undefined) return
    const ours = this.limit - this.used(now)
    const theirs = observation.remaining - uncounted(this.active, observation)
    if (theirs < ours) {
      this.externalCost += ours - theirs
      const until = observation.resetAt !== undefined && observation.resetAt > now
        ? observation.resetAt
        : now + this.window
      this.externalUntil = Math.max(this.externalUntil, until)
    } else if (theirs > ours && this.externalCost > 0) {
      this.externalCost = Math.max(0, this.externalCost - (theirs - ours))
    }
  }

  idle(now: number): boolean {
    return this.used(now) === 0
  }
}

/**
 * Windows aligned to the clock, `[k·window + offset, (k+1)·window + offset)`, for servers that reset
 * at fixed times. A request in flight when a window turns may arrive in the new one, so it is counted
 * there too. A server's reset instant re-aligns the windows to the server's.
 */
export class FixedWindow implements Budget {
  readonly settles = true
  readonly capacity: number
  readonly period: number
  private index = Number.NEGATIVE_INFINITY
  private count = 0
  private active = 0

  constructor(readonly limit: number, readonly window: number, private offset: number) {
    this.capacity = limit
    this.period = window
  }

  private indexAt(now: number): number {
    return Math.floor((now - this.offset) / this.window)
  }

  private roll(now: number): void {
    const index = this.indexAt(now)
    // A clock that steps back stays in the later window: counting there is the cautious choice.
    if (index > this.index) {
      this.index = index
      this.count = this.active
    }
  }

  private windowEnd(): number {
    return (this.index + 1) * this.window + this.offset
  }

  inUse(now: number): number {
    this.roll(now)
    return this.count
  }

  tryTake(now: number, cost: number): boolean {
    this.roll(now)
    if (this.count + cost > this.limit) return false
    this.count += cost
    this.active += cost
    return true
  }

  availableAt(now: number, cost: number): number | undefined {
    this.roll(now)
    if (this.count + cost <= this.limit) return now
    return this.active + cost <= this.limit ? this.windowEnd() : undefined
  }

  earliest(now: number, cost: number): number {
    const at = this.availableAt(now, cost)
    return at ?? this.windowEnd()
  }

  settle(now: number, cost: number): void {
    // The window may have turned while this request was in flight: it counts in the new one too.
    this.roll(now)
    this.active -= cost
  }

  refund(now: number, cost: number, takenAt: number): void {
    // A permit never used arrived nowhere, so it leaves before a turned window counts what is active.
    this.active -= cost
    this.roll(now)
    if (this.indexAt(takenAt) === this.index) this.count -= cost
  }

  observe(now: number, observation: Observation): void {
    this.roll(now)
    const resetAt = observation.resetAt
    if (resetAt !== undefined && resetAt > now && resetAt <= now + this.window && resetAt !== this.windowEnd()) {
      this.offset = ((resetAt % this.window) + this.window) % this.window
      this.index = this.indexAt(now)
    }
    if (observation.remaining !== undefined) {
      const counted = this.limit - observation.remaining + uncounted(this.active, observation)
      if (counted > this.count) this.count = Math.min(counted, this.limit)
    }
  }

  idle(now: number): boolean {
    this.roll(now)
    return this.active === 0 && this.count === 0
  }
}

/**
 * Refills continuously at `perMillis` up to `burst`, which admits at most `burst + rate × t` requests
 * in any interval of length `t`: the refill is the schedule, computed rather than timed.
 */
export class TokenBucket implements Budget {
  readonly settles = false
  readonly limit: number
  readonly capacity: number
  readonly period: number
  private tokens: number
  private last = Number.NEGATIVE_INFINITY

  constructor(private readonly perMillis: number, readonly burst: number) {
    this.limit = burst
    this.capacity = burst
    this.period = Math.ceil(1 / perMillis)
    this.tokens = burst
  }

  private refill(now: number): void {
    if (this.last === Number.NEGATIVE_INFINITY) {
      this.last = now
      return
    }
    // A clock that stepped back refills nothing until it passes `last` again: restarting from the earlier
    // instant would refill the same stretch twice and over-admit.
    if (now <= this.last) return
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.perMillis)
    this.last = now
  }

  inUse(now: number): number {
    this.refill(now)
    return this.burst - this.tokens
  }

  tryTake(now: number, cost: number): boolean {
    this.refill(now)
    if (this.tokens + EPSILON < cost) return false
    this.tokens = Math.max(0, this.tokens - cost)
    return true
  }

  availableAt(now: number, cost: number): number {
    this.refill(now)
    if (this.tokens + EPSILON >= cost) return now
    return now + Math.ceil((cost - this.tokens) / this.perMillis)
  }

  earliest(now: number, cost: number): number {
    return this.availableAt(now, cost)
  }

  settle(): void {}

  refund(now: number, cost: number): void {
    this.refill(now)
    this.tokens = Math.min(this.burst, this.tokens + cost)
  }

  observe(now: number, observation: Observation): void {
    this.refill(now)
    if (observation.remaining !== undefined && observation.remaining < Math.floor(this.tokens)) {
      this.tokens = observation.remaining
    }
  }

  idle(now: number): boolean {
    this.refill(now)
    return this.tokens + EPSILON >= this.burst
  }
}

/** Admits everything. */
export class Unlimited implements Budget {
  readonly settles = false
  readonly limit = Number.POSITIVE_INFINITY
  readonly capacity = Number.POSITIVE_INFINITY
  readonly period = 1000
  tryTake(): boolean {
    return true
  }
  availableAt(now: number): number {
    return now
  }
  earliest(now: number): number {
    return now
  }
  settle(): void {}
  refund(): void {}
  observe(): void {}
  idle(): boolean {
    return true
  }
  inUse(): number {
    return 0
  }
}

/**
 * Several budgets that must all admit a request ("60 per minute and 1000 per hour"). Permits are taken
 * from all of them at once or from none, so no budget is held while another is awaited.
 */
export class All implements Budget {
  readonly limit: number
  readonly capacity: number
  readonly period: number
  readonly settles: boolean

  constructor(readonly budgets: ReadonlyArray<Budget>) {
    this.settles = budgets.some((b) => b.settles)
    this.limit = Math.min(...budgets.map((b) => b.limit))
    this.capacity = Math.min(...budgets.map((b) => b.capacity))
    this.period = Math.max(...budgets.map((b) => b.period))
  }

  tryTake(now: number, cost: number): boolean {
    for (const budget of this.budgets) {
      if (budget.availableAt(now, cost) !== now) return false
    }
    for (const budget of this.budgets) budget.tryTake(now, cost)
    return true
  }

  availableAt(now: number, cost: number): number | undefined {
    let at = now
    for (const budget of this.budgets) {
      const next = budget.availableAt(now, cost)
      if (next === undefined) return undefined
      at = Math.max(at, next)
    }
    return at
  }

  earliest(now: number, cost: number): number {
    return Math.max(now, ...this.budgets.map((b) => b.earliest(now, cost)))
  }

  settle(now: number, cost: number, takenAt: number): void {
    for (const budget of this.budgets) budget.settle(now, cost, takenAt)
  }

  refund(now: number, cost: number, takenAt: number): void {
    for (const budget of this.budgets) budget.refund(now, cost, takenAt)
  }

  observe(now: number, observation: Observation): void {
    // The server names the quota it counted against; only the matching budget learns from it, unless
    // none matches, when all do (the cautious reading).
    const matching = observation.limit === undefined
      ? this.budgets
      : this.budgets.filter((b) => b.limit === observation.limit)
    for (const budget of matching.length > 0 ? matching : this.budgets) budget.observe(now, observation)
  }

  idle(now: number): boolean {
    return this.budgets.every((b) => b.idle(now))
  }

  inUse(now: number): number {
    return Math.max(...this.budgets.map((b) => b.inUse(now)))
  }
}
