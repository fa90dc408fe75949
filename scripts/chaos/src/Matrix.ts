/**
 * The fault matrix: one row per fault, summed over every test file that injected it. Each test file
 * appends its rows to a results directory (one JSON line per row); the global teardown reads them all,
 * prints the matrix and fails the run when a row lost a request, saw an over-limit arrival or leaked a
 * secret.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"

/** Where a fault was injected. */
export type Where = "virtual" | "loopback" | "memory"

/** The section of the matrix a fault belongs to. */
export type Group = "token" | "api" | "program" | "config" | "fuzz"

export interface Counts {
  /** Times the fault was injected (a scripted step consumed, a random fault drawn, a case generated). */
  injected: number
  /** Requests (or cases) that ran while the fault was active. */
  touched: number
  /** Requests that ended in a 2xx response whose body was read, or cases that decoded. */
  success: number
  /** Requests that ended in a typed error (a Tollgate error, an `HttpClientError`, a `ConfigError`). */
  typed: number
  /** Requests interrupted on purpose by the test (callers that gave up). */
  cancelled: number
  /** Requests that ended in neither: a defect, an unexpected interruption, or no end within the bound. */
  lost: number
  /** Arrivals the server had to refuse or that overdrew a documented limit or a closed gate. */
  overLimit: number
  /** Occurrences of a secret, token or refresh token in anything observed. */
  leaked: number
}

export interface Row extends Counts {
  readonly fault: string
  readonly group: Group
  readonly where: ReadonlyArray<Where>
  readonly providers: ReadonlyArray<string>
  /** Figures a row reports beyond the columns (printed below the matrix). */
  readonly notes?: ReadonlyArray<string> | undefined
  /**
   * Why this row's broken invariant is a known, reported gap (an open issue), not a regression: the row is
   * printed with its figures and marked, and does not fail the run.
   */
  readonly known?: string | undefined
}

export const zero = (): Counts => ({
  injected: 0,
  touched: 0,
  success: 0,
  typed: 0,
  cancelled: 0,
  lost: 0,
  overLimit: 0,
  leaked: 0
})

export const add = (a: Counts, b: Partial<Counts>): Counts => ({
  injected: a.injected + (b.injected ?? 0),
  touched: a.touched + (b.touched ?? 0),
  success: a.success + (b.success ?? 0),
  typed: a.typed + (b.typed ?? 0),
  cancelled: a.cancelled + (b.cancelled ?? 0),
  lost: a.lost + (b.lost ?? 0),
  overLimit: a.overLimit + (b.overLimit ?? 0),
  leaked: a.leaked + (b.leaked ?? 0)
})

const groups: ReadonlyArray<Group> = ["token", "api", "program", "config", "fuzz"]

/** Appends rows to this process's file in `dir`. */
export const write = (dir: string, rows: ReadonlyArray<Row>): void => {
  Fs.mkdirSync(dir, { recursive: true })
  const file = Path.join(dir, `rows-${process.pid}-${Math.random().toString(36).slice(2, 8)}.jsonl`)
  Fs.appendFileSync(file, rows.map((row) => JSON.stringify(row)).join("\n") + "\n")
}

/** Every row written to `dir`, merged by fault. */
export const read = (dir: string): ReadonlyArray<Row> => {
  const merged = new Map<string, Row>()
  if (!Fs.existsSync(dir)) return []
  for (const file of Fs.readdirSync(dir).sort()) {
    if (!file.endsWith(".jsonl")) continue
    for (const line of Fs.readFileSync(Path.join(dir, file), "utf8").split("\n")) {
      if (line.trim() === "") continue
      const row = JSON.parse(line) as Row
      const key = `${row.group}\u0000${row.fault}`
      const previous = merged.get(key)
      merged.set(
        key,
        previous === undefined ? row : {
          ...add(previous, row),
          fault: row.fault,
          group: row.group,
          where: [...new Set([...previous.where, ...row.where])].sort(),
          providers: [...new Set([...previous.providers, ...row.providers])].sort(),
          notes: [...(previous.notes ?? []), ...(row.notes ?? [])],
          known: previous.known ?? row.known
        }
      )
    }
  }
  return [...merged.values()].sort((a, b) =>
    groups.indexOf(a.group) - groups.indexOf(b.group) || a.fault.localeCompare(b.fault)
  )
}

const columns = [
  ["injected", "injected"],
  ["touched", "touched"],
  ["success", "success"],
  ["typed", "typed err"],
  ["cancelled", "cancelled"],
  ["lost", "lost"],
  ["overLimit", "over-limit"],
  ["leaked", "leaked"]
] as const

const shortProviders = (providers: ReadonlyArray<string>): string =>
  providers.length === 4 ? "all 4" : providers.join(",")

/** The matrix as a fixed-width table, with a total line. */
export const format = (rows: ReadonlyArray<Row>): string => {
  const header = ["group", "fault", "where", "providers", ...columns.map(([, title]) => title)]
  const total = rows.reduce<Counts>((acc, row) => add(acc, row), zero())
  const body = rows.map((row) => [
    row.group,
    row.known === undefined ? row.fault : `${row.fault} (known gap*)`,
    row.where.map((w) => w === "virtual" ? "vt" : w === "loopback" ? "lo" : "mem").join("+"),
    shortProviders(row.providers),
    ...columns.map(([key]) => String(row[key]))
  ])
  const footer = ["", `TOTAL (${rows.length} faults)`, "", "", ...columns.map(([key]) => String(total[key]))]
  const table = [header, ...body, footer]
  const widths = header.map((_, i) => Math.max(...table.map((line) => line[i]!.length)))
  const render = (line: ReadonlyArray<string>) =>
    line.map((cell, i) => (i < 4 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")
  const rule = widths.map((w) => "-".repeat(w)).join("  ")
  const notes = rows.flatMap((row) => [
    ...(row.known === undefined ? [] : [`* ${row.group}/${row.fault}: ${row.known}`]),
    ...(row.notes ?? []).map((note) => `  ${row.group}/${row.fault}: ${note}`)
  ])
  return [render(header), rule, ...body.map(render), rule, render(footer), ...(notes.length > 0 ? ["", ...notes] : [])]
    .join("\n")
}

/** The rows that broke an invariant: anything lost, over the limit or leaked (a known gap only by what it names). */
export const violations = (rows: ReadonlyArray<Row>): ReadonlyArray<Row> =>
  rows.filter((row) => row.lost > 0 || row.leaked > 0 || (row.overLimit > 0 && row.known === undefined))
