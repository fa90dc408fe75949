/** The state of one key of a sliding log after a decision. */
export interface SlidingDecision {
  readonly admitted: boolean
  /** Slots still free in the current window after this decision. */
  readonly remaining: number
  /** Instant (ms) at which the oldest admitted request leaves the window, freeing a slot. */
  readonly resetAt: number
}

/**
 * A strict sliding log: a request arriving at `t` is admitted when fewer than `limit` requests were
 * admitted in `(t - window, t]`, so no half-open interval of length `window` ever holds more than
 * `limit` admitted arrivals. Refused requests are not logged.
 */
export class SlidingLog {
  private readonly logs = new Map<string, Array<number>>()

  constructor(readonly limit: number, readonly windowMillis: number) {}

  private prune(key: string, now: number): Array<number> {
    const log = this.logs.get(key)
    if (log === undefined) return []
    while (log.length > 0 && log[0]! + this.windowMillis <= now) log.shift()
    if (log.length === 0) this.logs.delete(key)
    return log
  }

  /** Decides on a request arriving now, logging it when admitted. */
  take(key: string, now: number): SlidingDecision {
    const log = this.prune(key, now)
    if (log.length >= this.limit) {
      return { admitted: false, remaining: 0, resetAt: log[0]! + this.windowMillis }
    }
    log.push(now)
    this.logs.set(key, log)
    return { admitted: true, remaining: this.limit - log.length, resetAt: log[0]! + this.windowMillis }
  }

  /** Reports the state of a key without logging anything. */
  peek(key: string, now: number): SlidingDecision {
    const log = this.prune(key, now)
    return {
      admitted: log.length < this.limit,
      remaining: this.limit - log.length,
      resetAt: log.length === 0 ? now : log[0]! + this.windowMillis
    }
  }

  clear(): void {
    this.logs.clear()
  }
}

/** The state of one key of a token bucket after a decision. */
export interface BucketDecision {
  readonly admitted: boolean
  /** Whole tokens left after this decision. */
  readonly remaining: number
  /** Milliseconds until the next whole token is available (0 when one is available now). */
  readonly retryAfterMillis: number
}

/**
 * A token bucket per key, `capacity` tokens refilled continuously at one token per `intervalMillis`,
 * starting full, kept as a theoretical arrival time (GCRA) so that no rounding accumulates: a request at
 * `now` is admitted when `tat - now <= (capacity - 1) * interval`, and then `tat = max(tat, now) + interval`.
 * A refused request takes nothing.
 */
export class TokenBucket {
  private readonly tats = new Map<string, number>()

  constructor(readonly capacity: number, readonly intervalMillis: number) {}

  take(key: string, now: number): BucketDecision {
    const tat = Math.max(this.tats.get(key) ?? now, now)
    const allowance = (this.capacity - 1) * this.intervalMillis
    if (tat - now > allowance) {
      return { admitted: false, remaining: 0, retryAfterMillis: Math.ceil(tat - now - allowance) }
    }
    const next = tat + this.intervalMillis
    this.tats.set(key, next)
    const remaining = Math.floor((this.capacity * this.intervalMillis - (next - now)) / this.intervalMillis + 1e-9)
    return { admitted: true, remaining: Math.max(0, remaining), retryAfterMillis: 0 }
  }

  clear(): void {
    this.tats.clear()
  }
}
