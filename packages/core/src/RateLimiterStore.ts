/**
 * Where a limiter keeps its budgets: `RateLimiter` compiles a policy into lanes and keeps their
 * queues; a store only takes, settles and refunds permits, learns from what the server said and holds
 * the gate, synchronously (`Local`, memory) or with effects (`Shared`, Redis).
 *
 * The design: `docs/rate-limiting.md` in the repository.
 *
 * @since 0.2.0
 */
import type { Effect } from "effect"
import * as Budgets from "./internal/budget.js"
import * as Learned from "./internal/learned.js"

/**
 * One configured budget of a lane, in milliseconds, already validated by `RateLimiter.make`.
 *
 * @since 0.2.0
 * @category models
 */
export type Budget =
  | { readonly _tag: "SlidingWindow"; readonly limit: number; readonly window: number }
  | { readonly _tag: "TokenBucket"; readonly perMillis: number; readonly burst: number }
  | { readonly _tag: "FixedWindow"; readonly limit: number; readonly window: number; readonly offset: number }

/**
 * How a lane learns from rate-limit headers; `undefined` for a lane that never does (`unlimited`).
 *
 * @since 0.2.0
 * @category models
 */
export interface Learning {
  /** The first announced limit retires the configured budgets, which were a starting guess. */
  readonly replace: boolean
  /** Requests in flight at once before anything is known; only for a lane without configured budgets. */
  readonly probe: number
  /** The window assumed for an announced limit when no header says how long it is (milliseconds). */
  readonly window: number
}

/**
 * What a store needs to open one lane.
 *
 * @since 0.2.0
 * @category models
 */
export interface LaneSpec {
  /** The limiter's name (its provider): a store shared by several limiters keeps their lanes apart by it. */
  readonly name: string
  /**
   * Where the lane sits in its policy, stable across processes: `""` for a plain policy, `".0"`, `".1"`
   * for the parts of an `all`, a trailing `!` for the lane shared by keys past a `keyed` policy's
   * `maxKeys`. A shared store names the lane by its limiter's name, this path and the key.
   */
  readonly path: string
  /** The key of a `keyed` policy's lane. */
  readonly key: string | undefined
  readonly budgets: ReadonlyArray<Budget>
  readonly learning: Learning | undefined
}

/**
 * What one response said about the limit, in epoch milliseconds. A response that said nothing has none
 * of `limit`, `remaining` and `resetAt`, and still counts: a learning lane gives up probing a server
 * that never says anything.
 *
 * @since 0.2.0
 * @category models
 */
export interface Observation {
  readonly limit?: number | undefined
  readonly remaining?: number | undefined
  readonly resetAt?: number | undefined
  readonly window?: number | undefined
  /** The permits of the request that got this response; it is still in flight when observed. */
  readonly cost: number
  /**
   * The response was a 429. A bare one (no limit, remaining, reset or `retryAfter`) teaches a limit: what
   * the server admitted in the trailing window (`learning.window`).
   */
  readonly throttled?: boolean | undefined
  /** The instant a 429's `Retry-After` said retries may start: the server paces us itself. */
  readonly retryAfter?: number | undefined
}

/**
 * A lane answered synchronously. `take` returns a receipt (a small number handed back to `settle` or
 * `refund`), or `-1` when the permits are not free now. Instants are the limiter's clock in milliseconds.
 *
 * @since 0.2.0
 * @category models
 */
export interface LocalLane {
  readonly _tag: "Local"
  /** Whether a permit taken now must be settled or refunded when its request ends. */
  readonly settles: boolean
  /** The largest cost that can ever be admitted at once. */
  readonly capacity: number
  /** How long the server's "no requests left" lasts when it does not say. */
  readonly period: number
  /** The configured quota, matched against a server's `Limit` to route what it says. */
  readonly limit: number
  take(now: number, cost: number): number
  settle(now: number, cost: number, takenAt: number, receipt: number): void
  refund(now: number, cost: number, takenAt: number, receipt: number): void
  /** When `cost` permits become free if nothing changes; `undefined` while that waits on requests in flight. */
  availableAt(now: number, cost: number): number | undefined
  /** A lower bound on that instant, always known: what a deadline is checked against. */
  earliest(now: number, cost: number): number
  observe(now: number, observation: Observation): void
  /** Nothing in flight and nothing pending: the lane can be dropped and opened again identically. */
  idle(now: number): boolean
  inUse(now: number): number
}

/**
 * The store could not answer; the limiter fails closed (`RateLimited`, reason "unavailable").
 *
 * @since 0.2.0
 * @category models
 */
export interface Unavailable {
  readonly reason: string
}

/**
 * A permit a shared store granted, as the store wants it back.
 *
 * @since 0.2.0
 * @category models
 */
export interface SharedPermit {
  readonly cost: number
}

/**
 * What a shared store answers to `take`. Instants are on the limiter's clock (the store converts from its
 * own); `gate` is the lane's gate as the store knows it (0 when open).
 *
 * @since 0.2.0
 * @category models
 */
export type TakeReply =
  | { readonly granted: true; readonly permit: SharedPermit; readonly gate: number }
  | {
    readonly granted: false
    /** The earliest instant the permits may be free: exact for refills and the gate, else a lower bound. */
    readonly retryAt: number
    readonly gate: number
  }

/**
 * A lane answered with effects.
 *
 * @since 0.2.0
 * @category models
 */
export interface SharedLane {
  readonly _tag: "Shared"
  readonly settles: boolean
  readonly capacity: number
  readonly period: number
  readonly limit: number
  /** The longest this process sleeps before asking again when nothing else wakes it (milliseconds). */
  readonly maxPoll: number
  /**
   * Takes `cost` permits for the head of this process's queue, or (with `take: false`) only predicts
   * when they would be free behind `ahead` permits queued here. `order` is the request's place (the
   * instant it first asked, moved earlier by its priority): across processes, the lowest order goes first.
   * `next` is the order of the request queued behind it here, if any.
   */
  take(request: {
    readonly cost: number
    readonly take: boolean
    readonly ahead: number
    readonly order: number
    readonly next: number | undefined
  }): Effect.Effect<TakeReply, Unavailable>
  settle(permit: SharedPermit): Effect.Effect<void>
  refund(permit: SharedPermit): Effect.Effect<void>
  /** Tells the fleet what a response said; answers the gate. */
  observe(observation: Observation): Effect.Effect<number, Unavailable>
  /** Closes the gate until `until` for the fleet; it only ever moves later. Answers the gate. */
  pause(until: number): Effect.Effect<number, Unavailable>
  readonly gate: Effect.Effect<number, Unavailable>
  /** This process has nobody waiting on the lane any more: its place in the fleet's queue goes. */
  withdraw(): Effect.Effect<void>
  /** Nothing held by this process. */
  idle(): boolean
  /** The lane is no longer used by this limiter. */
  close(): void
}

/**
 * @since 0.2.0
 * @category models
 */
export type Lane = LocalLane | SharedLane

/**
 * @since 0.2.0
 * @category models
 */
export interface Store {
  /** Names the store in logs. */
  readonly name: string
  readonly open: (spec: LaneSpec) => Lane
}

const toBudget = (budget: Budget): Budgets.Budget => {
  switch (budget._tag) {
    case "SlidingWindow":
      return new Budgets.SlidingWindow(budget.limit, budget.window)
    case "TokenBucket":
      return new Budgets.TokenBucket(budget.perMillis, budget.burst)
    case "FixedWindow":
      return new Budgets.FixedWindow(budget.limit, budget.window, budget.offset)
  }
}

/**
 * This process's memory: every lane local and synchronous.
 *
 * @since 0.2.0
 * @category stores
 */
export const memory: Store = {
  name: "memory",
  open: (spec) => Learned.makeLocalLane(spec.budgets.map(toBudget), spec.learning)
}
