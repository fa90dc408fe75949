import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { ApiClient, RateLimiter, TokenCache } from "@tollgate/core"
import { Duration, Effect, Option } from "effect"
import * as NorceSandbox from "../src/NorceSandbox.js"
import * as Simulation from "../src/Simulation.js"
import { norceBase, norceTokenSource } from "./utils/norce.js"

// Norce speaks plain OAuth2, so core alone can build its client: the simulation needs nothing else.
const norceClient = (limit: RateLimiter.Policy) => (http: Parameters<Simulation.Target["client"]>[0]) =>
  Effect.gen(function*() {
    const base = norceBase
    const source = yield* norceTokenSource
    const grants = yield* RateLimiter.make(RateLimiter.tokenBucket({ rate: 3, interval: "1 minute", burst: 20 }))
    const tokens = yield* TokenCache.make(source, { limiter: grants })
    const limiter = yield* RateLimiter.make(limit, { provider: "norce" })
    const client = yield* ApiClient.make({
      provider: "norce",
      baseUrl: base,
      headers: { ApplicationId: NorceSandbox.defaultCredentials.applicationId },
      tokens,
      limiter
    })
    return { client, tokens, limiter }
  }).pipe(Effect.provideService(HttpClient.HttpClient, http))

describe("Simulation", () => {
  it.live(
    "runs hours of traffic against an emulator in virtual time and reports both sides",
    () =>
      Effect.gen(function*() {
        const result = yield* Simulation.simulate({
          duration: "6 hours",
          targets: [{
            name: "norce",
            emulator: NorceSandbox.make({ tokenLifetimeSeconds: 600 }),
            client: norceClient(RateLimiter.slidingWindow({ limit: 30, window: "1 minute" })),
            request: Simulation.get("/commerce/metadata/1.1/GetApplication?format=json"),
            fibers: 10,
            limit: { limit: 30, window: "1 minute" }
          }]
        })
        const [norce] = result.reports
        expect(result.virtualMillis).toBeGreaterThanOrEqual(Duration.toMillis("6 hours"))
        expect(norce!.lost).toBe(0)
        expect(norce!.failed).toEqual({})
        expect(norce!.server.rateLimited).toBe(0)
        expect(norce!.server.unauthorized).toBe(0)
        // 30 per minute for 6 hours, less what latency costs.
        expect(norce!.succeeded).toBeGreaterThan(0.98 * 30 * 360)
        expect(Option.getOrThrow(norce!.window).maxAdmitted).toBeLessThanOrEqual(30)
        // A 600-second token, renewed 5 minutes early: one fetch per 5 minutes, plus the first.
        expect(norce!.server.tokenRequests.issue).toBeLessThanOrEqual(Math.ceil(360 / 5) + 1)
        expect(Option.getOrThrow(norce!.tokens).fetches).toBe(norce!.server.tokenRequests.issue)
        expect(Option.getOrThrow(norce!.perWindow)).toBeGreaterThan(29.5)
      }),
    60_000
  )

  it.live("catches a client that overdraws the documented window, counting arrivals as they come", () =>
    Effect.gen(function*() {
      // The client allows 60 per minute where the check documents 30: the streaming count must see it.
      const result = yield* Simulation.simulate({
        duration: "10 minutes",
        targets: [{
          name: "norce",
          emulator: NorceSandbox.make(),
          client: norceClient(RateLimiter.slidingWindow({ limit: 60, window: "1 minute" })),
          request: Simulation.get("/commerce/metadata/1.1/GetApplication?format=json"),
          fibers: 4,
          limit: { limit: 30, window: "1 minute" }
        }]
      })
      const [norce] = result.reports
      const window = Option.getOrThrow(norce!.window)
      expect(window.limit).toBe(30)
      expect(window.maxAdmitted).toBe(60)
      expect(window.maxAll).toBe(60)
      expect(norce!.server.apiArrivals).toBe(norce!.requests)
      expect(Option.getOrThrow(norce!.perWindow)).toBeGreaterThan(55)
    }))

  it.live("counts every arrival per key of a per-key limit", () =>
    Effect.gen(function*() {
      const result = yield* Simulation.simulate({
        duration: "5 minutes",
        targets: [{
          name: "norce",
          emulator: NorceSandbox.make(),
          client: norceClient(RateLimiter.slidingWindow({ limit: 40, window: "1 minute" })),
          request: (n) =>
            Simulation.get(
              n % 4 === 0
                ? "/commerce/products/1.1/ListProducts?format=json"
                : "/commerce/metadata/1.1/GetApplication?format=json"
            )(n),
          fibers: 4,
          limit: { limit: 40, window: "1 minute", per: (arrival) => arrival.route }
        }]
      })
      const [norce] = result.reports
      const window = Option.getOrThrow(norce!.window)
      // Three in four requests go to one route: its window holds about 30 of the 40.
      expect(window.maxAdmitted).toBeGreaterThanOrEqual(29)
      expect(window.maxAdmitted).toBeLessThanOrEqual(40)
      expect(norce!.server.apiArrivals).toBe(norce!.requests)
    }))
})
