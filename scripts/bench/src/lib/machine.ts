/**
 * The machine and the exact versions measured, read from the installed package.json files (not from
 * our own package.json ranges), so a table can always be traced to the code that produced it.
 */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

export interface MachineInfo {
  readonly date: string
  readonly cpuModel: string
  readonly cores: number
  readonly memory: string
  readonly os: string
  readonly node: string
  /** 1-minute load averages when the run started and ended: how busy the shared machine was. */
  readonly load: string
  readonly versions: ReadonlyArray<{ readonly name: string; readonly version: string }>
}

/** scripts/bench, whatever the working directory. */
export const benchDir = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..", "..")

/** Every library a scenario measures or runs on. */
export const measuredPackages: ReadonlyArray<string> = [
  "@tollgate/core",
  "@tollgate/testing",
  "@tollgate/providers",
  "effect",
  "@effect/platform",
  "@effect/platform-node",
  "@effect/experimental",
  "bottleneck",
  "p-throttle",
  "limiter",
  "rate-limiter-flexible",
  "simple-oauth2",
  "undici"
]

export const installedVersion = (name: string): string => {
  try {
    // pnpm links each dependency under the bench's own node_modules; package "exports" fields may hide
    // package.json from `require.resolve`, so read the file directly.
    const file = Path.join(benchDir, "node_modules", name, "package.json")
    return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version
  } catch {
    return "not installed"
  }
}

export const gitRevision = (): string | undefined => {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: benchDir, encoding: "utf8" }).trim()
    const dirty = execFileSync("git", ["status", "--porcelain"], { cwd: benchDir, encoding: "utf8" }).trim() !== ""
    return dirty ? `${head} + uncommitted changes` : head
  } catch {
    return undefined
  }
}

export const loadAverage = (): number => Os.loadavg()[0] ?? Number.NaN

/**
 * `revisionAtStart` is the workspace revision when the run began: the code measured. Children start later
 * and load the workspace as it is then, so a revision that moved during the run is reported as such.
 */
export const machineInfo = (loadAtStart: number, revisionAtStart: string | undefined): MachineInfo => {
  const cpus = Os.cpus()
  const revisionAtEnd = gitRevision()
  const revision = revisionAtStart === revisionAtEnd
    ? revisionAtStart
    : `${revisionAtStart} at the start, ${revisionAtEnd} at the end: the workspace changed during the run`
  return {
    date: new Date().toISOString(),
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    cores: cpus.length,
    memory: `${(Os.totalmem() / 1024 ** 3).toFixed(1)} GB`,
    os: `${Os.type()} ${Os.release()} (${Os.platform()}/${Os.arch()})`,
    node: process.version,
    load: `${loadAtStart.toFixed(2)} at the start, ${loadAverage().toFixed(2)} at the end (1-minute load average)`,
    versions: [
      ...measuredPackages.map((name) => ({
        name,
        version: name.startsWith("@tollgate/") && revision !== undefined
          ? `${installedVersion(name)} (workspace, git ${revision})`
          : installedVersion(name)
      }))
    ]
  }
}
