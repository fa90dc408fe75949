/**
 * Number formatting and Markdown tables for RESULTS.md and the terminal.
 */
import type { Summary } from "./stats.js"

const siPrefixes: ReadonlyArray<readonly [number, string]> = [[1e9, "G"], [1e6, "M"], [1e3, "k"]]

/** 1234567 → "1.23M". */
export const si = (value: number, digits = 3): string => {
  if (!Number.isFinite(value)) return String(value)
  for (const [scale, prefix] of siPrefixes) {
    if (Math.abs(value) >= scale) return `${(value / scale).toPrecision(digits)}${prefix}`
  }
  return value.toPrecision(digits)
}

export const rate = (perSecond: number): string => `${si(perSecond)}/s`

export const ratio = (value: number): string => Number.isFinite(value) ? `${value.toFixed(2)}×` : "n/a"

export const percent = (fraction: number, digits = 1): string =>
  Number.isFinite(fraction) ? `${(fraction * 100).toFixed(digits)}%` : "n/a"

export const bytes = (value: number): string => {
  if (!Number.isFinite(value)) return "n/a"
  const abs = Math.abs(value)
  if (abs >= 1024 * 1024) return `${(value / (1024 * 1024)).toFixed(1)} MB`
  if (abs >= 1024) return `${(value / 1024).toFixed(2)} KB`
  return `${Math.round(value)} B`
}

export const millis = (value: number): string => {
  if (!Number.isFinite(value)) return "n/a"
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} s`
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`
  return `${value.toFixed(value >= 100 ? 0 : 1)} ms`
}

/** A median with its spread: "1.23M/s (1.10M–1.30M)". */
export const withSpread = (summary: Summary, format: (value: number) => string): string =>
  summary.samples.length <= 1
    ? format(summary.median)
    : `${format(summary.median)} (${format(summary.min)}–${format(summary.max)})`

export interface Table {
  readonly caption?: string | undefined
  readonly headers: ReadonlyArray<string>
  readonly rows: ReadonlyArray<ReadonlyArray<string>>
  /** Columns to right-align (numbers). Default: every column but the first. */
  readonly alignRight?: ReadonlyArray<number> | undefined
}

const escapeCell = (cell: string): string => cell.replace(/\|/g, "\\|").replace(/\n/g, " ")

export const markdownTable = (table: Table): string => {
  const right = new Set(table.alignRight ?? table.headers.map((_, i) => i).filter((i) => i > 0))
  const cells = [table.headers, ...table.rows].map((row) => row.map(escapeCell))
  const widths = table.headers.map((_, column) => Math.max(3, ...cells.map((row) => (row[column] ?? "").length)))
  const line = (row: ReadonlyArray<string>) =>
    `| ${
      widths.map((width, column) =>
        right.has(column) ? (row[column] ?? "").padStart(width) : (row[column] ?? "").padEnd(width)
      ).join(" | ")
    } |`
  const rule = `| ${
    widths.map((width, column) => right.has(column) ? `${"-".repeat(width - 1)}:` : "-".repeat(width)).join(" | ")
  } |`
  const [header, ...body] = cells
  return [line(header!), rule, ...body.map(line)].join("\n")
}
