/**
 * Keeps one valid token per identity: one token request in flight however many fibers ask, a
 * background refresh ahead of expiry while the token is in use, revocation when the scope closes. The
 * token lives in a `TokenStore`: this process's memory by default, or one shared by a fleet.
 *
 * The design: `docs/tokens.md` in the repository.
 *
 * @since 0.1.0
 */
import {
  Cause,
  Context,
  Deferred,
  Duration,
  Effect,
  ExecutionStrategy,
  Exit,
  FiberId,
  Layer,
  Option,
  Scope
} from "effect"
import * as AccessToken from "./AccessToken.js"
import * as Facets from "./internal/facets.js"
import * as Grants from "./internal/grants.js"
import * as Obtain from "./internal/obtain.js"
import { MAX_SLEEP_CHUNK_MILLIS } from "./internal/time.js"
import { Checker } from "./internal/validate.js"
import type * as RateLimiter from "./RateLimiter.js"
import * as TokenSource from "./TokenSource.js"
import * as TokenStore from "./TokenStore.js"
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
   * when there is no such token (at most `timeout`); interrupting the wait does not cancel that request.
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
   * How long before expiry the background refresh may start. Default: 5 minutes, clamped to a sixth of
   * the lifetime of short-lived tokens (so a token serves five sixths of its life); a value given here is
   * clamped to half the lifetime.
   */
  readonly refreshBefore?: Duration.DurationInput | undefined
  /**
   * A token this close to expiry is never handed out. Default: 30 seconds, clamped to half of
   * `refreshBefore` (so a renewal has the other half to arrive); a value given here is clamped to
   * `refreshBefore`.
   */
  readonly safetyMargin?: Duration.DurationInput | undefined
  /**
   * A token is renewed ahead of expiry only if it was handed out within this long before its refresh
   * instant (or during its refresh window): an idle service renews nothing. Default: the token's
   * `refreshBefore`, so a token used during the last two refresh leads before its expiry is renewed in
   * time. `Duration.infinity` renews every token, used or not.
   */
  readonly idleAfter?: Duration.DurationInput | undefined
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
   * Bound on obtaining one token, retries and waiting for another process's request included: `get`
   * fails with `Timeout` past it. Default: 30 seconds.
   */
  readonly timeout?: Duration.DurationInput | undefined
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
  /** Where the token is kept. Default: a private `TokenStore.memory()`. */
  readonly store?: TokenStore.Factory | undefined
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  refreshBefore: Duration.minutes(5),
  safetyMargin: Duration.seconds(30),
  ...Grants.defaults,
  timeout: Duration.seconds(30),
  cooldownBase: Duration.seconds(1),
  cooldownMax: Duration.minutes(1),
  closeTimeout: Duration.seconds(5)
} as const

/**
 * The instants that govern a token: from when it is due for refresh and until when it may be handed
 * out. Tokens without an expiry are usable until invalidated.
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
  const refreshBefore = options?.refreshBefore === undefined
    ? Math.min(Duration.toMillis(defaults.refreshBefore), lifetime / 6)
    : Math.min(Math.max(0, Duration.toMillis(options.refreshBefore)), lifetime / 2)
  const margin = options?.safetyMargin === undefined
    ? Math.min(Duration.toMillis(defaults.safetyMargin), refreshBefore / 2)
    : Math.min(Math.max(0, Duration.toMillis(options.safetyMargin)), refreshBefore)
  return { refreshAt: expiresAt - refreshBefore, usableUntil: expiresAt - margin }
}

interface Held extends TokenStore.Entry {
  /** Whether a caller inside the refresh window has woken the refresher for this token. */
  kicked: boolean
  /** When the refresher may start (`refreshAt`, plus jitter for a shared store). */
  readonly wakeAt: number
  /** Renewed ahead of expiry only if handed out at or after this instant. */
  readonly activeSince: number
}

type Deferred = Deferred.Deferred<AccessToken.AccessToken, TollgateError.TokenError>

/**
 * The first option of `options` that cannot work, as `InvalidArgument` (the one validation path of
 * `internal/validate.ts`), or `undefined`: every duration decodable and not negative, `retry.attempts` a
 * whole number from 1.
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = (options: Options): TollgateError.InvalidArgument | undefined => {
  const check = new Checker("TokenCache.make")
  const duration = (argument: string, value: Duration.DurationInput | undefined, positive = false) => {
    if (value !== undefined) check.duration(argument, value, { positive, infinite: true })
  }
  duration("refreshBefore", options.refreshBefore)
  duration("safetyMargin", options.safetyMargin)
  duration("idleAfter", options.idleAfter)
  duration("timeout", options.timeout, true)
  duration("closeTimeout", options.closeTimeout)
  duration("retry.baseDelay", options.retry?.baseDelay)
  duration("retry.maxDelay", options.retry?.maxDelay)
  duration("retry.maxRetryAfter", options.retry?.maxRetryAfter)
  duration("cooldown.base", options.cooldown?.base)
  duration("cooldown.max", options.cooldown?.max)
  if (options.retry?.attempts !== undefined) check.count("retry.attempts", options.retry.attempts)
  return check.issue
}

/**
 * Builds a cache over `source`. Its refresher and its token request live in the current scope; closing
 * the scope stops the refresher, revokes the current token where the source can and no other cache of
 * the store uses it (bounded by `closeTimeout`, logging rather than failing if that goes wrong), and
 * interrupts a request still in flight, whose waiters fail with `TokenEndpointUnavailable`.
 *
 * @example
 * ```ts
 * import { AccessToken, TokenCache, TokenSource } from "@tollgate/core"
 * import { DateTime, Effect, Either, Redacted } from "effect"
 *
 * let minted = 0
 * const source = TokenSource.make({
 *   identity: { provider: "acme", endpoint: "https://auth.acme.example/token", clientId: "my-client" },
 *   fetch: Effect.map(DateTime.now, (receivedAt) =>
 *     Either.getOrThrow(AccessToken.make({ value: Redacted.make(`token-${++minted}`), expiresIn: 3600, receivedAt })))
 * })
 *
 * const program = Effect.gen(function*() {
 *   const tokens = yield* TokenCache.make(source)
 *   // Concurrent callers share one token request; later callers get the cached token.
 *   yield* Effect.all([tokens.get, tokens.get, tokens.get], { concurrency: "unbounded" })
 *   yield* tokens.get
 *   console.log(minted) // 1
 * }).pipe(Effect.scoped)
 *
 * Effect.runPromise(program)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  source: TokenSource.Service,
  options: Options = {}
): Effect.Effect<Service, TollgateError.InvalidArgument, Scope.Scope> =>
  Effect.gen(function*() {
    const invalid = validate(options)
    if (invalid !== undefined) return yield* Effect.fail(invalid)
    const provider = source.identity.provider
    const clock = yield* Effect.clock
    const scope = yield* Effect.scope
    // Fibers live in a child scope that closes after the shutdown finalizer below has run.
    const fiberScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
    const store = yield* Scope.extend(
      (options.store ?? TokenStore.memory()).make(source.identity, {
        revokes: options.revokeOnClose !== false && Option.isSome(source.revoke)
      }),
      fiberScope
    )
    const now = () => clock.unsafeCurrentTimeMillis()

    const cooldown = {
      base: Duration.toMillis(options.cooldown?.base ?? defaults.cooldownBase),
      max: Duration.toMillis(options.cooldown?.max ?? defaults.cooldownMax)
    }
    const closeTimeout = Duration.decode(options.closeTimeout ?? defaults.closeTimeout)
    const timeout = Duration.decode(options.timeout ?? defaults.timeout)
    const idleAfter = options.idleAfter === undefined ? undefined : Duration.toMillis(options.idleAfter)

    let held: Held | undefined = undefined
    let flight: Deferred | undefined = undefined
    let closed = false
    let lastUsed = Number.NEGATIVE_INFINITY
    // The end of the store's cooldown as last seen; the refresher sleeps until then after a failure.
    let coolUntil = 0
    let changed = Deferred.unsafeMake<void>(FiberId.none)
    // Tokens this process saw refused (recent ones): never adopted from the store again.
    const refused: Array<AccessToken.AccessToken> = []
    const stats = { fetches: 0, refreshes: 0, failures: 0, revocations: 0, invalidations: 0 }

    const signal = (): void => {
      const previous = changed
      changed = Deferred.unsafeMake<void>(FiberId.none)
      Deferred.unsafeDone(previous, Exit.void)
    }
    const usable = (h: Held | undefined, at: number): h is Held => h !== undefined && at < h.usableUntil

    const install = (entry: TokenStore.Entry): void => {
      const window = Math.max(0, entry.usableUntil - entry.refreshAt)
      // Processes sharing a store wake at slightly different instants, so they do not all ask at once.
      const spread = store.shared && Number.isFinite(window) ? Math.random() * Math.min(200, window / 10) : 0
      const lead = idleAfter ?? (Option.isSome(entry.token.expiresAt)
        ? entry.token.expiresAt.value.epochMillis - entry.refreshAt
        : 0)
      held = { ...entry, kicked: false, wakeAt: entry.refreshAt + spread, activeSince: entry.refreshAt - lead }
      signal()
    }

    const closedError = () =>
      new TollgateError.TokenEndpointUnavailable({ provider, reason: "the token cache's scope is closed" })
    const remember = (token: AccessToken.AccessToken): void => {
      if (refused.some((t) => AccessToken.isSameToken(t, token))) return
      refused.push(token)
      if (refused.length > 16) refused.shift()
    }

    const obtain = Obtain.make({
      provider,
      store,
      grants: Grants.make(source, options, () => stats.failures++),
      schedule: (token) => schedule(token, options),
      cooldown,
      timeout,
      now,
      held: () => held?.token,
      install,
      isRefused: (token) => refused.some((t) => AccessToken.isSameToken(t, token)),
      onGrant: (grant) => {
        if (grant === "fetch") stats.fetches++
        else stats.refreshes++
      },
      onCooldown: (until) => {
        coolUntil = until
      }
    })

    const runFlight = (deferred: Deferred, mode: "get" | "refresh", grant: "fetch" | "refresh") =>
      Effect.suspend(() => obtain(mode, now() + Duration.toMillis(timeout))).pipe(
        Effect.withSpan(`tollgate.token.${grant}`, {
          attributes: { "tollgate.provider": provider },
          captureStackTrace: false
        }),
        Effect.exit,
        Effect.flatMap((exit) =>
          Effect.suspend(() => {
            if (flight === deferred) flight = undefined
            if (Exit.isFailure(exit) && Option.isNone(Cause.failureOption(exit.cause))) {
              return Deferred.failCause(
                deferred,
                Cause.isInterruptedOnly(exit.cause) ? Cause.fail(closedError()) : exit.cause as Cause.Cause<never>
              )
            }
            return Deferred.done(deferred, exit)
          })
        ),
        Effect.onInterrupt(() =>
          Effect.suspend(() => {
            if (flight === deferred) flight = undefined
            return Deferred.fail(deferred, closedError())
          })
        )
      )

    // The one request of this process, started unless one is running; forked into the cache's scope, so
    // interrupting the caller who started it does not cancel it for the others.
    const startFlight = (mode: "get" | "refresh"): Effect.Effect<Deferred> =>
      Effect.suspend(() => {
        if (flight !== undefined) return Effect.succeed(flight)
        const deferred = Deferred.unsafeMake<AccessToken.AccessToken, TollgateError.TokenError>(FiberId.none)
        flight = deferred
        const grant = held === undefined ? "fetch" : "refresh"
        return Effect.as(Effect.forkIn(Effect.interruptible(runFlight(deferred, mode, grant)), fiberScope), deferred)
      })

    const slowGet: Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError> = Effect.uninterruptibleMask(
      (restore) =>
        Effect.suspend(() => {
          if (closed) return Effect.fail(closedError())
          const at = now()
          lastUsed = at
          const h = held
          if (usable(h, at)) return Effect.succeed(h.token)
          return Effect.flatMap(startFlight("get"), (deferred) => restore(Deferred.await(deferred)))
        })
    )

    // The token `get` hands out without waiting, counted as a use; `undefined` when `get` must wait.
    const peek = (): AccessToken.AccessToken | undefined => {
      const h = held
      if (closed || h === undefined) return undefined
      const at = now()
      if (at >= h.usableUntil) return undefined
      lastUsed = at
      if (at >= h.refreshAt && !h.kicked) {
        // The first use inside the refresh window wakes a refresher that found the token idle.
        h.kicked = true
        signal()
      }
      return h.token
    }

    const get: Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError> = Effect.suspend(() => {
      const token = peek()
      return token === undefined ? slowGet : Effect.succeed(token)
    })

    // Renews `h` while it is usable: a refresh flight (or the one already running), then after a failure
    // again once the store's cooldown (or a backoff) has passed. Callers keep getting `h` meanwhile.
    const refreshStep = (h: Held, n: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (closed || held !== h || now() >= h.usableUntil) return Effect.void
        return Effect.flatMap(startFlight("refresh"), (deferred) =>
          Effect.flatMap(Effect.exit(Deferred.await(deferred)), (exit) => {
            if (Exit.isSuccess(exit) || closed || held !== h) return Effect.void
            return Effect.flatMap(Grants.jittered(Math.min(5_000, 100 * 2 ** n)), (backoff) => {
              const at = now()
              const until = Math.min(coolUntil > at ? coolUntil : at + backoff, h.usableUntil)
              return Effect.zipRight(wakeBy(until, changed), refreshStep(h, n + 1))
            })
          }))
      })

    // Waits until `until` or until `wake` completes. (A timeout on the wait is far cheaper than a race
    // with a sleep; a wait past setTimeout's range is taken in chunks by the loops that call this.)
    const wakeBy = (until: number, wake: Deferred.Deferred<void>): Effect.Effect<void> =>
      Effect.asVoid(
        Effect.timeoutOption(
          Deferred.await(wake),
          Duration.millis(Math.min(MAX_SLEEP_CHUNK_MILLIS, Math.max(0, Math.ceil(until - now()))))
        )
      )

    // The one refresher of the cache's life. It sleeps until the held token's refresh instant, renews it
    // if it is in use, and otherwise waits for a change: a new token, or a caller inside the window.
    const refresher: Effect.Effect<void> = Effect.suspend(function loop(): Effect.Effect<void> {
      if (closed) {
        return Effect.void
      }
      const h = held
      const wake = changed
      const at = now()
      if (h === undefined || h.refreshAt === Number.POSITIVE_INFINITY || at >= h.usableUntil) {
        return Effect.zipRight(Deferred.await(wake), Effect.suspend(loop))
      }
      if (at < h.wakeAt) {
        return Effect.zipRight(wakeBy(h.wakeAt, wake), Effect.suspend(loop))
      }
      if (lastUsed < h.activeSince) {
        return Effect.zipRight(Deferred.await(wake), Effect.suspend(loop))
      }
      return Effect.zipRight(refreshStep(h, 0), Effect.suspend(loop))
    })
    yield* Effect.forkIn(Effect.interruptible(refresher), fiberScope)

    const invalidate = (token: AccessToken.AccessToken): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        let dropped = false
        if (held !== undefined && AccessToken.isSameToken(held.token, token)) {
          held = undefined
          signal()
          dropped = true
        }
        remember(token)
        return store.invalidate(token).pipe(
          Effect.catchAll((error) =>
            Effect.as(
              Effect.logDebug("Tollgate could not invalidate the shared token; it will on the next read").pipe(
                Effect.annotateLogs({ provider, reason: error.message })
              ),
              false
            )
          ),
          Effect.map((remote) => {
            if (dropped || remote) {
              stats.invalidations++
            }
            return dropped || remote
          })
        )
      })

    // Runs before `fiberScope` closes: the refresher and a request in flight are interrupted after it
    // (a lock this cache holds is released then).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        signal()
        const h = held
        const live = h !== undefined && Option.match(h.token.expiresAt, {
          onNone: () =>
            true,
          onSome: (expiresAt) => expiresAt.epochMillis > now()
        })
        const revoke = options.revokeOnClose !== false && Option.isSome(source.revoke) && live
        return store.leave({ token: Option.fromNullable(h?.token), revoke }).pipe(
          Effect.timeout(closeTimeout),
          Effect.orElseSucceed(() => false),
          Effect.flatMap((last) =>
            last && h !== undefined && Option.isSome(source.revoke)
              ? Grants.revokeAtClose(source.revoke.value, h.token, {
                provider,
                timeout: closeTimeout,
                onRevoked: () => stats.revocations++
              })
              : Effect.void
          )
        )
      })
    )

    const service: Service = {
      identity: source.identity,
      get,
      invalidate,
      current: Effect.sync(() => Option.fromNullable(held?.token)),
      stats: Effect.sync(() => ({ ...stats }))
    }
    Facets.registerTokenCache(service, peek)
    return service
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
  readonly make: (
    source: TokenSource.Service,
    options?: Options
  ) => Effect.Effect<Service, TollgateError.InvalidArgument, Scope.Scope>
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
 * @example
 * ```ts
 * import { AccessToken, TokenCache, TokenSource } from "@tollgate/core"
 * import { DateTime, Effect, Either, Redacted } from "effect"
 *
 * const source = TokenSource.make({
 *   identity: { provider: "acme", endpoint: "https://auth.acme.example/token", clientId: "my-client" },
 *   fetch: Effect.map(DateTime.now, (receivedAt) =>
 *     Either.getOrThrow(AccessToken.make({ value: Redacted.make("t0k3n"), expiresIn: 3600, receivedAt })))
 * })
 *
 * // In this process's memory, unless a Layer such as `RedisTokenCache.layerBackend` provides a shared backend.
 * const program = Effect.gen(function*() {
 *   const tokens = yield* TokenCache.makeWithBackend(source)
 *   const token = yield* tokens.get
 *   console.log(token.type) // "Bearer"
 * }).pipe(Effect.scoped)
 *
 * Effect.runPromise(program)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWithBackend = (
  source: TokenSource.Service,
  options?: Options
): Effect.Effect<Service, TollgateError.InvalidArgument, Scope.Scope> =>
  Effect.flatMap(TokenCacheBackend, (backend) => backend.make(source, options))

/**
 * A cache over the `TokenSource` in context.
 *
 * @example
 * ```ts
 * import { AccessToken, TokenCache, TokenSource } from "@tollgate/core"
 * import { DateTime, Effect, Either, Layer, Redacted } from "effect"
 *
 * const source = TokenSource.make({
 *   identity: { provider: "acme", endpoint: "https://auth.acme.example/token", clientId: "my-client" },
 *   fetch: Effect.map(DateTime.now, (receivedAt) =>
 *     Either.getOrThrow(AccessToken.make({ value: Redacted.make("t0k3n"), expiresIn: 3600, receivedAt })))
 * })
 *
 * const TokensLive = TokenCache.layer({ timeout: "10 seconds" }).pipe(Layer.provide(TokenSource.layer(source)))
 *
 * const program = Effect.gen(function*() {
 *   const tokens = yield* TokenCache.TokenCache
 *   yield* tokens.get
 *   console.log((yield* tokens.stats).fetches) // 1
 * })
 * Effect.runPromise(Effect.provide(program, TokensLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options?: Options
): Layer.Layer<TokenCache, TollgateError.InvalidArgument, TokenSource.TokenSource> =>
  Layer.scoped(TokenCache, Effect.flatMap(TokenSource.TokenSource, (source) => makeWithBackend(source, options)))
