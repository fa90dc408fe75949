/**
 * Text rendering of load results: the summary table of per-provider stats, the live progress line, and
 * the small statistics behind them (permit-wait percentiles, the busiest window). Pure functions from
 * data to strings, so the CLI, the demo and tests render exactly the same thing.
 *
 * @since 0.1.0
 */

/**
 * A request budget: at most `limit` requests per `windowMillis`, for the whole API or per endpoint.
 *
 * @since 0.1.0
 * @category models
 */
export interface Limit {
  readonly limit: number
  readonly windowMillis: number
  /** Each endpoint has its own budget of this size (the Token project). Default: false. */
  readonly perEndpoint?: boolean | undefined
}

/**
 * Distribution of the time requests spent waiting for a rate-limit permit, in milliseconds. Requests
 * admitted at once count as zero.
 *
 * @since 0.1.0
 * @category models
 */
export interface WaitStats {
  readonly count: number
  readonly meanMillis: number
  readonly p50Millis: number
  readonly p95Millis: number
  readonly p99Millis: number
  readonly maxMillis: number
}

/**
 * One row of the summary: what one provider's client did during a run.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProviderStats {
  /** The provider's name, or any label (`"nora (sandbox)"`). */
  readonly provider: string
  /** Requests the program sent through the client (retries inside the client not counted again). */
  readonly requests: number
  /** Requests answered with a 2xx. */
  readonly succeeded: number
  /** Requests answered with another status or failed with an error. */
  readonly failed: number
  readonly tokenFetches: number
  readonly refreshes: number
  readonly revocations: number
  /** 401 answers seen on the wire (the client renews the token and retries once). */
  readonly unauthorized: number
  /** 429 answers seen on the wire (the client closes its gate and retries). */
  readonly rateLimited: number
  /** The budget the client enforced, when there is one. */
  readonly limit?: Limit | undefined
  /** The most API requests sent in any interval of one window's length (per endpoint when the limit is). */
  readonly peakPerWindow?: number | undefined
  /** Wall time of the run. */
  readonly elapsedMillis: number
  readonly wait: WaitStats
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TableOptions {
  /**
   * `"vertical"` (default): one line per metric, one column per provider; narrow enough for a terminal
   * whatever the number of metrics. `"horizontal"`: one line per provider, one column per metric.
   */
  readonly orientation?: "vertical" | "horizontal" | undefined
  /** Draw the borders with `+`, `-` and `|` instead of box-drawing characters. Default: false. */
  readonly ascii?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface GridOptions {
  /** Alignment per column; missing columns are left-aligned. */
  readonly align?: ReadonlyArray<"left" | "right"> | undefined
  readonly ascii?: boolean | undefined
}

// ---------------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------------

const trimNumber = (value: number, digits: number): string => {
  const fixed = value.toFixed(digits)
  return fixed.includes(".") ? fixed.replace(/\.?0+$/, "") : fixed
}

/**
 * A duration for people: `"0 ms"`, `"84 ms"`, `"1.26 s"`, `"2 min"`, `"1 h 30 min"`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatDuration = (millis: number): string => {
  if (!Number.isFinite(millis)) return "∞"
  const ms = Math.max(0, millis)
  if (ms < 1000) return `${ms < 10 && ms > 0 && !Number.isInteger(ms) ? trimNumber(ms, 1) : Math.round(ms)} ms`
  if (ms < 60_000) return `${trimNumber(ms / 1000, ms < 10_000 ? 2 : 1)} s`
  const totalSeconds = Math.round(ms / 1000)
  if (totalSeconds < 3600) {
    const minutes = Math.floor(totalSeconds / 60)
    const seconds = totalSeconds % 60
    return seconds === 0 ? `${minutes} min` : `${minutes} min ${seconds} s`
  }
  const totalMinutes = Math.round(totalSeconds / 60)
  const hours = Math.floor(totalMinutes / 60)
  const minutes = totalMinutes % 60
  return minutes === 0 ? `${hours} h` : `${hours} h ${minutes} min`
}

/**
 * A window length as it reads in "60 per 1 min": `"1 min"`, `"2 min"`, `"1 s"`, `"500 ms"`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatWindow = (millis: number): string => formatDuration(millis)

/**
 * `"60 per 1 min"`, `"10 per 2 min per endpoint"`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatLimit = (limit: Limit): string =>
  `${limit.limit} per ${formatWindow(limit.windowMillis)}${limit.perEndpoint === true ? " per endpoint" : ""}`

// ---------------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------------

/**
 * Summarises permit waits (milliseconds) with nearest-rank percentiles.
 *
 * @since 0.1.0
 * @category statistics
 */
export const waitStats = (samples: ReadonlyArray<number>): WaitStats => {
  if (samples.length === 0) return { count: 0, meanMillis: 0, p50Millis: 0, p95Millis: 0, p99Millis: 0, maxMillis: 0 }
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!
  const total = sorted.reduce((sum, x) => sum + x, 0)
  return {
    count: sorted.length,
    meanMillis: total / sorted.length,
    p50Millis: rank(0.5),
    p95Millis: rank(0.95),
    p99Millis: rank(0.99),
    maxMillis: sorted[sorted.length - 1]!
  }
}

/**
 * The largest number of instants (milliseconds) inside any half-open interval `[t, t + windowMillis)`:
 * what a server enforcing a sliding window of that length would have counted at its busiest.
 *
 * @since 0.1.0
 * @category statistics
 */
export const peakPerWindow = (instants: ReadonlyArray<number>, windowMillis: number): number => {
  const sorted = [...instants].sort((a, b) => a - b)
  let peak = 0
  let start = 0
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= windowMillis) start++
    peak = Math.max(peak, end - start + 1)
  }
  return peak
}

// ---------------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------------

const width = (text: string): number => [...text].length

const pad = (text: string, size: number, align: "left" | "right"): string => {
  const gap = " ".repeat(Math.max(0, size - width(text)))
  return align === "right" ? gap + text : text + gap
}

/**
 * A bordered grid: a header line, a rule, then the body. Every cell is one line of text.
 *
 * @since 0.1.0
 * @category tables
 */
export const renderGrid = (
  header: ReadonlyArray<string>,
  body: ReadonlyArray<ReadonlyArray<string>>,
  options?: GridOptions
): string => {
  const columns = Math.max(header.length, ...body.map((row) => row.length))
  const cell = (row: ReadonlyArray<string>, i: number) => row[i] ?? ""
  const sizes = Array.from(
    { length: columns },
    (_, i) => Math.max(width(cell(header, i)), ...body.map((row) => width(cell(row, i))))
  )
  const align = (i: number) => options?.align?.[i] ?? "left"
  const b = options?.ascii === true
    ? { h: "-", v: "|", tl: "+", tm: "+", tr: "+", ml: "+", mm: "+", mr: "+", bl: "+", bm: "+", br: "+" }
    : { h: "─", v: "│", tl: "┌", tm: "┬", tr: "┐", ml: "├", mm: "┼", mr: "┤", bl: "└", bm: "┴", br: "┘" }
  const rule = (left: string, middle: string, right: string) =>
    left + sizes.map((size) => b.h.repeat(size + 2)).join(middle) + right
  const line = (row: ReadonlyArray<string>, headerLine: boolean) =>
    b.v + sizes.map((size, i) => ` ${pad(cell(row, i), size, headerLine ? "left" : align(i))} `).join(b.v) + b.v
  return [
    rule(b.tl, b.tm, b.tr),
    line(header, true),
    rule(b.ml, b.mm, b.mr),
    ...body.map((row) => line(row, false)),
    rule(b.bl, b.bm, b.br)
  ].join("\n")
}

const percent = (part: number, whole: number): string => whole === 0 ? "" : ` (${Math.round((part / whole) * 100)}%)`

const metrics: ReadonlyArray<readonly [string, (row: ProviderStats) => string]> = [
  ["requests sent", (row) => String(row.requests)],
  ["succeeded", (row) => `${row.succeeded}${percent(row.succeeded, row.requests)}`],
  ["failed", (row) => String(row.failed)],
  ["token fetches", (row) => String(row.tokenFetches)],
  ["token refreshes", (row) => String(row.refreshes)],
  ["token revocations", (row) => String(row.revocations)],
  ["401s seen", (row) => String(row.unauthorized)],
  ["429s seen", (row) => String(row.rateLimited)],
  ["limit", (row) => row.limit === undefined ? "none" : formatLimit(row.limit)],
  [
    "busiest window",
    (row) =>
      row.limit === undefined || row.peakPerWindow === undefined
        ? "-"
        : `${row.peakPerWindow} of ${row.limit.limit}${percent(row.peakPerWindow, row.limit.limit)}`
  ],
  [
    "throughput",
    (row) => row.elapsedMillis <= 0 ? "-" : `${trimNumber((row.requests / row.elapsedMillis) * 1000, 1)} req/s`
  ],
  ["permit wait mean", (row) => formatDuration(row.wait.meanMillis)],
  ["permit wait p50", (row) => formatDuration(row.wait.p50Millis)],
  ["permit wait p95", (row) => formatDuration(row.wait.p95Millis)],
  ["permit wait p99", (row) => formatDuration(row.wait.p99Millis)],
  ["permit wait max", (row) => formatDuration(row.wait.maxMillis)],
  ["elapsed", (row) => formatDuration(row.elapsedMillis)]
]

/**
 * The summary table of a run: for each provider, requests sent and succeeded, token fetches, refreshes
 * and revocations, 401s and 429s seen, the limit and the busiest window against it, throughput, permit
 * waits (mean, p50, p95, p99, max) and elapsed time. Vertical by default (metrics down, providers
 * across), which stays narrow for any number of metrics.
 *
 * @since 0.1.0
 * @category tables
 */
export const renderTable = (rows: ReadonlyArray<ProviderStats>, options?: TableOptions): string => {
  if ((options?.orientation ?? "vertical") === "vertical") {
    return renderGrid(
      ["", ...rows.map((row) => row.provider)],
      metrics.map(([label, value]) => [label, ...rows.map(value)]),
      { ascii: options?.ascii, align: ["left", ...rows.map(() => "right" as const)] }
    )
  }
  return renderGrid(
    ["provider", ...metrics.map(([label]) => label)],
    rows.map((row) => [row.provider, ...metrics.map(([, value]) => value(row))]),
    { ascii: options?.ascii, align: ["left", ...metrics.map(() => "right" as const)] }
  )
}

// ---------------------------------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------------------------------

/**
 * Where a run stands.
 *
 * @since 0.1.0
 * @category models
 */
export interface Progress {
  readonly label: string
  readonly done: number
  readonly total: number
  readonly succeeded: number
  readonly failed: number
  readonly elapsedMillis: number
}

/**
 * One line of progress. With `bar` (a terminal) it draws a bar sized to fit `columns`; without it, a
 * plain sentence suited to logs and pipes.
 *
 * @since 0.1.0
 * @category progress
 */
export const renderProgress = (
  progress: Progress,
  options?: { readonly bar?: boolean | undefined; readonly columns?: number | undefined }
): string => {
  const ratio = progress.total === 0 ? 1 : Math.min(1, progress.done / progress.total)
  const rate = progress.elapsedMillis > 0 ? (progress.done / progress.elapsedMillis) * 1000 : 0
  const counts = `${progress.done}/${progress.total}`
  const tail = `ok ${progress.succeeded}  failed ${progress.failed}  ${trimNumber(rate, 1)} req/s  ${
    formatDuration(progress.elapsedMillis)
  }`
  if (options?.bar !== true) {
    return `${progress.label}: ${counts} requests (${Math.floor(ratio * 100)}%), ${tail.replace(/ {2}/g, ", ")}`
  }
  const head = `${progress.label} `
  const middle = ` ${counts} ${pad(`${Math.floor(ratio * 100)}%`, 4, "right")}  ${tail}`
  // A terminal that does not report its width (0, or absent) gets the conventional 80 columns.
  const columns = options.columns !== undefined && options.columns >= 20 ? options.columns : 80
  const barWidth = Math.max(10, Math.min(40, columns - width(head) - width(middle) - 3))
  const filled = Math.round(ratio * barWidth)
  const line = `${head}[${"█".repeat(filled)}${"░".repeat(barWidth - filled)}]${middle}`
  return width(line) >= columns ? [...line].slice(0, Math.max(1, columns - 1)).join("") : line
}
