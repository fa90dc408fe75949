/**
 * Issue #18's argument property for the providers: each provider's `make` fed arbitrary numbers,
 * strings and URLs in every option it takes answers with a typed error in the Effect channel or a
 * working client whose requests fail typed: never a defect, never a synchronous throw.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import type * as RateLimiter from "@tollgate/core/RateLimiter"
import * as Arbitraries from "@tollgate/testing/Arbitraries"
import { Cause, Duration, Effect, Exit, Fiber, Redacted, TestClock } from "effect"
import * as fc from "fast-check"
import * as Providers from "../src/Providers.js"
import * as Memory from "./utils/Memory.js"

const TYPED =
  /^(InvalidArgument|ConfigError|InvalidCredentials|MalformedTokenResponse|TokenEndpointUnavailable|ProviderError|Timeout|RateLimited|RequestError|ResponseError|Unauthorized)$/

const tagOf = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "None") return Cause.pretty(cause)
  const error = failure.value as { readonly _tag?: string; readonly _op?: string }
  // A ConfigError carries its kind in `_op`.
  return error._tag ?? (error._op === undefined ? String(error) : "ConfigError")
}

const memory = Memory.make(() => ({ status: 503, body: { message: "down" } }))

describe("providers' make: a typed error or a working client, whatever the options (issue 18)", () => {
  it.effect.prop(
    "every provider, every option",
    {
      provider: fc.constantFrom(...Providers.all.map((definition) => definition.name)),
      credential: Arbitraries.hostileString,
      baseUrl: Arbitraries.hostileUrl,
      allowInsecureLoopback: fc.boolean(),
      tokenTimeout: Arbitraries.hostileDuration,
      timeout: Arbitraries.hostileDuration,
      permitDeadline: Arbitraries.hostileDuration,
      transient: Arbitraries.hostileNumber,
      header: Arbitraries.hostileString,
      refreshBefore: Arbitraries.hostileDuration,
      attempts: Arbitraries.hostileNumber
    },
    (o) =>
      Effect.gen(function*() {
        const definition = Providers.byName[o.provider] as unknown as {
          readonly make: (
            options: unknown
          ) => Effect.Effect<
            { readonly client: { get: (path: string) => Effect.Effect<unknown, unknown> } },
            unknown,
            HttpClient.HttpClient | import("effect").Scope.Scope
          >
          readonly limitsFor: (
            limit: { readonly limit: number; readonly window: Duration.DurationInput }
          ) => RateLimiter.Policy
        }
        const options = {
          clientId: o.credential,
          clientSecret: Redacted.make(o.credential),
          organizationId: o.credential,
          applicationId: o.credential,
          accountId: o.credential,
          key: o.credential,
          secret: Redacted.make(o.credential),
          baseUrl: o.baseUrl,
          allowInsecureLoopback: o.allowInsecureLoopback,
          tokenTimeout: o.tokenTimeout,
          tokenCache: { refreshBefore: o.refreshBefore, retry: { attempts: o.attempts } },
          client: {
            timeout: o.timeout,
            permitDeadline: o.permitDeadline,
            retry: { transient: o.transient },
            headers: { "x-custom": o.header }
          }
        }
        const built = yield* Effect.exit(
          Effect.suspend(() => definition.make(options)).pipe(
            Effect.provideService(HttpClient.HttpClient, memory.client)
          )
        )
        if (Exit.isFailure(built)) {
          expect(tagOf(built.cause)).toMatch(TYPED)
          return
        }
        const fiber = yield* Effect.fork(Effect.exit(Effect.suspend(() => built.value.client.get("/x"))))
        yield* TestClock.adjust("10 minutes")
        const exit = yield* Fiber.join(fiber)
        if (Exit.isFailure(exit)) expect(tagOf(exit.cause)).toMatch(TYPED)
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 150 } }
  )
})
