/**
 * Failures Tollgate observes are never reported as unobserved (issue 18): a failed connection with the
 * log level at debug printed "Fiber terminated with an unhandled error" from the child fiber that bounds
 * an attempt, though the attempt's failure is awaited and handled.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Logger, LogLevel, TestClock } from "effect"
import * as ApiClient from "../src/ApiClient.js"
import * as TokenCache from "../src/TokenCache.js"
import * as TollgateError from "../src/TollgateError.js"
import * as FakeSource from "./utils/FakeSource.js"

/** Every message logged at any level while `effect` runs, with the minimum level at `All`. */
const captured = <A, E, R>(effect: Effect.Effect<A, E, R>) => {
  const messages: Array<string> = []
  const logger = Logger.make(({ message }) => {
    messages.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
  })
  return effect.pipe(
    Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
    Logger.withMinimumLogLevel(LogLevel.All),
    Effect.map(() => messages)
  )
}

const refused = HttpClient.make((request) =>
  Effect.fail(new HttpClientError.RequestError({ request, reason: "Transport", description: "connect ECONNREFUSED" }))
)
const refusedLater = HttpClient.make((request) =>
  Effect.zipRight(
    Effect.sleep("10 millis"),
    Effect.fail(new HttpClientError.RequestError({ request, reason: "Transport", description: "connect ECONNREFUSED" }))
  )
)

describe("no failure Tollgate handles is logged as unhandled (issue 18)", () => {
  for (const [name, transport] of [["at once", refused], ["after a wait", refusedLater]] as const) {
    it.scoped(`a connection refused ${name}, retried and failed, logs no unhandled error`, () =>
      Effect.gen(function*() {
        const messages = yield* captured(Effect.scoped(Effect.gen(function*() {
          const api = yield* ApiClient.make({
            provider: "refused",
            baseUrl: "https://api.test",
            timeout: Duration.seconds(1),
            retry: { transient: 2, baseDelay: Duration.millis(5) }
          }).pipe(Effect.provideService(HttpClient.HttpClient, transport))
          const fiber = yield* Effect.fork(Effect.flip(api.get("/x")))
          yield* TestClock.adjust(Duration.seconds(5))
          const error = yield* Fiber.join(fiber)
          expect(error._tag).toBe("RequestError")
        })))
        expect(messages.filter((message) => message.includes("unhandled"))).toEqual([])
      }))
  }

  it.scoped("a token endpoint that fails, waited for within the request's bound, logs no unhandled error", () =>
    Effect.gen(function*() {
      const messages = yield* captured(Effect.scoped(Effect.gen(function*() {
        const source = yield* FakeSource.make({
          latency: Duration.millis(10),
          fail: () => new TollgateError.TokenEndpointUnavailable({ provider: "fake", reason: "connect ECONNREFUSED" })
        })
        const tokens = yield* TokenCache.make(source.source, { retry: { attempts: 1 } })
        const api = yield* ApiClient.make({
          provider: "refused",
          baseUrl: "https://api.test",
          tokens,
          requestTimeout: Duration.seconds(5)
        }).pipe(Effect.provideService(HttpClient.HttpClient, refused))
        const fiber = yield* Effect.fork(Effect.flip(api.get("/x")))
        yield* TestClock.adjust(Duration.seconds(6))
        expect((yield* Fiber.join(fiber))._tag).toBe("TokenEndpointUnavailable")
      })))
      expect(messages.filter((message) => message.includes("unhandled"))).toEqual([])
    }))
})
