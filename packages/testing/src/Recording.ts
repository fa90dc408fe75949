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
