/**
 * Scenario 2: admissions per second when no limit binds. Every limiter gets a budget far above the
 * demand and guards the same trivial task (a counter increment), driven by one caller in a loop
 * (uncontended) and by 1,000 concurrent callers. The bare loops without any limiter are shown as the
 * floor each family runs on: an Effect loop for the Effect limiters, an `await` loop for the others.
 */
import { Effect } from "effect"
import type { Context } from "../lib/context.js"
import { acquire, repeat, repeatConcurrently } from "../lib/effect.js"
import * as Format from "../lib/format.js"
import * as Peers from "../lib/peers.js"
import type { Section, Target } from "../lib/report.js"
import { pairedRatios, summarize } from "../lib/stats.js"
import type { Summary } from "../lib/stats.js"
import * as Throughput from "../lib/throughput.js"

// 100 million per second: no demand in this process comes near it, so no limiter ever waits.
const budget: Peers.Budget = { limit: 100_000_000, windowMillis: 1000 }

let sink = 0
const jsTask = (): void => {
  sink++
}
const effectTask = Effect.sync(jsTask)

type Mode = { readonly name: string; readonly callers: number }

const effectContender = (peer: Peers.EffectPeer, mode: Mode): Throughput.Contender => ({
  name: peer.name,
  prepare: async () => {
    const limiter = await acquire(peer.make(budget))
    const body = () => limiter.value.guard(effectTask)
    return {
      run: (n) =>
        Effect.runPromise(
          mode.callers === 1 ? repeat(n, body) : repeatConcurrently(mode.callers, n / mode.callers, body)
        ),
      close: limiter.close
    }
  }
})

const effectBaseline = (mode: Mode): Throughput.Contender => ({
  name: "(floor) Effect loop, no limiter",
  prepare: async () => ({
    run: (n) =>
      Effect.runPromise(
        mode.callers === 1
          ? repeat(n, () => effectTask)
          : repeatConcurrently(mode.callers, n / mode.callers, () => effectTask)
      )
  })
})

/**
 * The least any Effect limiter with a release step can cost: the task run in the interruption-safe
 * acquire/use/release shape (`uninterruptibleMask` + `onExit`) with no limiter logic at all.
 */
const releaseShape = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.uninterruptibleMask((restore) => Effect.onExit(restore(effect), () => Effect.void))

const effectReleaseFloor = (mode: Mode): Throughput.Contender => ({
  name: "(floor) Effect loop + uninterruptibleMask/onExit, no limiter",
  prepare: async () => ({
    run: (n) =>
      Effect.runPromise(
        mode.callers === 1
          ? repeat(n, () => releaseShape(effectTask))
          : repeatConcurrently(mode.callers, n / mode.callers, () => releaseShape(effectTask))
      )
  })
})

const jsLoop = async (callers: number, n: number, admit: () => Promise<void>): Promise<void> => {
  const perCaller = n / callers
  const caller = async () => {
    for (let i = 0; i < perCaller; i++) await admit()
  }
  if (callers === 1) return caller()
  await Promise.all(Array.from({ length: callers }, caller))
}

const jsContender = (peer: Peers.JsPeer, mode: Mode): Throughput.Contender => ({
  name: peer.name,
  prepare: async () => {
    const limiter = peer.make(budget)
    const admit = limiter.wrap(jsTask)
    return { run: (n) => jsLoop(mode.callers, n, admit), close: limiter.close }
  }
})

const jsBaseline = (mode: Mode): Throughput.Contender => ({
  name: "(floor) await loop, no limiter",
  prepare: async () => {
    const admit = async () => jsTask()
    return { run: (n) => jsLoop(mode.callers, n, admit) }
  }
})

const effectPeers = [Peers.tollgate, Peers.experimentalFixedWindow, Peers.effectTokenBucket]
const jsPeers = [
  Peers.bottleneckReservoir,
  Peers.pThrottleWindowed,
  Peers.pThrottleStrict,
  Peers.limiterRateLimiter,
  Peers.limiterTokenBucket,
  Peers.rateLimiterFlexible
]

interface ModeResult {
  readonly mode: Mode
  readonly results: ReadonlyArray<Throughput.Result>
}

const get = (results: ReadonlyArray<Throughput.Result>, name: string) => results.find((r) => r.name === name)!

export const run = async (context: Context): Promise<Section> => {
  // Quick runs shrink the crowd too: bottleneck admits about 400 per second however many callers wait.
  const crowd = context.quick ? 100 : 1000
  const modes: ReadonlyArray<Mode> = [
    { name: "uncontended (1 caller)", callers: 1 },
    { name: `${crowd.toLocaleString("en")} concurrent callers`, callers: crowd }
  ]
  const byMode: Array<ModeResult> = []
  for (const mode of modes) {
    const contenders = [
      effectBaseline(mode),
      effectReleaseFloor(mode),
      ...effectPeers.map((peer) => effectContender(peer, mode)),
      jsBaseline(mode),
      ...jsPeers.map((peer) => jsContender(peer, mode))
    ]
    const results = await Throughput.measure(contenders, {
      label: `2 admissions ${mode.name}`,
      warmups: context.quick ? 1 : 2,
      rounds: context.quick ? 1 : 7,
      // Longer runs for the crowd: forking 1,000 fibers is a fixed cost per run that must stay small.
      targetMillis: context.quick ? 25 : mode.callers === 1 ? 150 : 300,
      // Runs in slices, round-robin, so a burst of load from elsewhere hits every limiter alike.
      slices: context.quick ? 1 : mode.callers === 1 ? 5 : 2,
      granularity: mode.callers,
      // Small first counts: bottleneck needs about 5 ms per admission.
      initialCount: mode.callers === 1 ? 32 : mode.callers,
      log: context.log
    })
    byMode.push({ mode, results })
  }

  const tables = []
  const targets: Array<Target> = []
  const notes: Array<string> = []
  for (const { mode, results } of byMode) {
    const ours = get(results, Peers.tollgate.name)
    // The fastest plain-JS peer is chosen by median rate in this mode.
    const jsResults = jsPeers.map((peer) => get(results, peer.name)).filter((r) =>
      r.error === undefined && r.rates.length > 0
    )
    const fastestJs = jsResults.reduce<Throughput.Result | undefined>(
      (best, r) => best === undefined || summarize(r.rates).median > summarize(best.rates).median ? r : best,
      undefined
    )
    tables.push({
      caption: mode.name,
      headers: ["limiter", "admissions/s, median (min–max)", "Tollgate ÷ this (median, min–max)"],
      rows: results.map((r) => [
        r.name,
        r.error === undefined ? Format.withSpread(summarize(r.rates), Format.rate) : `failed: ${r.error}`,
        r === ours || r.error !== undefined || ours.error !== undefined
          ? ""
          : Format.withSpread(pairedRatios(ours.rates, r.rates), Format.ratio)
      ])
    })
    const ourRate = summarize(ours.rates)
    const versus = (peer: Peers.EffectPeer): Summary => pairedRatios(ours.rates, get(results, peer.name).rates)
    if (mode.callers === 1) {
      targets.push({
        name: "≥ 1,000,000 admissions/s uncontended",
        met: ours.error === undefined ? ourRate.median >= 1_000_000 : undefined,
        measured: Format.rate(ourRate.median)
      })
    }
    {
      const ratio = versus(Peers.experimentalFixedWindow)
      targets.push({
        name: `≥ 1× ${Peers.experimentalFixedWindow.name}, ${mode.name} (issue 16)`,
        met: ratio.samples.length === 0 ? undefined : ratio.median >= 1,
        measured: Format.withSpread(ratio, Format.ratio)
      })
    }
    for (const peer of [Peers.experimentalFixedWindow, Peers.effectTokenBucket]) {
      const ratio = versus(peer)
      targets.push({
        name: `≥ 2× ${peer.name}, ${mode.name}`,
        met: ratio.samples.length === 0 ? undefined : ratio.median >= 2,
        measured: Format.ratio(ratio.median)
      })
    }
    if (fastestJs !== undefined) {
      const ratio = pairedRatios(ours.rates, fastestJs.rates)
      targets.push({
        name: `within 2× of the fastest plain-JS peer (${fastestJs.name}), ${mode.name}`,
        met: ratio.samples.length === 0 ? undefined : ratio.median >= 0.5,
        measured: `${Format.ratio(ratio.median)} of its rate`
      })
    }
  }
  if (targets.some((t) => t.met === false)) notes.push(...explain(byMode[0]!.results))
  notes.push(
    `The task counter reached ${sink.toLocaleString("en")}; it exists so no engine can drop the guarded work.`
  )
  return {
    id: 2,
    title: "Limiter admissions when no limit binds",
    setup: `
Every limiter is configured for ${budget.limit.toLocaleString("en")} admissions per ${budget.windowMillis} ms (far
above any demand here), built once before its warm-up and reused, and guards the same trivial task (increment a
counter). Effect limiters run the task as \`Effect.sync\` inside their combinator (Tollgate:
\`task.pipe(limiter.withPermit())\` on \`RateLimiter.make(RateLimiter.slidingWindow(...))\`; effect's own:
\`limiter(task)\`; @effect/experimental: \`withRateLimiter({ ..., onExceeded: "delay" })(task)\` over
\`layerStoreMemory\`). Plain-JS limiters are used as their READMEs show: bottleneck \`wrap\` with a refreshed
reservoir, p-throttle \`throttle(task)\` (windowed and \`strict: true\`), limiter \`await removeTokens(1)\` then the
task, rate-limiter-flexible \`await consume(key)\` then the task. Uncontended: one caller admits in a loop (a fiber, or
an \`async\` loop awaiting each admission). Contended: 1,000 callers (fibers, or \`async\` loops run with
\`Promise.all\`) share one limiter. Ratios are paired per round (Tollgate's rate ÷ the peer's in the same round).
The floors are no limiter at all: the bare loop, and for Effect also the bare acquire/release shape
(\`uninterruptibleMask\` + \`onExit\` around the task), about what an interruption-safe permit release costs.
`,
    tables,
    targets,
    notes
  }
}

/** Reads the uncontended figures as a breakdown of where Tollgate's admission time goes. */
const explain = (results: ReadonlyArray<Throughput.Result>): Array<string> => {
  const rateOf = (name: string) => {
    const result = results.find((r) => r.name === name)
    return result === undefined || result.rates.length === 0 ? Number.NaN : summarize(result.rates).median
  }
  const floor = rateOf("(floor) Effect loop, no limiter")
  const releaseFloor = rateOf("(floor) Effect loop + uninterruptibleMask/onExit, no limiter")
  const ours = rateOf(Peers.tollgate.name)
  const experimental = rateOf(Peers.experimentalFixedWindow.name)
  const fastest = jsPeers
    .map((peer) => ({ name: peer.name, rate: rateOf(peer.name) }))
    .filter((p) => Number.isFinite(p.rate))
    .sort((a, b) => b.rate - a.rate)[0]
  const notes: Array<string> = []
  if (fastest !== undefined) {
    notes.push(
      `**The Effect floor.** With no limiter at all, a loop that runs its task as an Effect admits
${Format.rate(floor)} uncontended, ${Format.ratio(floor / fastest.rate)} the rate of ${fastest.name}
(${Format.rate(fastest.rate)}), whose admission is a synchronous check and one promise.${
        floor < fastest.rate / 2
          ? " So \"within 2× of the fastest plain-JS peer\" cannot be met by any limiter whose admission is an Effect" +
            " step, on this machine; what a limiter controls is how far below the Effect floor it lands."
          : ""
      }`
    )
  }
  notes.push(
    `**Where Tollgate's time goes.** Tollgate admits ${Format.rate(ours)}, ${Format.ratio(ours / releaseFloor)} the rate
of the bare interruption-safe acquire/release shape (${Format.rate(releaseFloor)}), which is about what any limiter
that gives permits back pays for interruption safety when built from Effect's combinators. \`withPermit()\` hands
out one function per limiter, and the sliding window's \`Lane.withPermit\` is one \`uninterruptibleMask\` whose body
takes the permit with the lane's synchronous \`tryTake\`, runs the task under \`restore\` and releases the permit
from its exit (\`Effect.exit\` → \`flatMap\`): a single acquire/release shape, so Tollgate sits at that floor and
the rest is the fiber run loop (a CPU profile of the uncontended loop is mostly \`fiberRuntime.js\`; lane.ts and
budget.ts are a few percent each). @effect/experimental (${Format.rate(experimental)}) is faster because its admission
has no release step at all: it bumps a counter in a Map and runs the task, which is also why it cannot give a permit
back when a response arrives and overdraws a sliding-window server (scenario 3).`,
    `**What it would take.** ≥ 1,000,000/s uncontended needs the acquire/release floor itself above 1M/s on the
machine${releaseFloor >= 1_000_000 ? ", which it is" : `, which it is not here (${Format.rate(releaseFloor)})`}, and
matching @effect/experimental needs ${Format.rate(experimental)}${
      experimental > releaseFloor ? ", above that floor" : ""
    }: with one parked-and-released permit per admission, that is only reachable by an admission with no
interruption-safe release (e.g. a sliding window that records the permit's return time when it is taken and never
hears of the response, which gives up returning the permit one window after the *response*, the property that keeps
scenario 3 exact), or by Effect's run loop getting cheaper.`
  )
  return notes
}
