/**
 * Token requests as every cache makes them: the grant to use, the optional limiter on the token
 * endpoint, retries with backoff and jitter, and metrics; and revocation at shutdown.
 */
import { Cause, Clock, Duration, Effect, Metric, Option, Random, Redacted } from "effect"
import type * as AccessToken from "../AccessToken.js"
import * as HeaderValue from "../HeaderValue.js"
import type * as TokenCache from "../TokenCache.js"
import type * as TokenSource from "../TokenSource.js"
import * as TollgateError from "../TollgateError.js"
import * as Metrics from "./metrics.js"

type Grant = "fetch" | "refresh"

/** The request settings of `TokenCache.Options`. */
export type Options = Pick<TokenCache.Options, "retry" | "limiter">

export const defaults = {
  attempts: 3,
  baseDelay: Duration.millis(250),
  maxDelay: Duration.seconds(10),
  maxRetryAfter: Duration.seconds(30)
} as const

export const jittered = (millis: number): Effect.Effect<number> =>
  Effect.map(Random.next, (r) => Math.round(millis / 2 + (millis / 2) * r))

/**
 * Token requests as every cache makes them, whichever backend holds the token. Each attempt reads `base`:
 * with a token that has a refresh token and a source that can refresh, the refresh_token grant, falling
 * back to the full fetch when that grant is refused; otherwise the full fetch. Requests go through
 * `options.limiter` when set (a limit that would make them wait past `maxRetryAfter` is a
 * `TokenEndpointUnavailable`) and are retried per `options.retry`, with exponential backoff and jitter,
 * honouring an announced retry instant up to `maxRetryAfter`. Every request is counted in
 * `tollgate_token_requests_total`; `onFailure` runs after each failed attempt. A token that cannot be
 * sent in an HTTP header fails as `MalformedTokenResponse`, so no source can put one in a cache.
 */
export const make = (
  source: TokenSource.Service,
  options: Options,
  onFailure: () => void
): (
  base: Effect.Effect<Option.Option<AccessToken.AccessToken>>
) => Effect.Effect<readonly [AccessToken.AccessToken, "fetch" | "refresh"], TollgateError.TokenError> => {
  const provider = source.identity.provider
  const attempts = Math.max(1, options.retry?.attempts ?? defaults.attempts)
  const baseDelay = Duration.toMillis(options.retry?.baseDelay ?? defaults.baseDelay)
  const maxDelay = Duration.toMillis(options.retry?.maxDelay ?? defaults.maxDelay)
  const maxRetryAfter = Duration.toMillis(options.retry?.maxRetryAfter ?? defaults.maxRetryAfter)

  const counter = (grant: Grant, outcome: "success" | "failure") =>
    Metrics.counter("tollgate_token_requests_total", "Token requests by provider, grant and outcome", {
      provider,
      grant,
      outcome
    })
  const counters = {
    fetch: { success: counter("fetch", "success"), failure: counter("fetch", "failure") },
    refresh: { success: counter("refresh", "success"), failure: counter("refresh", "failure") }
  }
  const counted = <A>(grant: Grant, effect: Effect.Effect<A, TollgateError.TokenError>) =>
    Effect.tapBoth(effect, {
      onFailure: () => Metric.update(counters[grant].failure, 1),
      onSuccess: () => Metric.update(counters[grant].success, 1)
    })

  const guard = <A>(effect: Effect.Effect<A, TollgateError.TokenError>): Effect.Effect<A, TollgateError.TokenError> =>
    options.limiter === undefined ? effect : options.limiter.withPermit({
      key: "token",
      deadline: Duration.millis(maxRetryAfter)
    })(effect).pipe(
      Effect.catchTag("RateLimited", (error) =>
        Effect.fail(
          new TollgateError.TokenEndpointUnavailable({
            provider,
            reason: error.reason === "unavailable"
              ? "Tollgate's own limit on token requests cannot reach its store"
              : "Tollgate's own limit on token requests would wait too long",
            retryAt: error.retryAt
          })
        ))
    )

  const sendable = (
    token: AccessToken.AccessToken
  ): Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError> => {
    const problem = HeaderValue.problem(Redacted.value(token.value))
    return problem === undefined ? Effect.succeed(token) : Effect.fail(
      new TollgateError.MalformedTokenResponse({
        provider,
        field: "access_token",
        expected: "a token that can be sent in an HTTP header",
        received: problem
      })
    )
  }
  const checked = (effect: Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError>) =>
    Effect.flatMap(effect, sendable)

  const fetch = Effect.map(counted("fetch", checked(guard(source.fetch))), (token) => [token, "fetch"] as const)

  // One grant, without retries.
  const once = (base: Option.Option<AccessToken.AccessToken>) => {
    const refresh = source.refresh
    if (Option.isNone(base) || Option.isNone(refresh) || Option.isNone(base.value.refreshToken)) return fetch
    return counted("refresh", checked(guard(refresh.value(base.value)))).pipe(
      Effect.map((token) => [token, "refresh"] as const),
      // An outage fails the whole attempt; a refused refresh token falls back to the credentials.
      Effect.catchIf((error) => !error.retryable, () => fetch)
    )
  }

  return (base) => {
    const attempt = (
      n: number
    ): Effect.Effect<readonly [AccessToken.AccessToken, Grant], TollgateError.TokenError> =>
      Effect.flatMap(base, once).pipe(
        Effect.tapError(() => Effect.sync(onFailure)),
        Effect.catchIf((error) => error.retryable && n + 1 < attempts, (error) =>
          Effect.flatMap(
            Effect.zip(jittered(Math.min(maxDelay, baseDelay * 2 ** n)), Clock.currentTimeMillis),
            ([backoff, now]) => {
              const retryAt = "retryAt" in error && error.retryAt !== undefined ? error.retryAt.epochMillis : 0
              const wait = Math.max(backoff, retryAt - now)
              return wait > maxRetryAfter
                ? Effect.fail(error)
                : Effect.zipRight(Effect.sleep(Duration.millis(wait)), attempt(n + 1))
            }
          ))
      )
    return attempt(0)
  }
}

/**
 * Revokes `token` at shutdown: bounded by `timeout`, traced, and logged rather than failed when it goes
 * wrong (a finalizer must not fail).
 */
export const revokeAtClose = (
  revoke: (token: AccessToken.AccessToken) => Effect.Effect<void, TollgateError.TokenError>,
  token: AccessToken.AccessToken,
  options: { readonly provider: string; readonly timeout: Duration.Duration; readonly onRevoked: () => void }
): Effect.Effect<void> =>
  // Finalizers run uninterruptibly; without `interruptible` the timeout could not stop a hung call.
  Effect.interruptible(revoke(token)).pipe(
    Effect.timeoutFail({
      duration: options.timeout,
      onTimeout: () =>
        new TollgateError.Timeout({ provider: options.provider, operation: "token revocation", after: options.timeout })
    }),
    Effect.tap(() => Effect.sync(options.onRevoked)),
    Effect.withSpan("tollgate.token.revoke", { attributes: { "tollgate.provider": options.provider } }),
    Effect.catchAllCause((cause) =>
      Effect.logWarning("Tollgate could not revoke the token at shutdown").pipe(
        Effect.annotateLogs({
          provider: options.provider,
          error: Option.match(Cause.failureOption(cause), {
            onNone: () => Cause.isInterruptedOnly(cause) ? "interrupted" : "unexpected error",
            onSome: (error) => error.message
          })
        })
      )
    )
  )
