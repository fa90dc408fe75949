/**
 * Issue #18's one argument property test for core: every public constructor and per-request option is
 * fed arbitrary numbers (NaN, ±∞, negatives, subnormals, huge, fractions where whole numbers are due),
 * strings (empty, whitespace, CR/LF, NUL, nonsense durations) and URLs (user-info, plain http, no scheme,
 * garbage). Each must answer with a typed error in the Effect channel or work, and a limiter that was
 * built must never over-admit: never a defect, never a synchronous throw. (RateLimiter policies have
 * their own properties in RateLimiterArguments.test.ts.)
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Fiber, Redacted, TestClock } from "effect"
import * as ApiClient from "../src/ApiClient.js"
import * as OAuth2 from "../src/OAuth2.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as TokenCache from "../src/TokenCache.js"
import * as FakeSource from "./utils/FakeSource.js"
import { anyDuration, anyNumber, anyString, anyUrl } from "./utils/Hostile.js"

const TYPED =
  /^(InvalidArgument|ConfigError|InvalidCredentials|MalformedTokenResponse|TokenEndpointUnavailable|ProviderError|Timeout|RateLimited|RequestError|ResponseError|TokenError|Unauthorized|ServerError)$/

/** A typed failure in the Effect channel, or success: never a defect (a throw inside is one too). */
const typedOrSuccess = <A, E extends { readonly _tag: string }, R>(make: () => Effect.Effect<A, E, R>) =>
  Effect.map(Effect.exit(Effect.suspend(make)), (exit) => {
    if (Exit.isFailure(exit)) {
      const failure = Cause.failureOption(exit.cause)
      expect(failure._tag === "Some" ? failure.value._tag : Cause.pretty(exit.cause)).toMatch(TYPED)
      return undefined
    }
    return exit.value
  })

const ok = HttpClient.make((request) =>
  Effect.succeed(HttpClientResponse.fromWeb(request, new Response("{}", { status: 200 })))
)
const tokenEndpoint = HttpClient.make((request) =>
  Effect.succeed(
    HttpClientResponse.fromWeb(
      request,
      new Response(JSON.stringify({ access_token: "at", token_type: "Bearer", expires_in: 3600 }), {
        status: 200,
        headers: { "content-type": "application/json" }
      })
    )
  )
)

describe("every public constructor and option: a typed error or a working value (issue 18)", () => {
  it.effect.prop(
    "TokenCache.make options",
    {
      refreshBefore: anyDuration,
      safetyMargin: anyDuration,
      idleAfter: anyDuration,
      timeout: anyDuration,
      closeTimeout: anyDuration,
      attempts: anyNumber,
      baseDelay: anyDuration,
      maxDelay: anyDuration,
      maxRetryAfter: anyDuration,
      cooldownBase: anyDuration,
      cooldownMax: anyDuration
    },
    (o) =>
      Effect.gen(function*() {
        const source = yield* FakeSource.make()
        const cache = yield* typedOrSuccess(() =>
          TokenCache.make(source.source, {
            refreshBefore: o.refreshBefore as Duration.DurationInput,
            safetyMargin: o.safetyMargin as Duration.DurationInput,
            idleAfter: o.idleAfter as Duration.DurationInput,
            timeout: o.timeout as Duration.DurationInput,
            closeTimeout: o.closeTimeout as Duration.DurationInput,
            retry: {
              attempts: o.attempts,
              baseDelay: o.baseDelay as Duration.DurationInput,
              maxDelay: o.maxDelay as Duration.DurationInput,
              maxRetryAfter: o.maxRetryAfter as Duration.DurationInput
            },
            cooldown: { base: o.cooldownBase as Duration.DurationInput, max: o.cooldownMax as Duration.DurationInput }
          })
        )
        if (cache === undefined) return
        const fiber = yield* Effect.fork(Effect.exit(cache.get))
        yield* TestClock.adjust("1 minute")
        const exit = yield* Fiber.join(fiber)
        if (Exit.isFailure(exit)) expect(Cause.failureOption(exit.cause)._tag).toBe("Some")
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 150 } }
  )

  it.effect.prop(
    "ApiClient.make options, and withRequestOptions per request",
    {
      baseUrl: anyUrl,
      header: anyString,
      timeout: anyDuration,
      requestTimeout: anyDuration,
      permitDeadline: anyDuration,
      rateLimited: anyNumber,
      transient: anyNumber,
      baseDelay: anyDuration,
      maxWait: anyDuration,
      cost: anyNumber,
      priority: anyNumber,
      requestDeadline: anyDuration
    },
    (o) =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 3, window: "1 minute" }))
        const api = yield* typedOrSuccess(() =>
          ApiClient.make({
            provider: "arguments",
            baseUrl: o.baseUrl,
            headers: { "x-custom": o.header },
            limiter,
            timeout: o.timeout as Duration.DurationInput,
            requestTimeout: o.requestTimeout as Duration.DurationInput,
            permitDeadline: o.permitDeadline as Duration.DurationInput,
            retry: {
              rateLimited: o.rateLimited,
              transient: o.transient,
              baseDelay: o.baseDelay as Duration.DurationInput,
              maxWait: o.maxWait as Duration.DurationInput
            }
          }).pipe(Effect.provideService(HttpClient.HttpClient, ok))
        )
        let admitted = 0
        const request = (options: ApiClient.RequestOptions | undefined) =>
          api === undefined ? Effect.void : typedOrSuccess(() => {
            const get = Effect.tap(api.get("/x"), () => Effect.sync(() => admitted++))
            return options === undefined ? get : get.pipe(ApiClient.withRequestOptions(options))
          })
        const options = {
          cost: o.cost,
          priority: o.priority,
          permitDeadline: o.requestDeadline as Duration.DurationInput
        }
        const fiber = yield* Effect.fork(
          Effect.all([request(undefined), request(options), request(options), request(options), request(options)], {
            concurrency: "unbounded"
          })
        )
        yield* TestClock.adjust("30 seconds")
        yield* Fiber.interrupt(fiber)
        // Whatever was accepted spent no more than the limit in its window.
        expect(admitted).toBeLessThanOrEqual(3)
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 150 } }
  )

  it.effect.prop(
    "OAuth2.make options, through a token request",
    {
      tokenUrl: anyUrl,
      clientId: anyString,
      clientSecret: anyString,
      scope: anyString,
      audience: anyString,
      timeout: anyDuration,
      header: anyString
    },
    (o) =>
      Effect.gen(function*() {
        const source = yield* typedOrSuccess(() =>
          OAuth2.make({
            tokenUrl: o.tokenUrl,
            clientId: o.clientId,
            clientSecret: Redacted.make(o.clientSecret),
            scope: o.scope,
            audience: o.audience,
            headers: { "x-custom": o.header },
            timeout: o.timeout as Duration.DurationInput
          }).pipe(Effect.provideService(HttpClient.HttpClient, tokenEndpoint))
        )
        if (source === undefined) return
        const fiber = yield* Effect.fork(
          typedOrSuccess(() => source.fetch).pipe(Effect.provideService(HttpClient.HttpClient, tokenEndpoint))
        )
        yield* TestClock.adjust("1 minute")
        yield* Fiber.join(fiber)
      }),
    { fastCheck: { numRuns: 150 } }
  )
})
