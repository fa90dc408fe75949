/**
 * The Token project APIs: an app key and secret, sent as query parameters to `POST /auth/token`, buy a
 * JWT Bearer token that carries `iat` but no `exp` and stays valid until the app is deleted. Every
 * endpoint is limited on its own ("the most common" limit is 10 requests over any 2 minutes), reported by
 * `X-RateLimit-*` headers, with 429 bodies `{"errors":[{"code":88,…}]}`. The docs call `X-RateLimit-Reset`
 * both "the remaining window" and "UTC epoch seconds": it is read either way (`auto`).
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as ApiClient from "@tollgate/core/ApiClient"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as RateLimitHeaders from "@tollgate/core/RateLimitHeaders"
import type * as TokenCache from "@tollgate/core/TokenCache"
import * as TokenExchange from "@tollgate/core/TokenExchange"
import * as TokenSource from "@tollgate/core/TokenSource"
import type { Layer, Scope } from "effect"
import { Config, ConfigError, Context, Duration, Effect, Either, Option, Redacted, Schema } from "effect"
import * as Provider from "./internal/provider.js"

/**
 * The name Tollgate gives the Token project in errors, logs, spans and metrics.
 *
 * @since 0.1.0
 * @category constants
 */
export const provider = "token-project"

/**
 * The documented API host; point `baseUrl` at a sandbox for tests.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultBaseUrl = "https://api.token-project.eu"

/**
 * The token endpoint's path on the base URL.
 *
 * @since 0.1.0
 * @category constants
 */
export const tokenPath = "/auth/token"

/**
 * How long a token is kept when its JWT has no `exp` (the documented case): one hour. The token itself
 * does not expire, so any value works; an hour costs 24 token requests a day, bounds how long a leaked
 * token stays in use by us, and a 401 renews sooner anyway. A JWT that does carry `exp` wins.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLifetime: Duration.Duration = Duration.hours(1)

/**
 * The error code of a rate-limited answer (`{"errors":[{"code":88,"message":"Rate limit exceeded"}]}`).
 *
 * @since 0.1.0
 * @category constants
 */
export const rateLimitCode = 88

/**
 * The segment that replaces an ID-like path segment in endpoint keys.
 *
 * @since 0.1.0
 * @category constants
 */
export const idPlaceholder = ":id"

/**
 * Whether a path segment looks like an identifier rather than a route name. The heuristic: all digits;
 * a UUID; `0x` followed by hex (an address or hash); 12 or more hex digits (an ObjectId, a hash); or 16
 * or more URL-safe characters including a digit (app keys, IPFS CIDs, random ids). Route names are
 * words ("notarizations", "stamps"), which none of these match.
 *
 * @since 0.1.0
 * @category endpoint keys
 */
export const isIdSegment = (segment: string): boolean =>
  /^\d+$/.test(segment) ||
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(segment) ||
  /^0x[0-9a-f]+$/i.test(segment) ||
  /^[0-9a-f]{12,}$/i.test(segment) ||
  (segment.length >= 16 && /^[A-Za-z0-9_~.-]+$/.test(segment) && /\d/.test(segment))

/**
 * A path with its ID-like segments (see `isIdSegment`) replaced by `:id`, and no trailing slash:
 * `/notarizations/stamps/5f8d0d55b54764421b7156c9` is `/notarizations/stamps/:id`.
 *
 * @since 0.1.0
 * @category endpoint keys
 */
export const normalizePath = (path: string): string => {
  const normalized = path
    .split("/")
    .map((segment) => (segment.length > 0 && isIdSegment(decodeSegment(segment)) ? idPlaceholder : segment))
    .join("/")
  return normalized.length > 1 ? normalized.replace(/\/+$/, "") : normalized
}

const decodeSegment = (segment: string): string => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

/**
 * The endpoint a request counts against: its method and normalised path, without the query
 * (`GET /notarizations/stamps/:id`). This is the default `endpointOf`; a program whose endpoints the
 * heuristic gets wrong passes its own.
 *
 * @since 0.1.0
 * @category endpoint keys
 */
export const endpointKey = (request: HttpClientRequest.HttpClientRequest): string => {
  const url = request.url
  const path = URL.canParse(url) ? new URL(url).pathname : url.replace(/[?#].*$/, "")
  return `${request.method} ${normalizePath(path)}`
}

/**
 * The limiter key of a permit: the key the client computed (with `endpointOf`), or the endpoint of the
 * request when a permit is taken without one.
 *
 * @since 0.1.0
 * @category endpoint keys
 */
export const endpointOf = (subject: RateLimiter.Subject): string =>
  subject.key ?? (subject.request === undefined ? "" : endpointKey(subject.request))

/**
 * "10 requests over any 2-minute interval", per endpoint: a sliding window per endpoint key.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLimits: RateLimiter.Policy = RateLimiter.keyed(
  endpointOf,
  RateLimiter.slidingWindow({ limit: 10, window: "2 minutes" })
)

/**
 * The app credentials from the developer console. The key identifies the app (it is the token's
 * `sub`); the secret is `Redacted`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Credentials {
  readonly key: string
  readonly secret: Redacted.Redacted<string>
}

/**
 * What the token source alone needs.
 *
 * @since 0.1.0
 * @category models
 */
export interface SourceOptions extends Credentials {
  /** Default: `https://api.token-project.eu`. */
  readonly baseUrl?: string | undefined
  readonly allowInsecureLoopback?: boolean | undefined
  /** Bound on each token request. Default: 15 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
  /** The lifetime of a token whose JWT has no `exp`. Default: 1 hour. */
  readonly defaultLifetime?: Duration.DurationInput | undefined
}

/**
 * Everything `make` and `layer` accept: app credentials, where the API is, and any default to
 * override (limits, endpoint keys, the lifetime of a JWT without `exp`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Credentials, Provider.Connection, Provider.Tuning, Overrides {}

/**
 * Settings `layerConfig` accepts on top of the environment.
 *
 * @since 0.1.0
 * @category models
 */
export interface Overrides extends Provider.Tuning {
  /** The lifetime of a token whose JWT has no `exp`. Default: 1 hour. */
  readonly defaultLifetime?: Duration.DurationInput | undefined
  /**
   * The endpoint key of a request, "METHOD /path", for the per-endpoint limits and the 429 gate.
   * Default: `endpointKey` (ID-like segments replaced by `:id`).
   */
  readonly endpointOf?: ((request: HttpClientRequest.HttpClientRequest) => string) | undefined
}

/**
 * What `make` returns: the authenticated client, the token cache and the limiter of the Token project, the same
 * services the Layer provides under its Tags.
 *
 * @since 0.1.0
 * @category models
 */
export interface Services extends Provider.Services {}

/**
 * The authenticated Token project client: Bearer token, a permit from the endpoint's own limit, and the
 * endpoint's gate closed by a 429 or `X-RateLimit-Remaining: 0` until `X-RateLimit-Reset`.
 *
 * @since 0.1.0
 * @category tags
 */
export class TokenProjectClient extends Context.Tag("@tollgate/providers/TokenProject/TokenProjectClient")<
  TokenProjectClient,
  ApiClient.Service
>() {}

/**
 * The Token project's token cache.
 *
 * @since 0.1.0
 * @category tags
 */
export class TokenProjectTokens extends Context.Tag("@tollgate/providers/TokenProject/TokenProjectTokens")<
  TokenProjectTokens,
  TokenCache.Service
>() {}

/**
 * The Token project's per-endpoint limiter, for its stats (one lane per endpoint in use).
 *
 * @since 0.1.0
 * @category tags
 */
export class TokenProjectLimiter extends Context.Tag("@tollgate/providers/TokenProject/TokenProjectLimiter")<
  TokenProjectLimiter,
  RateLimiter.Service
>() {}

/**
 * The documented answer: `{ token_type: "bearer", access_token }`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const TokenResponse = Schema.Struct({
  token_type: Schema.optional(Schema.NullOr(Schema.String)),
  access_token: Schema.String
})

/**
 * Whether a response body is the Token project's rate-limit error (code 88). The client already treats
 * every 429 as a rate limit; this reads the body of a response a program handles itself.
 *
 * @since 0.1.0
 * @category decoding
 */
export const isRateLimitBody = (body: unknown): boolean => RateLimitHeaders.isRateLimitBody(body, rateLimitCodes)

const rateLimitCodes: ReadonlySet<number | string> = new Set([rateLimitCode, String(rateLimitCode)])

/**
 * The Token project's token source: `POST {baseUrl}/auth/token?key=…&secret=…` with no body. The
 * lifetime comes from the JWT `exp` when there is one, else `defaultLifetime`. A 401 or 403 is
 * `InvalidCredentials` (a deleted app). An invalid base URL is a defect here; `make` and `layer` report
 * it as a `ConfigError` first.
 *
 * @since 0.1.0
 * @category constructors
 */
export const tokenSource = (options: SourceOptions): Effect.Effect<TokenSource.Service, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => {
    const base = Provider.urlOrDie("baseUrl", options.baseUrl ?? defaultBaseUrl, options.allowInsecureLoopback)
    const tokenUrl = `${base}${tokenPath}`
    const fetch = TokenExchange.requestToken({
      provider,
      request: HttpClientRequest.post(tokenUrl).pipe(
        HttpClientRequest.setUrlParams({ key: options.key, secret: Redacted.value(options.secret) }),
        HttpClientRequest.acceptJson
      ),
      timeout: options.timeout,
      secrets: [options.secret],
      lifetime: { defaultLifetime: options.defaultLifetime ?? defaultLifetime, readJwtExpiry: true },
      success: TokenResponse,
      toFields: (body) => Either.right({ value: body.access_token, type: body.token_type ?? undefined })
    }).pipe(Effect.provideService(HttpClient.HttpClient, client))
    return TokenSource.make({ identity: { provider, endpoint: tokenUrl, clientId: options.key }, fetch })
  })

// A lifetime under a millisecond would make every token expire on arrival, and every token request fail
// as if the provider had answered badly: it is refused where it is configured, naming the setting.
const validLifetime = (
  name: string,
  input: Duration.DurationInput
): Either.Either<Duration.Duration, ConfigError.ConfigError> =>
  Option.match(Duration.decodeUnknown(input), {
    onNone: () => Either.left(ConfigError.InvalidData([name], "expected a duration, such as \"1 hour\"")),
    onSome: (duration) =>
      Duration.toMillis(duration) >= 1
        ? Either.right(duration)
        : Either.left(
          ConfigError.InvalidData([name], "expected a lifetime of at least a millisecond, such as \"1 hour\"")
        )
  })

/**
 * The token cache, the per-endpoint limiter and the client, alive for the current scope. Fails with a
 * `ConfigError` when the base URL or the default lifetime is not acceptable.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<Services, ConfigError.ConfigError, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const baseUrl = yield* Provider.url("baseUrl", options.baseUrl ?? defaultBaseUrl, options.allowInsecureLoopback)
    const lifetime = options.defaultLifetime === undefined
      ? undefined
      : yield* validLifetime("defaultLifetime", options.defaultLifetime)
    const source = yield* tokenSource({ ...options, baseUrl, timeout: options.tokenTimeout, defaultLifetime: lifetime })
    return yield* Provider.build({
      provider,
      source,
      baseUrl,
      limits: defaultLimits,
      keyOf: options.endpointOf ?? endpointKey,
      // Epoch seconds or seconds until the reset, whichever the number is: the docs say both.
      resetFormat: "auto",
      tuning: options
    })
  })

/**
 * Provides `TokenProjectClient`, `TokenProjectTokens` and `TokenProjectLimiter`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<
  TokenProjectClient | TokenProjectTokens | TokenProjectLimiter,
  ConfigError.ConfigError,
  HttpClient.HttpClient
> =>
  Provider.layer(
    { client: TokenProjectClient, tokens: TokenProjectTokens, limiter: TokenProjectLimiter },
    make(options)
  )

/**
 * The options from the environment: `TOKEN_PROJECT_KEY`, `TOKEN_PROJECT_SECRET` (redacted; both
 * required, non-empty), `TOKEN_PROJECT_BASE_URL` (default `https://api.token-project.eu`),
 * `TOKEN_PROJECT_TOKEN_LIFETIME` (a duration such as "1 hour", at least a millisecond, used when the JWT
 * has no `exp`; default 1 hour) and `TOLLGATE_ALLOW_INSECURE_LOOPBACK`.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.map(
  Config.all({
    key: Provider.required("TOKEN_PROJECT_KEY"),
    secret: Provider.secret("TOKEN_PROJECT_SECRET"),
    connection: Provider.connection("TOKEN_PROJECT_BASE_URL", defaultBaseUrl),
    defaultLifetime: Config.mapOrFail(
      Provider.optionalDuration("TOKEN_PROJECT_TOKEN_LIFETIME"),
      (lifetime) =>
        Option.isNone(lifetime)
          ? Either.right(lifetime)
          : Either.map(validLifetime("TOKEN_PROJECT_TOKEN_LIFETIME", lifetime.value), Option.some)
    )
  }),
  ({ connection, defaultLifetime, ...rest }): Options => ({
    ...rest,
    ...connection,
    defaultLifetime: Option.getOrUndefined(defaultLifetime)
  })
)

/**
 * `layer` with options from the environment (see `config`); a bad environment fails the Layer when it
 * is built, with a `ConfigError` naming the variable.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  overrides?: Overrides
): Layer.Layer<
  TokenProjectClient | TokenProjectTokens | TokenProjectLimiter,
  ConfigError.ConfigError,
  HttpClient.HttpClient
> => Provider.layerConfig(config, overrides, layer)
