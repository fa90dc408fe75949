/**
 * Time bounds for many concurrent effects on one timer. `Effect.timeoutFail` races each effect against
 * a sleep, forking two fibers, setting and clearing a timer and merging fiber refs back per call;
 * bounding every HTTP attempt that way cost more than the rest of the client together. Here each bound
 * sits in a heap, and one wake-up expires the entries whose deadline has passed. Finished entries are
 * dropped lazily.
 *
 * An entry expires in one of two ways. `arm` calls back (the client aborts the request's
 * `AbortController`, and a transport that honours it ends the attempt itself: no fiber at all). `bound`
 * runs the effect in one child fiber and interrupts it, for transports that cannot be aborted.
 *
 * On the live clock the wake-up is a plain unref'd `setTimeout`, so a deadline far ahead never keeps the
 * process alive after the work is done; on any other clock (`TestClock`, a virtual clock) it is a fiber
 * sleeping on that clock, stopped when the owning scope closes.
 */
import type { Scope } from "effect"
import { Cause, Clock, Effect, Exit, Fiber, FiberId, FiberRef, FiberRefs, Option, Runtime } from "effect"
import { MinHeap } from "./heap.js"
import { sleepUntil } from "./time.js"

/** One bound: expired once its instant passes, unless finished first. */
export interface Entry {
  readonly at: number
  /**
   * What expiry does; dropped once the bound is over (finished entries wait in the heap, and must not
   * keep an attempt's fiber or request alive).
   */
  expire: (() => void) | undefined
  expired: boolean
  done: boolean
}

/** The longest `setTimeout` Node accepts; a later deadline is reached in steps. */
const MAX_TIMEOUT_MILLIS = 2 ** 31 - 1

const liveClock: unknown = Clock.make().constructor

interface Timer {
  readonly cancel: () => void
}

export class Deadlines {
  private readonly heap = new MinHeap<Entry>((entry) => entry.at)
  private pending = 0
  private wakeAt = Number.POSITIVE_INFINITY
  private timer: Timer | undefined = undefined
  private closed = false
  private readonly live: boolean

  constructor(private readonly clock: Clock.Clock, private readonly runtime: Runtime.Runtime<never>) {
    this.live = clock.constructor === liveClock
  }

  /**
   * Runs `effect` for at most `millis`; past that it is interrupted, its interruption awaited, and the
   * result is a failure with `onTimeout()`. Interrupting the caller interrupts the effect and awaits it.
   *
   * The effect runs in a child fiber started at once on the caller's thread with the caller's context,
   * fiber refs and flags, so an effect that completes without suspending (an in-memory transport, a
   * cached answer) costs no scheduler round trip and no deadline at all.
   */
  bound<A, E, E2>(effect: Effect.Effect<A, E>, millis: number, onTimeout: () => E2): Effect.Effect<A, E | E2> {
    return Effect.withFiberRuntime((parent, status) => {
      const runtime = Runtime.make({
        context: parent.currentContext,
        // The child's end is awaited and handed to the caller, so its failure is never unhandled: a root
        // fiber would report it as such (at debug level) whether or not anyone awaits it.
        fiberRefs: FiberRefs.updateAs(parent.getFiberRefs(), {
          fiberId: parent.id(),
          fiberRef: FiberRef.unhandledErrorLogLevel,
          value: Option.none()
        }),
        runtimeFlags: status.runtimeFlags
      })
      return Effect.uninterruptibleMask((restore) => {
        const fiber = Runtime.runFork(runtime)(effect)
        const done = fiber.unsafePoll()
        if (done !== null) return done
        const entry = this.arm(millis, () => fiber.unsafeInterruptAsFork(FiberId.none))
        return Effect.flatMap(
          restore(Fiber.await(fiber)).pipe(Effect.onInterrupt(() => Effect.asVoid(Fiber.interrupt(fiber)))),
          (exit): Effect.Effect<A, E | E2> => {
            this.finish(entry)
            if (entry.expired && Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) {
              return Effect.fail(onTimeout())
            }
            return exit
          }
        )
      })
    })
  }

  /** Calls `expire` once `millis` have passed, unless `finish` is called first. */
  arm(millis: number, expire: () => void): Entry {
    const entry: Entry = { at: this.clock.unsafeCurrentTimeMillis() + millis, expire, expired: false, done: false }
    this.push(entry)
    return entry
  }

  /** The bound is over (the effect ended): the entry will never expire. */
  finish(entry: Entry): void {
    if (entry.done) return
    entry.done = true
    entry.expire = undefined
    this.pending--
  }

  /** Stops the timer; effects still bounded run unbounded from now on. */
  close(): void {
    this.closed = true
    this.timer?.cancel()
    this.timer = undefined
    this.wakeAt = Number.POSITIVE_INFINITY
  }

  private push(entry: Entry): void {
    this.pending++
    // Finished entries are dropped lazily; shed them when they dominate, so memory follows what is pending.
    if (this.heap.size > 1024 && this.heap.size > 4 * this.pending) this.heap.retain((e) => !e.done)
    this.heap.push(entry)
    if (entry.at < this.wakeAt && !this.closed) this.schedule(entry.at)
  }

  private wake(): void {
    this.timer = undefined
    this.wakeAt = Number.POSITIVE_INFINITY
    if (this.closed) return
    const now = this.clock.unsafeCurrentTimeMillis()
    for (let top = this.heap.peek(); top !== undefined && (top.done || top.at <= now); top = this.heap.peek()) {
      const entry = this.heap.pop()!
      if (entry.done) continue
      const expire = entry.expire!
      this.finish(entry)
      entry.expired = true
      expire()
    }
    const next = this.heap.peek()
    if (next !== undefined) this.schedule(next.at)
  }

  private schedule(at: number): void {
    this.timer?.cancel()
    this.wakeAt = at
    if (this.live) {
      const delay = Math.min(Math.max(0, at - this.clock.unsafeCurrentTimeMillis()), MAX_TIMEOUT_MILLIS)
      // A wake-up that comes early (a long delay in steps, a clock that moved) finds nothing due and
      // schedules the next one.
      const handle = setTimeout(() => this.wake(), delay)
      handle.unref()
      this.timer = { cancel: () => clearTimeout(handle) }
      return
    }
    let cancelled = false
    const fiber = Runtime.runFork(this.runtime)(
      Effect.zipRight(sleepUntil(at), Effect.sync(() => cancelled ? undefined : this.wake()))
    )
    this.timer = {
      cancel: () => {
        cancelled = true
        fiber.unsafeInterruptAsFork(FiberId.none)
      }
    }
  }
}

/** Deadlines on the current clock, their timer stopped when the scope closes. */
export const make: Effect.Effect<Deadlines, never, Scope.Scope> = Effect.flatMap(
  Effect.zip(Effect.clock, Effect.runtime<never>()),
  ([clock, runtime]) =>
    Effect.acquireRelease(
      Effect.sync(() => new Deadlines(clock, runtime)),
      (deadlines) => Effect.sync(() => deadlines.close())
    )
)
