/**
 * The API misbehaving, for all four providers through their modules, over the in-memory emulators in
 * virtual time with the providers' default settings: tokens revoked mid-run, 401 storms, 429 with and
 * without rate-limit headers, `Remaining: 0` on a success, 5xx bursts, answers slower than the client's
 * timeout, connections reset before the answer and dropped in the middle of the body.
 *
 * Besides the matrix's zeros, two invariants are checked on the server's arrivals: after a 429 or a
 * `Remaining: 0`, no request is sent to that limiter's key before the announced instant (invariant 6),
 * and token requests stay within one per 401 observed, plus the first (invariant 3).
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import type { Recording } from "@tollgate/testing"
import { Faults } from "@tollgate/testing"
import { Effect } from "effect"
import { inspect } from "node:util"
import { inject } from "vitest"
import * as Kits from "../src/Kits.js"
import { Observer } from "../src/Observe.js"
import { Report } from "../src/Report.js"
import * as Traffic from "../src/Traffic.js"

const kits = Kits.all()
const report = new Report(kits.flatMap((kit) => kit.secrets))
afterAll(() => report.write(inject("chaosResults")))

/** Virtual time starts here (VirtualTime's default), so absolute resets can be written up front. */
const start = Date.UTC(2026, 0, 1)
const latency = 20

/** A scripted answer and, when it closes the gate, until when (from the instant the server answered). */
interface Scripted {
  readonly step: Faults.Step
  readonly gate?: ((at: number) => number) | undefined
}

const unauthorized = (challenge: string | undefined): Scripted => ({
  step: Faults.json(401, { message: "Unauthorized" }, {
    headers: challenge === undefined ? {} : { "www-authenticate": challenge }
  })
})

interface Row {
  readonly fault: string
  readonly script?: ((kit: Kits.Kit) => ReadonlyArray<Scripted>) | undefined
  readonly during?: ((context: Traffic.Context, injected: { count: number }) => Effect.Effect<void>) | undefined
  readonly only?: Kits.Name | undefined
  /** Token requests may not exceed 1 + the 401s the client saw (invariant 3, runs shorter than a lifetime). */
  readonly tokenBound?: boolean | undefined
}

const rows: ReadonlyArray<Row> = [
  {
    fault: "api 401 for a token revoked mid-run",
    tokenBound: true,
    during: ({ emulator }, injected) =>
      Effect.forever(Effect.zipRight(
        Effect.sleep("7 seconds"),
        Effect.map(emulator.revokeAll, (n) => {
          injected.count += n
        })
      ))
  },
  {
    fault: "api 401 storm",
    tokenBound: true,
    script: () =>
      Array.from(
        { length: 16 },
        (_, i) => unauthorized(i % 3 === 0 ? undefined : i % 3 === 1 ? "Bearer error=\"invalid_token\"" : "Bearer")
      )
  },
  {
    fault: "api 403-style insufficient_scope 401",
    script: () => [unauthorized("Bearer error=\"insufficient_scope\""), unauthorized("Bearer error=insufficient_scope")]
  },
  {
    fault: "api 429 with Retry-After / X-RateLimit-Reset / RateLimit headers",
    script: (kit) => [
      {
        step: Faults.json(429, { message: "Too Many Requests" }, { headers: { "retry-after": "3" } }),
        gate: (at) => at + 3_000
      },
      {
        step: Faults.json(429, { errors: [{ code: 88, message: "Rate limit exceeded" }] }, {
          headers: {
            "x-ratelimit-limit": kit.name === "token-project" ? "10" : "60",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": String(Math.ceil((start + 60_000) / 1000))
          }
        }),
        gate: () => start + 60_000
      },
      {
        step: Faults.json(429, { error: "rate_limited" }, {
          headers: { ratelimit: "\"default\";r=0;t=4", "ratelimit-policy": "\"default\";q=100;w=60" }
        }),
        gate: (at) => at + 4_000
      },
      {
        step: Faults.json(429, { error: "rate_limited" }, {
          headers: { "retry-after": "Thu, 01 Jan 2026 00:03:00 GMT" }
        }),
        gate: () => start + 180_000
      }
    ]
  },
  {
    fault: "api 429 without any header",
    script: () => [
      // No announced reset: the client backs off at least half its base delay (500 ms) and pauses all.
      { step: Faults.respond({ status: 429 }), gate: (at) => at + 250 },
      { step: Faults.json(429, { statusCode: 429, message: "Too Many Requests" }), gate: (at) => at + 250 },
      { step: Faults.html(429, "<html><body>Too many requests</body></html>"), gate: (at) => at + 250 }
    ]
  },
  {
    fault: "api Remaining: 0 on a success",
    script: (kit) => [
      {
        step: Faults.json(200, kit.okBody, {
          headers: {
            "x-ratelimit-limit": kit.name === "token-project" ? "10" : "60",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": String(Math.ceil((start + 45_000) / 1000))
          }
        }),
        gate: () => start + 45_000
      },
      {
        step: Faults.json(200, kit.okBody, { headers: { ratelimit: "limit=100, remaining=0, reset=20" } }),
        gate: (at) => at + 20_000
      }
    ]
  },
  {
    fault: "api 5xx burst",
    script: () =>
      Array.from({ length: 9 }, (_, i) => ({
        step: i % 3 === 0
          ? Faults.html(503, "<html><body>Service Unavailable</body></html>")
          : i % 3 === 1
          ? Faults.json(502, { message: "Bad Gateway" })
          : Faults.json(500, { message: "boom" }, { headers: { "retry-after": "2" } })
      }))
  },
  {
    fault: "api answers slower than the client's timeout",
    script: () => Array.from({ length: 9 }, () => ({ step: Faults.passThrough({ delay: "45 seconds" }) }))
  },
  {
    fault: "api connection reset before the answer",
    script: () => Array.from({ length: 6 }, () => ({ step: Faults.drop() }))
  },
  {
    fault: "api connection dropped mid-body",
    script: () => Array.from({ length: 6 }, () => ({ step: Faults.drop({ mode: "partial" }) }))
  },
  {
    fault: "api app deleted (401, credentials refused) then restored",
    only: "token-project",
    during: ({ emulator }, injected) =>
      Effect.gen(function*() {
        const tokenProject = emulator as unknown as {
          readonly deleteApp: () => Effect.Effect<number>
          readonly restoreApp: () => Effect.Effect<void>
        }
        yield* Effect.sleep("5 seconds")
        injected.count += 1 + (yield* tokenProject.deleteApp())
        yield* Effect.sleep("20 seconds")
        yield* tokenProject.restoreApp()
      })
  }
]

const gatesOf = (
  scripted: ReadonlyArray<Scripted>,
  arrivals: ReadonlyArray<Recording.Arrival>,
  keyed: boolean
): ReadonlyArray<Traffic.Gate> => {
  // The n-th scripted arrival answered with the n-th scripted step.
  const answered = arrivals.filter((arrival) => arrival.fault === "scripted")
  return scripted.flatMap((s, i) => {
    const arrival = answered[i]
    return s.gate === undefined || arrival === undefined
      ? []
      : [{ from: arrival.at, until: s.gate(arrival.at), key: keyed ? arrival.route : undefined }]
  })
}

describe("API faults (virtual time, provider defaults)", () => {
  for (const kit of kits) {
    it(kit.name, async () => {
      for (const row of rows) {
        if (row.only !== undefined && row.only !== kit.name) continue
        const scripted = row.script?.(kit) ?? []
        const injected = { count: 0 }
        const observer = new Observer()
        const result = await Traffic.virtual(
          {
            kit,
            latency,
            callers: 24,
            concurrency: 3,
            think: 2_000,
            setup: ({ emulator }) => emulator.faults.script("api", ...scripted.map((s) => s.step)),
            during: row.during === undefined ? undefined : (context) => row.during!(context, injected),
            after: Traffic.callOnceRecovered
          },
          observer,
          report.needles
        )
        const gates = gatesOf(scripted, result.recording.arrivals, kit.name === "token-project")
        const closedGate = Traffic.gateViolations(result.recording.arrivals, gates, latency, (a) => a.route)
        const { context, counts, violations } = report.record({
          fault: row.fault,
          group: "api",
          where: "virtual",
          provider: kit.name,
          outcomes: result.outcomes,
          observer,
          // Scripted steps consumed (a slow answer the client gave up on is never recorded as an arrival).
          injected: scripted.length - result.pending + injected.count,
          overLimit: Traffic.overLimit(result.recording, kit) + closedGate
        })
        expect(closedGate, `${context}: sent while the gate was closed`).toBe(0)
        expect(violations, context).toEqual([])
        expect(result.pending, `${context}: the whole script was consumed`).toBe(0)
        expect(counts.injected, context).toBeGreaterThan(0)
        expect(gates.length, context).toBe(scripted.filter((s) => s.gate !== undefined).length)
        expect(result.outcomes.at(-1)?.kind, `${context}: recovers`).toBe("success")
        if (row.tokenBound === true) {
          const { issue, refresh } = result.recording.tokenCounts
          expect(issue + refresh, `${context}: ${inspect(result.recording.tokenCounts)}`).toBeLessThanOrEqual(
            1 + result.recording.unauthorized.api
          )
        }
      }
    }, 60_000)
  }
})
