/**
 * Runs an Effect program in virtual time, as a discrete-event simulation: sleeps go into a priority
 * queue, fiber work goes into a task queue, and the driver runs every ready task before it moves the
 * clock to the next wake-up. Nothing waits on a real timer, so a simulated day of traffic costs only
 * the work done in it.
 *
 * `TestClock` is the right tool for a unit test that steps time by hand. For long simulations it is
 * slow by design: each step polls fiber status across two real `setTimeout(0)` turns and re-sorts every
 * sleep ever registered, so a day of traffic takes minutes. This driver needs neither.
 *
 * @since 0.1.0
 */
import type { Scheduler } from "effect"
import { Cause, Clock, Duration, Effect, Exit, FiberId, FiberRef } from "effect"

/**
 * A pending sleep. A class, not an object literal: V8 pretenures an object literal's allocation site
 * once most of its objects outlive a scavenge (as sleepers do early in a run), after which every sleeper
 * is allocated in the old generation and keeps what its `resume` closure holds alive until a full
 * collection. That made a long simulation a third garbage collection. Instances of a class have no
 * allocation site to pretenure.
 */
class Sleeper {
  constructor(readonly at: number, readonly seq: number, public resume: (() => void) | undefined) {}
}

/** A binary min-heap of sleepers by wake time, then by registration order. */
class SleepQueue {
  private items: Array<Sleeper> = []
  cancelled = 0

  get size(): number {
    return this.items.length
  }

  private before(a: Sleeper, b: Sleeper): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }

  push(sleeper: Sleeper): void {
    const items = this.items
    items.push(sleeper)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(sleeper, items[parent]!)) break
      items[i] = items[parent]!
      i = parent
    }
    items[i] = sleeper
  }

  private popTop(): Sleeper | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (items.length > 0 && last !== undefined) {
      let i = 0
      while (true) {
        const left = 2 * i + 1
        const right = left + 1
        let best = last
        let index = i
        if (left < items.length && this.before(items[left]!, best)) {
          best = items[left]!
          index = left
        }
        if (right < items.length && this.before(items[right]!, best)) {
          best = items[right]!
          index = right
        }
        if (index === i) break
        items[i] = best
        i = index
      }
      items[i] = last
    }
    return top
  }

  /** The next live sleeper, dropping cancelled ones on the way. */
  peek(): Sleeper | undefined {
    while (this.items.length > 0 && this.items[0]!.resume === undefined) {
      this.popTop()
      this.cancelled--
    }
    return this.items[0]
  }

  pop(): Sleeper | undefined {
    const top = this.peek()
    if (top !== undefined) this.popTop()
    return top
  }

  /** Rebuilds the heap without cancelled entries once they dominate it. */
  compact(): void {
    if (this.cancelled < 1024 || this.cancelled * 2 < this.items.length) return
    const live = this.items.filter((s) => s.resume !== undefined)
    this.items = []
    this.cancelled = 0
    for (const sleeper of live) this.push(sleeper)
  }
}

/**
 * A `Clock` that only moves when the driver moves it.
 *
 * @since 0.1.0
 * @category models
 */
export class VirtualClock implements Clock.Clock {
  /** @since 0.1.0 */
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  /** @since 0.1.0 */
  readonly sleeps = new SleepQueue()
  private seq = 0

  constructor(public time: number) {}

  /** @since 0.1.0 */
  unsafeCurrentTimeMillis(): number {
    return this.time
  }

  /** @since 0.1.0 */
  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.time)

  /** @since 0.1.0 */
  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.time * 1_000_000))
  }

  /** @since 0.1.0 */
  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())

  /** @since 0.1.0 */
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    const millis = Duration.toMillis(duration)
    if (!(millis > 0)) return Effect.yieldNow()
    if (!Number.isFinite(millis)) return Effect.never
    return Effect.async<void>((resume) => {
      const sleeper = this.schedule(millis, () => resume(Effect.void))
      return Effect.sync(() => this.cancel(sleeper))
    })
  }

  /**
   * Calls `wake` once `millis` (finite, positive) have passed on this clock, unless `cancel` comes first:
   * a sleep without an Effect around it, for a wait that something else may end sooner (an aborted request).
   *
   * @since 0.2.0
   */
  schedule(millis: number, wake: () => void): VirtualClock.Scheduled {
    const sleeper = new Sleeper(this.time + millis, this.seq++, wake)
    this.sleeps.push(sleeper)
    return sleeper
  }

  /**
   * Takes a wake-up `schedule` made out of the queue; nothing once it has woken.
   *
   * @since 0.2.0
   */
  cancel(scheduled: VirtualClock.Scheduled): void {
    const sleeper = scheduled as Sleeper
    if (sleeper.resume !== undefined) {
      sleeper.resume = undefined
      this.sleeps.cancelled++
      this.sleeps.compact()
    }
  }
}

/**
 * @since 0.2.0
 */
export declare namespace VirtualClock {
  /**
   * A wake-up `VirtualClock.schedule` made.
   *
   * @since 0.2.0
   * @category models
   */
  export interface Scheduled {
    /** The instant it is due, in milliseconds of the clock. */
    readonly at: number
  }
}

/** Collects fiber work instead of running it on the event loop, so the driver can tell when it is done. */
class TaskQueue implements Scheduler.Scheduler {
  private tasks: Array<() => void> = []
  private head = 0

  get pending(): boolean {
    return this.head < this.tasks.length
  }

  shouldYield(fiber: Parameters<Scheduler.Scheduler["shouldYield"]>[0]): number | false {
    return fiber.currentOpCount > fiber.getFiberRef(FiberRef.currentMaxOpsBeforeYield)
      ? fiber.getFiberRef(FiberRef.currentSchedulingPriority)
      : false
  }

  scheduleTask(task: () => void): void {
    this.tasks.push(task)
  }

  /** Tasks run since the clock last moved. */
  ranSinceTick = 0

  /** Runs tasks until none are left, including those the tasks schedule, or until `budget` have run. */
  drain(budget = Number.POSITIVE_INFINITY): void {
    let ran = 0
    while (this.head < this.tasks.length && ran < budget) {
      const task = this.tasks[this.head]!
      this.tasks[this.head] = noop
      this.head++
      ran++
      task()
      if (this.head > 4096 && this.head * 2 > this.tasks.length) {
        this.tasks = this.tasks.slice(this.head)
        this.head = 0
      }
    }
    this.ranSinceTick += ran
    if (this.head >= this.tasks.length) {
      this.tasks = []
      this.head = 0
    }
  }
}

const noop = () => {}

/**
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  /** The virtual epoch the run starts at. Default: 2026-01-01T00:00:00Z, a realistic instant. */
  readonly start?: number | Date | undefined
  /**
   * Interrupt the program once virtual time passes this much. Default: none (the program ends by
   * itself, or the run reports a deadlock).
   */
  readonly limit?: Duration.DurationInput | undefined
  /**
   * Fiber tasks allowed at a single virtual instant before the run is declared a livelock.
   * Default: 50 million.
   */
  readonly maxTasksPerInstant?: number | undefined
  /**
   * Let promises and real I/O settle before each move of the clock. Needed when the program awaits
   * promises (web `Response` bodies, sockets); a pure simulation runs faster without. Default: true.
   */
  readonly settlePromises?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RunResult<A, E> {
  readonly exit: Exit.Exit<A, E>
  /** Virtual milliseconds that passed. */
  readonly elapsed: number
  /** How many times the clock moved. */
  readonly steps: number
}

const DEFAULT_START = Date.UTC(2026, 0, 1)

/**
 * The error a run ends with when its fibers keep working without ever letting the clock move: a loop
 * that retries instantly at one virtual instant, which in real time would spin a CPU.
 *
 * @since 0.1.0
 * @category errors
 */
export class Livelock extends Error {
  /** @since 0.1.0 */
  override readonly name = "Livelock"
  constructor(readonly at: number, readonly tasks: number) {
    super(
      `virtual-time livelock at ${new Date(at).toISOString()}: ${tasks} tasks ran without the clock moving; ` +
        "something retries or loops without sleeping"
    )
  }
}

/**
 * The error a run ends with when every fiber waits on something that is neither virtual time nor a
 * promise that settles: nothing could ever happen again.
 *
 * @since 0.1.0
 * @category errors
 */
export class Deadlock extends Error {
  /** @since 0.1.0 */
  override readonly name = "Deadlock"
  constructor(readonly at: number) {
    super(`virtual-time deadlock at ${new Date(at).toISOString()}: every fiber is waiting and no sleep is pending`)
  }
}

const macrotask = () => new Promise<void>((resolve) => setImmediate(resolve))

/**
 * Runs `effect` to completion in virtual time and reports how it ended. The clock starts at
 * `options.start` and jumps straight to each next wake-up once all fibers are idle.
 *
 * @since 0.1.0
 * @category running
 */
export const run = async <A, E>(effect: Effect.Effect<A, E>, options?: RunOptions): Promise<RunResult<A, E>> => {
  const start = options?.start instanceof Date ? options.start.getTime() : options?.start ?? DEFAULT_START
  const limit = options?.limit === undefined ? Number.POSITIVE_INFINITY : start + Duration.toMillis(options.limit)
  const settle = options?.settlePromises ?? true
  const clock = new VirtualClock(start)
  const tasks = new TaskQueue()
  const fiber = Effect.runFork(Effect.withClock(effect, clock), { scheduler: tasks })
  const maxTasks = options?.maxTasksPerInstant ?? 50_000_000
  const stop = async (exit: Exit.Exit<A, E>): Promise<RunResult<A, E>> => {
    fiber.unsafeInterruptAsFork(FiberId.none)
    tasks.drain(1_000_000)
    return { exit, elapsed: clock.time - start, steps }
  }
  let steps = 0
  let lastYield = performance.now()
  while (true) {
    // Run in slices, giving the event loop a turn every 100 ms of wall time, so test timeouts, signals
    // and I/O are never starved by a long simulation.
    tasks.drain(100_000)
    if (performance.now() - lastYield > 100) {
      await macrotask()
      lastYield = performance.now()
    }
    if (tasks.pending) {
      if (tasks.ranSinceTick > maxTasks) return stop(Exit.die(new Livelock(clock.time, tasks.ranSinceTick)))
      continue
    }
    const exit = fiber.unsafePoll()
    if (exit !== null) return { exit, elapsed: clock.time - start, steps }
    if (settle) {
      await Promise.resolve()
      if (tasks.pending) continue
    }
    let next = clock.sleeps.peek()
    if (next === undefined) {
      // Real I/O may still complete; give the event loop a turn before calling it a deadlock.
      await macrotask()
      if (tasks.pending) continue
      next = clock.sleeps.peek()
      if (next === undefined) return stop(Exit.die(new Deadlock(clock.time)))
    }
    if (next.at > limit) {
      clock.time = limit
      fiber.unsafeInterruptAsFork(FiberId.none)
      tasks.drain(1_000_000)
      if (settle) await macrotask()
      tasks.drain(1_000_000)
      const exit = fiber.unsafePoll() ?? Exit.failCause(Cause.interrupt(FiberId.none))
      return { exit: exit as Exit.Exit<A, E>, elapsed: clock.time - start, steps }
    }
    clock.sleeps.pop()
    clock.time = Math.max(clock.time, next.at)
    tasks.ranSinceTick = 0
    steps++
    const resume = next.resume!
    next.resume = undefined
    resume()
  }
}

/**
 * `run` as an Effect: the simulation runs on its own clock and scheduler, outside the calling fiber,
 * and its outcome becomes this effect's outcome.
 *
 * @since 0.1.0
 * @category running
 */
export const simulate = <A, E>(effect: Effect.Effect<A, E>, options?: RunOptions): Effect.Effect<A, E> =>
  Effect.flatMap(Effect.promise(() => run(effect, options)), (result) => result.exit)
