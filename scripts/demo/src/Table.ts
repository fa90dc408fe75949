/**
 * The summary table of the demo: one row per provider.
 */
export interface Row {
  readonly provider: string
  readonly sent: number
  readonly succeeded: number
  readonly tokenFetches: number
  readonly refreshes: number
  readonly revocations: number
  readonly unauthorized: number
  readonly rateLimited: number
  readonly window: string
  readonly permitWait: string
}

const columns: ReadonlyArray<readonly [string, (row: Row) => string, "left" | "right"]> = [
  ["provider", (r) => r.provider, "left"],
  ["sent", (r) => String(r.sent), "right"],
  ["ok", (r) => String(r.succeeded), "right"],
  ["token fetches", (r) => String(r.tokenFetches), "right"],
  ["refreshes", (r) => String(r.refreshes), "right"],
  ["revocations", (r) => String(r.revocations), "right"],
  ["401s", (r) => String(r.unauthorized), "right"],
  ["429s", (r) => String(r.rateLimited), "right"],
  ["requests per window", (r) => r.window, "left"],
  ["permit wait", (r) => r.permitWait, "left"]
]

/** Renders rows as an aligned text table. */
export const render = (rows: ReadonlyArray<Row>): string => {
  const cells = rows.map((row) => columns.map(([, get]) => get(row)))
  const widths = columns.map(([title], i) => Math.max(title.length, ...cells.map((c) => c[i]!.length)))
  const line = (values: ReadonlyArray<string>) =>
    values.map((v, i) => (columns[i]![2] === "right" ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join("  ")
  return [line(columns.map(([title]) => title)), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)]
    .join("\n")
}
