/**
 * Testing your integration: a copyable example. `countForms` is "your" code; it needs a Nora client.
 * The first test runs it against the Nora emulator in memory (no sockets, no credentials) by giving the
 * provider Layer an in-memory HTTP client; the second swaps the token source for a scripted fake and
 * steps a TestClock through token expiry; the third simulates hours of traffic in virtual time.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { RateLimiter, TokenCache } from "@tollgate/core"
import * as Nora from "@tollgate/providers/nora"
import { FakeTokenSource, NoraSandbox, Sandbox, Simulation } from "@tollgate/testing"
import { Effect, Layer, Option, Redacted, TestClock } from "effect"

// Your code.
const countForms = Effect.gen(function*() {
  const nora = yield* Nora.NoraClient
  const response = yield* nora.get("/api/forms")
  const body = (yield* response.json) as { readonly total: number }
  return body.total
})

// Nora, served by its emulator in memory.
const noraInMemory = (emulator: NoraSandbox.NoraSandbox) =>
  Nora.layer({
    clientId: NoraSandbox.defaultCredentials.clientId,
    clientSecret: Redacted.make(NoraSandbox.defaultCredentials.clientSecret),
    organizationId: NoraSandbox.defaultCredentials.organizationId,
    baseUrl: "https://nora.sandbox.test"
  }).pipe(Layer.provide(Layer.succeed(HttpClient.HttpClient, Sandbox.makeClient(() => emulator.app))))

describe("testing your integration", () => {
  it.effect("runs your code against the Nora emulator in memory", () =>
    Effect.gen(function*() {
      const emulator = yield* NoraSandbox.make()
      const count = yield* countForms.pipe(Effect.provide(noraInMemory(emulator)))
      expect(count).toBeGreaterThan(0)
      const recording = yield* emulator.recording
      expect(recording.tokenCounts.issue).toBe(1)
    }))

  it.scoped("swaps in a scripted token source and steps the clock through expiry", () =>
    Effect.gen(function*() {
      const fake = yield* FakeTokenSource.make({ lifetime: "10 minutes" })
      const tokens = yield* TokenCache.make(fake.source)
      const first = yield* tokens.get
      // Past expiry (nobody used the token meanwhile, so nothing renewed it early): a new token.
      yield* TestClock.adjust("10 minutes")
      const second = yield* tokens.get
      expect(Redacted.value(second.value)).not.toBe(Redacted.value(first.value))
      expect((yield* fake.recording).fetches).toBe(2)
    }))

  it.live("simulates two hours of traffic at Nora's limit in seconds of wall time", () =>
    Effect.gen(function*() {
      const result = yield* Simulation.simulate({
        duration: "2 hours",
        targets: [{
          name: "nora",
          emulator: NoraSandbox.make(),
          client: (http) =>
            Nora.make({
              clientId: NoraSandbox.defaultCredentials.clientId,
              clientSecret: Redacted.make(NoraSandbox.defaultCredentials.clientSecret),
              organizationId: NoraSandbox.defaultCredentials.organizationId,
              baseUrl: "https://nora.sandbox.test",
              limits: RateLimiter.slidingWindow({ limit: 60, window: "1 minute" })
            }).pipe(Effect.provideService(HttpClient.HttpClient, http), Effect.orDie),
          request: Simulation.get("/api/forms"),
          fibers: 10,
          limit: { limit: 60, window: "1 minute" }
        }]
      })
      const [nora] = result.reports
      expect(nora!.lost).toBe(0)
      expect(nora!.server.rateLimited).toBe(0)
      expect(Option.getOrThrow(nora!.window).maxAdmitted).toBeLessThanOrEqual(60)
      expect(nora!.server.tokenRequests.issue).toBeLessThanOrEqual(3)
    }), 60_000)
})
