/**
 * Operations per second, side by side. Every contender runs once per round, rounds interleave the
 * contenders (in a rotating order, so none always runs first after a GC or last on a warm JIT), and the
 * operation count is calibrated once per contender so every timed run lasts about the same wall time.
 *
 * Each contender is built once, before its first run, and reused for every round, as a service holds its
 * client or limiter for its lifetime. (Rebuilding per round would time each instance's cold start: V8
 * keeps type feedback per closure, so a freshly built Effect service runs unoptimized for its first few
 * thousand calls, which penalizes closure-heavy implementations more than the work they do.)
 */
import { errorMessage } from "./context.js"

export interface Runner {
  /** Performs `n` operations and resolves when the last one is done. */
  readonly run: (n: number) => Promise<void>
  readonly close?: (() => Promise<void>) | undefined
}

export interface Contender {
  readonly name: string
  /** Builds the instance (limiter, client, connection pool) used for every round; not timed. */
  readonly prepare: () => Promise<Runner>
}

export interface Options {
  readonly label: string
  readonly warmups: number
  readonly rounds: number
  /** Wall time each timed run aims at. */
  readonly targetMillis: number
  /** Operation counts are rounded up to a multiple of this (e.g. the number of concurrent callers). */
  readonly granularity?: number | undefined
  /**
   * Each contender's timed run of a round is cut into this many slices, run round-robin across the
   * contenders, and its rate is its operations ÷ the sum of its slices' times. A burst of load from
   * elsewhere then lands on every contender's slices alike instead of on one contender's whole run, which
   * is what a paired ratio needs on a shared machine. 1 (the default) runs each contender's run whole.
   */
  readonly slices?: number | undefined
  /** Smallest count tried during calibration. */
  readonly initialCount?: number | undefined
  readonly log: (message: string) => void
}

export interface Result {
  readonly name: string
  /** Operations per second, one per measured round, in round order. */
  readonly rates: ReadonlyArray<number>
  /** Operations per timed run. */
  readonly count: number
  readonly error?: string | undefined
}

// No forced GC before a timed run: a full collection forced with --expose-gc leaves the next few thousand
// operations two to four times slower (measured while writing this bench), and whoever runs next would
// pay for it. Garbage collection is part of every contender's steady state instead.
const timeRun = async (runner: Runner, n: number): Promise<number> => {
  const start = performance.now()
  await runner.run(n)
  return performance.now() - start
}

const roundUp = (n: number, granularity: number): number =>
  Math.max(granularity, Math.ceil(n / granularity) * granularity)

/**
 * Finds the count for a timed run by growing it until a run lasts at least half the target, then scaling
 * it (at most doubling) to the target. Measuring close to the target, rather than extrapolating from a
 * short run, keeps a run's fixed costs (forking 1,000 fibers takes tens of milliseconds) and cold code
 * from distorting the count.
 */
const calibrate = async (runner: Runner, options: Options): Promise<number> => {
  const granularity = options.granularity ?? 1
  const target = options.targetMillis
  let n = roundUp(options.initialCount ?? 256, granularity)
  let elapsed = await timeRun(runner, n)
  while (elapsed < target / 2 && n < 1e9) {
    n = roundUp(n * (elapsed < target / 16 ? 8 : 2), granularity)
    elapsed = await timeRun(runner, n)
  }
  return rescale(n, elapsed, options)
}

/** `n` scaled towards the target wall time, by at most 2× either way, never below one operation per caller. */
const rescale = (n: number, elapsed: number, options: Options): number => {
  const factor = Math.min(2, Math.max(0.5, options.targetMillis / Math.max(elapsed, 0.001)))
  return roundUp(Math.round(n * factor), options.granularity ?? 1)
}

export const measure = async (contenders: ReadonlyArray<Contender>, options: Options): Promise<Array<Result>> => {
  const runners = new Map<string, Runner>()
  const counts = new Map<string, number>()
  const rates = new Map<string, Array<number>>(contenders.map((c) => [c.name, []]))
  const errors = new Map<string, string>()
  const total = options.warmups + options.rounds
  try {
    for (let round = 0; round < total; round++) {
      const measured = round >= options.warmups
      const label = measured ? `round ${round - options.warmups + 1}/${options.rounds}` : `warm-up ${round + 1}`
      // Rotate the order each round.
      const order = contenders.map((_, i) => contenders[(i + round) % contenders.length]!)
      const active: Array<Contender> = []
      for (const contender of order) {
        if (errors.has(contender.name)) continue
        try {
          if (!runners.has(contender.name)) {
            options.log(`${options.label}: ${contender.name} (calibrating)`)
            const runner = await contender.prepare()
            runners.set(contender.name, runner)
            counts.set(contender.name, await calibrate(runner, options))
          }
          active.push(contender)
        } catch (error) {
          errors.set(contender.name, errorMessage(error))
          options.log(`${options.label}: ${contender.name} failed: ${errorMessage(error)}`)
        }
      }
      const slices = Math.max(1, options.slices ?? 1)
      const elapsed = new Map<string, number>(active.map((c) => [c.name, 0]))
      const done = new Map<string, number>(active.map((c) => [c.name, 0]))
      for (let slice = 0; slice < slices; slice++) {
        for (const contender of active) {
          if (errors.has(contender.name)) continue
          try {
            const n = counts.get(contender.name)!
            // The slices add up to n, each a multiple of the granularity.
            const granularity = options.granularity ?? 1
            const units = Math.round(n / granularity)
            const share = (Math.floor((units * (slice + 1)) / slices) - Math.floor((units * slice) / slices)) *
              granularity
            if (share === 0) continue
            elapsed.set(
              contender.name,
              elapsed.get(contender.name)! + await timeRun(runners.get(contender.name)!, share)
            )
            done.set(contender.name, done.get(contender.name)! + share)
          } catch (error) {
            errors.set(contender.name, errorMessage(error))
            options.log(`${options.label}: ${contender.name} failed: ${errorMessage(error)}`)
          }
        }
      }
      for (const contender of active) {
        if (errors.has(contender.name)) continue
        const n = done.get(contender.name)!
        const took = elapsed.get(contender.name)!
        const perSecond = (n / took) * 1000
        if (measured) rates.get(contender.name)!.push(perSecond)
        // Calibration may have run on cold code or during a burst of load from elsewhere: warm-ups correct it.
        else counts.set(contender.name, rescale(n, took, options))
        options.log(
          `${options.label}: ${contender.name} ${label}: ${Math.round(perSecond).toLocaleString("en")}/s (${
            n.toLocaleString("en")
          } in ${took.toFixed(0)} ms${slices > 1 ? ` over ${slices} slices` : ""})`
        )
      }
    }
  } finally {
    for (const runner of runners.values()) await runner.close?.().catch(() => undefined)
  }
  return contenders.map((c) => ({
    name: c.name,
    rates: rates.get(c.name)!,
    count: counts.get(c.name) ?? 0,
    error: errors.get(c.name)
  }))
}
