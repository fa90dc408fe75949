/**
 * A lane over a synchronous store (memory): a counting semaphore whose permits come back on the schedule
 * its budgets set, plus the gate. Granting happens inside whatever event freed the permit (a settle, the
 * lane's timer), so a queued request is resumed in the same step; an uncontended one costs a few
 * comparisons and no effect at all.
 */
import { Effect } from "effect"
import type { Exit } from "effect"
import type { LocalLane } from "../RateLimiterStore.js"
import type * as TollgateError from "../TollgateError.js"
import type { Observation } from "./budget.js"
import { MinHeap } from "./heap.js"
import type { Environment, Request } from "./queue.js"
import { DONE, GRANTED, Queue, Ticket, WAITING } from "./queue.js"
import { sleepUntil } from "./time.js"
import { isUnanswered } from "./unanswered.js"

const REFUSED = -1

export class Lane extends Queue {
  lastUsed = 0
  /** Permits of requests sent and never answered, held in flight until their `settleAt`. */
  private readonly unanswered = new MinHeap<Ticket>((ticket) => ticket.settleAt)

  constructor(readonly store: LocalLane, env: Environment, key: string | undefined) {
    super(env, key)
  }

  /** Takes a permit that needs no release, if it is free and nobody is queued. */
  tryTakeFree(cost: number): boolean {
    // A lane that started learning needs its permits back: the caller then takes the returned path.
    if (this.closed || this.waiting !== 0 || this.store.settles) return false
    const now = this.now()
    if (now < this.gateUntil || this.store.take(now, cost) === REFUSED) return false
    this.stats.granted++
    this.lastUsed = now
    return true
  }

  /** Takes a permit for `ticket` at once if it is free and nobody is queued. */
  tryTake(ticket: Ticket): boolean {
    if (this.closed || this.waiting !== 0) return false
    const now = this.now()
    if (this.unanswered.size > 0) this.settleDue(now)
    if (now < this.gateUntil) return false
    const receipt = this.store.take(now, ticket.cost)
    if (receipt === REFUSED) return false
    this.granted(ticket, now, receipt)
    this.lastUsed = now
    return true
  }

  idle(now: number): boolean {
    if (this.unanswered.size > 0) this.settleDue(now)
    return this.unanswered.size === 0 && this.waiting === 0 && this.wakeAt === Number.POSITIVE_INFINITY &&
      now >= this.gateUntil &&
      this.store.idle(now)
  }

  /**
   * Takes a permit for `ticket`, queueing by its place when none is free. The permit is written to the
   * ticket at the instant it is granted, before the fiber resumes, so an interruption that lands in
   * between still finds it and gives it back.
   */
  acquireThen<A, E, R>(
    ticket: Ticket,
    request: Request,
    then: Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | TollgateError.RateLimited, R> {
    // One `async` step per waiter: the checks run in its registration, and a grant resumes the fiber
    // with the guarded effect itself.
    return Effect.async<A, E | TollgateError.RateLimited, R>((resume) => {
      if (this.closed) return resume(Effect.fail(this.failure("closed", undefined)))
      if (ticket.cost > this.store.capacity) return resume(this.reject("cost", undefined))
      const now = this.now()
      this.place(ticket, request, now)
      if (request.deadline !== undefined) {
        const earliest = Math.max(this.gateUntil, this.store.earliest(now, this.queuedCost + ticket.cost))
        if (earliest - now > request.deadline) return resume(this.reject("deadline", earliest))
      }
      ticket.granted = then
      this.park(ticket, request, now, resume)
    })
  }

  protected enqueued(_ticket: Ticket, now: number): void {
    this.pump(now)
  }

  protected left(): void {
    this.pump(this.now())
  }

  protected wake(now: number): void {
    this.pump(now)
  }

  settle(ticket: Ticket): void {
    if (ticket.state !== GRANTED) return
    ticket.state = DONE
    const now = this.now()
    this.store.settle(now, ticket.cost, ticket.takenAt, ticket.receipt as number)
    if (this.waiting > 0) this.pump(now)
  }

  refund(ticket: Ticket): void {
    if (ticket.state !== GRANTED) return
    ticket.state = DONE
    this.stats.refunded++
    const now = this.now()
    this.store.refund(now, ticket.cost, ticket.takenAt, ticket.receipt as number)
    if (this.waiting > 0) this.pump(now)
  }

  /**
   * Settles `ticket` one period of the policy from now: its request was sent and never answered, so the
   * server may still count it at any instant (`internal/unanswered.ts`). Until then it is in flight.
   */
  settleUnanswered(ticket: Ticket): void {
    if (ticket.state !== GRANTED) return
    const now = this.now()
    ticket.settleAt = now + this.store.period
    this.unanswered.push(ticket)
    if (this.waiting > 0) this.pump(now)
  }

  private settleDue(now: number): void {
    for (let top = this.unanswered.peek(); top !== undefined && top.settleAt <= now; top = this.unanswered.peek()) {
      this.unanswered.pop()
      if (top.state !== GRANTED) continue
      top.state = DONE
      // Settled as of its instant, however late the lane looks: its window runs from then.
      this.store.settle(top.settleAt, top.cost, top.takenAt, top.receipt as number)
    }
  }

  /**
   * Gives back whatever `ticket` holds when its fiber is done: refunded if its effect never started,
   * settled if it did, and settled a period late if it was sent and never answered.
   */
  release(ticket: Ticket, exit: Exit.Exit<unknown, unknown>): void {
    if (ticket.state === GRANTED) {
      if (!ticket.started) this.refund(ticket)
      else if (exit._tag === "Failure" && isUnanswered(exit)) this.settleUnanswered(ticket)
      else this.settle(ticket)
    } else if (ticket.state === WAITING) this.leave(ticket)
  }

  /** Closes the gate until `until`; it only ever moves later. */
  pauseUntil(until: number): void {
    if (until <= this.gateUntil) return
    this.gateUntil = until
    if (this.waiting > 0) this.pump(this.now())
  }

  observe(observation: Observation): void {
    const now = this.now()
    this.store.observe(now, observation as Observation & { readonly cost: number })
    if (observation.remaining === 0) {
      this.pauseUntil(
        observation.resetAt !== undefined && observation.resetAt > now ? observation.resetAt : now + this.store.period
      )
    }
    // What was learned may hold the queue back, or (a silent server) let it go.
    if (this.waiting > 0) this.pump(now)
  }

  /** Grants what can be granted now, expires what has waited too long, and schedules the next wake. */
  pump(now: number): void {
    if (this.closed) return
    if (this.unanswered.size > 0) this.settleDue(now)
    let next = this.expire(now, (ticket) => {
      const at = this.store.availableAt(now, ticket.cost)
      return at === undefined ? undefined : Math.max(at, this.gateUntil)
    })
    if (now < this.gateUntil) {
      if (this.waiting > 0) this.scheduleWake(Math.min(next, this.gateUntil))
      return
    }
    for (let head = this.head(); head !== undefined; head = this.head()) {
      if (head.cost > this.store.capacity) {
        // What the server taught makes this request too big to ever pass.
        this.waiters.pop()
        this.stats.rejected++
        this.fail(head, DONE, this.failure("cost", undefined))
        continue
      }
      const receipt = this.store.take(now, head.cost)
      if (receipt === REFUSED) {
        // Unknown means "when a request in flight settles": `settle` pumps again then.
        const available = this.store.availableAt(now, head.cost)
        if (available !== undefined) next = Math.min(next, Math.max(available, now))
        break
      }
      this.lastUsed = now
      this.grantHead(head, now, receipt)
    }
    // A permit held for an unanswered request comes back at its instant, with no settle to wake the lane.
    const late = this.unanswered.peek()
    if (late !== undefined) next = Math.min(next, late.settleAt)
    if (this.waiting > 0 && next !== Number.POSITIVE_INFINITY) this.scheduleWake(next)
  }

  /** Waits while the gate is closed, without taking anything. */
  awaitGate(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const until = this.gateUntil
      if (this.closed || this.now() >= until) return Effect.void
      return Effect.zipRight(sleepUntil(until), this.awaitGate())
    })
  }
}

/**
 * A permit taken synchronously for a caller that releases it itself (the ApiClient's fast path): ended
 * exactly once, settled if its request may have been sent, refunded if it certainly was not.
 */
export interface Hold {
  settle(): void
  refund(): void
  /** The request was sent and never answered: settled one period late (`internal/unanswered.ts`). */
  settleUnanswered(): void
}

/** The hold of a permit that never comes back: nothing to settle or refund. */
const freeHold: Hold = { settle: () => {}, refund: () => {}, settleUnanswered: () => {} }

class TicketHold implements Hold {
  constructor(private readonly lane: Lane, private readonly ticket: Ticket) {}
  settle(): void {
    this.lane.settle(this.ticket)
  }
  refund(): void {
    this.lane.refund(this.ticket)
  }
  settleUnanswered(): void {
    this.lane.settleUnanswered(this.ticket)
  }
}

/** `cost` permits of `lane` if they are free now and nobody waits for them, else `undefined`. */
export const tryHold = (lane: Lane, cost: number): Hold | undefined => {
  if (!lane.store.settles) return lane.tryTakeFree(cost) ? freeHold : undefined
  const ticket = new Ticket(cost)
  return lane.tryTake(ticket) ? new TicketHold(lane, ticket) : undefined
}

/**
 * Runs `effect` holding `cost` permits of `lane`. Interruption at any step loses nothing: a permit
 * granted but never used is refunded, one whose effect started is settled (its request may have been
 * sent), and a waiter that was never granted leaves the queue. One uninterruptible region and one exit
 * handler cover every case, and a free permit is taken without waiting for anything.
 */
export const withPermit = <A, E, R>(
  lane: Lane,
  effect: Effect.Effect<A, E, R>,
  request: Request
): Effect.Effect<A, E | TollgateError.RateLimited, R> =>
  // A permit that never comes back (a bucket's token, an unlimited pass) is spent the moment the effect
  // starts, in the same synchronous step, so there is nothing to release and nothing to refund.
  lane.store.settles
    ? withReturnedPermit(lane, effect, request)
    : Effect.suspend(() => lane.tryTakeFree(request.cost) ? effect : withReturnedPermit(lane, effect, request))

// No closure here is bound to a name: a named function made per request costs a property definition
// each time under transpilers that keep names, more than the rest of the permit together.
const withReturnedPermit = <A, E, R>(
  lane: Lane,
  effect: Effect.Effect<A, E, R>,
  request: Request
): Effect.Effect<A, E | TollgateError.RateLimited, R> =>
  Effect.uninterruptibleMask((restore) => {
    const ticket = new Ticket(request.cost)
    const run = Effect.suspend(() => {
      ticket.started = true
      return effect
    })
    return Effect.flatMap(
      Effect.exit(restore(lane.tryTake(ticket) ? run : lane.acquireThen(ticket, request, run))),
      (exit) => {
        lane.release(ticket, exit)
        return exit
      }
    )
  })
