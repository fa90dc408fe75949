/**
 * Pieces several scenarios share: a token source that answers at once, and the Tollgate client over
 * any transport.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as AccessToken from "@tollgate/core/AccessToken"
import * as ApiClient from "@tollgate/core/ApiClient"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as TokenCache from "@tollgate/core/TokenCache"
import * as TokenSource from "@tollgate/core/TokenSource"
import { DateTime, Effect, Either, Redacted } from "effect"
import type { Scope } from "effect"

/** A source that issues a one-hour token instantly, so the cache always holds a valid one. */
export const instantSource: TokenSource.Service = TokenSource.make({
  identity: { provider: "bench", endpoint: "memory://token", clientId: "bench-client" },
  fetch: Effect.map(DateTime.now, (receivedAt) =>
    Either.getOrThrow(
      AccessToken.make({ value: Redacted.make("bench-access-token"), receivedAt, expiresIn: 3600 })
    ))
})

/**
 * The full Tollgate client over the `HttpClient` given: `policy` limiter, a TokenCache over the instant
 * source, primed so the timed part only ever reads the cached token.
 */
export const tollgateClient = (
  transport: HttpClient.HttpClient,
  policy: RateLimiter.Policy = RateLimiter.unlimited,
  options: Omit<ApiClient.Options, "provider" | "tokens" | "limiter"> = {}
): Effect.Effect<ApiClient.Service, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const limiter = yield* RateLimiter.make(policy, { provider: "bench" })
    const tokens = yield* TokenCache.make(instantSource)
    yield* tokens.get
    return yield* ApiClient.make({ ...options, provider: "bench", tokens, limiter })
  }).pipe(Effect.provideService(HttpClient.HttpClient, transport))
