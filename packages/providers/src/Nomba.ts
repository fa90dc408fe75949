/**
 * Nomba: OAuth-flavoured JSON endpoints to issue, refresh and revoke 30-minute tokens, every request
 * scoped to an account by the `accountId` header, and every answer wrapped in `{ code, description,
 * data }` where any `code` other than "00" is a failure, whatever the HTTP status.
 *
 * The token cache refreshes a token in use 5 minutes before expiry (Nomba's recommendation) with the
 * refresh token, and revokes the current token when the Layer's scope closes.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import type * as AccessToken from "@tollgate/core/AccessToken"
import type * as ApiClient from "@tollgate/core/ApiClient"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import type * as TokenCache from "@tollgate/core/TokenCache"
import * as TokenExchange from "@tollgate/core/TokenExchange"
import * as TokenSource from "@tollgate/core/TokenSource"
import * as TollgateError from "@tollgate/core/TollgateError"
import type { ConfigError, Layer, Scope } from "effect"
import { Config, Context, Duration, Effect, Either, Option, Predicate, Redacted, Schema } from "effect"
import * as Provider from "./internal/provider.js"

/**
 * The name Tollgate gives Nomba in errors, logs, spans and metrics.
 *
 * @since 0.1.0
 * @category constants
 */
export const provider = "nomba"

/**
 * The documented production host; point `baseUrl` at a sandbox for tests.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultBaseUrl = "https://api.nomba.com"

/**
 * The three token endpoints, relative to the base URL.
 *
 * @since 0.1.0
 * @category constants
 */
export const paths = {
  issue: "/v1/auth/token/issue",
  refresh: "/v1/auth/token/refresh",
  revoke: "/v1/auth/token/revoke"
} as const

/**
 * "Access tokens expire after 30 minutes": an `expiresAt` further away (a skewed server clock) is
 * clamped to it.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxLifetime: Duration.Duration = Duration.minutes(30)

/**
 * The code of a successful answer.
 *
 * @since 0.1.0
 * @category constants
 */
export const successCode = "00"

/**
 * Nomba documents no API limit: none of our own by default (a 429 still closes the client's gate until
 * the server's reset). Pass `limits` when your account has one.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLimits: RateLimiter.Policy = RateLimiter.unlimited

/**
 * The API keys from the Nomba dashboard, and the account every request acts on.
 *
 * @since 0.1.0
 * @category models
 */
export interface Credentials {
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
  /** Sent as the `accountId` header on every request. */
  readonly accountId: string
}

/**
 * What the token source alone needs.
 *
 * @since 0.1.0
 * @category models
 */
export interface SourceOptions extends Credentials {
  /** Default: `https://api.nomba.com`. */
  readonly baseUrl?: string | undefined
  readonly allowInsecureLoopback?: boolean | undefined
  /** Bound on each token request. Default: 15 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * Everything `make` and `layer` accept: credentials, where Nomba is, and any default to override
 * (`limits` when your account has a known API limit).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Credentials, Provider.Connection, Provider.Tuning {}

/**
 * Settings `layerConfig` accepts on top of the environment.
 *
 * @since 0.1.0
 * @category models
 */
export interface Overrides extends Provider.Tuning {}

/**
 * What `make` returns: the authenticated client, the token cache and the limiter of Nomba, the same
 * services the Layer provides under its Tags.
 *
 * @since 0.1.0
 * @category models
 */
export interface Services extends Provider.Services {}

/**
 * The authenticated Nomba client: Bearer token and `accountId` header on every request.
 *
 * @since 0.1.0
 * @category tags
 */
export class NombaClient
  extends Context.Tag("@tollgate/providers/Nomba/NombaClient")<NombaClient, ApiClient.Service>()
{}

/**
 * Nomba's token cache (refresh 5 minutes early, revoke on close).
 *
 * @since 0.1.0
 * @category tags
 */
export class NombaTokens
  extends Context.Tag("@tollgate/providers/Nomba/NombaTokens")<NombaTokens, TokenCache.Service>()
{}

/**
 * Nomba's request limiter, for its stats.
 *
 * @since 0.1.0
 * @category tags
 */
export class NombaLimiter
  extends Context.Tag("@tollgate/providers/Nomba/NombaLimiter")<NombaLimiter, RateLimiter.Service>()
{}

/**
 * The body of a successful issue or refresh: `{ code: "00", description, data: { businessId,
 * access_token, refresh_token, expiresAt } }`, `expiresAt` an ISO instant.
 *
 * @since 0.1.0
 * @category schemas
 */
export const TokenResponse = Schema.Struct({
  code: Schema.String,
  description: Schema.optional(Schema.NullOr(Schema.String)),
  data: Schema.Struct({
    businessId: Schema.optional(Schema.NullOr(Schema.String)),
    access_token: Schema.String,
    refresh_token: Schema.optional(Schema.NullOr(Schema.String)),
    expiresAt: Schema.DateTimeUtc
  })
})

/**
 * The meaning of Nomba's envelope: a `code` other than "00" is a `ProviderError` carrying the code and
 * the description, even with HTTP 200. 401/403 (rejected credentials or token), 408, 429 and 5xx keep
 * core's meaning so that outages are retried and bad credentials are not.
 *
 * @since 0.1.0
 * @category decoding
 */
export const refineCode =
  (secrets: ReadonlyArray<Redacted.Redacted<string>>) =>
  (reply: TokenExchange.Reply): Option.Option<TollgateError.TokenError> => {
    const status = reply.status
    if (status === 401 || status === 403 || status === 408 || status === 429 || status >= 500) return Option.none()
    const body = Option.getOrUndefined(reply.body)
    if (!Predicate.isRecord(body) || !("code" in body)) return Option.none()
    const raw = body["code"]
    if (raw === successCode) return Option.none()
    const { code, description } = TokenExchange.errorDetails(reply, secrets)
    return Option.some(
      new TollgateError.ProviderError({
        provider,
        code: code ?? (typeof raw === "string" || typeof raw === "number" ? String(raw) : "unknown"),
        description,
        status
      })
    )
  }

/**
 * Reads a Nomba API response: the `data` of a `{ code: "00", data }` envelope, or a `ProviderError`
 * with the code and description when the code is anything else, whatever the HTTP status. Use it on
 * the client's responses, which Tollgate hands back as they are.
 *
 * @since 0.1.0
 * @category decoding
 */
export const envelope = (
  response: HttpClientResponse.HttpClientResponse
): Effect.Effect<unknown, TollgateError.ProviderError | HttpClientError.ResponseError> =>
  Effect.flatMap(response.json, (body) => {
    if (Predicate.isRecord(body) && body["code"] === successCode) return Effect.succeed(body["data"])
    const raw = Predicate.isRecord(body) ? body["code"] : undefined
    const description = Predicate.isRecord(body) && typeof body["description"] === "string"
      ? body["description"].slice(0, 300)
      : undefined
    return Effect.fail(
      new TollgateError.ProviderError({
        provider,
        code: typeof raw === "string" || typeof raw === "number" ? String(raw) : `HTTP ${response.status}`,
        description: description ?? (raw === undefined ? "the answer is not a Nomba envelope" : undefined),
        status: response.status
      })
    )
  })

/**
 * Nomba's token source: issue with `POST /v1/auth/token/issue` (`accountId` header, JSON
 * `{ grant_type: "client_credentials", client_id, client_secret }`), refresh with `POST
 * /v1/auth/token/refresh` (`Authorization: Bearer <access token>`, `accountId`, JSON
 * `{ grant_type: "refresh_token", refresh_token }`) and revoke with `POST /v1/auth/token/revoke`
 * (`accountId`, JSON `{ clientId, access_token }`). An invalid base URL is a defect here; `make` and
 * `layer` report it as a `ConfigError` first.
 *
 * @since 0.1.0
 * @category constructors
 */
export const tokenSource = (options: SourceOptions): Effect.Effect<TokenSource.Service, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => {
    const base = Provider.urlOrDie("baseUrl", options.baseUrl ?? defaultBaseUrl, options.allowInsecureLoopback)
    const post = (path: string, body: Record<string, string>) =>
      HttpClientRequest.post(`${base}${path}`).pipe(
        HttpClientRequest.setHeader("accountId", options.accountId),
        HttpClientRequest.acceptJson,
        HttpClientRequest.bodyUnsafeJson(body)
      )
    const lifetime = { maxLifetime }
    // A refresh answer without a new refresh token leaves the old one in force (as RFC 6749 §6 does).
    const toFields = (previous?: Redacted.Redacted<string>) => (body: typeof TokenResponse.Type) =>
      Either.right({
        value: body.data.access_token,
        valueField: "data.access_token",
        refreshToken: body.data.refresh_token ?? (previous === undefined ? undefined : Redacted.value(previous)),
        expiresAt: body.data.expiresAt
      })

    const issueSecrets = [options.clientSecret]
    const fetch = TokenExchange.requestToken({
      provider,
      request: post(paths.issue, {
        grant_type: "client_credentials",
        client_id: options.clientId,
        client_secret: Redacted.value(options.clientSecret)
      }),
      timeout: options.timeout,
      secrets: issueSecrets,
      lifetime,
      success: TokenResponse,
      refine: refineCode(issueSecrets),
      toFields: toFields()
    }).pipe(Effect.provideService(HttpClient.HttpClient, client))

    const refresh = (token: AccessToken.AccessToken) =>
      Option.match(token.refreshToken, {
        onNone: () => fetch,
        onSome: (refreshToken) => {
          const secrets = [options.clientSecret, token.value, refreshToken]
          return TokenExchange.requestToken({
            provider,
            operation: "token refresh",
            request: post(paths.refresh, { grant_type: "refresh_token", refresh_token: Redacted.value(refreshToken) })
              .pipe(HttpClientRequest.setHeader("authorization", Redacted.value(token.authorization))),
            timeout: options.timeout,
            secrets,
            lifetime,
            success: TokenResponse,
            refine: refineCode(secrets),
            toFields: toFields(refreshToken)
          }).pipe(Effect.provideService(HttpClient.HttpClient, client))
        }
      })

    const revoke = (token: AccessToken.AccessToken) => {
      const secrets = [options.clientSecret, token.value]
      return TokenExchange.requestOk({
        provider,
        operation: "token revocation",
        request: post(paths.revoke, { clientId: options.clientId, access_token: Redacted.value(token.value) }),
        timeout: options.timeout,
        secrets,
        refine: refineCode(secrets)
      }).pipe(Effect.asVoid, Effect.provideService(HttpClient.HttpClient, client))
    }

    return TokenSource.make({
      identity: {
        provider,
        endpoint: `${base}${paths.issue}`,
        clientId: options.clientId,
        extra: { accountId: options.accountId }
      },
      fetch,
      refresh,
      revoke
    })
  })

/**
 * The token cache, the limiter and the client, alive for the current scope; closing it revokes the
 * current token. Fails with a `ConfigError` when the base URL is not acceptable.
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
      headers: { accountId: options.accountId },
      limits: defaultLimits,
      // Nomba's documented refresh lead, kept even though core's default for a 30-minute token is shorter.
      tuning: { ...options, tokenCache: { refreshBefore: Duration.minutes(5), ...options.tokenCache } }
    })
  })

/**
 * Provides `NombaClient`, `NombaTokens` and `NombaLimiter`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<NombaClient | NombaTokens | NombaLimiter, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Provider.layer({ client: NombaClient, tokens: NombaTokens, limiter: NombaLimiter }, make(options))

/**
 * The options from the environment: `NOMBA_CLIENT_ID`, `NOMBA_CLIENT_SECRET` (redacted),
 * `NOMBA_ACCOUNT_ID` (required, non-empty), `NOMBA_BASE_URL` (default `https://api.nomba.com`) and
 * `TOLLGATE_ALLOW_INSECURE_LOOPBACK`.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.map(
  Config.all({
    clientId: Provider.required("NOMBA_CLIENT_ID"),
    clientSecret: Provider.secret("NOMBA_CLIENT_SECRET"),
    accountId: Provider.required("NOMBA_ACCOUNT_ID"),
    connection: Provider.connection("NOMBA_BASE_URL", defaultBaseUrl)
  }),
  ({ connection, ...rest }): Options => ({ ...rest, ...connection })
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
): Layer.Layer<NombaClient | NombaTokens | NombaLimiter, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Provider.layerConfig(config, overrides, layer)
