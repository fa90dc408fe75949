/**
 * All four providers over real sockets: each emulator on its own loopback port with a time scale that
 * makes its limits bind within a second (Nora 60 per second, the Token project 10 per second per
 * endpoint, Norce's token endpoint 3 per second plus a burst of 20, Nomba's tokens living 3 seconds), the
 * provider module's client over undici, tuned to the same scale. One fault at a time, drawn at a rate by
 * the emulator (or scripted), while callers send requests: the documented limits must hold at the
 * server, every request must end in success or a typed error, and nothing the client shows may hold a
 * secret or a token. The token endpoint is also made unreachable (connection refused).
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import { Faults } from "@tollgate/testing"
import { Duration, Effect } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { inject } from "vitest"
import * as Kits from "../src/Kits.js"
import type * as Matrix from "../src/Matrix.js"
import { Observer } from "../src/Observe.js"
import { Report } from "../src/Report.js"
import * as Traffic from "../src/Traffic.js"

const kits = Kits.all()
const report = new Report(kits.flatMap((kit) => kit.secrets))
afterAll(() => report.write(inject("chaosResults")))

const timeScales: Record<Kits.Name, number> = { nora: 60, norce: 60, nomba: 600, "token-project": 120 }

/**
 * The provider's defaults divided by its time scale, and short bounds on everything that waits. The
 * per-attempt timeout is short only where timeouts are the fault: with four providers sharing one event
 * loop, a short timeout elsewhere fires on requests that were merely slow to be written, and a request
 * the client gave up on can still reach the server after its permit came back (see the report).
 */
const tuning = (kit: Kits.Kit, timeout: Duration.DurationInput = "2 seconds"): Kits.Tuning => ({
  // The documented limit in its own shape (per endpoint or not), on the emulator's clock.
  limits: kit.definition.limit === undefined ? undefined : kit.definition.limitsFor({
    limit: kit.definition.limit.limit,
    window: Duration.millis(kit.definition.limit.windowMillis / timeScales[kit.name])
  }),
  tokenLimits: kit.name === "norce" ? RateLimiter.tokenBucket({ rate: 3, interval: "1 second", burst: 20 }) : undefined,
  tokenTimeout: "400 millis",
  tokenCache: {
    retry: { baseDelay: "20 millis", maxDelay: "200 millis", maxRetryAfter: "2 seconds" },
    cooldown: { base: "50 millis", max: "400 millis" },
    closeTimeout: "1 second"
  },
  client: {
    timeout,
    retry: { baseDelay: "20 millis", maxDelay: "200 millis", maxWait: "5 seconds" }
  }
})

const revokeEvery = (millis: number) => (context: Traffic.Context, injected: { count: number }) =>
  Effect.forever(Effect.zipRight(
    Effect.sleep(Duration.millis(millis)),
    Effect.map(context.emulator.revokeAll, (n) => {
      injected.count += n
    })
  ))

interface Phase {
  readonly fault: string
  readonly group: Matrix.Group
  readonly callers: number
  readonly concurrency?: number | undefined
  readonly think?: number | undefined
  readonly faults?: { readonly target: Faults.Target; readonly options: Faults.Options } | undefined
  readonly script?: ((kit: Kits.Kit) => ReadonlyArray<Faults.Step>) | undefined
  readonly during?: ((context: Traffic.Context, injected: { count: number }) => Effect.Effect<void>) | undefined
  /** Counts the fault by the client's attempts rather than by the faults the emulator recorded. */
  readonly byAttempts?: boolean | undefined
  /** The client's per-attempt timeout. Default 2 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
}

const phases: ReadonlyArray<Phase> = [
  { fault: "api none: saturating load, limits bind", group: "api", callers: 90, concurrency: 12, think: 0 },
  {
    fault: "api 5xx burst",
    group: "api",
    callers: 30,
    think: 10,
    faults: { target: "api", options: { errorRate: 0.4, errorBody: "html" } }
  },
  {
    fault: "api timeout (never answers)",
    group: "api",
    callers: 24,
    concurrency: 6,
    think: 10,
    timeout: "300 millis",
    faults: { target: "api", options: { timeoutRate: 0.25 } }
  },
  {
    fault: "api answers slower than the client's timeout",
    group: "api",
    callers: 16,
    concurrency: 6,
    think: 10,
    byAttempts: true,
    timeout: "300 millis",
    faults: { target: "api", options: { latency: { min: "200 millis", max: "450 millis" } } }
  },
  {
    fault: "api connection reset before the answer",
    group: "api",
    callers: 30,
    think: 10,
    faults: { target: "api", options: { dropRate: 0.3, dropMode: "reset" } }
  },
  {
    fault: "api connection dropped mid-body",
    group: "api",
    callers: 30,
    think: 10,
    faults: { target: "api", options: { dropRate: 0.3, dropMode: "partial" } }
  },
  { fault: "api 401 for a token revoked mid-run", group: "api", callers: 40, think: 20, during: revokeEvery(40) },
  {
    fault: "token 5xx (HTML error page)",
    group: "token",
    callers: 30,
    think: 40,
    faults: { target: "token", options: { errorRate: 0.4, errorBody: "html" } },
    during: revokeEvery(50)
  },
  {
    fault: "token timeout (never answers)",
    group: "token",
    callers: 20,
    think: 40,
    faults: { target: "token", options: { timeoutRate: 0.3 } },
    during: revokeEvery(50)
  },
  {
    fault: "token connection reset",
    group: "token",
    callers: 30,
    think: 40,
    faults: { target: "token", options: { dropRate: 0.4, dropMode: "reset" } },
    during: revokeEvery(50)
  },
  {
    fault: "token body cut mid-way",
    group: "token",
    callers: 30,
    think: 40,
    faults: { target: "token", options: { dropRate: 0.4, dropMode: "partial" } },
    during: revokeEvery(50)
  },
  {
    fault: "token HTML page with HTTP 200",
    group: "token",
    callers: 20,
    think: 40,
    script: (kit) => kit.badTokens(() => "")["token HTML page with HTTP 200"] ?? [],
    during: revokeEvery(50)
  },
  {
    fault: "token truncated JSON",
    group: "token",
    callers: 20,
    think: 40,
    script: (kit) =>
      kit.badTokens(() => `chaos-loopback-${Math.random().toString(36).slice(2)}`)["token truncated JSON"] ?? [],
    during: revokeEvery(50)
  },
  {
    fault: "token 429 on the token endpoint",
    group: "token",
    callers: 20,
    think: 40,
    script: () => [
      Faults.json(429, { error: "too_many_requests" }, { headers: { "retry-after": "1" } }),
      Faults.respond({ status: 429 }),
      Faults.json(429, { errors: [{ code: 88, message: "Rate limit exceeded" }] })
    ],
    during: revokeEvery(50)
  }
]

/**
 * The phase's fault for certain on the first request to its target. Drawn only at a rate, a short phase
 * can draw none: 12 Token project calls at 25% go without a single timeout in 3% of runs.
 */
const firstFault = (options: Faults.Options): ReadonlyArray<Faults.Step> =>
  (options.timeoutRate ?? 0) > 0
    ? [Faults.timeout()]
    : (options.dropRate ?? 0) > 0
    ? [Faults.drop({ mode: options.dropMode })]
    : (options.errorRate ?? 0) > 0
    ? [
      options.errorBody === "json"
        ? Faults.json(options.errorStatus ?? 500, { message: "Internal Server Error" })
        : Faults.html(options.errorStatus ?? 500, "<html><body><h1>Internal Server Error</h1></body></html>")
    ]
    : []

/** A port nothing listens on. */
const closedPort = Effect.async<number>((resume) => {
  const server = Http.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** The Token project answers `X-RateLimit-Reset` in whole seconds, so it runs at most 10 per second per endpoint. */
const callersFor = (kit: Kits.Kit, phase: Phase) =>
  kit.name === "token-project" ? Math.ceil(phase.callers / 2) : phase.callers

const runPhase = async (kit: Kits.Kit, phase: Phase) => {
  const injected = { count: 0 }
  const observer = new Observer()
  const scripted = phase.script?.(kit) ?? []
  const result = await Traffic.loopback(
    {
      kit,
      tuning: tuning(kit, phase.timeout),
      emulator: { timeScale: timeScales[kit.name] },
      callers: callersFor(kit, phase),
      concurrency: phase.concurrency ?? 4,
      think: phase.think ?? 10,
      setup: ({ emulator }) =>
        Effect.all([
          phase.faults === undefined ? Effect.void : emulator.faults.set(phase.faults.target, phase.faults.options),
          phase.faults === undefined
            ? Effect.void
            : emulator.faults.script(phase.faults.target, ...firstFault(phase.faults.options)),
          emulator.faults.script("token", ...scripted)
        ], { discard: true }),
      during: phase.during === undefined ? undefined : (context) => phase.during!(context, injected),
      after: ({ emulator }) => emulator.faults.reset
    },
    observer,
    report.needles
  )
  const { context, counts, violations } = report.record({
    fault: phase.fault,
    group: phase.group,
    where: "loopback",
    provider: kit.name,
    outcomes: result.outcomes,
    observer,
    injected: (phase.byAttempts === true ? result.attempts : Traffic.injectedFaults(result.recording)) +
      injected.count,
    overLimit: Traffic.overLimit(result.recording, kit, timeScales[kit.name])
  })
  expect(violations, context).toEqual([])
  if (phase.fault !== "api none: saturating load, limits bind") expect(counts.injected, context).toBeGreaterThan(0)
}

describe("loopback: real sockets, time-scaled limits", () => {
  it("every provider through every phase", async () => {
    // Every (provider, phase) pair has its own emulator and client; six run at a time.
    const jobs = kits.flatMap((kit) => phases.map((phase) => () => runPhase(kit, phase)))
    let next = 0
    await Promise.all(Array.from({ length: 6 }, async () => {
      while (next < jobs.length) await jobs[next++]!()
    }))
  }, 90_000)

  it("token endpoint unreachable: connection refused", async () => {
    const port = await Effect.runPromise(closedPort)
    await Promise.all(kits.map(async (kit) => {
      const observer = new Observer()
      const outcomes: Array<Traffic.Outcome> = []
      const failures = await Effect.runPromise(observer.observe(
        Effect.scoped(Effect.gen(function*() {
          const services = yield* Effect.orDie(kit.make(`http://127.0.0.1:${port}`, tuning(kit)))
          for (let n = 0; n < 6; n++) {
            outcomes.push(Traffic.classify(yield* Traffic.call(kit, services, n, observer, "10 seconds")))
            yield* Effect.sleep("150 millis")
          }
          return (yield* services.tokens.stats).failures
        })).pipe(Effect.provide(NodeHttpClient.layerUndici))
      ))
      const { context, violations } = report.record({
        fault: "token connection refused",
        group: "token",
        where: "loopback",
        provider: kit.name,
        outcomes,
        observer,
        injected: failures
      })
      expect(violations, context).toEqual([])
      expect(Traffic.tags(outcomes), context).toEqual({ TokenEndpointUnavailable: 6 })
      expect(observer.rendered().some((text) => text.includes("ECONNREFUSED")), context).toBe(true)
    }))
  })
})
