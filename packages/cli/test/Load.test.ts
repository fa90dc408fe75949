import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { leaks, lines, runCli } from "./utils.js"

const row = (table: string, label: string): string => {
  const line = table.split("\n").find((l) => l.startsWith(`│ ${label} `))
  if (line === undefined) throw new Error(`no row ${label} in\n${table}`)
  return line.split("│")[2]!.trim()
}

describe("tollgate load --sandbox", () => {
  it.live("nora: the limit binds, zero 429s, a summary table", () =>
    Effect.gen(function*() {
      // Time scale 60: 60 requests per second; 90 requests need a second window.
      const result = yield* runCli([
        "load",
        "--sandbox",
        "nora",
        "/api/forms",
        "--requests",
        "90",
        "--concurrency",
        "15"
      ])
      expect(result.exitCode).toBe(0)
      const table = result.stdout
      expect(table.split("\n")[1]).toMatch(/^│ +│ nora +│$/)
      expect(row(table, "requests sent")).toBe("90")
      expect(row(table, "succeeded")).toBe("90 (100%)")
      expect(row(table, "failed")).toBe("0")
      expect(row(table, "token fetches")).toBe("1")
      expect(row(table, "401s seen")).toBe("0")
      expect(row(table, "429s seen")).toBe("0")
      expect(row(table, "limit")).toBe("60 per 1 s")
      const [peak, limit] = row(table, "busiest window").split(/ of | \(/).map(Number)
      expect(limit).toBe(60)
      expect(peak).toBeLessThanOrEqual(60)
      expect(peak).toBeGreaterThanOrEqual(55)
      // The last 30 requests waited for the window: the limit really bound.
      const maxWait = row(table, "permit wait max")
      const maxWaitMillis = maxWait.endsWith(" ms") ? Number(maxWait.slice(0, -3)) : Number(maxWait.slice(0, -2)) * 1000
      expect(maxWaitMillis).toBeGreaterThan(500)
      expect(maxWaitMillis).toBeLessThan(1500)
      expect(row(table, "elapsed")).toMatch(/^1(\.\d+)? s$/)
      // Progress on stderr, plain lines (not a terminal): the header, then at least the final line.
      const progress = lines(result.stderr)
      expect(progress[0]).toBe(
        "load: 90 × GET /api/forms on nora (sandbox, time scale 60), concurrency 15, limit 60 per 1 s"
      )
      expect(progress.at(-1)).toMatch(/^nora: 90\/90 requests \(100%\), ok 90, failed 0, /)
      expect(leaks(result)).toEqual([])
    }))

  it.live("token-project: a per-endpoint window, --json", () =>
    Effect.gen(function*() {
      const result = yield* runCli([
        "load",
        "--sandbox",
        "--time-scale",
        "240",
        "token-project",
        "/notarizations/stamps",
        "-n",
        "15",
        "-c",
        "5",
        "--json"
      ])
      expect(result.exitCode).toBe(0)
      const stats = JSON.parse(result.stdout)
      expect(stats).toMatchObject({
        provider: "token-project",
        sandbox: true,
        requests: 15,
        succeeded: 15,
        failed: 0,
        tokenFetches: 1,
        rateLimited: 0,
        unauthorized: 0,
        limit: { limit: 10, windowMillis: 500, perEndpoint: true },
        failures: {}
      })
      expect(stats.peakPerWindow).toBeLessThanOrEqual(10)
      expect(stats.wait.count).toBeGreaterThanOrEqual(15)
      expect(stats.wait.maxMillis).toBeGreaterThan(100)
      expect(leaks(result)).toEqual([])
    }))

  it.live("nomba: the token is revoked when the run ends, and counted", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["load", "--sandbox", "nomba", "/v1/accounts/balance", "-n", "20", "--json"])
      expect(result.exitCode).toBe(0)
      const stats = JSON.parse(result.stdout)
      expect(stats).toMatchObject({ succeeded: 20, tokenFetches: 1, revocations: 1, rateLimited: 0 })
      expect(stats.limit).toBeUndefined()
    }))

  it.live("a terminal gets a progress bar redrawn in place", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["load", "--sandbox", "norce", "/commerce/products/1.1/ListProducts", "-n", "20"], {
        tty: true
      })
      expect(result.exitCode).toBe(0)
      expect(result.stderr).toMatch(/\rnorce \[█+\] 20\/20 100% {2}ok 20 {2}failed 0 {2}.* req\/s {2}.*\x1b\[K\n$/)
      expect(row(result.stdout, "limit")).toBe("none")
      expect(row(result.stdout, "busiest window")).toBe("-")
    }))

  it.live("failed requests: the table, then one line, exit code 1", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["load", "--sandbox", "nora", "/api/forms/frm_missing", "-n", "5"])
      expect(result.exitCode).toBe(1)
      expect(row(result.stdout, "failed")).toBe("5")
      expect(lines(result.stderr).at(-1)).toBe("tollgate: 5 of 5 requests failed: 5× HTTP 404")
    }))

  it.live("refuses nonsense counts", () =>
    Effect.gen(function*() {
      const zero = yield* runCli(["load", "--sandbox", "nora", "/api/forms", "--requests", "0"])
      expect(zero.exitCode).toBe(2)
      expect(lines(zero.stderr)).toEqual(["tollgate: --requests must be a whole number from 1 to 1000000, got 0"])
      const concurrency = yield* runCli(["load", "--sandbox", "nora", "/api/forms", "--concurrency", "-1"])
      expect(concurrency.exitCode).toBe(2)
      expect(lines(concurrency.stderr)).toHaveLength(1)
    }))
})
