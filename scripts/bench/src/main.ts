/**
 * `pnpm bench`: Tollgate measured side by side with what users would pick instead, in one run, on this
 * machine. Writes RESULTS.md next to package.json.
 *
 *   pnpm bench            every scenario at full size (a few minutes), writes RESULTS.md
 *   pnpm bench --quick    every scenario at tiny sizes (seconds), prints the tables and writes them to a
 *                         temporary file; RESULTS.md is left alone. CI runs this.
 *   pnpm bench --only=2,3 only the scenarios listed (a partial run never writes RESULTS.md)
 */
import { writeFileSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { Context } from "./lib/context.js"
import { errorMessage } from "./lib/context.js"
import { benchDir, gitRevision, loadAverage, machineInfo } from "./lib/machine.js"
import type { Section } from "./lib/report.js"
import { renderRun, renderSection, renderTargets } from "./lib/report.js"
import * as Admissions from "./scenarios/admissions.js"
import * as Exactness from "./scenarios/exactness.js"
import * as Loopback from "./scenarios/loopback.js"
import * as Memory from "./scenarios/memory.js"
import * as Overhead from "./scenarios/overhead.js"
import * as Simulation from "./scenarios/simulation.js"
import * as SingleFlight from "./scenarios/singleflight.js"

interface Scenario {
  readonly id: number
  readonly title: string
  readonly run: (context: Context) => Promise<Section>
}

const scenarios: ReadonlyArray<Scenario> = [
  { id: 1, title: "Middleware overhead", run: Overhead.run },
  { id: 2, title: "Limiter admissions", run: Admissions.run },
  { id: 3, title: "Budget exactness", run: Exactness.run },
  { id: 4, title: "Token single-flight", run: SingleFlight.run },
  { id: 5, title: "24-hour simulation", run: Simulation.run },
  { id: 6, title: "Heap per queued request", run: Memory.run },
  { id: 7, title: "Loopback throughput", run: Loopback.run }
]

const preamble = `
Produced by \`pnpm bench\` (scripts/bench). The machine is shared, so no figure here stands alone: every scenario runs
Tollgate and its peers **in the same run, interleaved round by round**, and reports the **median** of several rounds
with the spread (smallest–largest round) in parentheses. Ratios are computed per round from figures measured side by
side, then their median is taken. Throughput scenarios build each contender once (as a service holds its client or
limiter) and reuse it, run warm-up rounds first, rotate the order of contenders each round, and calibrate the work
per run so each timed run lasts about the same wall time. They do not force a GC between runs: a forced full
collection slows the next few thousand operations two- to fourfold, which would be charged to whoever runs next.
Servers run in a child process; memory is measured in a fresh process per limiter. Where a peer wins, the table says
so. Other work on the machine inflates absolute figures (see the load average below); the side-by-side ratios are the
figures to cite.
`

const main = async () => {
  const args = process.argv.slice(2)
  const quick = args.includes("--quick")
  const onlyArg = args.find((arg) => arg.startsWith("--only="))
  const only = onlyArg === undefined ? undefined : new Set(onlyArg.slice("--only=".length).split(",").map(Number))
  const selected = scenarios.filter((s) => only === undefined || only.has(s.id))
  const started = performance.now()
  const loadAtStart = loadAverage()
  const revisionAtStart = gitRevision()
  // The machine is shared with other work: the load through the run says how noisy its figures are.
  const loads: Array<number> = [loadAtStart]
  const loadSampler = setInterval(() => loads.push(loadAverage()), 10_000)
  loadSampler.unref()
  const stamp = () => `[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s]`
  const context: Context = { quick, log: (message) => process.stderr.write(`${stamp()} ${message}\n`) }
  // A peer rejecting a promise nobody awaits any more (a call aborted when its round ended) must not end the run.
  process.on("unhandledRejection", (reason) => context.log(`unhandled rejection (ignored): ${errorMessage(reason)}`))

  context.log(`Tollgate bench${quick ? " (quick)" : ""}: scenarios ${selected.map((s) => s.id).join(", ")}`)
  const sections: Array<Section> = []
  let failures = 0
  for (const scenario of selected) {
    context.log(`== scenario ${scenario.id}: ${scenario.title}`)
    const scenarioStart = performance.now()
    let section: Section
    try {
      section = await scenario.run(context)
    } catch (error) {
      failures++
      context.log(`scenario ${scenario.id} failed: ${error instanceof Error ? error.stack : String(error)}`)
      section = {
        id: scenario.id,
        title: scenario.title,
        setup: `**The scenario failed:** ${errorMessage(error)}`,
        tables: [],
        targets: [],
        notes: []
      }
    }
    section = { ...section, wallMillis: performance.now() - scenarioStart }
    sections.push(section)
    process.stdout.write(`\n${renderSection(section)}\n`)
  }

  const wallMillis = performance.now() - started
  clearInterval(loadSampler)
  loads.push(loadAverage())
  const cores = Os.availableParallelism()
  const busiest = Math.max(...loads)
  const sortedLoads = [...loads].sort((a, b) => a - b)
  const typical = sortedLoads[sortedLoads.length >> 1]!
  const loadNote = busiest > cores
    ? `\n**This run was noisy.** The 1-minute load average, sampled every 10 s, was ${
      typical.toFixed(1)
    } (median) and up to ${busiest.toFixed(1)} on ${cores} cores:
other work (other sessions running their test suites) shared the CPU, so absolute figures are inflated and their
spreads wide. The paired ratios, and the verdicts computed from them, are the figures to cite.\n`
    : ""
  const command = `pnpm bench${quick ? " --quick" : ""}${onlyArg === undefined ? "" : ` ${onlyArg}`}`
  const markdown = renderRun({
    quick,
    machine: machineInfo(loadAtStart, revisionAtStart),
    sections,
    wallMillis,
    command
  }, preamble + loadNote)
  process.stdout.write(`\n## Targets at a glance\n\n${renderTargets(sections)}\n\n`)
  const file = quick || only !== undefined
    ? Path.join(Os.tmpdir(), `tollgate-bench-${quick ? "quick" : "partial"}-${Date.now()}.md`)
    : Path.join(benchDir, "RESULTS.md")
  writeFileSync(file, markdown)
  context.log(`wrote ${file} (${(wallMillis / 1000).toFixed(1)} s)`)
  // Peers leave timers behind (queued waiters of limiters that cannot be cancelled); do not wait for them.
  process.exit(failures === 0 ? 0 : 1)
}

void main()
