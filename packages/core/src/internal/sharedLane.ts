/**
 * A lane over a shared store (Redis): this process's queue in front of a budget the fleet spends. One
 * fiber per lane, while anyone waits, asks the store for the head's permit; refused, it sleeps until the
 * instant the store named (never longer than the store's poll bound) or until a permit of this process
 * comes back. The store orders heads across processes by their place, so a retry keeps its place and a
 * priority counts fleet-wide. A store that cannot be reached fails every waiter at once: the limiter
 * fails closed and sends nothing without a permit.
 */
import { Deferred, Effect, Exit, FiberId, Runtime } from "effect"
import type { SharedLane as Store, SharedPermit, TakeReply, Unavailable } from "../RateLimiterStore.js"
import type * as TollgateError from "../TollgateError.js"
import type { Observation } from "./budget.js"
import type { Environment, Request } from "./queue.js"
import { DONE, GRANTED, Queue, Ticket, WAITING } from "./queue.js"
import { sleepUntil } from "./time.js"
import { isUnanswered } from "./unanswered.js"

export class SharedLane extends Queue {
  private pumping = false
  private kick = Deferred.unsafeMake<void>(FiberId.none)
  private lastRetryAt: number | undefined = undefined
  private readonly held = new Set<Ticket>()

  constructor(readonly store: Store, env: Environment, key: string | undefined) {
    super(env, key)
  }

  idle(): boolean {
    return this.waiting === 0 && this.held.size === 0 && !this.pumping && this.store.idle()
  }

  private noteGate(gate: number): void {
    if (gate > this.now()) this.gateUntil = Math.max(this.gateUntil, gate)
  }

  private unavailable(error: Unavailable): Effect.Effect<never, TollgateError.RateLimited> {
    return Effect.zipRight(
      Effect.logDebug("Tollgate's shared limiter cannot reach its store").pipe(
        Effect.annotateLogs({ reason: error.reason })
      ),
      Effect.fail(this.failure("unavailable", undefined))
    )
  }

  private take(ticket: Ticket, take: boolean, ahead: number): Effect.Effect<TakeReply, Unavailable> {
    return Effect.tap(
      this.store.take({
        cost: ticket.cost,
        take,
        ahead,
        order: ticket.order,
        next: take ? this.nextOrder() : undefined
      }),
      (reply) =>
        Effect.sync(() => {
          this.noteGate(reply.gate)
          if (!reply.granted) this.lastRetryAt = reply.retryAt
        })
    )
  }

  private grantShared(ticket: Ticket, permit: SharedPermit): void {
    this.granted(ticket, this.now(), permit)
    if (this.store.settles) this.held.add(ticket)
  }

  /** Takes a permit, waiting by its place behind this process's other requests when none is free. */
  acquire(ticket: Ticket, request: Request): Effect.Effect<void, TollgateError.RateLimited> {
    return Effect.suspend(() => {
      if (this.closed) return Effect.fail(this.failure("closed", undefined))
      if (ticket.cost > this.store.capacity) return this.reject("cost", undefined)
      const now = this.now()
      this.place(ticket, request, now)
      const deadline = request.deadline
      if (deadline !== undefined && this.gateUntil - now > deadline) return this.reject("deadline", this.gateUntil)
      if (this.waiting === 0 && now >= this.gateUntil) {
        return Effect.flatMap(
          Effect.catchAll(this.take(ticket, true, 0), (error) => this.unavailable(error)),
          (reply) => {
            if (reply.granted) {
              this.grantShared(ticket, reply.permit)
              return Effect.void
            }
            if (deadline !== undefined && reply.retryAt - this.now() > deadline) {
              return Effect.zipRight(
                this.waiting === 0 ? this.store.withdraw() : Effect.void,
                this.reject("deadline", reply.retryAt)
              )
            }
            return this.enqueue(ticket, request, this.now())
          }
        )
      }
      if (deadline === undefined) return this.enqueue(ticket, request, now)
      // Predict the wait behind everything queued here before joining the queue.
      return Effect.flatMap(
        Effect.catchAll(this.take(ticket, false, this.queuedCost), (error) => this.unavailable(error)),
        (reply) => {
          const earliest = reply.granted ? this.now() : Math.max(reply.retryAt, this.gateUntil)
          if (earliest - this.now() > deadline) return this.reject("deadline", earliest)
          return this.enqueue(ticket, request, this.now())
        }
      )
    })
  }

  protected enqueued(ticket: Ticket, now: number): void {
    this.scheduleExpiry(now)
    if (this.head() === ticket) this.wakePump()
    if (this.pumping || this.closed) return
    this.pumping = true
    // Closing the lane wakes the pump, which then finds nothing to do and ends.
    Runtime.runFork(this.env.runtime)(this.pump())
  }

  protected left(): void {
    this.wakePump()
  }

  protected wake(now: number): void {
    this.scheduleExpiry(now)
  }

  private scheduleExpiry(now: number): void {
    const next = this.expire(
      now,
      () => this.lastRetryAt === undefined ? undefined : Math.max(this.lastRetryAt, this.gateUntil)
    )
    if (this.waiting > 0 && next !== Number.POSITIVE_INFINITY) this.scheduleWake(next)
  }

  private wakePump(): void {
    const kick = this.kick
    this.kick = Deferred.unsafeMake<void>(FiberId.none)
    Deferred.unsafeDone(kick, Exit.void)
  }

  private sleepOrKick(until: number): Effect.Effect<void> {
    return Effect.raceFirst(sleepUntil(until), Deferred.await(this.kick))
  }

  // Asks the store for the head's permit until the queue is empty.
  private pump(): Effect.Effect<void> {
    return Effect.suspend((): Effect.Effect<void> => {
      const head = this.closed ? undefined : this.head()
      if (head === undefined) {
        this.pumping = false
        return this.store.withdraw()
      }
      const now = this.now()
      if (head.cost > this.store.capacity) {
        this.waiters.pop()
        this.stats.rejected++
        this.fail(head, DONE, this.failure("cost", undefined))
        return this.pump()
      }
      if (now < this.gateUntil) {
        return Effect.zipRight(this.sleepOrKick(Math.min(this.gateUntil, now + this.store.maxPoll)), this.pump())
      }
      return Effect.flatMap(Effect.either(this.take(head, true, 0)), (result) => {
        if (result._tag === "Left") {
          this.failAll(this.failure("unavailable", undefined))
          this.pumping = false
          return Effect.logDebug("Tollgate's shared limiter cannot reach its store").pipe(
            Effect.annotateLogs({ reason: result.left.reason })
          )
        }
        const reply = result.right
        if (reply.granted) {
          // The head may have left, or a better place arrived, while we asked: the permit goes to whoever
          // heads the queue now if it fits, else back.
          const current = this.head()
          if (current !== undefined && current.cost === head.cost) {
            this.grantHead(current, this.now(), reply.permit)
            if (this.store.settles) this.held.add(current)
            return this.pump()
          }
          return Effect.zipRight(this.store.refund(reply.permit), this.pump())
        }
        const at = this.now()
        const target = Math.min(reply.retryAt, at + this.store.maxPoll)
        return Effect.zipRight(this.sleepOrKick(Math.max(target, at + 1)), this.pump())
      })
    })
  }

  settle(ticket: Ticket): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (ticket.state !== GRANTED) return Effect.void
      ticket.state = DONE
      this.held.delete(ticket)
      // If this fails, the store counts the permit until its lease ends: late, never early.
      return Effect.ensuring(this.store.settle(ticket.receipt as SharedPermit), Effect.sync(() => this.wakePump()))
    })
  }

  /**
   * Settles `ticket` one period of the policy from now, holding its permit (and its lease) until then:
   * its request was sent and never answered (`internal/unanswered.ts`). The caller does not wait for it.
   */
  settleUnanswered(ticket: Ticket): Effect.Effect<void> {
    return Effect.sync(() => {
      if (ticket.state !== GRANTED) return
      Runtime.runFork(this.env.runtime)(
        Effect.zipRight(sleepUntil(this.now() + this.store.period), this.settle(ticket))
      )
    })
  }

  refund(ticket: Ticket): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (ticket.state !== GRANTED) return Effect.void
      ticket.state = DONE
      this.held.delete(ticket)
      this.stats.refunded++
      return Effect.ensuring(this.store.refund(ticket.receipt as SharedPermit), Effect.sync(() => this.wakePump()))
    })
  }

  pauseUntil(at: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (at <= this.now()) return Effect.void
      // Told to the fleet even when this process already knew: another may not.
      this.gateUntil = Math.max(this.gateUntil, at)
      return this.store.pause(at).pipe(
        Effect.flatMap((gate) => Effect.sync(() => this.noteGate(gate))),
        Effect.catchAll((error) =>
          Effect.logDebug("Tollgate could not share a pause through its store; it holds for this process").pipe(
            Effect.annotateLogs({ reason: error.reason })
          )
        )
      )
    })
  }

  observe(observation: Observation & { readonly cost: number }): Effect.Effect<void> {
    return Effect.suspend(() => {
      const now = this.now()
      if (observation.remaining === 0) {
        const until = observation.resetAt !== undefined && observation.resetAt > now
          ? observation.resetAt
          : now + this.store.period
        this.gateUntil = Math.max(this.gateUntil, until)
      }
      return this.store.observe(observation).pipe(
        Effect.flatMap((gate) => Effect.sync(() => this.noteGate(gate))),
        Effect.catchAll((error) =>
          Effect.logDebug("Tollgate could not share rate-limit headers through its store").pipe(
            Effect.annotateLogs({ reason: error.reason })
          )
        ),
        Effect.ensuring(Effect.sync(() => this.wakePump()))
      )
    })
  }

  awaitGate(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.closed) return Effect.void
      return this.store.gate.pipe(
        Effect.flatMap((gate) => Effect.sync(() => this.noteGate(gate))),
        Effect.ignore,
        Effect.flatMap(() => {
          const until = this.gateUntil
          return this.now() >= until ? Effect.void : Effect.zipRight(sleepUntil(until), this.awaitGate())
        })
      )
    })
  }

  override close(): void {
    if (this.closed) return
    super.close()
    this.wakePump()
    this.store.close()
  }
}

/** Runs `effect` holding a permit of a shared lane; the same guarantees as the local lane's `withPermit`. */
export const withPermit = <A, E, R>(
  lane: SharedLane,
  effect: Effect.Effect<A, E, R>,
  request: Request
): Effect.Effect<A, E | TollgateError.RateLimited, R> =>
  Effect.uninterruptibleMask((restore) => {
    const ticket = new Ticket(request.cost)
    const release = (exit: Exit.Exit<unknown, unknown>) =>
      Effect.suspend(() => {
        if (ticket.state === GRANTED) {
          if (!ticket.started) return lane.refund(ticket)
          return isUnanswered(exit) ? lane.settleUnanswered(ticket) : lane.settle(ticket)
        }
        if (ticket.state === WAITING) lane.leave(ticket)
        return Effect.void
      })
    return Effect.onExit(
      restore(Effect.zipRight(
        lane.acquire(ticket, request),
        Effect.suspend(() => {
          ticket.started = true
          return effect
        })
      )),
      release
    )
  })
