/**
 * Keeps one valid token per identity: a scoped `Ref` holding the current token, at most one token
 * request in flight however many fibers ask, a background refresh ahead of expiry, and revocation when
 * the scope closes.
 *
 * It avoids three traps of Effect 3.22: `Semaphore.withPermits` (and `SynchronizedRef`, built on it)
 * can lose a permit when interrupted at an unlucky instant, so state changes here are single atomic
 * `Ref.modify` calls and never hold a lock; `Resource.auto` stops refreshing for good after one failed
 * refresh, so the refresher here is a loop that keeps trying while the old token is valid;
 * `ScopedRef.set` releases the old value before acquiring the new one, which would revoke a live token
 * before its replacement exists, so revocation here happens only when the cache's scope closes.
 *
 * @since 0.1.0
 */
import {
  Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  ExecutionStrategy,
  Exit,
  FiberHandle,
  FiberId,
  Layer,
  Metric,
  Option,
  Random,
  Ref,
  Scope
} from "effect"
import * as AccessToken from "./AccessToken.js"
import * as Metrics from "./internal/metrics.js"
import { sleepUntil } from "./internal/time.js"
import type * as RateLimiter from "./RateLimiter.js"
import * as TokenSource from "./TokenSource.js"
import * as TollgateError from "./TollgateError.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** Token requests that returned a token, by grant. */
  readonly fetches: number
  readonly refreshes: number
  /** Token requests that failed (each attempt). */
  readonly failures: number
  readonly revocations: number
  /** Tokens dropped by `invalidate`. */
  readonly invalidations: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly identity: TokenSource.Identity
  /**
   * A token that is valid for at least the safety margin. Waits for the one token request in flight
   * when there is no such token; interrupting the wait does not cancel that request.
   */
  readonly get: Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError>
  /**
   * Drops `token` if it is still the current one (compare-and-set), so a 401 for an old token never
   * drops a newer one. Returns whether it dropped it.
   */
  readonly invalidate: (token: AccessToken.AccessToken) => Effect.Effect<boolean>
  /** The token held now, valid or not, without requesting one. */
  readonly current: Effect.Effect<Option.Option<AccessToken.AccessToken>>
  readonly stats: Effect.Effect<Stats>
}

/**
 * The token cache of a program that talks to one API. Programs with several build each provider's
 * cache with `make`.
 *
 * @since 0.1.0
 * @category tags
 */
export class TokenCache extends Context.Tag("@tollgate/core/TokenCache")<TokenCache, Service>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * How long before expiry the background refresh starts. Default: 5 minutes, clamped to half the
   * lifetime of short-lived tokens.
   */
  readonly refreshBefore?: Duration.DurationInput | undefined
  /**
   * A token this close to expiry is never handed out. Default: 30 seconds, clamped to a tenth of the
   * lifetime and to `refreshBefore`.
   */
  readonly safetyMargin?: Duration.DurationInput | undefined
  /** Retries inside one token request, for transport errors, 5xx, timeouts and a short 429. */
  readonly retry?: {
    /** Attempts per request, the first included. Default: 3. */
    readonly attempts?: number | undefined
    /** Default: 250 milliseconds, doubled per attempt, with jitter. */
    readonly baseDelay?: Duration.DurationInput | undefined
    /** Default: 10 seconds. */
    readonly maxDelay?: Duration.DurationInput | undefined
    /** The longest `Retry-After` worth waiting for inside a request. Default: 30 seconds. */
    readonly maxRetryAfter?: Duration.DurationInput | undefined
  } | undefined
  /**
   * After a failed request, no new one starts for this long: callers get the same error at once. It
   * doubles with each consecutive failure, with jitter. Default: 1 second up to 1 minute.
   */
  readonly cooldown?: {
    readonly base?: Duration.DurationInput | undefined
    readonly max?: Duration.DurationInput | undefined
  } | undefined
  /** Revoke the current token when the scope closes, where the source can. Default: true. */
  readonly revokeOnClose?: boolean | undefined
  /** Bound on revocation when the scope closes. Default: 5 seconds. */
  readonly closeTimeout?: Duration.DurationInput | undefined
  /** Every token request (fetch and refresh) takes a permit from this limiter first. */
  readonly limiter?: RateLimiter.Service | undefined
}

type Grant = "fetch" | "refresh"

interface Flight {
  readonly deferred: Deferred.Deferred<AccessToken.AccessToken, TollgateError.TokenError>
  readonly grant: Grant
}

interface State {
  readonly token: Option.Option<AccessToken.AccessToken>
  /** Until when `token` may be handed out, computed once when it is installed. */
  readonly usableUntil: number
  readonly flight: Flight | undefined
  readonly failure:
    | { readonly error: TollgateError.TokenError; readonly retryAt: number; readonly consecutive: number }
    | undefined
  readonly closed: boolean
}

type Decision =
  | { readonly _tag: "Ready"; readonly token: AccessToken.AccessToken }
  | { readonly _tag: "Join"; readonly flight: Flight }
  | { readonly _tag: "Start"; readonly flight: Flight }
  | { readonly _tag: "Fail"; readonly error: TollgateError.TokenError }

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  refreshBefore: Duration.minutes(5),
  safetyMargin: Duration.seconds(30),
  attempts: 3,
  baseDelay: Duration.millis(250),
  maxDelay: Duration.seconds(10),
  maxRetryAfter: Duration.seconds(30),
  cooldownBase: Duration.seconds(1),
  cooldownMax: Duration.minutes(1),
  closeTimeout: Duration.seconds(5)
} as const

/**
 * The instants that govern a token: when the background refresh starts and until when it may be
 * handed out. Tokens without an expiry are usable until invalidated.
 *
 * @since 0.1.0
 * @category getters
 */
export const schedule = (
  token: AccessToken.AccessToken,
  options?: Pick<Options, "refreshBefore" | "safetyMargin">
): { readonly refreshAt: number; readonly usableUntil: number } => {
  if (Option.isNone(token.expiresAt)) {
    return { refreshAt: Number.POSITIVE_INFINITY, usableUntil: Number.POSITIVE_INFINITY }
  }
  const expiresAt = token.expiresAt.value.epochMillis
  const lifetime = Math.max(0, expiresAt - token.obtainedAt.epochMillis)
  const refreshBefore = Math.min(
    Duration.toMillis(options?.refreshBefore ?? defaults.refreshBefore),
    lifetime / 2
  )
  const margin = Math.min(
    Duration.toMillis(options?.safetyMargin ?? defaults.safetyMargin),
    lifetime / 10,
    refreshBefore
  )
  return { refreshAt: expiresAt - refreshBefore, usableUntil: expiresAt - margin }
}

/**
 * Revokes `token` at shutdown, as every cache does when its scope closes: bounded by `timeout`, traced,
 * and logged rather than failed when it goes wrong (a finalizer must not fail). `onRevoked` runs after a
 * revocation the provider accepted.
 *
 * @since 0.1.0
 * @category utils
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

const jittered = (millis: number): Effect.Effect<number> =>
  Effect.map(Random.next, (r) => Math.round(millis / 2 + (millis / 2) * r))

/**
 * Token requests as every cache makes them, whichever backend holds the token. Each attempt reads `base`:
 * with a token that has a refresh token and a source that can refresh, the refresh_token grant, falling
 * back to the full fetch when that grant is refused; otherwise the full fetch. Requests go through
 * `options.limiter` when set (a limit that would make them wait past `maxRetryAfter` is a
 * `TokenEndpointUnavailable`) and are retried per `options.retry`, with exponential backoff and jitter,
 * honouring an announced retry instant up to `maxRetryAfter`. Every request is counted in
 * `tollgate_token_requests_total`; `onFailure` runs after each failed attempt.
 *
 * @since 0.1.0
 * @category backends
 */
export const makeGrants = (
  source: TokenSource.Service,
  options: Pick<Options, "retry" | "limiter">,
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

  const fetch = Effect.map(counted("fetch", guard(source.fetch)), (token) => [token, "fetch"] as const)

  // One grant, without retries.
  const once = (base: Option.Option<AccessToken.AccessToken>) => {
    const refresh = source.refresh
    if (Option.isNone(base) || Option.isNone(refresh) || Option.isNone(base.value.refreshToken)) return fetch
    return counted("refresh", guard(refresh.value(base.value))).pipe(
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
 * Builds a cache over `source`. Its refresher and its token request live in the current scope; closing
 * the scope stops the refresher, revokes the current token where the source can (bounded by
 * `closeTimeout`, logging rather than failing if that goes wrong), and interrupts a request still in
 * flight, whose waiters fail with `TokenEndpointUnavailable`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  source: TokenSource.Service,
  options: Options = {}
): Effect.Effect<Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const provider = source.identity.provider
    const clock = yield* Effect.clock
    const scope = yield* Effect.scope
    // Fibers live in a child scope that closes after the shutdown finalizer below has run.
    const fiberScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
    const refresher = yield* Scope.extend(FiberHandle.make<void, never>(), fiberScope)
    const state = yield* Ref.make<State>({
      token: Option.none(),
      usableUntil: Number.NEGATIVE_INFINITY,
      flight: undefined,
      failure: undefined,
      closed: false
    })
    const stats = { fetches: 0, refreshes: 0, failures: 0, revocations: 0, invalidations: 0 }

    const cooldownBase = Duration.toMillis(options.cooldown?.base ?? defaults.cooldownBase)
    const cooldownMax = Duration.toMillis(options.cooldown?.max ?? defaults.cooldownMax)
    const closeTimeout = Duration.decode(options.closeTimeout ?? defaults.closeTimeout)
    const timing = (token: AccessToken.AccessToken) => schedule(token, options)
    const now = () => clock.unsafeCurrentTimeMillis()

    const isUsable = (s: State, at: number) => at < s.usableUntil

    const closedError = () =>
      new TollgateError.TokenEndpointUnavailable({ provider, reason: "the token cache's scope is closed" })

    const grants = makeGrants(source, options, () => stats.failures++)
    // A refresh renews the cache's current token (read afresh by each retry); a fetch starts from nothing.
    const currentBase = Effect.map(Ref.get(state), (s) => s.token)
    const noBase = Effect.succeed(Option.none<AccessToken.AccessToken>())
    const attempt = (grant: Grant) => grants(grant === "fetch" ? noBase : currentBase)

    const complete = (
      flight: Flight,
      exit: Exit.Exit<readonly [AccessToken.AccessToken, Grant], TollgateError.TokenError>
    ) =>
      Effect.gen(function*() {
        if (Exit.isSuccess(exit)) {
          const [token, grant] = exit.value
          if (grant === "fetch") stats.fetches++
          else stats.refreshes++
          const s = yield* Ref.updateAndGet(
            state,
            (s) => ({
              ...s,
              token: Option.some(token),
              usableUntil: timing(token).usableUntil,
              flight: undefined,
              failure: undefined
            })
          )
          yield* Deferred.succeed(flight.deferred, token)
          if (!s.closed && Option.isSome(token.expiresAt)) {
            yield* Effect.exit(FiberHandle.run(refresher, refreshLoop(token)))
          }
          return
        }
        const failure = Cause.failureOption(exit.cause)
        if (Option.isNone(failure)) {
          // Interrupted (the scope is closing) or a defect: waiters learn of it, and nothing is cached.
          yield* Ref.update(state, (s) => ({ ...s, flight: undefined }))
          yield* Deferred.failCause(
            flight.deferred,
            Cause.isInterruptedOnly(exit.cause) ? Cause.fail(closedError()) : exit.cause as Cause.Cause<never>
          )
          return
        }
        const error = failure.value
        const s = yield* Ref.get(state)
        const consecutive = (s.failure?.consecutive ?? 0) + 1
        const cooldown = yield* jittered(Math.min(cooldownMax, cooldownBase * 2 ** (consecutive - 1)))
        const announced = "retryAt" in error && error.retryAt !== undefined ? error.retryAt.epochMillis : 0
        yield* Ref.update(state, (s) => ({
          ...s,
          flight: undefined,
          failure: { error, retryAt: Math.max(now() + cooldown, announced), consecutive }
        }))
        yield* Deferred.fail(flight.deferred, error)
        yield* Effect.logWarning("Tollgate could not obtain a token").pipe(
          Effect.annotateLogs({ provider, grant: flight.grant, error: error.message })
        )
      })

    const runFlight = (flight: Flight): Effect.Effect<void> =>
      attempt(flight.grant).pipe(
        Effect.withSpan(`tollgate.token.${flight.grant}`, { attributes: { "tollgate.provider": provider } }),
        Effect.onExit((exit) => complete(flight, exit)),
        Effect.ignore
      )

    const startFlight = (flight: Flight) => Effect.forkIn(Effect.interruptible(runFlight(flight)), fiberScope)

    const newFlight = (grant: Grant): Flight => ({ deferred: Deferred.unsafeMake(FiberId.none), grant })

    const decide = (s: State, at: number, grant: Grant): readonly [Decision, State] => {
      if (s.closed) return [{ _tag: "Fail", error: closedError() }, s]
      if (isUsable(s, at)) {
        return [{ _tag: "Ready", token: (s.token as Option.Some<AccessToken.AccessToken>).value }, s]
      }
      if (s.flight !== undefined) {
        return [{ _tag: "Join", flight: s.flight }, s]
      }
      if (s.failure !== undefined && at < s.failure.retryAt) return [{ _tag: "Fail", error: s.failure.error }, s]
      const flight = newFlight(grant)
      return [{ _tag: "Start", flight }, { ...s, flight }]
    }

    const slowGet: Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError> = Effect.uninterruptibleMask(
      (restore) =>
        // A cache that holds a token renews it (with its refresh token when it has one); a cold one fetches.
        Effect.flatMap(
          Ref.modify(state, (s) => decide(s, now(), Option.isSome(s.token) ? "refresh" : "fetch")),
          (decision) => {
            switch (decision._tag) {
              case "Ready":
                return Effect.succeed(decision.token)
              case "Fail":
                return Effect.fail(decision.error)
              case "Join":
                return restore(Deferred.await(decision.flight.deferred))
              case "Start":
                return Effect.zipRight(startFlight(decision.flight), restore(Deferred.await(decision.flight.deferred)))
            }
          }
        )
    )

    const get: Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError> = Effect.flatMap(
      Ref.get(state),
      (s) =>
        !s.closed && isUsable(s, now())
          ? Effect.succeed((s.token as Option.Some<AccessToken.AccessToken>).value)
          : slowGet
    )

    // Renews `token` from its refresh instant on, retrying after each failure (past the cooldown) while
    // the token is still usable; callers keep getting it meanwhile. A successful renewal schedules the
    // next loop, which replaces this one.
    const refreshLoop = (token: AccessToken.AccessToken): Effect.Effect<void> =>
      Effect.zipRight(
        sleepUntil(timing(token).refreshAt),
        Effect.suspend(function loop(): Effect.Effect<void> {
          return Effect.flatMap(Ref.get(state), (s) => {
            const at = now()
            const usableUntil = timing(token).usableUntil
            if (
              s.closed || Option.isNone(s.token) || !AccessToken.isSameToken(s.token.value, token) ||
              at >= usableUntil
            ) return Effect.void
            if (s.flight === undefined && s.failure !== undefined && at < s.failure.retryAt) {
              return Effect.zipRight(sleepUntil(Math.min(s.failure.retryAt, usableUntil)), Effect.suspend(loop))
            }
            return Effect.uninterruptibleMask((restore) =>
              Effect.flatMap(
                Ref.modify(state, (s): readonly [readonly [Flight, boolean], State] => {
                  if (s.flight !== undefined) return [[s.flight, false], s]
                  const flight = newFlight("refresh")
                  return [[flight, true], { ...s, flight }]
                }),
                ([flight, created]) =>
                  Effect.zipRight(
                    created ? startFlight(flight) : Effect.void,
                    restore(Effect.exit(Deferred.await(flight.deferred)))
                  )
              )
            ).pipe(Effect.zipRight(Effect.suspend(loop)))
          })
        })
      )

    const invalidate = (token: AccessToken.AccessToken) =>
      Ref.modify(state, (s): readonly [boolean, State] =>
        Option.isSome(s.token) && AccessToken.isSameToken(s.token.value, token)
          ? [true, { ...s, token: Option.none(), usableUntil: Number.NEGATIVE_INFINITY }]
          : [false, s]).pipe(Effect.tap((dropped) =>
            dropped
              ? Effect.sync(() =>
                stats.invalidations++
              )
              : Effect.void
          ))

    const revoke = Option.match(source.revoke, {
      onNone: () => Effect.void,
      onSome: (revoke) =>
        Effect.flatMap(Ref.get(state), (s) => {
          if (options.revokeOnClose === false || Option.isNone(s.token)) return Effect.void
          const token = s.token.value
          if (Option.isSome(token.expiresAt) && token.expiresAt.value.epochMillis <= now()) return Effect.void
          return revokeAtClose(revoke, token, {
            provider,
            timeout: closeTimeout,
            onRevoked: () => stats.revocations++
          })
        })
    })

    // Runs before `fiberScope` closes. A request still in flight is then interrupted rather than awaited:
    // waiting on it would hang any test whose clock stands still, and its waiters fail with a typed error.
    yield* Effect.addFinalizer(() =>
      Effect.zipRight(
        Effect.zipRight(Ref.update(state, (s) => ({ ...s, closed: true })), FiberHandle.clear(refresher)),
        revoke
      )
    )

    return {
      identity: source.identity,
      get,
      invalidate,
      current: Effect.map(Ref.get(state), (s) => s.token),
      stats: Effect.sync(() => ({ ...stats }))
    } satisfies Service
  })

/**
 * How caches are built: in this process by default, or shared by a fleet when a Layer provides another
 * backend (`@tollgate/redis`). Provider modules build their caches through it, so moving a program to
 * a shared store is one Layer, not a change to every provider.
 *
 * @since 0.1.0
 * @category models
 */
export interface Backend {
  readonly make: (source: TokenSource.Service, options?: Options) => Effect.Effect<Service, never, Scope.Scope>
}

/**
 * The backend in use; `make` (this process) unless a Layer provides another.
 *
 * @since 0.1.0
 * @category tags
 */
export class TokenCacheBackend extends Context.Reference<TokenCacheBackend>()("@tollgate/core/TokenCache/Backend", {
  defaultValue: (): Backend => ({ make: (source, options) => make(source, options) })
}) {}

/**
 * Builds a cache with the backend in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWithBackend = (
  source: TokenSource.Service,
  options?: Options
): Effect.Effect<Service, never, Scope.Scope> =>
  Effect.flatMap(TokenCacheBackend, (backend) => backend.make(source, options))

/**
 * A cache over the `TokenSource` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<TokenCache, never, TokenSource.TokenSource> =>
  Layer.scoped(TokenCache, Effect.flatMap(TokenSource.TokenSource, (source) => makeWithBackend(source, options)))
