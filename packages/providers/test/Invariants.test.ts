/**
 * DESIGN.md's invariants 1-7, as properties of the four provider modules driven through the sandbox
 * emulators in memory, in virtual time: for generated lifetimes, workloads and fault schedules, the
 * emulators never see an over-limit arrival or an expired token, token requests stay within their
 * bound, and every request ends in a response or a typed error.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import {
  Arbitraries,
  NombaSandbox,
  NoraSandbox,
  NorceSandbox,
  Simulation,
  TokenProjectSandbox
} from "@tollgate/testing"
import { Duration, Effect, Option, Redacted } from "effect"
import * as fc from "fast-check"
import * as Nomba from "../src/Nomba.js"
import * as Nora from "../src/Nora.js"
import * as Norce from "../src/Norce.js"
import * as TokenProject from "../src/TokenProject.js"

const over = (http: HttpClient.HttpClient) => Effect.provideService(HttpClient.HttpClient, http)

const nora = (lifetimeSeconds: number): Simulation.Target => ({
  name: "nora",
  emulator: NoraSandbox.make({ tokenLifetimeSeconds: lifetimeSeconds }),
  client: (http) =>
    Nora.make({
      clientId: NoraSandbox.defaultCredentials.clientId,
      clientSecret: Redacted.make(NoraSandbox.defaultCredentials.clientSecret),
      organizationId: NoraSandbox.defaultCredentials.organizationId,
      baseUrl: "https://nora.sandbox.test"
    }).pipe(over(http), Effect.orDie),
  request: Simulation.get("/api/forms"),
  fibers: 8,
  limit: { limit: 60, window: "1 minute" }
})

const norce = (lifetimeSeconds: number): Simulation.Target => ({
  name: "norce",
  emulator: NorceSandbox.make({ tokenLifetimeSeconds: lifetimeSeconds }),
  client: (http) =>
    Norce.make({
      clientId: NorceSandbox.defaultCredentials.clientId,
      clientSecret: Redacted.make(NorceSandbox.defaultCredentials.clientSecret),
      applicationId: NorceSandbox.defaultCredentials.applicationId,
      baseUrl: "https://norce.sandbox.test"
    }).pipe(over(http), Effect.orDie),
  request: Simulation.get("/commerce/metadata/1.1/GetApplication?format=json"),
  fibers: 2,
  think: "1 second"
})

const nomba = (lifetimeSeconds: number): Simulation.Target => ({
  name: "nomba",
  emulator: NombaSandbox.make({ tokenLifetimeSeconds: lifetimeSeconds }),
  client: (http) =>
    Nomba.make({
      clientId: NombaSandbox.defaultCredentials.clientId,
      clientSecret: Redacted.make(NombaSandbox.defaultCredentials.clientSecret),
      accountId: NombaSandbox.defaultCredentials.accountId,
      baseUrl: "https://nomba.sandbox.test"
    }).pipe(over(http), Effect.orDie),
  request: Simulation.get("/v1/accounts"),
  fibers: 2,
  think: "2 seconds"
})

const tokenProject = (): Simulation.Target => ({
  name: "token-project",
  emulator: TokenProjectSandbox.make(),
  client: (http) =>
    TokenProject.make({
      key: TokenProjectSandbox.defaultCredentials.key,
      secret: Redacted.make(TokenProjectSandbox.defaultCredentials.secret),
      baseUrl: "https://token-project.sandbox.test"
    }).pipe(over(http), Effect.orDie),
  request: (n) => Simulation.get(["/notarizations/stamps", "/storage/files"][n % 2]!)(n),
  fibers: 6,
  limit: { limit: 10, window: "2 minutes", per: (arrival) => arrival.route }
})

const accounted = (report: Simulation.Report) => {
  const failed = Object.values(report.failed).reduce((a, b) => a + b, 0)
  expect(report.lost).toBe(0)
  expect(report.succeeded + failed).toBe(report.requests)
}

describe("invariants through the emulators", () => {
  it.live("1: N concurrent callers on a cold cache cause one token request per provider", () =>
    Effect.gen(function*() {
      for (const n of [1, 10, 500, 2_000]) {
        // One simulation per provider: a run lasts as long as its slowest target, and a longer run
        // rightly includes the proactive refreshes of the others.
        for (const target of [nora(3_600), norce(600), nomba(1_800), tokenProject()]) {
          // The Token project admits 10 per 2 minutes per endpoint: 2,000 requests would outlast its
          // one-hour token, and the renewals that follow are invariant 3's business, not this one's.
          if (target.name === "token-project" && n > 500) continue
          const result = yield* Simulation.simulate({ duration: "1 millis", targets: [{ ...target, fibers: n }] })
          const [report] = result.reports
          expect(report!.server.tokenRequests.issue).toBe(1)
          accounted(report!)
        }
      }
    }), 60_000)

  it.effect.prop(
    "2, 3, 4, 7: healthy runs never send an expired token, fetch within the bound, never overdraw, lose nothing",
    {
      lifetimeSeconds: fc.integer({ min: 60, max: 7_200 }),
      minutes: fc.integer({ min: 5, max: 60 }),
      fibers: fc.integer({ min: 1, max: 12 })
    },
    ({ fibers, lifetimeSeconds, minutes }) =>
      Effect.gen(function*() {
        const result = yield* Simulation.simulate({
          duration: Duration.minutes(minutes),
          targets: [
            { ...nora(lifetimeSeconds), fibers },
            norce(lifetimeSeconds),
            nomba(Math.min(lifetimeSeconds, 1_800)),
            { ...tokenProject(), fibers }
          ]
        })
        const elapsed = result.virtualMillis
        for (const report of result.reports) {
          accounted(report)
          expect(report.failed).toEqual({})
          // 2: the server never saw a token that had expired (it would have answered 401).
          expect(report.server.unauthorized).toBe(0)
          // 4: never over the documented limit, never a 429.
          expect(report.server.rateLimited).toBe(0)
          Option.map(report.window, (w) => expect(w.maxAdmitted).toBeLessThanOrEqual(w.limit))
        }
        // 3: fetches and refreshes within ⌈T / (L - refreshBefore)⌉ + 1, for the providers that expire.
        for (const [name, lifetime] of [["nora", lifetimeSeconds], ["norce", lifetimeSeconds]] as const) {
          const report = result.reports.find((r) => r.name === name)!
          const refreshBefore = Math.min(300, lifetime / 6)
          const bound = Math.ceil(elapsed / 1000 / (lifetime - refreshBefore)) + 1
          const { issue, refresh } = report.server.tokenRequests
          expect(issue + refresh).toBeLessThanOrEqual(bound)
        }
      }),
    { timeout: 90_000, fastCheck: { numRuns: 8 } }
  )

  it.effect.prop(
    "5, 7: under any fault schedule Norce's token endpoint is never overdrawn and no request is lost",
    { faults: Arbitraries.faultSchedule(Duration.toMillis("1 hour"), 8) },
    ({ faults }) =>
      Effect.gen(function*() {
        const result = yield* Simulation.simulate({
          duration: "1 hour",
          targets: [{
            ...norce(600),
            fibers: 2,
            think: "1 second",
            // Revocations force renewals; the limiter on grants must keep them within 20 + 3 per minute.
            faults: [...faults, ...[10, 20, 30, 40, 50].map((m) => ({ _tag: "RevokeAll" as const, at: m * 60_000 }))]
          }]
        })
        const [report] = result.reports
        accounted(report!)
        expect(report!.server.rateLimited).toBe(0)
      }),
    { timeout: 90_000, fastCheck: { numRuns: 6 } }
  )

  it.effect.prop(
    "4, 7: under any fault schedule the limits hold and every request ends in a response or a typed error",
    { faults: Arbitraries.faultSchedule(Duration.toMillis("1 hour"), 6) },
    ({ faults }) =>
      Effect.gen(function*() {
        const result = yield* Simulation.simulate({
          duration: "1 hour",
          targets: [
            { ...nora(3_600), faults },
            { ...tokenProject(), faults },
            { ...nomba(1_800), faults }
          ]
        })
        for (const report of result.reports) {
          accounted(report)
          Option.map(report.window, (w) => expect(w.maxAdmitted).toBeLessThanOrEqual(w.limit))
          for (const tag of Object.keys(report.failed)) {
            expect(tag).toMatch(
              /^(Timeout|RequestError|ResponseError|TokenEndpointUnavailable|Unauthorized|RateLimited|HTTP \d+)$/
            )
          }
        }
      }),
    { timeout: 90_000, fastCheck: { numRuns: 6 } }
  )
})
