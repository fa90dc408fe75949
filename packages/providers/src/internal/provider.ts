/**
 * What every provider shares, under `Provider.define`: turning a token source and options into the token
 * cache, the limiter and the authenticated client; exposing them under the provider's own Tags; reading
 * the environment through `Config` with errors that name the variable.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as ApiClient from "@tollgate/core/ApiClient"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import type * as RateLimitHeaders from "@tollgate/core/RateLimitHeaders"
import * as TokenCache from "@tollgate/core/TokenCache"
import type * as TokenSource from "@tollgate/core/TokenSource"
import * as TollgateError from "@tollgate/core/TollgateError"
import type { Scope } from "effect"
import {
  Clock,
  Config,
  ConfigError,
  Context,
  DateTime,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  FiberId,
  Layer,
  Option,
  Redacted
} from "effect"
import type * as Provider from "../Provider.js"

/** The settings every provider accepts on top of its options (see `Provider.Tuning`). */
export type Tuning = Provider.Tuning

/** The three services a provider Layer provides. */
export type Services = Provider.Services

/** The provider's Tags for its three services. */
export interface Tags<C, T, L> {
  readonly client: Context.Tag<C, ApiClient.Service>
  readonly tokens: Context.Tag<T, TokenCache.Service>
  readonly limiter: Context.Tag<L, RateLimiter.Service>
}

/** What a provider module hands to `build`. */
export interface Spec {
  readonly provider: string
  readonly source: TokenSource.Service
  readonly baseUrl: string
  /** Fixed headers the provider requires on API requests. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** The documented API limit, used unless `tuning.limits` overrides it. */
  readonly limits: RateLimiter.Policy
  /** A limit on token requests, taken by the token cache before each grant. */
  readonly tokenLimits?: RateLimiter.Policy | undefined
  /**
   * The API's limit covers its token endpoint too: each token request takes a permit from the API's
   * own limiter (see `shareWithTokenRequests`). `tokenLimits` is then ignored.
   */
  readonly tokenRequestsCount?: boolean | undefined
  readonly keyOf?: ((request: HttpClientRequest.HttpClientRequest) => string) | undefined
  readonly resetFormat?: RateLimitHeaders.ResetFormat | undefined
  readonly tuning: Tuning
}

/** The bound on a token `get` when token requests take permits of the API's own budget. */
const sharedTokenTimeout = Duration.minutes(2)

/** Token requests sharing the API's budget go before every API request: those wait for the token. */
const tokenRequestPriority = 1000

/**
 * The token cache, the limiter and the client, in the current scope. Closing the scope stops the
 * client, then the limiter, then the cache (which revokes its token where the source can); when token
 * requests count against the API's limit, the cache stops before the limiter it takes permits from.
 */
export const build = (
  spec: Spec
): Effect.Effect<Services, ConfigError.ConfigError, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    if (spec.tokenRequestsCount === true) {
      const limiter = yield* RateLimiter.makeWithBackend(spec.tuning.limits ?? spec.limits, {
        provider: spec.provider
      })
      const shared = shareWithTokenRequests(limiter)
      const tokens = yield* TokenCache.makeWithBackend(spec.source, {
        // A token request may wait up to a window for its permit (it goes first, but a saturated budget
        // frees the next permit only when the oldest returns), so the bound on `get` covers that wait.
        timeout: sharedTokenTimeout,
        ...spec.tuning.tokenCache,
        limiter: shared.tokens
      })
      const client = yield* makeClient(spec, tokens, shared.requests(tokens, spec.tuning.tokenCache))
      return { client, tokens, limiter }
    }
    const tokenLimiter = spec.tokenLimits === undefined
      ? undefined
      : yield* RateLimiter.makeWithBackend(spec.tokenLimits, { provider: `${spec.provider} token endpoint` })
    // Through the backends in context: this process by default, a shared store when a Layer says so.
    const tokens = yield* TokenCache.makeWithBackend(spec.source, { ...spec.tuning.tokenCache, limiter: tokenLimiter })
    const limiter = yield* RateLimiter.makeWithBackend(spec.tuning.limits ?? spec.limits, { provider: spec.provider })
    const client = yield* makeClient(spec, tokens, limiter)
    return { client, tokens, limiter }
  }).pipe(Effect.mapError(limitsError))

/**
 * A policy in the tuning that the limiter refuses is a configuration error, named by its option; so is a
 * client option the ApiClient refuses (a header value, a timeout).
 */
export const limitsError = (error: TollgateError.InvalidArgument): ConfigError.ConfigError =>
  ConfigError.InvalidData([error.module === "ApiClient.make" ? error.argument : "limits"], error.message)

const makeClient = (spec: Spec, tokens: TokenCache.Service, limiter: RateLimiter.Service) =>
  ApiClient.make({
    provider: spec.provider,
    baseUrl: spec.baseUrl,
    headers: { ...spec.tuning.client?.headers, ...spec.headers },
    tokens,
    limiter,
    keyOf: spec.keyOf,
    resetFormat: spec.resetFormat,
    timeout: spec.tuning.client?.timeout,
    permitDeadline: spec.tuning.client?.permitDeadline,
    retry: spec.tuning.client?.retry,
    // The provider module checked `baseUrl` against the user's loopback allowance already.
    allowInsecureLoopback: true
  })

/**
 * One limiter shared by API requests and token requests, seen two ways, so that sharing it can neither
 * deadlock nor starve.
 *
 * The client holds a permit while it reads the token for the request it is about to send, so a token
 * request that needed a permit of the same limiter could wait for permits held by the very requests
 * waiting for that token (with `limit` of them, forever). `requests` is the view the client gets: before
 * it queues for a permit it obtains a usable token, and if the token stopped being usable while it queued
 * (it expired during a long wait, another request's 401 dropped it) it sends nothing on that permit and
 * starts over, rather than wait for a token while holding a permit. The permit it gives up counts as used
 * for its window: a rare waste, never an overdraw.
 *
 * `tokens` is the view the token cache gets: a token request goes before every queued API request (they
 * are all waiting for it) and waits for its permit instead of failing when the API's budget is spent for
 * longer than the cache's `maxRetryAfter`, which is normal for a saturated API.
 *
 * While that token request is queued for its permit, a request waiting for the token is really waiting
 * for a permit of its own budget, so its permit bounds (`deadline`, `timeout`) bound that wait as they
 * would bound its wait in the queue: it fails `RateLimited`, at once ("deadline") when the permit is
 * expected later than its deadline, and only its own wait ends; the token request goes on for the others.
 */
export const shareWithTokenRequests = (limiter: RateLimiter.Service): {
  readonly tokens: RateLimiter.Service
  readonly requests: (
    tokens: TokenCache.Service,
    options?: Pick<TokenCache.Options, "refreshBefore" | "safetyMargin">
  ) => RateLimiter.Service
} => {
  const queued = tokenRequestsQueued()
  return {
    tokens: {
      ...limiter,
      withPermit: ((options?: RateLimiter.PermitOptions) => <A, E, R>(effect: Effect.Effect<A, E, R>) => {
        const { deadline: _deadline, timeout: _timeout, ...waitItsTurn } = options ?? {}
        // Every queued request is waiting for this token: it goes before all of them. Asked first not to
        // wait at all, so that it counts as queued only when it really waits for its permit.
        const ask = { ...waitItsTurn, priority: tokenRequestPriority }
        return Effect.matchEffect(limiter.withPermit({ ...ask, deadline: Duration.zero })(Effect.exit(effect)), {
          onFailure: (error) =>
            error._tag === "RateLimited" && error.reason === "deadline"
              ? queued.whileQueued(
                error.retryAt === undefined ? undefined : DateTime.toEpochMillis(error.retryAt),
                (granted) => limiter.withPermit(ask)(Effect.zipRight(granted, effect))
              )
              : Effect.fail(error),
          onSuccess: (exit) => exit
        })
      }) as RateLimiter.Service["withPermit"]
    },
    requests: (tokens, options) => {
      const usableNow = Effect.flatMap(tokens.current, (current) =>
        Option.isNone(current)
          ? Effect.succeed(false)
          : Effect.map(
            Clock.currentTimeMillis,
            (now) => now < TokenCache.schedule(current.value, options).usableUntil
          ))
      return {
        ...limiter,
        withPermit: ((options?: RateLimiter.PermitOptions) => <A, E, R>(effect: Effect.Effect<A, E, R>) => {
          const guarded = limiter.withPermit(options ?? {})(effect)
          const onPermit = limiter.withPermit(options ?? {})(
            Effect.flatMap(usableNow, (usable) => usable ? Effect.asSome(effect) : Effect.succeedNone)
          )
          const tokenWait = queued.bound(Effect.either(tokens.get), limiter.provider, options)
          const attempt: Effect.Effect<A, E | TollgateError.RateLimited | TollgateError.InvalidArgument, R> = Effect
            .flatMap(
              tokenWait,
              (token) =>
                // The cache's failure is the request's to report: it meets the same error inside, at once.
                Either.isLeft(token) ? guarded : Effect.flatMap(
                  onPermit,
                  Option.match({
                    onNone: () => attempt,
                    onSome: Effect.succeed
                  })
                )
            )
          return attempt
        }) as RateLimiter.Service["withPermit"]
      }
    }
  }
}

/**
 * Whether token requests are queued for a permit of the shared budget, and the bound that puts on a wait
 * for the token: from the moment the wait became a wait for a permit, at most the waiter's own `deadline`
 * or `timeout` of it, counted only while a token request is queued (its exchange with the token endpoint
 * is not a permit wait).
 */
const tokenRequestsQueued = () => {
  let queued = 0
  /** When the limiter expects to grant the queued token request its permit (epoch milliseconds). */
  let expectedAt: number | undefined = undefined
  let changed = Deferred.unsafeMake<void>(FiberId.none)
  const change = (delta: number) => {
    queued += delta
    const previous = changed
    changed = Deferred.unsafeMake<void>(FiberId.none)
    Deferred.unsafeDone(previous, Exit.void)
  }
  const millisOf = (input: Duration.DurationInput | undefined): number | undefined =>
    input === undefined
      ? undefined
      : Option.getOrUndefined(Option.map(Duration.decodeUnknown(input), Duration.toMillis))

  /**
   * Runs `use`, a token request queued for its permit (expected at `expected`, as the limiter predicted
   * when it refused to grant it at once), counted until it calls `granted` or ends.
   */
  const whileQueued = <A, E, R>(
    expected: number | undefined,
    use: (granted: Effect.Effect<void>) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, E, R> =>
    Effect.uninterruptibleMask((restore) => {
      expectedAt = expected
      let counted = true
      const leave = Effect.sync(() => {
        if (counted) {
          counted = false
          change(-1)
        }
      })
      change(1)
      return Effect.ensuring(restore(use(leave)), leave)
    })

  /** `wait`, ended with `RateLimited` once a token request has kept it queued past the waiter's bound. */
  const bound = <A, E, R>(
    wait: Effect.Effect<A, E, R>,
    provider: string,
    options: RateLimiter.PermitOptions | undefined
  ): Effect.Effect<A, E | TollgateError.RateLimited, R> => {
    const deadline = millisOf(options?.deadline)
    const timeout = millisOf(options?.timeout)
    const limit = Math.min(deadline ?? Number.POSITIVE_INFINITY, timeout ?? Number.POSITIVE_INFINITY)
    if (limit === Number.POSITIVE_INFINITY || Number.isNaN(limit)) return wait
    // As the limiter says it: a predicted wait past the deadline is refused at once ("deadline"), a bound
    // that runs out while waiting is a "timeout"; either way with the instant the permit is expected.
    const refused = (reason: "deadline" | "timeout") =>
      Effect.fail(
        new TollgateError.RateLimited({
          provider,
          reason,
          key: options?.key === undefined || options.key === "" ? undefined : options.key,
          retryAt: expectedAt === undefined ? undefined : DateTime.unsafeMake(expectedAt)
        })
      )
    let until: number | undefined = undefined
    const expired: Effect.Effect<never, TollgateError.RateLimited> = Effect.suspend(() => {
      const next = changed
      if (queued === 0) return Effect.zipRight(Deferred.await(next), expired)
      return Effect.flatMap(Clock.currentTimeMillis, (now) => {
        if (until === undefined) {
          until = now + limit
          if (deadline !== undefined && (expectedAt ?? Number.POSITIVE_INFINITY) - now > deadline) {
            return refused("deadline")
          }
        }
        if (now >= until) return refused("timeout")
        return Effect.raceFirst(
          Effect.zipRight(Effect.sleep(Duration.millis(until - now)), refused("timeout")),
          Effect.zipRight(Deferred.await(next), expired)
        )
      })
    })
    // Interrupting this caller's wait leaves the token request in flight for the others.
    return Effect.raceFirst(wait, expired)
  }

  return { whileQueued, bound }
}

/** The three services under the provider's Tags, built in the Layer's scope. */
export const layer = <C, T, L, E, R>(
  tags: Tags<C, T, L>,
  make: Effect.Effect<Services, E, R>
): Layer.Layer<C | T | L, E, Exclude<R, Scope.Scope>> =>
  Layer.scopedContext(
    Effect.map(make, (services) =>
      Context.make(tags.client, services.client).pipe(
        Context.add(tags.tokens, services.tokens),
        Context.add(tags.limiter, services.limiter)
      ))
  )

/**
 * A Layer from options read through `Config` plus the caller's overrides (which win, except where they
 * are `undefined`), so a bad environment fails when the Layer is built.
 */
export const layerConfig = <A extends object, O extends object, Out, E, R>(
  config: Config.Config<A>,
  overrides: O | undefined,
  layer: (options: A & O) => Layer.Layer<Out, E, R>
): Layer.Layer<Out, E | ConfigError.ConfigError, R> =>
  Layer.unwrapEffect(Effect.map(config, (options) => layer(merge(options, overrides))))

/** `options` with every defined value of `overrides` on top. */
export const merge = <A extends object, O extends object>(options: A, overrides: O | undefined): A & O => {
  const merged: Record<string, unknown> = { ...(options as Record<string, unknown>) }
  for (const [key, value] of Object.entries(overrides ?? {})) {
    if (value !== undefined) merged[key] = value
  }
  return merged as A & O
}

// ---------------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------------

/** The variable that allows plain http to loopback base URLs (sandboxes, tests). */
export const allowInsecureLoopbackVariable = "TOLLGATE_ALLOW_INSECURE_LOOPBACK"

/** `TOLLGATE_ALLOW_INSECURE_LOOPBACK`, false when unset. */
export const allowInsecureLoopback: Config.Config<boolean> = Config.withDefault(
  Config.boolean(allowInsecureLoopbackVariable),
  false
)

// Every helper reads an unnamed value nested under the variable's name, so a `ConfigError` carries the
// name once, as its path, and its message says only what is wrong. (`Config.mapOrFail` over a named
// `Config.string(name)` prefixes the path with the name again: "Invalid data at X.X".)
const named = <A>(name: string, config: Config.Config<A>): Config.Config<A> => Config.nested(config, name)

/**
 * A required, non-empty string: missing (Effect's own `MissingData`, as for any `Config`) or empty is a
 * `ConfigError` naming the variable.
 */
export const required = (name: string): Config.Config<string> =>
  named(
    name,
    Config.mapOrFail(Config.string(), (value) =>
      value.trim().length === 0
        // Invalid, not missing: `Config.withDefault` and `Config.option` must not mistake it for absent.
        ? Either.left(ConfigError.InvalidData([], "set but empty"))
        : Either.right(value.trim()))
  )

/** A required, non-empty secret, never trimmed, never echoed. */
export const secret = (name: string): Config.Config<Redacted.Redacted<string>> =>
  // Read as a string and redacted at once: `Config.redacted` reports a missing variable with the message
  // "<redacted>", which hides what is wrong. Config errors never carry the value itself.
  named(
    name,
    Config.mapOrFail(Config.string(), (value) =>
      value.trim().length === 0
        ? Either.left(ConfigError.InvalidData([], "set but empty"))
        : Either.right(Redacted.make(value)))
  )

/**
 * An optional string: unset is `None`; set but empty is a `ConfigError` naming the variable (unset it to
 * get the default), so a blank line in a `.env` file is never silently ignored. Trimmed unless `trim` is
 * false (a secret).
 */
export const optional = (
  name: string,
  options?: { readonly trim?: boolean | undefined }
): Config.Config<Option.Option<string>> =>
  named(
    name,
    Config.mapOrFail(
      Config.option(Config.string()),
      (value) =>
        Option.isSome(value) && value.value.trim().length === 0
          ? Either.left(ConfigError.InvalidData([], "set but empty; unset it to use the default"))
          : Either.right(options?.trim === false ? value : Option.map(value, (v) => v.trim()))
    )
  )
