/**
 * One queue of requests in front of one budget: a counting semaphore whose permits come back on a
 * schedule, plus a gate. It is written against plain callbacks rather than Effect's `Semaphore`
 * because that one can lose a permit when a fiber is interrupted between taking it and installing its
 * release (Effect 3.22), and because an uncontended request should cost a few comparisons, not a
 * round trip through a semaphore.
 */
import type { Clock, Fiber } from "effect"
import { DateTime, Effect, FiberId, Runtime } from "effect"
import * as TollgateError from "../TollgateError.js"
import type { Budget, Observation } from "./budget.js"
import { MinHeap } from "./heap.js"
import { sleepUntil } from "./time.js"

export type Failure = "deadline" | "timeout" | "cost" | "closed"

/**
 * The cell a permit lands in, so whoever ends the fiber can give it back, and the fiber's place in the
 * queue while it waits, so whoever ends the fiber can take it out of the queue.
 */
export interface Ticket {
  permit: Permit | undefined
  waiter: Waiter | undefined
}

export interface Permit {
  readonly lane: Lane
  readonly cost: number
  readonly takenAt: number
  /** Set once the guarded effect actually started: from then on it counts as sent. */
  started: boolean
  done: boolean
}

const WAITING = 0
const GRANTED = 1
const CANCELLED = 2
const EXPIRED = 3

interface Waiter {
  readonly cost: number
  readonly ticket: Ticket
  readonly enqueuedAt: number
  readonly deadlineAt: number
  state: number
  resume: ((effect: Effect.Effect<Permit, TollgateError.RateLimited>) => void) | undefined
}

/** Who a lane belongs to, for the errors it fails requests with. */
export interface LaneIdentity {
  readonly provider: string
  readonly key: string | undefined
}

export interface LaneStats {
  granted: number
  waited: number
  totalWaitMillis: number
  maxWaitMillis: number
  refunded: number
  rejected: number
  timedOut: number
}

export interface LaneEnvironment {
  readonly clock: Clock.Clock
  readonly runtime: Runtime.Runtime<never>
}

export class Lane {
  gateUntil = 0
  closed = false
  lastUsed = 0
  readonly stats: LaneStats = {
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
  /** Waiters with a deadline, soonest first; cancelled ones are dropped lazily. */
  private readonly deadlines = new MinHeap<Waiter>((waiter) => waiter.deadlineAt)
  private wakeAt = Number.POSITIVE_INFINITY
  private wakeFiber: Fiber.RuntimeFiber<void> | undefined = undefined
  private wakeGeneration = 0

  constructor(
    readonly budget: Budget,
    private readonly env: LaneEnvironment,
    private readonly identity: LaneIdentity
  ) {}

  private failure(reason: Failure, retryAt: number | undefined): TollgateError.RateLimited {
    return new TollgateError.RateLimited({
      provider: this.identity.provider,
      reason,
      key: this.identity.key === "" ? undefined : this.identity.key,
      retryAt: retryAt === undefined ? undefined : DateTime.unsafeMake(retryAt)
    })
  }

  /**
   * Takes a permit at once when it is free and nobody is queued, writing it to `ticket`. The common
   * case costs a few comparisons and no effect at all.
   */
  tryTakeFree(cost: number): boolean {
    if (this.closed || this.waiting !== 0) return false
    const now = this.now()
    if (now < this.gateUntil || !this.budget.tryTake(now, cost)) return false
    this.stats.granted++
    this.lastUsed = now
    return true
  }

  tryTake(ticket: Ticket, cost: number): boolean {
    if (this.closed || this.waiting !== 0) return false
    const now = this.now()
    if (now < this.gateUntil || !this.budget.tryTake(now, cost)) return false
    ticket.permit = this.newPermit(now, cost)
    return true
  }

  now(): number {
    return this.env.clock.unsafeCurrentTimeMillis()
  }

  get queueLength(): number {
    return this.waiting
  }

  idle(now: number): boolean {
    return this.waiting === 0 && this.wakeAt === Number.POSITIVE_INFINITY && now >= this.gateUntil &&
      this.budget.idle(now)
  }

  private newPermit(now: number, cost: number): Permit {
    this.stats.granted++
    this.lastUsed = now
    return { lane: this, cost, takenAt: now, started: false, done: false }
  }

  /**
   * Takes a permit, waiting in FIFO order when none is free. The permit is written to `ticket` at the
   * instant it is granted, before the fiber resumes, so an interruption that lands in between still
   * finds it and gives it back.
   */
  acquire(
    ticket: Ticket,
    cost: number,
    deadline: number | undefined,
    timeout: number | undefined
  ): Effect.Effect<Permit, TollgateError.RateLimited> {
    return Effect.suspend(() => {
      const now = this.now()
      if (this.closed) return Effect.fail(this.failure("closed", undefined))
      if (cost > this.budget.capacity) {
        this.stats.rejected++
        return Effect.fail(this.failure("cost", undefined))
      }
      if (this.waiting === 0 && now >= this.gateUntil && this.budget.tryTake(now, cost)) {
        const permit = this.newPermit(now, cost)
        ticket.permit = permit
        return Effect.succeed(permit)
      }
      if (deadline !== undefined) {
        const earliest = Math.max(this.gateUntil, this.budget.earliest(now, this.queuedCost + cost))
        if (earliest - now > deadline) {
          this.stats.rejected++
          return Effect.fail(this.failure("deadline", earliest))
        }
      }
      const bound = deadline === undefined ? timeout : timeout === undefined ? deadline : Math.min(deadline, timeout)
      // No canceler: an interrupted waiter leaves the queue in the caller's exit handler (`leave`), which
      // runs anyway. A canceler would wrap the wait in an interruption handler of its own, about 1.5 KB
      // more per queued request.
      return Effect.async<Permit, TollgateError.RateLimited>((resume) => {
        const waiter: Waiter = {
          cost,
          ticket,
          enqueuedAt: now,
          deadlineAt: bound === undefined ? Number.POSITIVE_INFINITY : now + bound,
          state: WAITING,
          resume
        }
        ticket.waiter = waiter
        this.queue.push(waiter)
        this.waiting++
        this.queuedCost += cost
        if (bound !== undefined) this.deadlines.push(waiter)
        this.pump(now)
      })
    })
  }

  /** Takes a waiter whose fiber ended before it was granted (interrupted) out of the queue. */
  leave(waiter: Waiter): void {
    if (waiter.state === WAITING) this.cancel(waiter)
  }

  private cancel(waiter: Waiter): void {
    waiter.state = CANCELLED
    waiter.resume = undefined
    this.waiting--
    this.queuedCost -= waiter.cost
    // A cancelled head may have been blocking cheaper requests behind it.
    this.pump(this.now())
  }

  settle(permit: Permit): void {
    if (permit.done) return
    permit.done = true
    const now = this.now()
    this.budget.settle(now, permit.cost, permit.takenAt)
    if (this.waiting > 0) this.pump(now)
  }

  refund(permit: Permit): void {
    if (permit.done) return
    permit.done = true
    this.stats.refunded++
    const now = this.now()
    this.budget.refund(now, permit.cost, permit.takenAt)
    if (this.waiting > 0) this.pump(now)
  }

  /** Closes the gate until `until`; it only ever moves later. */
  pauseUntil(until: number): void {
    if (until <= this.gateUntil) return
    this.gateUntil = until
    if (this.waiting > 0) this.pump(this.now())
  }

  observe(observation: Observation): void {
    const now = this.now()
    this.budget.observe(now, observation)
    if (observation.remaining === 0) {
      this.pauseUntil(
        observation.resetAt !== undefined && observation.resetAt > now ? observation.resetAt : now + this.budget.period
      )
    }
  }

  /** Grants what can be granted now, expires what has waited too long, and schedules the next wake. */
  pump(now: number): void {
    if (this.closed) return
    this.expire(now)
    const queue = this.queue
    while (this.waiting > 0) {
      const head = queue[this.head]!
      if (head.state !== WAITING) {
        this.head++
        continue
      }
      if (now < this.gateUntil || !this.budget.tryTake(now, head.cost)) break
      this.head++
      this.grant(head, now)
    }
    if (this.waiting === 0) {
      this.queue = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > queue.length) {
      this.queue = queue.slice(this.head)
      this.head = 0
    }
    if (this.waiting > 0) this.scheduleNextWake(now)
  }

  private grant(waiter: Waiter, now: number): void {
    const resume = waiter.resume!
    waiter.state = GRANTED
    waiter.resume = undefined
    this.waiting--
    this.queuedCost -= waiter.cost
    const permit = this.newPermit(now, waiter.cost)
    waiter.ticket.permit = permit
    const waited = now - waiter.enqueuedAt
    this.stats.waited++
    this.stats.totalWaitMillis += waited
    if (waited > this.stats.maxWaitMillis) this.stats.maxWaitMillis = waited
    resume(Effect.succeed(permit))
  }

  private expire(now: number): void {
    while (this.deadlines.size > 0) {
      const top = this.deadlines.peek()!
      if (top.state !== WAITING) {
        this.deadlines.pop()
        continue
      }
      if (top.deadlineAt > now) break
      this.deadlines.pop()
      const resume = top.resume!
      top.state = EXPIRED
      top.resume = undefined
      this.waiting--
      this.queuedCost -= top.cost
      this.stats.timedOut++
      const retryAt = this.budget.availableAt(now, top.cost)
      resume(
        Effect.fail(this.failure("timeout", retryAt === undefined ? undefined : Math.max(retryAt, this.gateUntil)))
      )
    }
  }

  private scheduleNextWake(now: number): void {
    let head: Waiter | undefined
    for (let i = this.head; i < this.queue.length; i++) {
      if (this.queue[i]!.state === WAITING) {
        head = this.queue[i]
        break
      }
    }
    let at = Number.POSITIVE_INFINITY
    if (head !== undefined) {
      const available = this.budget.availableAt(now, head.cost)
      // Unknown means "when a request in flight settles": `settle` pumps again then.
      if (available !== undefined) at = Math.max(available, this.gateUntil)
    }
    while (this.deadlines.size > 0 && this.deadlines.peek()!.state !== WAITING) this.deadlines.pop()
    const deadline = this.deadlines.peek()
    if (deadline !== undefined) at = Math.min(at, deadline.deadlineAt)
    if (at === Number.POSITIVE_INFINITY) return
    this.scheduleWake(Math.max(at, now))
  }

  private scheduleWake(at: number): void {
    if (this.wakeAt !== Number.POSITIVE_INFINITY) {
      if (this.wakeAt <= at) return
      this.wakeFiber?.unsafeInterruptAsFork(FiberId.none)
    }
    // Each wake owns a generation. The fiber can finish before `runFork` even returns (a wake time
    // already past needs no sleep), so ownership must not hang on the fiber value, which does not
    // exist yet at that moment.
    const generation = ++this.wakeGeneration
    this.wakeAt = at
    this.wakeFiber = undefined
    const wake: Effect.Effect<void> = Effect.zipRight(
      sleepUntil(at),
      Effect.sync(() => {
        if (this.wakeGeneration === generation) {
          this.wakeFiber = undefined
          this.wakeAt = Number.POSITIVE_INFINITY
        }
        this.pump(this.now())
      })
    )
    const fiber: Fiber.RuntimeFiber<void> = Runtime.runFork(this.env.runtime)(wake)
    if (this.wakeGeneration === generation && this.wakeAt === at) this.wakeFiber = fiber
  }

  /** Waits while the gate is closed, without taking anything. */
  awaitGate(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const until = this.gateUntil
      if (this.closed || this.now() >= until) return Effect.void
      return Effect.zipRight(sleepUntil(until), this.awaitGate())
    })
  }

  /** Fails every waiter and stops the wake timer: nothing is left waiting, nothing keeps the process up. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.wakeFiber?.unsafeInterruptAsFork(FiberId.none)
    this.wakeFiber = undefined
    this.wakeAt = Number.POSITIVE_INFINITY
    this.wakeGeneration++
    for (let i = this.head; i < this.queue.length; i++) {
      const waiter = this.queue[i]!
      if (waiter.state !== WAITING) continue
      const resume = waiter.resume!
      waiter.state = CANCELLED
      waiter.resume = undefined
      resume(Effect.fail(this.failure("closed", undefined)))
    }
    this.queue = []
    this.head = 0
    this.waiting = 0
    this.queuedCost = 0
  }
}

/**
 * Runs `effect` holding `cost` permits of `lane`. Interruption at any step loses nothing: a permit
 * granted but never used is refunded, one whose effect started is settled (its request may have been
 * sent), and a waiter that was never granted simply leaves the queue. One uninterruptible region and
 * one finalizer cover every case, and a free permit is taken without waiting for anything.
 */
export const withPermit = <A, E, R>(
  lane: Lane,
  effect: Effect.Effect<A, E, R>,
  cost: number,
  deadline: number | undefined,
  timeout: number | undefined
): Effect.Effect<A, E | TollgateError.RateLimited, R> =>
  // A permit that never comes back (a bucket's token, an unlimited pass) is spent the moment the effect
  // starts, in the same synchronous step, so there is nothing to release and nothing to refund.
  lane.budget.settles
    ? withReturnedPermit(lane, effect, cost, deadline, timeout)
    : Effect.suspend(() => lane.tryTakeFree(cost) ? effect : withReturnedPermit(lane, effect, cost, deadline, timeout))

const withReturnedPermit = <A, E, R>(
  lane: Lane,
  effect: Effect.Effect<A, E, R>,
  cost: number,
  deadline: number | undefined,
  timeout: number | undefined
): Effect.Effect<A, E | TollgateError.RateLimited, R> =>
  Effect.uninterruptibleMask((restore) => {
    const ticket: Ticket = { permit: undefined, waiter: undefined }
    const run = restore(Effect.suspend(() => {
      ticket.permit!.started = true
      return effect
    }))
    const release = Effect.sync(() => {
      const permit = ticket.permit
      if (permit !== undefined) permit.started ? lane.settle(permit) : lane.refund(permit)
      else if (ticket.waiter !== undefined) lane.leave(ticket.waiter)
    })
    return Effect.ensuring(
      lane.tryTake(ticket, cost) ? run : Effect.zipRight(restore(lane.acquire(ticket, cost, deadline, timeout)), run),
      release
    )
  })
