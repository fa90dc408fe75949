/**
 * What an emulator saw, for assertions: every token request, every API arrival with the instant it
 * reached the server (milliseconds from the emulator's `Clock`, so virtual time under `TestClock`), and
 * counters. Read it at any time as an immutable snapshot.
 *
 * @since 0.1.0
 */

/**
 * The kind of a token endpoint request.
 *
 * @since 0.1.0
 * @category models
 */
export type TokenKind = "issue" | "refresh" | "revoke"

/**
 * How a token endpoint request ended: `"granted"` (a token issued, refreshed or revoked), `"refused"`
 * (an error answer from the emulator itself: bad request, bad credentials, rate limited…) or `"fault"`
 * (an injected fault or a scripted step answered instead).
 *
 * @since 0.1.0
 * @category models
 */
export type TokenOutcome = "granted" | "refused" | "fault"

/**
 * Which injected fault answered a request instead of the emulator.
 *
 * @since 0.1.0
 * @category models
 */
export type Fault = "error" | "timeout" | "drop" | "scripted"

/**
 * One request to a token endpoint.
 *
 * @since 0.1.0
 * @category models
 */
export interface TokenRequest {
  /** Milliseconds from the emulator's `Clock` when the request reached the server. */
  readonly at: number
  readonly kind: TokenKind
  /** `METHOD /path/template`. */
  readonly route: string
  /** HTTP status answered, 0 when none was (timeout, dropped connection). */
  readonly status: number
  readonly outcome: TokenOutcome
  /** Why it was refused (never a secret), or which fault answered. */
  readonly reason?: string | undefined
}

/**
 * One request to an API route.
 *
 * @since 0.1.0
 * @category models
 */
export interface Arrival {
  /** Milliseconds from the emulator's `Clock` when the request reached the server. */
  readonly at: number
  readonly method: string
  /** `METHOD /path/template`, e.g. `GET /api/forms/:formId`; unknown paths are `METHOD *`. */
  readonly route: string
  /** The request path, without the query string. */
  readonly path: string
  /** HTTP status answered, 0 when none was (timeout, dropped connection). */
  readonly status: number
  /**
   * Whether the server admitted it: it passed authentication and the rate limiter (so a limiter counted
   * it, where the route has one) and reached the route. False for 401s, 429s, unknown routes and faults.
   */
  readonly admitted: boolean
  /** The client, app or account the request was attributed to, when its token said. */
  readonly client?: string | undefined
  readonly fault?: Fault | undefined
}

/**
 * A counter split between the token endpoint and the API routes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Counts {
  readonly token: number
  readonly api: number
}

/**
 * The most arrivals found in any half-open interval `[t, t + window)`.
 *
 * @since 0.1.0
 * @category models
 */
export interface WindowCount {
  /** Counting only arrivals the rate limiter admitted. */
  readonly admitted: number
  /** Counting every arrival. */
  readonly all: number
}

/**
 * An immutable copy of an emulator's recording.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly provider: string
  readonly tokenRequests: ReadonlyArray<TokenRequest>
  readonly tokenCounts: {
    readonly issue: number
    readonly refresh: number
    readonly revoke: number
    readonly granted: number
    readonly refused: number
    readonly faults: number
  }
  readonly arrivals: ReadonlyArray<Arrival>
  /** 401 answers. */
  readonly unauthorized: Counts
  /** 429 answers. */
  readonly rateLimited: Counts
  /** Access tokens issued (by credentials or refresh). */
  readonly tokensIssued: number
  /** Access tokens revoked (by the revoke endpoint, `revokeAll`, or deleting an app). */
  readonly tokensRevoked: number
  /** `maxArrivalsInWindow` over this snapshot's arrivals. */
  readonly maxArrivalsInWindow: (windowMillis: number, filter?: (arrival: Arrival) => boolean) => WindowCount
}

/**
 * Receives API arrivals as an emulator records them (see `Emulator.observeArrivals`).
 *
 * @since 0.1.0
 * @category models
 */
export type Observer = (arrival: Arrival) => void

const maxInWindow = (times: ReadonlyArray<number>, windowMillis: number): number => {
  let best = 0
  let end = 0
  for (let start = 0; start < times.length; start++) {
    if (end < start) end = start
    while (end < times.length && times[end]! < times[start]! + windowMillis) end++
    best = Math.max(best, end - start)
  }
  return best
}

/**
 * The most arrivals in any interval `[t, t + windowMillis)`, counting admitted arrivals and, separately,
 * all arrivals (optionally only those matching `filter`, e.g. one route or one client). A strict sliding
 * window of limit `n` over `w` guarantees `admitted <= n` for `windowMillis = w`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const maxArrivalsInWindow = (
  arrivals: ReadonlyArray<Arrival>,
  windowMillis: number,
  filter?: (arrival: Arrival) => boolean
): WindowCount => {
  const selected = filter === undefined ? arrivals : arrivals.filter(filter)
  const all = selected.map((a) => a.at).sort((a, b) => a - b)
  const admitted = selected.filter((a) => a.admitted).map((a) => a.at).sort((a, b) => a - b)
  return { admitted: maxInWindow(admitted, windowMillis), all: maxInWindow(all, windowMillis) }
}

/**
 * `maxArrivalsInWindow` kept up to date as arrivals stream in, in memory bounded by the most arrivals
 * any window holds rather than by the length of the run: what a check over hours of simulated traffic
 * needs, where keeping every arrival would cost more than the traffic itself.
 *
 * @since 0.1.0
 * @category models
 */
export interface WindowTracker {
  /**
   * Counts an arrival. Arrivals must come in order of `at` (ties in any order), as an emulator records
   * them under a virtual clock; an earlier one throws a `RangeError`, since the windows it belongs to
   * may already be forgotten.
   */
  readonly add: (at: number, admitted: boolean) => void
  /** The most arrivals in any interval `[t, t + windowMillis)` so far. */
  readonly result: () => WindowCount
  /** Admitted arrivals counted so far. */
  readonly admitted: () => number
  /** Arrivals counted so far. */
  readonly all: () => number
}

/**
 * The times of the arrivals in the window ending at the latest one, as a queue over a growable ring.
 * Counting the arrivals in `(t - window, t]` at each arrival `t` finds the same maximum as counting
 * `[t, t + window)` from each arrival, as `maxArrivalsInWindow` does: both are the most arrivals
 * spanning less than `window`.
 */
class SlidingCount {
  private times = new Float64Array(16)
  private head = 0
  private size = 0
  private last = Number.NEGATIVE_INFINITY
  best = 0
  total = 0

  constructor(private readonly windowMillis: number) {}

  add(at: number): void {
    if (at < this.last) {
      throw new RangeError(`arrival at ${at} came after one at ${this.last}: arrivals must be in order`)
    }
    this.last = at
    this.total++
    const times = this.times
    while (this.size > 0 && times[this.head]! + this.windowMillis <= at) {
      this.head = (this.head + 1) & (times.length - 1)
      this.size--
    }
    if (this.size === times.length) this.grow()
    this.times[(this.head + this.size) & (this.times.length - 1)] = at
    this.size++
    if (this.size > this.best) this.best = this.size
  }

  private grow(): void {
    const old = this.times
    const times = new Float64Array(old.length * 2)
    for (let i = 0; i < this.size; i++) times[i] = old[(this.head + i) & (old.length - 1)]!
    this.times = times
    this.head = 0
  }
}

/**
 * A `WindowTracker` for windows of `windowMillis`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const windowTracker = (windowMillis: number): WindowTracker => {
  if (!(windowMillis > 0)) throw new RangeError(`windowMillis must be positive, got ${windowMillis}`)
  const admitted = new SlidingCount(windowMillis)
  const all = new SlidingCount(windowMillis)
  return {
    add: (at, isAdmitted) => {
      all.add(at)
      if (isAdmitted) admitted.add(at)
    },
    result: () => ({ admitted: admitted.best, all: all.best }),
    admitted: () => admitted.total,
    all: () => all.total
  }
}
