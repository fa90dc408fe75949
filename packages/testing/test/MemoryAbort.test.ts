import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { describe, expect, it } from "@effect/vitest"
import { ApiClient, TokenCache, Transport } from "@tollgate/core"
import { Clock, Duration, Effect, Exit, Fiber, Scope, TestClock } from "effect"
import * as Faults from "../src/Faults.js"
import * as NorceSandbox from "../src/NorceSandbox.js"
import * as Sandbox from "../src/Sandbox.js"
import * as VirtualTime from "../src/VirtualTime.js"
import { norceBase, norceTokenSource } from "./utils/norce.js"

const base = norceBase

// A Norce client of core alone, every attempt bounded by `timeout`, no retries: what a deadline does is seen at once.
const norceClient = (http: HttpClient.HttpClient, timeout: Duration.DurationInput) =>
  Effect.gen(function*() {
    const tokens = yield* TokenCache.make(yield* norceTokenSource)
    return yield* ApiClient.make({
      provider: "norce",
      baseUrl: base,
      headers: { ApplicationId: NorceSandbox.defaultCredentials.applicationId },
      tokens,
      timeout,
      retry: { transient: 0 }
    })
  }).pipe(Effect.provideService(HttpClient.HttpClient, http))

const getApplication = HttpClientRequest.get("/commerce/metadata/1.1/GetApplication?format=json")

/** A client whose every request is registered with a controller that closing `scope` aborts. */
const scopedClient =
  (client: HttpClient.HttpClient, scope: Scope.Scope) => (request: HttpClientRequest.HttpClientRequest) =>
    Effect.fork(Scope.extend(HttpClient.withScope(client).execute(request), scope))

describe("the in-memory transport honours abort signals", () => {
  it("is declared abortable and in memory, so Tollgate's clients hand it their deadlines", () => {
    const client = Sandbox.makeClient(() => undefined)
    expect(Transport.isAbortable(client)).toBe(true)
    expect(Transport.isInMemory(client)).toBe(true)
  })

  it.live("in virtual time, a deadline during the latency ends the attempt at once; the request never arrives", () =>
    Effect.gen(function*() {
      const result = yield* Effect.promise(() =>
        VirtualTime.run(Effect.scoped(Effect.gen(function*() {
          const norce = yield* NorceSandbox.make()
          yield* norce.faults.set("api", { latency: { min: "10 minutes", max: "10 minutes" } })
          const client = yield* norceClient(Sandbox.makeClient(() => norce.app), "2 seconds")
          const started = yield* Clock.currentTimeMillis
          const error = yield* Effect.flip(client.execute(getApplication))
          const failedAfter = (yield* Clock.currentTimeMillis) - started
          // Past the moment the latency would have ended: an attempt left running would arrive then.
          yield* Effect.sleep("20 minutes")
          return { error, failedAfter, recording: yield* norce.recording }
        })))
      )
      expect(Exit.isSuccess(result.exit)).toBe(true)
      const { error, failedAfter, recording } = Exit.isSuccess(result.exit) ? result.exit.value : ({} as never)
      expect(error._tag).toBe("Timeout")
      expect(failedAfter).toBe(2000)
      expect(recording.arrivals).toEqual([])
      expect(recording.tokenCounts.granted).toBe(1)
    }))

  it.live("in virtual time, a request that arrived, never answered, stays recorded when its deadline aborts it", () =>
    Effect.gen(function*() {
      const result = yield* Effect.promise(() =>
        VirtualTime.run(Effect.scoped(Effect.gen(function*() {
          const norce = yield* NorceSandbox.make()
          yield* norce.faults.script("api", Faults.timeout(), Faults.passThrough())
          const client = yield* norceClient(Sandbox.makeClient(() => norce.app), "3 seconds")
          const started = yield* Clock.currentTimeMillis
          const error = yield* Effect.flip(client.execute(getApplication))
          const failedAfter = (yield* Clock.currentTimeMillis) - started
          const next = yield* client.execute(getApplication)
          return { error, failedAfter, status: next.status, recording: yield* norce.recording }
        })))
      )
      expect(Exit.isSuccess(result.exit)).toBe(true)
      const { error, failedAfter, recording, status } = Exit.isSuccess(result.exit) ? result.exit.value : ({} as never)
      expect(error._tag).toBe("Timeout")
      expect(failedAfter).toBe(3000)
      expect(status).toBe(200)
      expect(recording.arrivals.map((a) => [a.fault, a.status])).toEqual([["timeout", 0], [undefined, 200]])
    }))

  it.effect("under TestClock, aborting a request's controller fails it with a transport error, traced or not", () =>
    Effect.gen(function*() {
      const norce = yield* NorceSandbox.make()
      yield* norce.faults.set("token", { latency: { min: "1 minute", max: "1 minute" } })
      const token = HttpClientRequest.post(`${base}/identity/1.0/connect/token`).pipe(
        HttpClientRequest.bodyUrlParams({
          grant_type: "client_credentials",
          client_id: NorceSandbox.defaultCredentials.clientId,
          client_secret: NorceSandbox.defaultCredentials.clientSecret,
          scope: "prod"
        })
      )
      const memory = Sandbox.makeClient(() => norce.app)
      for (const client of [memory, HttpClient.withTracerDisabledWhen(memory, () => true)]) {
        const scope = yield* Scope.make()
        const fiber = yield* scopedClient(client, scope)(token)
        yield* TestClock.adjust("30 seconds")
        yield* Scope.close(scope, Exit.void)
        const error = yield* Effect.flip(Fiber.join(fiber))
        expect(error).toMatchObject({
          _tag: "RequestError",
          reason: "Transport",
          description: "the request was aborted"
        })
      }
      yield* TestClock.adjust("5 minutes")
      // Neither request arrived: the latency comes before the emulator sees a request.
      expect((yield* norce.recording).tokenRequests).toEqual([])
    }))

  it.effect("an app other than an emulator's is stopped by the abort too", () =>
    Effect.gen(function*() {
      const app = Effect.as(Effect.sleep("1 hour"), HttpServerResponse.empty())
      const client = HttpClient.withTracerDisabledWhen(Sandbox.makeClient(() => app), () => true)
      const scope = yield* Scope.make()
      const fiber = yield* scopedClient(client, scope)(HttpClientRequest.get("http://elsewhere.test/"))
      yield* TestClock.adjust("1 second")
      yield* Scope.close(scope, Exit.void)
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error).toMatchObject({ _tag: "RequestError", reason: "Transport" })
      // An answer from an app that ends is still read as ever.
      const quick = HttpClient.withTracerDisabledWhen(Sandbox.makeClient(() => HttpServerResponse.empty()), () => true)
      expect(
        (yield* Effect.scoped(HttpClient.withScope(quick).execute(HttpClientRequest.get("http://a.test/")))).status
      )
        .toBe(204)
    }))
})
