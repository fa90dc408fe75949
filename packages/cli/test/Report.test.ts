import { describe, expect, it } from "@effect/vitest"
import * as Report from "../src/Report.js"

const nora: Report.ProviderStats = {
  provider: "nora",
  requests: 120,
  succeeded: 120,
  failed: 0,
  tokenFetches: 1,
  refreshes: 0,
  revocations: 0,
  unauthorized: 0,
  rateLimited: 0,
  limit: { limit: 60, windowMillis: 60_000 },
  peakPerWindow: 60,
  elapsedMillis: 61_500,
  wait: Report.waitStats([0, 0, 10, 59_000])
}

const nomba: Report.ProviderStats = {
  ...nora,
  provider: "nomba",
  requests: 40,
  succeeded: 39,
  failed: 1,
  revocations: 1,
  unauthorized: 2,
  limit: undefined,
  peakPerWindow: undefined,
  elapsedMillis: 800,
  wait: Report.waitStats([])
}

describe("Report", () => {
  it("renderTable: metrics down, providers across, aligned", () => {
    const table = Report.renderTable([nora, nomba])
    const rows = table.split("\n")
    expect(rows[0]).toMatch(/^┌─+┬─+┬─+┐$/)
    expect(rows[1]).toMatch(/^│ +│ nora +│ nomba +│$/)
    expect(new Set(rows.map((row) => [...row].length)).size).toBe(1)
    expect(table).toContain("│ requests sent     │             120 │       40 │")
    expect(table).toContain("│ succeeded         │      120 (100%) │ 39 (98%) │")
    expect(table).toContain("│ token revocations │               0 │        1 │")
    expect(table).toContain("│ 401s seen         │               0 │        2 │")
    expect(table).toContain("│ limit             │    60 per 1 min │     none │")
    expect(table).toContain("│ busiest window    │ 60 of 60 (100%) │        - │")
    expect(table).toContain("│ throughput        │         2 req/s │ 50 req/s │")
    expect(table).toContain("│ permit wait mean  │          14.8 s │     0 ms │")
    expect(table).toContain("│ permit wait p50   │            0 ms │     0 ms │")
    expect(table).toContain("│ permit wait max   │            59 s │     0 ms │")
    expect(table).toContain("│ elapsed           │       1 min 2 s │   800 ms │")
  })

  it("renderTable: horizontal and ASCII", () => {
    const table = Report.renderTable([nora], { orientation: "horizontal", ascii: true })
    const rows = table.split("\n")
    expect(rows).toHaveLength(5)
    expect(rows[1]).toMatch(/^\| provider \| requests sent \| succeeded +\| failed \|/)
    expect(rows[3]).toMatch(/^\| nora +\| +120 \| +120 \(100%\) \|/)
    expect(table).not.toMatch(/[│─┌]/)
  })

  it("renderGrid: widths and alignment", () => {
    expect(Report.renderGrid(["a", "b"], [["xx", "1"], ["y", "22"]], { align: ["left", "right"], ascii: true }))
      .toBe(
        [
          "+----+----+",
          "| a  | b  |",
          "+----+----+",
          "| xx |  1 |",
          "| y  | 22 |",
          "+----+----+"
        ].join("\n")
      )
  })

  it("waitStats: nearest-rank percentiles", () => {
    const samples = Array.from({ length: 100 }, (_, i) => i + 1)
    expect(Report.waitStats(samples)).toEqual({
      count: 100,
      meanMillis: 50.5,
      p50Millis: 50,
      p95Millis: 95,
      p99Millis: 99,
      maxMillis: 100
    })
    expect(Report.waitStats([]).count).toBe(0)
  })

  it("peakPerWindow: the busiest half-open window", () => {
    expect(Report.peakPerWindow([], 1000)).toBe(0)
    expect(Report.peakPerWindow([0, 999, 1000, 1999], 1000)).toBe(2)
    expect(Report.peakPerWindow([5, 0, 10, 3000, 3001, 3002, 3999], 1000)).toBe(4)
  })

  it("formatDuration and formatLimit", () => {
    expect(Report.formatDuration(0)).toBe("0 ms")
    expect(Report.formatDuration(84.4)).toBe("84 ms")
    expect(Report.formatDuration(1260)).toBe("1.26 s")
    expect(Report.formatDuration(120_000)).toBe("2 min")
    expect(Report.formatDuration(3_599_999)).toBe("1 h")
    expect(Report.formatDuration(5_400_000)).toBe("1 h 30 min")
    expect(Report.formatLimit({ limit: 10, windowMillis: 120_000, perEndpoint: true })).toBe(
      "10 per 2 min per endpoint"
    )
  })

  it("renderProgress: a bar that fits the terminal, or a sentence", () => {
    const progress = { label: "nora", done: 45, total: 90, succeeded: 44, failed: 1, elapsedMillis: 1500 }
    const bar = Report.renderProgress(progress, { bar: true, columns: 80 })
    expect(bar).toMatch(/^nora \[█+░+\] 45\/90 +50% {2}ok 44 {2}failed 1 {2}30 req\/s {2}1.5 s$/)
    expect([...bar].length).toBeLessThan(80)
    expect([...Report.renderProgress(progress, { bar: true, columns: 40 })].length).toBeLessThan(40)
    expect(Report.renderProgress(progress)).toBe("nora: 45/90 requests (50%), ok 44, failed 1, 30 req/s, 1.5 s")
  })
})
