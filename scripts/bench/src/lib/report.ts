/**
 * What a scenario hands back, and how the whole run becomes RESULTS.md.
 */
import type { Table } from "./format.js"
import { markdownTable } from "./format.js"
import type { MachineInfo } from "./machine.js"

export interface Target {
  /** The target as DESIGN.md states it. */
  readonly name: string
  /** `undefined` when the run could not decide (e.g. a peer failed). */
  readonly met: boolean | undefined
  /** The measured figure the verdict rests on. */
  readonly measured: string
}

export interface Section {
  readonly id: number
  readonly title: string
  /** How the scenario is set up, in Markdown: enough to rerun it by hand. */
  readonly setup: string
  readonly tables: ReadonlyArray<Table>
  readonly targets: ReadonlyArray<Target>
  /** Findings in Markdown: where a peer wins, what the numbers mean, what would change them. */
  readonly notes: ReadonlyArray<string>
  /** Wall time of the scenario, milliseconds. */
  readonly wallMillis?: number | undefined
}

export interface Run {
  readonly quick: boolean
  readonly machine: MachineInfo
  readonly sections: ReadonlyArray<Section>
  readonly wallMillis: number
  readonly command: string
}

const verdict = (met: boolean | undefined): string => met === undefined ? "undecided" : met ? "met" : "**missed**"

export const renderTargets = (sections: ReadonlyArray<Section>): string =>
  markdownTable({
    headers: ["scenario", "target", "measured (median)", "verdict"],
    alignRight: [],
    rows: sections.flatMap((section) =>
      section.targets.map((
        target
      ) => [`${section.id}. ${section.title}`, target.name, target.measured, verdict(target.met)])
    )
  })

export const renderSection = (section: Section): string => {
  const parts: Array<string> = [`## ${section.id}. ${section.title}`, "", section.setup.trim(), ""]
  for (const table of section.tables) {
    if (table.caption !== undefined) parts.push(`**${table.caption}**`, "")
    parts.push(markdownTable(table), "")
  }
  if (section.targets.length > 0) {
    parts.push(
      markdownTable({
        headers: ["target", "measured (median)", "verdict"],
        alignRight: [],
        rows: section.targets.map((target) => [target.name, target.measured, verdict(target.met)])
      }),
      ""
    )
  }
  for (const note of section.notes) parts.push(note.trim(), "")
  if (section.wallMillis !== undefined) {
    parts.push(`_Scenario wall time: ${(section.wallMillis / 1000).toFixed(1)} s._`, "")
  }
  return parts.join("\n")
}

export const renderRun = (run: Run, preamble: string): string => {
  const { machine } = run
  const parts: Array<string> = [
    run.quick ? "# Tollgate bench (quick run: tiny sizes, not for citing)" : "# Tollgate bench results",
    "",
    preamble.trim(),
    "",
    "## Machine and versions",
    "",
    markdownTable({
      headers: ["", ""],
      alignRight: [],
      rows: [
        ["date", machine.date],
        ["command", `\`${run.command}\``],
        ["CPU", `${machine.cpuModel} (${machine.cores} cores visible to Node)`],
        ["memory", machine.memory],
        ["OS", machine.os],
        ["Node", machine.node],
        ["machine load", machine.load],
        ["total wall time", `${(run.wallMillis / 1000).toFixed(1)} s`]
      ]
    }),
    "",
    markdownTable({
      headers: ["library", "version"],
      alignRight: [],
      rows: machine.versions.map((v) => [v.name, v.version])
    }),
    "",
    "## Targets at a glance",
    "",
    renderTargets(run.sections),
    ""
  ]
  for (const section of run.sections) parts.push(renderSection(section))
  return parts.join("\n")
}
