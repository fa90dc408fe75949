/**
 * Core's `RateLimiter`, shared by a fleet through Redis: every process that builds a limiter with the
 * same `name` spends one request budget, so a provider's "60 requests per minute per client" holds for
 * the whole fleet, and a 429 seen by one worker closes the gate for all of them until the reset.
 *
 * The policies are core's, with core's semantics, computed by atomic Lua scripts on the server's clock:
 *
 * - `slidingWindow`: a permit is taken before the request and returns one window after its *response*,
 *   so no interval of the window's length at the server sees more than `limit` arrivals. A permit in
 *   flight carries a lease that its process renews; if the process dies, the permit returns one window
 *   after its lease ends, never earlier than one window after the request could have arrived.
 * - `tokenBucket`: continuous refill computed from the server's `TIME` at each request.
 * - `fixedWindow`, `unlimited`, `keyed` (one shared lane per key, each under its own hash tag) and `all`.
 *
 * Waiting: a process queues its requests FIFO and asks Redis for the head's permit; when none is free,
 * the script answers the earliest instant one may be (exact for settled permits, refills and the gate; a
 * lower bound while it depends on requests in flight), and the process sleeps until then — in chunks no
 * longer than the timer limit, and never longer than `maxPoll` — or until one of its own permits
 * returns. Across processes the order is first come, first served at the server. A permit taken but
 * never used (the caller was interrupted) is given back.
 *
 * Redis unreachable: requests fail at once with `RateLimited` (reason "unavailable"), never sent
 * without a permit; permits in flight stay counted until their leases end. `pauseUntil` and `observe`
 * still close this process's own gate. Everything works again as soon as Redis answers.
 *
 * @since 0.1.0
 */
import type * as RateLimiter from "@tollgate/core/RateLimiter"
import * as CoreRateLimiter from "@tollgate/core/RateLimiter"
import type * as RateLimitHeaders from "@tollgate/core/RateLimitHeaders"
import * as TollgateError from "@tollgate/core/TollgateError"
import type { Scope } from "effect"
import { DateTime, Deferred, Duration, Effect, Exit, FiberId, Layer, Option } from "effect"
import type { ConfigError } from "effect"
import * as Scripts from "./internal/limiterScripts.js"
import * as RedisConnection from "./RedisConnection.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Names the provider in errors. Default: "api". */
  readonly provider?: string | undefined
  /**
   * Names the shared budget in Redis: every process whose limiter has this name spends the same budget.
   * Default: the provider.
   */
  readonly name?: string | undefined
  /**
   * How long a permit in flight stays counted after its process stops renewing it (it crashed). Renewed
   * every third of it. Default: 30 seconds.
   */
  readonly lease?: Duration.DurationInput | undefined
  /** The longest a waiting process sleeps before asking Redis again. Default: 1 second. */
  readonly maxPoll?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  lease: Duration.seconds(30),
  maxPoll: Duration.seconds(1)
} as const

type Failure = "deadline" | "timeout" | "cost" | "closed" | "unavailable"

class LaneFailure {
  constructor(readonly reason: Failure, readonly retryAt: number | undefined) {}
}

class KeyedFailure {
  constructor(readonly failure: LaneFailure, readonly key: string | undefined) {}
}

type BudgetSpec =
  | { readonly kind: "sw"; readonly limit: number; readonly window: number }
  | { readonly kind: "tb"; readonly perMillis: number; readonly burst: number }
  | { readonly kind: "fw"; readonly limit: number; readonly window: number; readonly offset: number }

interface Observation {
  readonly limit?: number | undefined
  readonly remaining?: number | undefined
  readonly resetAt?: number | undefined
}

interface Permit {
  readonly lane: Lane
  readonly id: string
  readonly cost: number
  readonly windows: string
  started: boolean
  done: boolean
}

interface Ticket {
  permit: Permit | undefined
}

const WAITING = 0
const GRANTED = 1
const CANCELLED = 2

interface Waiter {
  readonly cost: number
  readonly ticket: Ticket
  readonly deferred: Deferred.Deferred<Permit, LaneFailure>
  readonly enqueuedAt: number
  state: number
}

type MutableStats = { -readonly [K in keyof RateLimiter.Stats]: RateLimiter.Stats[K] }

const str = (value: unknown): string =>
  typeof value === "string" ? value : value instanceof Buffer ? value.toString("utf8") : String(value ?? "")

const parts = (reply: unknown): ReadonlyArray<string> => (Array.isArray(reply) ? reply.map(str) : [])

const budgetsOf = (policy: RateLimiter.Policy): ReadonlyArray<BudgetSpec> => {
  switch (policy._tag) {
    case "SlidingWindow":
      return [{ kind: "sw", limit: policy.limit, window: Duration.toMillis(policy.window) }]
    case "TokenBucket":
      return [{ kind: "tb", perMillis: policy.rate / Duration.toMillis(policy.interval), burst: policy.burst }]
    case "FixedWindow":
      return [{
        kind: "fw",
        limit: policy.limit,
        window: Duration.toMillis(policy.window),
        offset: Duration.toMillis(policy.offset)
      }]
    case "Unlimited":
      return []
    case "All":
      return policy.policies.flatMap(budgetsOf)
    case "Keyed":
      throw new Error("a keyed policy has no single budget")
  }
}

const budgetLimit = (budget: BudgetSpec): number => (budget.kind === "tb" ? budget.burst : budget.limit)

const budgetLimits = (policy: RateLimiter.Policy): ReadonlyArray<number> => {
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

const isSimple = (policy: RateLimiter.Policy): boolean =>
  policy._tag !== "Keyed" && (policy._tag !== "All" || policy.policies.every(isSimple))

interface LaneEnvironment {
  readonly connection: RedisConnection.Service
  readonly scope: Scope.Scope
  readonly now: () => number
  readonly lease: number
  readonly maxPoll: number
  readonly name: string
}

let permitCounter = 0
const epochTtl = 24 * 60 * 60 * 1000

/**
 * One shared budget (a limiter, or one key of a keyed limiter) and this process's queue in front of it.
 */
class Lane {
  readonly spec: string
  readonly keys: ReadonlyArray<string>
  readonly capacity: number
  readonly period: number
  readonly needsSettle: boolean
  readonly quarantine: number
  /** The lane's epoch in Redis when this process last asked; a change means Redis lost the state. */
  private epoch = ""
  gateUntil = 0
  closed = false
  readonly held = new Set<Permit>()
  readonly stats = {
    granted: 0,
    waited: 0,
    totalWaitMillis: 0,
    maxWaitMillis: 0,
    refunded: 0,
    rejected: 0,
    timedOut: 0
  }
  private queue: Array<Waiter> = []
  private head = 0
  private waiting = 0
  private queuedCost = 0
  private pumping = false
  private kick = Deferred.unsafeMake<void>(FiberId.none)
  private lastRetryAt: number | undefined = undefined

  constructor(
    readonly budgets: ReadonlyArray<BudgetSpec>,
    readonly tag: string,
    private readonly env: LaneEnvironment
  ) {
    this.spec = budgets.map((b) =>
      b.kind === "sw"
        ? `sw:${b.limit}:${b.window}`
        : b.kind === "tb"
        ? `tb:${b.perMillis}:${b.burst}`
        : `fw:${b.limit}:${b.window}:${b.offset}`
    ).join("|")
    const key = (name: string) => RedisConnection.key(env.connection, tag, name)
    this.keys = [
      key("gate"),
      key("epoch"),
      ...budgets.flatMap((b, i) =>
        b.kind === "sw"
          ? [key(`sw${i}:held`), key(`sw${i}:ret`), key(`sw${i}:ext`)]
          : b.kind === "tb"
          ? [key(`tb${i}`)]
          : [key(`fw${i}`), key(`fw${i}:held`)]
      )
    ]
    this.capacity = Math.min(Number.POSITIVE_INFINITY, ...budgets.map((b) => (b.kind === "tb" ? b.burst : b.limit)))
    // How long a server's "no requests left" lasts when it does not say: core's rule.
    this.period = budgets.length === 0
      ? 1000
      : Math.max(...budgets.map((b) => (b.kind === "tb" ? Math.ceil(1 / b.perMillis) : b.window)))
    this.needsSettle = budgets.some((b) => b.kind !== "tb")
    this.quarantine = Math.max(
      0,
      ...budgets.map((b) => (b.kind === "tb" ? Math.ceil(b.burst / b.perMillis) : b.window))
    )
  }

  get queueLength(): number {
    return this.waiting
  }

  idle(): boolean {
    return this.waiting === 0 && this.held.size === 0 && !this.pumping
  }

  private toLocal(serverInstant: number, serverNow: number, localNow: number): number {
    return localNow + (serverInstant - serverNow)
  }

  private noteGate(gate: number, serverNow: number, localNow: number): void {
    if (gate > serverNow) this.gateUntil = Math.max(this.gateUntil, this.toLocal(gate, serverNow, localNow))
  }

  /** Learns the gate from a `{now, gate}` script reply. */
  private readonly noteGateReply = (reply: unknown): Effect.Effect<void> =>
    Effect.sync(() => {
      const [serverNow, gate] = parts(reply)
      this.noteGate(Number(gate), Number(serverNow), this.env.now())
    })

  private makePermit(id: string, cost: number, windows: string): Permit {
    this.stats.granted++
    const permit: Permit = { lane: this, id, cost, windows, started: false, done: false }
    if (this.needsSettle) this.held.add(permit)
    return permit
  }

  /**
   * Takes a permit, waiting FIFO behind this process's other requests when none is free. The permit is
   * written to `ticket` the instant it is granted, so an interruption that lands later still finds it.
   */
  acquire(
    ticket: Ticket,
    cost: number,
    deadline: number | undefined,
    timeout: number | undefined,
    restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  ): Effect.Effect<Permit, LaneFailure> {
    return Effect.suspend(() => {
      if (this.closed) return Effect.fail(new LaneFailure("closed", undefined))
      if (cost > this.capacity) {
        this.stats.rejected++
        return Effect.fail(new LaneFailure("cost", undefined))
      }
      const now = this.env.now()
      if (deadline !== undefined && this.gateUntil - now > deadline) {
        this.stats.rejected++
        return Effect.fail(new LaneFailure("deadline", this.gateUntil))
      }
      const unavailable = (error: RedisConnection.RedisError) =>
        Effect.zipRight(
          Effect.logDebug("Tollgate's shared limiter cannot reach Redis").pipe(
            Effect.annotateLogs({ limiter: this.env.name, reason: error.reason })
          ),
          Effect.fail(new LaneFailure("unavailable", undefined))
        )
      if (this.waiting === 0 && now >= this.gateUntil) {
        const id = `${this.env.connection.instanceId}.${(permitCounter++).toString(36)}`
        return this.run(id, cost, 0, true).pipe(
          Effect.catchAll(unavailable),
          Effect.flatMap((reply) => {
            if (reply.granted) {
              const permit = this.makePermit(id, cost, reply.windows)
              ticket.permit = permit
              return Effect.succeed(permit)
            }
            if (deadline !== undefined && reply.retryAt - reply.at > deadline) {
              this.stats.rejected++
              return Effect.fail(new LaneFailure("deadline", reply.retryAt))
            }
            return this.enqueue(ticket, cost, deadline, timeout, restore)
          })
        )
      }
      if (deadline === undefined) return this.enqueue(ticket, cost, deadline, timeout, restore)
      // Predict the wait behind everything queued here before joining the queue.
      return this.run("", cost, this.queuedCost, false).pipe(
        Effect.catchAll(unavailable),
        Effect.flatMap((reply) => {
          const earliest = reply.granted ? reply.at : Math.max(reply.retryAt, this.gateUntil)
          if (earliest - reply.at > deadline) {
            this.stats.rejected++
            return Effect.fail(new LaneFailure("deadline", earliest))
          }
          return this.enqueue(ticket, cost, deadline, timeout, restore)
        })
      )
    })
  }

  private run(
    id: string,
    cost: number,
    ahead: number,
    take: boolean
  ): Effect.Effect<
    | { readonly granted: true; readonly windows: string; readonly at: number }
    | { readonly granted: false; readonly retryAt: number; readonly at: number },
    RedisConnection.RedisError
  > {
    return Effect.map(
      this.env.connection.run(Scripts.acquire, this.keys, [
        this.spec,
        id,
        cost,
        this.env.lease,
        ahead,
        take ? "1" : "0",
        this.epoch,
        `${this.env.connection.instanceId}.${(permitCounter++).toString(36)}`,
        epochTtl,
        this.quarantine
      ]),
      (reply) => {
        const [granted, serverNow, gate, detail, epoch] = parts(reply)
        if (epoch !== undefined && epoch !== "") this.epoch = epoch
        const localNow = this.env.now()
        const sNow = Number(serverNow)
        this.noteGate(Number(gate), sNow, localNow)
        if (granted === "1") return { granted: true as const, windows: detail ?? "", at: localNow }
        const retryAt = Math.ceil(this.toLocal(Number(detail), sNow, localNow))
        this.lastRetryAt = retryAt
        return { granted: false as const, retryAt, at: localNow }
      }
    )
  }

  private enqueue(
    ticket: Ticket,
    cost: number,
    deadline: number | undefined,
    timeout: number | undefined,
    restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  ): Effect.Effect<Permit, LaneFailure> {
    return Effect.suspend(() => {
      if (this.closed) return Effect.fail(new LaneFailure("closed", undefined))
      const waiter: Waiter = {
        cost,
        ticket,
        deferred: Deferred.unsafeMake<Permit, LaneFailure>(FiberId.none),
        enqueuedAt: this.env.now(),
        state: WAITING
      }
      this.queue.push(waiter)
      this.waiting++
      this.queuedCost += cost
      const bound = deadline === undefined ? timeout : timeout === undefined ? deadline : Math.min(deadline, timeout)
      const wait = bound === undefined
        ? Deferred.await(waiter.deferred)
        : Effect.timeoutFail(Deferred.await(waiter.deferred), {
          duration: Duration.millis(bound),
          onTimeout: () => {
            if (waiter.state === WAITING) this.stats.timedOut++
            return new LaneFailure(
              "timeout",
              this.lastRetryAt === undefined ? undefined : Math.max(this.lastRetryAt, this.gateUntil)
            )
          }
        })
      return Effect.zipRight(
        this.ensurePump(),
        restore(wait).pipe(
          Effect.onExit((
            exit
          ) => (Exit.isFailure(exit) && waiter.state === WAITING
            ? Effect.sync(() => this.cancel(waiter))
            : Effect.void)
          )
        )
      )
    })
  }

  private cancel(waiter: Waiter): void {
    waiter.state = CANCELLED
    this.waiting--
    this.queuedCost -= waiter.cost
    this.wake()
  }

  private wake(): void {
    const kick = this.kick
    this.kick = Deferred.unsafeMake<void>(FiberId.none)
    Deferred.unsafeDone(kick, Exit.void)
  }

  private firstWaiting(): Waiter | undefined {
    while (this.head < this.queue.length) {
      const waiter = this.queue[this.head]!
      if (waiter.state === WAITING) {
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.head)
          this.head = 0
        }
        return waiter
      }
      this.head++
    }
    this.queue = []
    this.head = 0
    return undefined
  }

  private ensurePump(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.pumping || this.closed) return Effect.void
      this.pumping = true
      return Effect.asVoid(Effect.forkIn(Effect.interruptible(this.pump()), this.env.scope))
    })
  }

  private sleepOrKick(until: number): Effect.Effect<void> {
    const kick = this.kick
    return Effect.raceFirst(CoreRateLimiter.sleepUntil(until), Deferred.await(kick))
  }

  // Asks Redis for the head's permit until the queue is empty: granted, it wakes the head; refused, it
  // sleeps until the earliest instant the script named (at most `maxPoll`), or until a permit of this
  // process returns. A Redis failure fails every waiter: the limiter fails closed.
  private pump(): Effect.Effect<void> {
    return Effect.suspend((): Effect.Effect<void> => {
      const head = this.closed ? undefined : this.firstWaiting()
      if (head === undefined) {
        this.pumping = false
        return Effect.void
      }
      const now = this.env.now()
      if (now < this.gateUntil) {
        return Effect.zipRight(this.sleepOrKick(Math.min(this.gateUntil, now + this.env.maxPoll)), this.pump())
      }
      const id = `${this.env.connection.instanceId}.${(permitCounter++).toString(36)}`
      return Effect.flatMap(Effect.either(this.run(id, head.cost, 0, true)), (result) => {
        if (result._tag === "Left") {
          this.failAll(new LaneFailure("unavailable", undefined))
          this.pumping = false
          return Effect.logDebug("Tollgate's shared limiter cannot reach Redis").pipe(
            Effect.annotateLogs({ limiter: this.env.name, reason: result.left.reason })
          )
        }
        const reply = result.right
        if (reply.granted) {
          const permit = this.makePermit(id, head.cost, reply.windows)
          if (head.state === WAITING) {
            this.grant(head, permit)
            return this.pump()
          }
          // The head left while we asked: give its permit back.
          return Effect.zipRight(this.refund(permit), this.pump())
        }
        const target = Math.min(reply.retryAt, reply.at + this.env.maxPoll)
        return Effect.zipRight(this.sleepOrKick(Math.max(target, reply.at + 1)), this.pump())
      })
    })
  }

  private grant(waiter: Waiter, permit: Permit): void {
    waiter.state = GRANTED
    this.waiting--
    this.queuedCost -= waiter.cost
    waiter.ticket.permit = permit
    const waited = this.env.now() - waiter.enqueuedAt
    this.stats.waited++
    this.stats.totalWaitMillis += waited
    if (waited > this.stats.maxWaitMillis) this.stats.maxWaitMillis = waited
    Deferred.unsafeDone(waiter.deferred, Exit.succeed(permit))
  }

  private failAll(failure: LaneFailure): void {
    for (let i = this.head; i < this.queue.length; i++) {
      const waiter = this.queue[i]!
      if (waiter.state !== WAITING) continue
      waiter.state = CANCELLED
      Deferred.unsafeDone(waiter.deferred, Exit.fail(failure))
    }
    this.queue = []
    this.head = 0
    this.waiting = 0
    this.queuedCost = 0
  }

  settle(permit: Permit): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (permit.done) return Effect.void
      permit.done = true
      this.held.delete(permit)
      if (!this.needsSettle) return Effect.void
      // If this fails, the permit stays counted until its lease ends: late, never early.
      return this.env.connection.run(Scripts.settle, this.keys, [this.spec, permit.id, permit.cost]).pipe(
        Effect.ignore,
        Effect.ensuring(Effect.sync(() => this.wake()))
      )
    })
  }

  refund(permit: Permit): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (permit.done) return Effect.void
      permit.done = true
      this.held.delete(permit)
      this.stats.refunded++
      return this.env.connection.run(Scripts.refund, this.keys, [this.spec, permit.id, permit.cost, permit.windows])
        .pipe(
          Effect.ignore,
          Effect.ensuring(Effect.sync(() => this.wake()))
        )
    })
  }

  renew(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.held.size === 0) return Effect.void
      const ids = [...this.held].map((permit) => `${permit.id}:${permit.cost}`)
      return Effect.ignore(this.env.connection.run(Scripts.renew, this.keys, [this.spec, this.env.lease, ...ids]))
    })
  }

  pauseUntil(at: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      const now = this.env.now()
      if (at <= now) return Effect.void
      // Told to the fleet even when this process already knew: another may not.
      this.gateUntil = Math.max(this.gateUntil, at)
      return this.env.connection.run(Scripts.pauseUntil, [this.keys[0]!, this.keys[1]!], [Math.ceil(at - now)]).pipe(
        Effect.tap(this.noteGateReply),
        Effect.catchAll((error) =>
          Effect.logDebug("Tollgate could not share a pause through Redis; it holds for this process").pipe(
            Effect.annotateLogs({ limiter: this.env.name, reason: error.reason })
          )
        )
      )
    })
  }

  observe(observation: Observation): Effect.Effect<void> {
    return Effect.suspend(() => {
      const now = this.env.now()
      const matching = observation.limit === undefined
        ? this.budgets.map(() => true)
        : this.budgets.map((b) => budgetLimit(b) === observation.limit)
      const mask = (matching.some((m) => m) ? matching : this.budgets.map(() => true)).map((m) => (m ? "1" : "0")).join(
        ""
      )
      if (observation.remaining === 0) {
        const until = observation.resetAt !== undefined && observation.resetAt > now
          ? observation.resetAt
          : now + this.period
        this.gateUntil = Math.max(this.gateUntil, until)
      }
      return this.env.connection.run(Scripts.observe, this.keys, [
        this.spec,
        mask,
        observation.remaining === undefined ? "" : observation.remaining,
        observation.resetAt === undefined ? "" : Math.max(0, Math.ceil(observation.resetAt - now)),
        this.period
      ]).pipe(
        Effect.tap(this.noteGateReply),
        Effect.catchAll((error) =>
          Effect.logDebug("Tollgate could not share rate-limit headers through Redis").pipe(
            Effect.annotateLogs({ limiter: this.env.name, reason: error.reason })
          )
        )
      )
    })
  }

  awaitGate(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.closed) return Effect.void
      return this.env.connection.run(Scripts.readGate, [this.keys[0]!, this.keys[1]!], []).pipe(
        Effect.tap(this.noteGateReply),
        Effect.ignore,
        Effect.flatMap(() => {
          const until = this.gateUntil
          return this.env.now() >= until
            ? Effect.void
            : Effect.zipRight(CoreRateLimiter.sleepUntil(until), this.awaitGate())
        })
      )
    })
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.failAll(new LaneFailure("closed", undefined))
    this.wake()
  }
}

// A compiled policy: a tree whose leaves are lanes (the same shape as core's).
interface Node {
  readonly limits: ReadonlyArray<number>
  withPermit<A, E, R>(
    effect: Effect.Effect<A, E, R>,
    subject: RateLimiter.Subject,
    cost: number,
    deadline: number | undefined,
    timeout: number | undefined
  ): Effect.Effect<A, E | KeyedFailure, R>
  pauseUntil(at: number, subject: RateLimiter.Subject & { readonly limit?: number | undefined }): Effect.Effect<void>
  observe(observation: Observation, subject: RateLimiter.Subject): Effect.Effect<void>
  awaitGate(subject: RateLimiter.Subject): Effect.Effect<void>
  renew(): Effect.Effect<void>
  close(): void
  collect(stats: MutableStats): void
}

const withLanePermit = <A, E, R>(
  lane: Lane,
  effect: Effect.Effect<A, E, R>,
  cost: number,
  deadline: number | undefined,
  timeout: number | undefined
): Effect.Effect<A, E | LaneFailure, R> =>
  Effect.uninterruptibleMask((restore) => {
    const ticket: Ticket = { permit: undefined }
    return Effect.flatMap(
      Effect.onExit(lane.acquire(ticket, cost, deadline, timeout, restore), (exit) =>
        Exit.isFailure(exit) && ticket.permit !== undefined ? lane.refund(ticket.permit) : Effect.void),
      (permit) =>
        Effect.onExit(
          restore(Effect.suspend(() => {
            permit.started = true
            return effect
          })),
          () => (permit.started ? lane.settle(permit) : lane.refund(permit))
        )
    )
  })

const addStats = (stats: MutableStats, lane: Lane): void => {
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

const laneNode = (lane: Lane, limits: ReadonlyArray<number>, key: string | undefined): Node => ({
  limits,
  withPermit: (effect, _subject, cost, deadline, timeout) =>
    Effect.mapError(
      withLanePermit(lane, effect, cost, deadline, timeout),
      (error) => (error instanceof LaneFailure ? new KeyedFailure(error, key) : error)
    ),
  pauseUntil: (at) => lane.pauseUntil(at),
  observe: (observation) => lane.observe(observation),
  awaitGate: () => lane.awaitGate(),
  renew: () => lane.renew(),
  close: () => lane.close(),
  collect: (stats) => addStats(stats, lane)
})

const keyedNode = (
  policy: Extract<RateLimiter.Policy, { _tag: "Keyed" }>,
  path: string,
  env: LaneEnvironment
): Node => {
  const lanes = new Map<string, Node & { readonly lane: Lane }>()
  const limits = budgetLimits(policy.policy)
  const budgets = budgetsOf(policy.policy)
  let closed = false
  const evictIdle = () => {
    for (const [key, node] of lanes) {
      if (node.lane.idle()) lanes.delete(key)
    }
  }
  const nodeFor = (subject: RateLimiter.Subject) => {
    const key = policy.keyOf(subject)
    let node = lanes.get(key)
    if (node === undefined) {
      if (lanes.size >= policy.maxKeys) evictIdle()
      const lane = new Lane(budgets, `${path}:${RedisConnection.tagOf(key)}`, env)
      if (closed) lane.close()
      node = { ...laneNode(lane, limits, key), lane }
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
    renew: () => Effect.forEach([...lanes.values()], (node) => node.renew(), { discard: true }),
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
    pauseUntil: (at, subject) =>
      Effect.forEach(route(subject.limit), (node) => node.pauseUntil(at, subject), { discard: true }),
    observe: (observation, subject) =>
      Effect.forEach(route(observation.limit), (node) => node.observe(observation, subject), { discard: true }),
    awaitGate: (subject) => Effect.forEach(nodes, (node) => node.awaitGate(subject), { discard: true }),
    renew: () => Effect.forEach(nodes, (node) => node.renew(), { discard: true }),
    close: () => nodes.forEach((node) => node.close()),
    collect: (stats) => nodes.forEach((node) => node.collect(stats))
  }
}

const compile = (policy: RateLimiter.Policy, path: string, env: LaneEnvironment): Node => {
  if (isSimple(policy)) return laneNode(new Lane(budgetsOf(policy), `${path}:`, env), budgetLimits(policy), undefined)
  if (policy._tag === "Keyed") return keyedNode(policy, path, env)
  const all = policy as Extract<RateLimiter.Policy, { _tag: "All" }>
  const plain = all.policies.filter(isSimple)
  const rest = all.policies.filter((p) => !isSimple(p))
  const nodes = rest.map((p, i) => compile(p, `${path}.${i}`, env))
  if (plain.length > 0) nodes.push(compile(CoreRateLimiter.all(...plain), `${path}.p`, env))
  return sequenceNode(nodes)
}

/**
 * The hash tag of a limiter's lanes starts with this, followed by the limiter's name.
 *
 * @since 0.1.0
 * @category keys
 */
export const tagPrefix = (name: string): string => `rl.${RedisConnection.tagOf(name)}`

const toObservation = (info: RateLimitHeaders.RateLimitInfo): Observation => ({
  limit: Option.getOrUndefined(info.limit),
  remaining: Option.getOrUndefined(info.remaining),
  resetAt: Option.getOrUndefined(Option.map(info.resetAt, DateTime.toEpochMillis))
})

const toMillis = (input: Duration.DurationInput | undefined): number | undefined =>
  input === undefined ? undefined : Duration.toMillis(input)

/**
 * Builds a shared limiter for `policy`. Its timers and lease renewal live in the current scope:
 * closing the scope fails every waiting request with `RateLimited` (reason "closed").
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  policy: RateLimiter.Policy,
  options?: Options
): Effect.Effect<RateLimiter.Service, never, Scope.Scope | RedisConnection.RedisConnection> =>
  Effect.gen(function*() {
    const connection = yield* RedisConnection.RedisConnection
    const provider = options?.provider ?? "api"
    const name = options?.name ?? provider
    const clock = yield* Effect.clock
    const scope = yield* Effect.scope
    const lease = Math.max(100, Duration.toMillis(options?.lease ?? defaults.lease))
    const env: LaneEnvironment = {
      connection,
      scope,
      now: () => clock.unsafeCurrentTimeMillis(),
      lease,
      maxPoll: Math.max(1, Duration.toMillis(options?.maxPoll ?? defaults.maxPoll)),
      name
    }
    const root = compile(policy, tagPrefix(name), env)
    yield* Effect.addFinalizer(() => Effect.sync(() => root.close()))
    yield* Effect.forkScoped(
      Effect.interruptible(Effect.forever(Effect.zipRight(Effect.sleep(Duration.millis(lease / 3)), root.renew())))
    )
    const noSubject: RateLimiter.Subject = {}

    const toError = (failure: KeyedFailure) =>
      new TollgateError.RateLimited({
        provider,
        reason: failure.failure.reason,
        key: failure.key === "" ? undefined : failure.key,
        retryAt: failure.failure.retryAt === undefined ? undefined : DateTime.unsafeMake(failure.failure.retryAt)
      })

    const withPermit = (permitOptions?: RateLimiter.PermitOptions) => {
      const subject = permitOptions ?? noSubject
      const cost = permitOptions?.cost ?? 1
      const deadline = toMillis(permitOptions?.deadline)
      const timeout = toMillis(permitOptions?.timeout)
      return <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | TollgateError.RateLimited, R> =>
        Effect.catchIf(
          root.withPermit(effect, subject, cost, deadline, timeout),
          (error): error is KeyedFailure => error instanceof KeyedFailure,
          (error) => Effect.fail(toError(error))
        ) as Effect.Effect<A, E | TollgateError.RateLimited, R>
    }

    return {
      provider,
      withPermit,
      pauseUntil: (instant, subject) =>
        Effect.suspend(() => root.pauseUntil(DateTime.toEpochMillis(instant), subject ?? noSubject)),
      observe: (info, subject) => Effect.suspend(() => root.observe(toObservation(info), subject ?? noSubject)),
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
    } satisfies RateLimiter.Service
  })

/**
 * A shared limiter under core's `RateLimiter` Tag: swap `RateLimiter.layer(policy, options)` for this
 * and the program spends the fleet's budget.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  policy: RateLimiter.Policy,
  options?: Options
): Layer.Layer<RateLimiter.RateLimiter, never, RedisConnection.RedisConnection> =>
  Layer.scoped(CoreRateLimiter.RateLimiter, make(policy, options))

/**
 * `layer` over the connection from the environment (`RedisConnection.layerFromEnv`, `REDIS_URL`): the
 * one-line replacement for `RateLimiter.layer(policy, options)`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  policy: RateLimiter.Policy,
  options?: Options
): Layer.Layer<RateLimiter.RateLimiter, RedisConnection.RedisError | ConfigError.ConfigError> =>
  layer(policy, options).pipe(Layer.provide(RedisConnection.layerFromEnv))

/**
 * Makes every limiter built through `RateLimiter.makeWithBackend` a Redis one: provider modules and
 * `RateLimiter.layer` then spend one budget with the whole fleet, named after their provider.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerBackend = (
  options?: Omit<Options, "provider" | "name">
): Layer.Layer<CoreRateLimiter.RateLimiterBackend, never, RedisConnection.RedisConnection> =>
  Layer.effect(
    CoreRateLimiter.RateLimiterBackend,
    Effect.map(RedisConnection.RedisConnection, (connection): CoreRateLimiter.Backend => ({
      make: (policy, limiterOptions) =>
        make(policy, { ...options, provider: limiterOptions?.provider }).pipe(
          Effect.provideService(RedisConnection.RedisConnection, connection)
        )
    }))
  )
