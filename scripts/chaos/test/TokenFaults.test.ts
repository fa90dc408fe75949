/**
 * The token endpoint misbehaving, for all four providers through their modules, over the in-memory
 * emulators in virtual time with the providers' default settings: 5xx pages, timeouts, dropped and cut
 * connections, HTML where JSON belongs, truncated JSON, wrong types, missing fields, lifetimes that are
 * zero, negative, huge or strings, Nomba's absolute expiry in the past or far future and its non-"00"
 * codes with HTTP 200, 429 on the token endpoint itself, rejected credentials. Each fault is scripted as
 * the exact answers of the next token requests; callers keep sending API requests while it lasts.
 *
 * Every request must end in success or a typed error, none lost; the server never sees an over-limit
 * arrival; nothing the client shows holds a secret or any token; and once the script is spent the
 * client recovers by itself.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { inject } from "vitest"
import * as Kits from "../src/Kits.js"
import { Observer } from "../src/Observe.js"
import { Report } from "../src/Report.js"
import * as Traffic from "../src/Traffic.js"

const kits = Kits.all()
const report = new Report(kits.flatMap((kit) => kit.secrets))
afterAll(() => report.write(inject("chaosResults")))

let fakes = 0
const fakeToken = () => `chaos-fake-token-${++fakes}-${Math.random().toString(36).slice(2)}`

describe("token endpoint faults (virtual time, provider defaults)", () => {
  for (const kit of kits) {
    it(kit.name, async () => {
      const rows: Record<string, ReadonlyArray<import("@tollgate/testing").Faults.Step>> = {
        ...kit.badTokens(fakeToken),
        "token credentials rejected": [kit.rejected, kit.rejected]
      }
      for (const [fault, steps] of Object.entries(rows)) {
        const observer = new Observer()
        const result = await Traffic.virtual(
          {
            kit,
            callers: 24,
            concurrency: 3,
            think: 4_000,
            setup: ({ emulator }) => emulator.faults.script("token", ...steps),
            // The client recovers by itself: the request after the script is spent succeeds.
            after: Traffic.callOnceRecovered
          },
          observer,
          report.needles
        )
        const { context, counts, violations } = report.record({
          fault,
          group: "token",
          where: "virtual",
          provider: kit.name,
          outcomes: result.outcomes,
          observer,
          injected: Traffic.injectedFaults(result.recording),
          overLimit: Traffic.overLimit(result.recording, kit)
        })
        expect(violations, context).toEqual([])
        expect(result.pending, `${context}: the whole script was consumed`).toBe(0)
        expect(counts.injected, context).toBe(steps.length)
        expect(result.outcomes.at(-1)?.kind, `${context}: recovers`).toBe("success")
        // The fault reached callers as typed errors (or was absorbed by retries), never as anything else.
        expect(counts.typed + counts.success, context).toBe(counts.touched)
      }
    }, 60_000)
  }
})
