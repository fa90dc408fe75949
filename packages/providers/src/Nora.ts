/**
 * Nora (Formflow): a JSON token endpoint that exchanges `clientId`, `clientSecret` and `organizationId`
 * for a one-hour Bearer token, and an API limited to 60 requests per minute. The docs do not say whether
 * `POST /api/token` counts against that limit; Tollgate counts it (one request an hour costs nothing).
 *
 * Use `layerConfig()` in a service (credentials from `NORA_*` variables), `layer(options)` when the
 * options come from elsewhere, and the Tags to reach the client, the token cache or the limiter.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as ApiClient from "@tollgate/core/ApiClient"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import type * as TokenCache from "@tollgate/core/TokenCache"
import * as TokenExchange from "@tollgate/core/TokenExchange"
import * as TokenSource from "@tollgate/core/TokenSource"
import * as TollgateError from "@tollgate/core/TollgateError"
import type { ConfigError, Layer, Scope } from "effect"
import { Config, Context, Duration, Effect, Either, Option, Redacted, Schema } from "effect"
import * as Provider from "./internal/provider.js"

/**
 * The name Tollgate gives Nora in errors, logs, spans and metrics.
 *
 * @since 0.1.0
 * @category constants
 */
export const provider = "nora"

/**
 * The documented API host ("All API requests are made to https://main.formflow-dev.net").
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultBaseUrl = "https://main.formflow-dev.net"

/**
 * The token endpoint's path on the base URL.
 *
 * @since 0.1.0
 * @category constants
 */
export const tokenPath = "/api/token"

/**
 * Tokens are valid for 3600 seconds: a larger `expires_in` is clamped to it, so a misbehaving response
 * cannot make Tollgate hold a token longer than Nora says it lives.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxLifetime: Duration.Duration = Duration.hours(1)

/**
 * "60 requests per minute", enforced as a sliding window so no minute at the server ever sees 61, token
 * requests included: the token cache takes its permits from the same limiter (so does a `limits` you
 * configure instead).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLimits: RateLimiter.Policy = RateLimiter.slidingWindow({ limit: 60, window: "1 minute" })

/**
 * The credentials Nora Customer Support issues. Only the secret is `Redacted`; the client and
 * organisation ids are identifiers that appear in the token's cache identity.
 *
 * @since 0.1.0
 * @category models
 */
export interface Credentials {
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
  readonly organizationId: string
}

/**
 * What the token source alone needs.
 *
 * @since 0.1.0
 * @category models
 */
export interface SourceOptions extends Credentials {
  /** Default: `https://main.formflow-dev.net`. */
  readonly baseUrl?: string | undefined
  readonly allowInsecureLoopback?: boolean | undefined
  /** Bound on each token request. Default: 15 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * Everything `make` and `layer` accept: credentials, where Nora is, and any default to override.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Credentials, Provider.Connection, Provider.Tuning {}

/**
 * Settings `layerConfig` accepts on top of the environment: limits, token cache and client tuning.
 *
 * @since 0.1.0
 * @category models
 */
export interface Overrides extends Provider.Tuning {}

/**
 * What `make` returns: the authenticated client, the token cache and the limiter of Nora, the same
 * services the Layer provides under its Tags.
 *
 * @since 0.1.0
 * @category models
 */
export interface Services extends Provider.Services {}

/**
 * The authenticated Nora client: relative URLs resolve against the base URL, every request carries a
 * fresh Bearer token and waits for a permit of the 60-per-minute budget.
 *
 * @since 0.1.0
 * @category tags
 */
export class NoraClient extends Context.Tag("@tollgate/providers/Nora/NoraClient")<NoraClient, ApiClient.Service>() {}

/**
 * Nora's token cache, for programs that need the token itself or its stats, and for tests that replace
 * it with a fake.
 *
 * @since 0.1.0
 * @category tags
 */
export class NoraTokens extends Context.Tag("@tollgate/providers/Nora/NoraTokens")<NoraTokens, TokenCache.Service>() {}

/**
 * Nora's request limiter, for its stats (waits, queue length) on a dashboard.
 *
 * @since 0.1.0
 * @category tags
 */
export class NoraLimiter
  extends Context.Tag("@tollgate/providers/Nora/NoraLimiter")<NoraLimiter, RateLimiter.Service>()
{}

/**
 * The documented 200 body: `{ token, expires_in, token_type }`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const TokenResponse = Schema.Struct({
  token: Schema.String,
  expires_in: TokenExchange.Seconds,
  token_type: Schema.optional(Schema.NullOr(Schema.String))
})

/**
 * The meaning of a 400: Nora answers "bad request - missing or invalid parameters" with a NestJS body
 * (`{ statusCode, message, error }`, `message` a string or a list); it becomes a `ProviderError` with
 * that text as its description, scrubbed of the secret. Other statuses keep core's defaults: 401 is
 * `InvalidCredentials`, 429 and 5xx are `TokenEndpointUnavailable`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const refineError =
  (secrets: ReadonlyArray<Redacted.Redacted<string>>) =>
  (reply: TokenExchange.Reply): Option.Option<TollgateError.TokenError> => {
    if (reply.status !== 400) return Option.none()
    const { code, description } = Provider.describeError(reply, secrets)
    return Option.some(
      new TollgateError.ProviderError({
        provider,
        code: code ?? "Bad Request",
        description: description ?? "missing or invalid parameters",
        status: 400
      })
    )
  }

/**
 * Nora's token source: `POST {baseUrl}/api/token` with `Accept` and `Content-Type: application/json`
 * and the JSON body `{ clientId, clientSecret, organizationId }`. Nora has no refresh grant and no
 * revocation: the cache simply re-issues. An invalid base URL is a defect here; `make` and `layer`
 * report it as a `ConfigError` first.
 *
 * @since 0.1.0
 * @category constructors
 */
export const tokenSource = (options: SourceOptions): Effect.Effect<TokenSource.Service, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => {
    const base = Provider.urlOrDie("baseUrl", options.baseUrl ?? defaultBaseUrl, options.allowInsecureLoopback)
    const tokenUrl = `${base}${tokenPath}`
    const secrets = [options.clientSecret]
    const fetch = TokenExchange.requestToken({
      provider,
      request: HttpClientRequest.post(tokenUrl).pipe(
        HttpClientRequest.acceptJson,
        HttpClientRequest.bodyUnsafeJson({
          clientId: options.clientId,
          clientSecret: Redacted.value(options.clientSecret),
          organizationId: options.organizationId
        })
      ),
      timeout: options.timeout,
      secrets,
      lifetime: { maxLifetime },
      success: TokenResponse,
      refine: refineError(secrets),
      toFields: (body) =>
        Either.right({
          value: body.token,
          valueField: "token",
          type: body.token_type ?? undefined,
          expiresIn: body.expires_in
        })
    }).pipe(Effect.provideService(HttpClient.HttpClient, client))
    return TokenSource.make({
      identity: {
        provider,
        endpoint: tokenUrl,
        clientId: options.clientId,
        extra: { organizationId: options.organizationId }
      },
      fetch
    })
  })

/**
 * The token cache, the limiter and the client, alive for the current scope. Fails with a
 * `ConfigError` when the base URL is not acceptable.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<Services, ConfigError.ConfigError, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const baseUrl = yield* Provider.url("baseUrl", options.baseUrl ?? defaultBaseUrl, options.allowInsecureLoopback)
    const source = yield* tokenSource({ ...options, baseUrl, timeout: options.tokenTimeout })
    return yield* Provider.build({
      provider,
      source,
      baseUrl,
      limits: defaultLimits,
      tokenRequestsCount: true,
      tuning: options
    })
  })

/**
 * Provides `NoraClient`, `NoraTokens` and `NoraLimiter`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<NoraClient | NoraTokens | NoraLimiter, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Provider.layer({ client: NoraClient, tokens: NoraTokens, limiter: NoraLimiter }, make(options))

/**
 * The options from the environment: `NORA_CLIENT_ID`, `NORA_CLIENT_SECRET` (redacted),
 * `NORA_ORGANIZATION_ID` (all required, non-empty), `NORA_BASE_URL` (default
 * `https://main.formflow-dev.net`) and `TOLLGATE_ALLOW_INSECURE_LOOPBACK` (default false).
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.map(
  Config.all({
    clientId: Provider.required("NORA_CLIENT_ID"),
    clientSecret: Provider.secret("NORA_CLIENT_SECRET"),
    organizationId: Provider.required("NORA_ORGANIZATION_ID"),
    connection: Provider.connection("NORA_BASE_URL", defaultBaseUrl)
  }),
  ({ connection, ...rest }): Options => ({ ...rest, ...connection })
)

/**
 * `layer` with options from the environment (see `config`). A missing, empty or invalid variable fails
 * the Layer when it is built, with a `ConfigError` naming the variable, not at the first request.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  overrides?: Overrides
): Layer.Layer<NoraClient | NoraTokens | NoraLimiter, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Provider.layerConfig(config, overrides, layer)
