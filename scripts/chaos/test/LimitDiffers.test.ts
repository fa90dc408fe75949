/**
 * A provider whose real limit differs from its documented one (a plan changed, the docs are out of
 * date), for all four providers over the in-memory emulators in virtual time, with the client configured
 * from the docs (the provider's defaults): the server's real limit is half the documented one and twice
 * it. Norce's and Nomba's APIs document no limit, so their servers get one the client was never told of.
 *
 * Over-limit is counted honestly for this row: every arrival the server refused (429) after the first
 * real window, API and token requests alike (Nora counts token requests against the API's limit). The
 * first window's 429s are how the client learns and are allowed; they are reported below the matrix.
 * Every request must succeed (the server keeps admitting, so nobody may fail with `RateLimited`).
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import type { Recording } from "@tollgate/testing"
import { inject } from "vitest"
import * as Kits from "../src/Kits.js"
import { Observer } from "../src/Observe.js"
import { Report } from "../src/Report.js"
import * as Traffic from "../src/Traffic.js"

const kits = Kits.all()
const report = new Report(kits.flatMap((kit) => kit.secrets))
afterAll(() => report.write(inject("chaosResults")))

/** The limit a provider without a documented one really enforces (per client), before any time scale. */
const undocumented = { limit: 30, windowMillis: 60_000 }

interface Variant {
  readonly fault: string
  readonly real: { readonly limit: number; readonly windowMillis: number }
}

/** Half and twice the documented limit; one the client was never told of where the docs give none. */
const variantsOf = (kit: Kits.Kit): ReadonlyArray<Variant> =>
  kit.limit === undefined
    ? [{ fault: "api limit undocumented, server enforces 30 per minute", real: undocumented }]
    : [
      {
        fault: "api real limit half the documented one",
        real: { limit: Math.max(1, Math.floor(kit.limit.limit / 2)), windowMillis: kit.limit.windowMillis }
      },
      {
        fault: "api real limit twice the documented one",
        real: { limit: kit.limit.limit * 2, windowMillis: kit.limit.windowMillis }
      }
    ]

/** Refusals by the server's own limiter (nothing here is scripted), split at the end of the first window. */
const refusals = (recording: Recording.Snapshot, windowMillis: number) => {
  const times = [...recording.arrivals.map((a) => a.at), ...recording.tokenRequests.map((r) => r.at)]
  const start = Math.min(...times)
  const refused = [
    ...recording.arrivals.filter((a) => a.status === 429 && a.fault === undefined).map((a) => a.at),
    ...recording.tokenRequests.filter((r) => r.status === 429 && r.outcome === "refused").map((r) => r.at)
  ]
  const firstWindow = refused.filter((at) => at < start + windowMillis).length
  return { firstWindow, later: refused.length - firstWindow }
}

/**
 * The servers that announce their limit (`X-RateLimit-Limit` / `-Remaining` / `-Reset` on every answer):
 * the Token project's. Nora's, Norce's and Nomba's answer a bare 429 (their docs give no header), so the
 * client can learn nothing but "too many" from them.
 */
const announces: ReadonlySet<Kits.Name> = new Set(["token-project"])

describe("real limit differs from the documented one (virtual time, provider defaults)", () => {
  for (const kit of kits) {
    it(kit.name, async () => {
      for (const variant of variantsOf(kit)) {
        const real = variant.real
        const observer = new Observer()
        const result = await Traffic.virtual(
          {
            kit,
            emulator: { rateLimit: real },
            // Enough traffic to press on the limit for several windows.
            callers: 160,
            concurrency: 16,
            think: 500,
            bound: "1 hour"
          },
          observer,
          report.needles
        )
        const { firstWindow, later } = refusals(result.recording, real.windowMillis)
        const silent = !announces.has(kit.name)
        const fault = silent ? `${variant.fault}, server silent` : variant.fault
        const { context, counts, violations } = report.record({
          fault,
          group: "api",
          where: "virtual",
          provider: kit.name,
          outcomes: result.outcomes,
          observer,
          injected: 1,
          overLimit: later
        })
        report.note(
          fault,
          `${kit.name}: real ${real.limit}/${real.windowMillis / 1000}s, ${firstWindow} 429s in the first window, ` +
            `${later} later, ${counts.success}/${counts.touched} ok in ${(result.elapsed / 1000).toFixed(0)} s`
        )
        // A silent server's bare 429s teach the limit too (what it admitted in the trailing window): no row
        // is a known gap, every one is held to 0 refusals after the first window and 0 failures.
        expect(violations, context).toEqual([])
        expect(later, `${context}: 429s after the first window`).toBe(0)
        expect(counts.success, `${context}: every request succeeds`).toBe(counts.touched)
      }
    }, 60_000)
  }
})
