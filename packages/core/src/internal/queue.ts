/**
 * What every lane of a limiter has, whatever its store: the queue of waiting requests (by place: the
 * instant a request first asked, moved earlier by its priority; then by arrival), their deadlines, the
 * gate, the counters, and the timer that wakes the lane. It is written against plain callbacks rather
 * than Effect's `Semaphore`: `Semaphore.withPermits` takes the permit while interruptible and installs
 * its release a step later (moved under the release for Effect 4:
 * https://github.com/Effect-TS/effect/pull/6910). Effect 3.22's run loop cannot interrupt a fiber at that
 * step (test/SemaphoreInterruption.test.ts says why, and fails if that changes), but the guarantee rests
 * on scheduling details; here a permit is written to its ticket at the instant it is granted, and
 * whoever ends the fiber finds it there.
 */
import type { Clock, Fiber } from "effect"
import { DateTime, Effect, FiberId, Runtime } from "effect"
import * as TollgateError from "../TollgateError.js"
import { MinHeap, OrderedHeap } from "./heap.js"
import { sleepUntil } from "./time.js"
import { clampInstant } from "./validate.js"

export type Failure = "deadline" | "timeout" | "cost" | "closed" | "unavailable"

/** Ticket states. */
export const NEW = 0
export const WAITING = 1
export const GRANTED = 2
export const CANCELLED = 3
export const EXPIRED = 4
export const DONE = 5

/**
 * One request's claim on a lane, from asking to release: its place while it waits, the permit once
 * granted. One object per request, so a queued request costs Tollgate little beyond its own fiber.
 */
export class Ticket {
  state = NEW
  /** The place in the queue: lower goes first. */
  order = 0
  seq = 0
  enqueuedAt = 0
  deadlineAt = Number.POSITIVE_INFINITY
  /** When a permit held for a request sent and never answered is settled. */
  settleAt = 0
  takenAt = 0
  /** What the store handed back with the permit, to give it back. */
  receipt: unknown = undefined
  /** The guarded effect started: the request may have been sent, so the permit is settled, not refunded. */
  started = false
  resume: ((effect: Effect.Effect<any, any, any>) => void) | undefined = undefined
  /** What the fiber resumes with once granted: the guarded effect itself, saving a step per waiter. */
  granted: Effect.Effect<any, any, any> = Effect.void
  constructor(readonly cost: number) {}
}

const before = (a: Ticket, b: Ticket): boolean => a.order < b.order || (a.order === b.order && a.seq < b.seq)

/** What a request asks of a lane beyond its cost. */
export interface Request {
  readonly cost: number
  /** Fail at once when the predicted wait is longer; otherwise wait at most this long (ms). */
  readonly deadline: number | undefined
  /** Wait at most this long in the queue (ms). */
  readonly timeout: number | undefined
  /** When the request first asked (a retry keeps its place); default: now. */
  readonly requestedAt: number | undefined
  readonly priority: number
}

export interface Environment {
  readonly clock: Clock.Clock
  readonly runtime: Runtime.Runtime<never>
  readonly provider: string
  /** Milliseconds of waiting one unit of priority is worth. */
  readonly aging: number
}

export interface Stats {
  granted: number
  waited: number
  totalWaitMillis: number
  maxWaitMillis: number
  refunded: number
  rejected: number
  timedOut: number
}

export abstract class Queue {
  gateUntil = 0
  closed = false
  readonly stats: Stats = {
    granted: 0,
    waited: 0,
    totalWaitMillis: 0,
    maxWaitMillis: 0,
    refunded: 0,
    rejected: 0,
    timedOut: 0
  }
  protected readonly waiters = new OrderedHeap<Ticket>(before)
  protected waiting = 0
  protected queuedCost = 0
  private seq = 0
  /** Waiters with a deadline, soonest first; finished ones are dropped lazily. */
  private readonly deadlines = new MinHeap<Ticket>((ticket) => ticket.deadlineAt)
  protected wakeAt = Number.POSITIVE_INFINITY
  private wakeFiber: Fiber.RuntimeFiber<void> | undefined = undefined
  private wakeGeneration = 0

  constructor(protected readonly env: Environment, readonly key: string | undefined) {}

  now(): number {
    return this.env.clock.unsafeCurrentTimeMillis()
  }

  get queueLength(): number {
    return this.waiting
  }

  failure(reason: Failure, retryAt: number | undefined): TollgateError.RateLimited {
    const at = clampInstant(retryAt)
    return new TollgateError.RateLimited({
      provider: this.env.provider,
      reason,
      key: this.key === undefined || this.key === "" ? undefined : this.key,
      retryAt: at === undefined ? undefined : DateTime.unsafeMake(at)
    })
  }

  protected reject(reason: Failure, retryAt: number | undefined): Effect.Effect<never, TollgateError.RateLimited> {
    this.stats.rejected++
    return Effect.fail(this.failure(reason, retryAt))
  }

  /** The place of a request asking now. */
  protected place(ticket: Ticket, request: Request, now: number): void {
    ticket.order = Math.min(request.requestedAt ?? now, now) - request.priority * this.env.aging
    ticket.seq = this.seq++
  }

  protected granted(ticket: Ticket, now: number, receipt: unknown): void {
    ticket.state = GRANTED
    ticket.takenAt = now
    ticket.receipt = receipt
    this.stats.granted++
  }

  /** Parks the caller until the ticket is granted, expires or the lane closes. */
  protected enqueue(ticket: Ticket, request: Request, now: number): Effect.Effect<void, TollgateError.RateLimited> {
    // No canceler: an interrupted waiter leaves the queue in the caller's exit handler, which runs anyway.
    // A canceler would wrap the wait in an interruption handler of its own, about 1.5 KB more per waiter.
    return Effect.async<void, TollgateError.RateLimited>((resume) =>
      this.park(ticket, request, now, resume as (effect: Effect.Effect<any, any, any>) => void)
    )
  }

  /** Puts a ticket in the queue; `resume` is called with its outcome. */
  protected park(
    ticket: Ticket,
    request: Request,
    now: number,
    resume: (effect: Effect.Effect<any, any, any>) => void
  ): void {
    const bound = request.deadline === undefined
      ? request.timeout
      : request.timeout === undefined
      ? request.deadline
      : Math.min(request.deadline, request.timeout)
    ticket.state = WAITING
    ticket.enqueuedAt = now
    ticket.resume = resume
    this.waiters.push(ticket)
    this.waiting++
    this.queuedCost += ticket.cost
    if (bound !== undefined && bound !== Number.POSITIVE_INFINITY) {
      ticket.deadlineAt = now + bound
      this.deadlines.push(ticket)
    }
    this.enqueued(ticket, now)
  }

  /** A ticket joined the queue. */
  protected abstract enqueued(ticket: Ticket, now: number): void
  /** The lane's timer fired. */
  protected abstract wake(now: number): void

  /** The first ticket still waiting, dropping finished ones from the top. */
  protected head(): Ticket | undefined {
    while (this.waiters.size > 0) {
      const top = this.waiters.peek()!
      if (top.state === WAITING) return top
      this.waiters.pop()
    }
    return undefined
  }

  /** The place of the ticket behind the head, when it can be seen without sorting. */
  protected nextOrder(): number | undefined {
    let next: number | undefined
    for (let i = 1; i <= 2; i++) {
      const ticket = this.waiters.at(i)
      if (ticket !== undefined && ticket.state === WAITING && (next === undefined || ticket.order < next)) {
        next = ticket.order
      }
    }
    return next
  }

  /** Takes the head out of the queue as granted and resumes its fiber. */
  protected grantHead(ticket: Ticket, now: number, receipt: unknown): void {
    this.waiters.pop()
    this.waiting--
    this.queuedCost -= ticket.cost
    this.granted(ticket, now, receipt)
    const waited = now - ticket.enqueuedAt
    this.stats.waited++
    this.stats.totalWaitMillis += waited
    if (waited > this.stats.maxWaitMillis) this.stats.maxWaitMillis = waited
    const resume = ticket.resume!
    const granted = ticket.granted
    ticket.resume = undefined
    ticket.granted = Effect.void
    resume(granted)
  }

  /** Ends a waiting ticket with `failure`. */
  protected fail(ticket: Ticket, state: number, failure: TollgateError.RateLimited): void {
    const resume = ticket.resume!
    ticket.state = state
    ticket.resume = undefined
    this.waiting--
    this.queuedCost -= ticket.cost
    resume(Effect.fail(failure))
  }

  /** Takes a waiter whose fiber ended before it was granted (interrupted) out of the queue. */
  leave(ticket: Ticket): void {
    if (ticket.state !== WAITING) return
    ticket.state = CANCELLED
    ticket.resume = undefined
    this.waiting--
    this.queuedCost -= ticket.cost
    if (this.waiting === 0) this.waiters.clear()
    else if (this.waiters.size > 1024 && this.waiters.size > 2 * this.waiting) {
      this.waiters.retain((t) => t.state === WAITING)
    }
    // A cancelled head may have been holding back cheaper requests behind it.
    this.left()
  }

  protected abstract left(): void

  /** Fails the waiters whose time is up; answers the earliest deadline still ahead. */
  protected expire(now: number, retryAt: (ticket: Ticket) => number | undefined): number {
    while (this.deadlines.size > 0) {
      const top = this.deadlines.peek()!
      if (top.state !== WAITING) {
        this.deadlines.pop()
        continue
      }
      if (top.deadlineAt > now) return top.deadlineAt
      this.deadlines.pop()
      this.stats.timedOut++
      this.fail(top, EXPIRED, this.failure("timeout", retryAt(top)))
    }
    return Number.POSITIVE_INFINITY
  }

  /** Wakes the lane at `at` (or earlier, if already due earlier). */
  protected scheduleWake(at: number): void {
    if (this.wakeAt !== Number.POSITIVE_INFINITY) {
      if (this.wakeAt <= at) return
      this.wakeFiber?.unsafeInterruptAsFork(FiberId.none)
    }
    // Each wake owns a generation. The fiber can finish before `runFork` even returns (a wake time already
    // past needs no sleep), so ownership must not hang on the fiber value, which does not exist yet then.
    const generation = ++this.wakeGeneration
    this.wakeAt = at
    this.wakeFiber = undefined
    const fiber = Runtime.runFork(this.env.runtime)(Effect.zipRight(
      sleepUntil(at),
      Effect.sync(() => {
        if (this.wakeGeneration === generation) {
          this.wakeFiber = undefined
          this.wakeAt = Number.POSITIVE_INFINITY
        }
        if (!this.closed) this.wake(this.now())
      })
    ))
    if (this.wakeGeneration === generation && this.wakeAt === at) this.wakeFiber = fiber
  }

  /** Fails every waiter and stops the timer: nothing is left waiting, nothing keeps the process up. */
  protected failAll(failure: TollgateError.RateLimited): void {
    for (const ticket of this.waiters.clear()) {
      if (ticket.state !== WAITING) continue
      const resume = ticket.resume!
      ticket.state = CANCELLED
      ticket.resume = undefined
      resume(Effect.fail(failure))
    }
    this.waiting = 0
    this.queuedCost = 0
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.wakeFiber?.unsafeInterruptAsFork(FiberId.none)
    this.wakeFiber = undefined
    this.wakeAt = Number.POSITIVE_INFINITY
    this.wakeGeneration++
    this.failAll(this.failure("closed", undefined))
  }
}
