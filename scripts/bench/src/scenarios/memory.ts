/**
 * Scenario 6: heap per queued request. Each limiter is measured in a fresh Node process (started with
 * --expose-gc) so one limiter's garbage never lands in another's figure; see children/queued-memory.ts
 * for the measurement itself.
 */
import * as Child from "../lib/child.js"
import type { Context } from "../lib/context.js"
import { errorMessage } from "../lib/context.js"
import * as Format from "../lib/format.js"
import { installedVersion } from "../lib/machine.js"
import * as Peers from "../lib/peers.js"
import type { Section } from "../lib/report.js"
import { pairedRatios, summarize } from "../lib/stats.js"

interface Measurement {
  readonly name: string
  readonly requests: number
  readonly waiting: number
  readonly bytesPerRequest: number
}

const EFFECT_FLOOR = "(floor) parked fiber, no limiter"
const JS_FLOOR = "(floor) pending async function, no limiter"

const limiters: ReadonlyArray<string> = [
  EFFECT_FLOOR,
  Peers.tollgate.name,
  Peers.effectTokenBucket.name,
  Peers.experimentalFixedWindow.name,
  JS_FLOOR,
  Peers.pThrottleWindowed.name,
  Peers.bottleneckReservoir.name,
  Peers.limiterRateLimiter.name,
  Peers.rateLimiterFlexibleQueue.name
]

/**
 * Runs `tasks` `width` at a time. Each child measures only its own heap, so running them side by side changes
 * wall time, not figures.
 */
const concurrently = async <A>(width: number, tasks: ReadonlyArray<() => Promise<A>>): Promise<Array<A>> => {
  const results: Array<A> = new Array(tasks.length)
  let next = 0
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++
      results[i] = await tasks[i]!()
    }
  }
  await Promise.all(Array.from({ length: width }, worker))
  return results
}

export const run = async (context: Context): Promise<Section> => {
  const requests = context.quick ? 5_000 : 100_000
  const rounds = context.quick ? 1 : 3
  const samples = new Map<string, Array<number>>(limiters.map((name) => [name, []]))
  const errors = new Map<string, string>()
  const tasks = Array.from({ length: rounds }, (_, round) =>
    limiters.map((name) => async () => {
      if (errors.has(name)) return
      try {
        const result = await Child.runOnce(
          "queued-memory.ts",
          ["--expose-gc"],
          [name, String(requests)],
          120_000
        ) as Measurement
        if (result.waiting < result.requests) {
          throw new Error(`only ${result.waiting} of ${result.requests} requests were still waiting when measured`)
        }
        samples.get(name)!.push(result.bytesPerRequest)
        context.log(
          `6 memory: round ${round + 1}/${rounds}: ${name}: ${Format.bytes(result.bytesPerRequest)} per queued request`
        )
      } catch (error) {
        errors.set(name, errorMessage(error))
        context.log(`6 memory: ${name} failed: ${errorMessage(error)}`)
      }
    })).flat()
  // Two cores: two children at a time for a full run; a quick run only checks the path, so it crowds them.
  await concurrently(context.quick ? 5 : 2, tasks)

  const ours = samples.get(Peers.tollgate.name)!
  const oursSummary = summarize(ours)
  const effectFloor = summarize(samples.get(EFFECT_FLOOR)!)
  const row = (name: string) => {
    const values = samples.get(name)!
    const summary = summarize(values)
    const isEffect = [
      EFFECT_FLOOR,
      Peers.tollgate.name,
      Peers.effectTokenBucket.name,
      Peers.experimentalFixedWindow.name
    ]
      .includes(name)
    return [
      name,
      errors.get(name) ?? Format.withSpread(summary, Format.bytes),
      isEffect && name !== EFFECT_FLOOR && values.length > 0
        ? Format.bytes(summary.median - effectFloor.median)
        : name === EFFECT_FLOOR
        ? "(the floor)"
        : "",
      name === Peers.tollgate.name || values.length === 0 || ours.length === 0
        ? ""
        : Format.withSpread(pairedRatios(ours, values), Format.ratio)
    ]
  }
  return {
    id: 6,
    title: "Heap per queued request",
    setup: `
Each limiter, in a fresh \`node --expose-gc\` process, is configured for 1 request per 15 s and its budget spent
(Tollgate: \`RateLimiter.make(slidingWindow(...))\` with its gate closed by \`pauseUntil(now + 1 hour)\`, as a 429 would
close it). A warm-up of 1,000 waiting requests runs first. Then ${requests.toLocaleString("en")} requests are started
that all wait for a permit: each a fiber (\`Effect.forkDaemon\` of \`task.pipe(guard)\`) for the Effect limiters, or an
\`async\` function awaiting the limiter for the plain-JS ones (rate-limiter-flexible through its \`RateLimiterQueue\`,
since \`consume\` itself never queues). The figure is (heapUsed after − heapUsed before) ÷ requests, each read after
two full GCs; every request was verified still waiting. The floors show what a parked fiber (waiting on a shared
\`Deferred\`) and a pending \`async\` function (awaiting a shared promise) cost with no limiter at all. ${rounds} round(s).
`,
    tables: [{
      headers: [
        "limiter",
        "heap per queued request, median (min–max)",
        "above the parked-fiber floor",
        "Tollgate ÷ this (median, min–max)"
      ],
      rows: limiters.map(row)
    }],
    targets: [
      {
        name: "Tollgate's own heap per queued request (above the parked-fiber floor) ≤ 0.5 KB (issue 16)",
        met: ours.length === 0 || effectFloor.samples.length === 0
          ? undefined
          : oursSummary.median - effectFloor.median <= 512,
        measured: Format.bytes(oursSummary.median - effectFloor.median)
      },
      {
        name: "≤ 2 KB heap per queued request, fibers included",
        met: ours.length === 0 ? undefined : oursSummary.median <= 2048,
        measured: Format.bytes(oursSummary.median)
      }
    ],
    notes: [
      `A parked Effect fiber alone costs ${Format.bytes(effectFloor.median)} here (the FiberRuntime, its stack, context
and scheduler bookkeeping), so "≤ 2 KB per queued request, fibers included" cannot be met by any design that keeps
one fiber per queued request on effect ${installedVersion("effect")}; what a limiter controls is the part above that
floor.`,
      ...(ours.length === 0 || oursSummary.median <= 2048 ? [] : [
        `**Where Tollgate's part goes.** Tollgate's share above the floor is
${Format.bytes(oursSummary.median - effectFloor.median)}, against
${Format.bytes(summarize(samples.get(Peers.effectTokenBucket.name)!).median - effectFloor.median)} for effect's own
semaphore-based limiter. Measured while writing this bench (50,000 fibers per shape, heap after two full GCs): a
fiber parked on \`Effect.async\` without a canceler costs about 2.1 KB, one whose \`Effect.async\` returns a canceler
about 3.6 KB (effect wraps it in an interruption handler), one \`uninterruptibleMask\`/\`restore\` region adds about
0.9 KB and an \`ensuring\` about 1 KB. Tollgate's waiter is one \`Effect.async\` without a canceler (an interrupted
waiter leaves the queue from the caller's exit handler, which runs anyway) inside one uninterruptible region with
one finalizer, plus the \`Waiter\` and ticket objects: the region and the finalizer are what an interruption-safe
permit needs (a permit granted as the fiber is interrupted must be refunded).`,
        `**What it would take.** Under 2 KB with fibers included is not possible with one parked fiber per request (the
floor row); it needs queued requests held as data, e.g. a \`submit\` API that stores a thunk in the lane (a few
hundred bytes) and runs it on a small pool of worker fibers when a permit frees, as the plain-JS limiters do with
promises. That changes what a caller holds (a handle, not a fiber), so it is left for an API discussion.`
      ])
    ]
  }
}
