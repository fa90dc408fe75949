/**
 * How one provider issues tokens: `fetch` (client credentials), optionally `refresh` (a refresh_token
 * grant) and `revoke`. A source does no caching and no retrying; `TokenCache` does both.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Option } from "effect"
import type * as AccessToken from "./AccessToken.js"
import type * as TollgateError from "./TollgateError.js"

/**
 * What makes two tokens interchangeable: the same provider, token endpoint, client, scope, audience
 * and extra grant parameters. Tokens are cached per identity and two identities never share one.
 *
 * @since 0.1.0
 * @category models
 */
export interface Identity {
  readonly provider: string
  readonly endpoint: string
  readonly clientId: string
  readonly scope?: string | undefined
  readonly audience?: string | undefined
  readonly extra?: Readonly<Record<string, string>> | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly identity: Identity
  /** Obtains a new token with the client's own credentials. */
  readonly fetch: Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError>
  /** Renews a token with its refresh token, when the provider supports it. */
  readonly refresh: Option.Option<
    (token: AccessToken.AccessToken) => Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError>
  >
  /** Tells the provider a token will not be used again, when the provider supports it. */
  readonly revoke: Option.Option<(token: AccessToken.AccessToken) => Effect.Effect<void, TollgateError.TokenError>>
}

/**
 * The source a `TokenCache.layer` reads tokens from, for programs that talk to a single API. Programs
 * with several APIs build each provider's cache directly instead.
 *
 * @since 0.1.0
 * @category tags
 */
export class TokenSource extends Context.Tag("@tollgate/core/TokenSource")<TokenSource, Service>() {}

/**
 * @example
 * ```ts
 * import { AccessToken, TokenSource } from "@tollgate/core"
 * import { DateTime, Effect, Either, Redacted } from "effect"
 *
 * // A source for a token endpoint Tollgate has no module for: `fetch` obtains a new token.
 * const source = TokenSource.make({
 *   identity: { provider: "acme", endpoint: "https://auth.acme.example/token", clientId: "my-client" },
 *   fetch: Effect.map(DateTime.now, (receivedAt) =>
 *     Either.getOrThrow(AccessToken.make({ value: Redacted.make("t0k3n"), expiresIn: 3600, receivedAt })))
 * })
 *
 * Effect.runPromise(source.fetch).then((token) => console.log(token.type)) // "Bearer"
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly identity: Identity
  readonly fetch: Service["fetch"]
  readonly refresh?:
    | ((token: AccessToken.AccessToken) => Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError>)
    | undefined
  readonly revoke?: ((token: AccessToken.AccessToken) => Effect.Effect<void, TollgateError.TokenError>) | undefined
}): Service => ({
  identity: options.identity,
  fetch: options.fetch,
  refresh: Option.fromNullable(options.refresh),
  revoke: Option.fromNullable(options.revoke)
})

/**
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
 * // The source of a single-API program, read by `TokenCache.layer`.
 * const TokensLive = TokenCache.layer().pipe(Layer.provide(TokenSource.layer(source)))
 *
 * const program = Effect.flatMap(TokenCache.TokenCache, (tokens) => tokens.get)
 * Effect.runPromise(Effect.provide(program, TokensLive)).then((token) => console.log(token.type))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (source: Service): Layer.Layer<TokenSource> => Layer.succeed(TokenSource, source)

/**
 * @example
 * ```ts
 * import { HttpClient, HttpClientResponse } from "@effect/platform"
 * import { OAuth2, TokenCache, TokenSource } from "@tollgate/core"
 * import { Effect, Layer, Redacted } from "effect"
 *
 * // A source that needs services to be built, here the HttpClient of `OAuth2.make`.
 * const SourceLive = TokenSource.layerEffect(OAuth2.make({
 *   provider: "acme",
 *   tokenUrl: "https://auth.acme.example/oauth/token",
 *   clientId: "my-client",
 *   clientSecret: Redacted.make("my-secret")
 * }))
 *
 * // An in-memory authorization server, so the example needs no network.
 * const AuthServer = Layer.succeed(
 *   HttpClient.HttpClient,
 *   HttpClient.make((request) =>
 *     Effect.succeed(
 *       HttpClientResponse.fromWeb(
 *         request,
 *         Response.json({ access_token: "t0k3n", token_type: "Bearer", expires_in: 3600 })
 *       )
 *     )
 *   )
 * )
 *
 * const TokensLive = TokenCache.layer().pipe(Layer.provide(SourceLive), Layer.provide(AuthServer))
 * const program = Effect.flatMap(TokenCache.TokenCache, (tokens) => tokens.get)
 * Effect.runPromise(Effect.provide(program, TokensLive)).then((token) => console.log(token.type))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEffect = <E, R>(source: Effect.Effect<Service, E, R>): Layer.Layer<TokenSource, E, R> =>
  Layer.effect(TokenSource, source)

const normalizeScope = (scope: string | undefined): string =>
  scope === undefined ? "" : scope.split(/\s+/).filter((s) => s.length > 0).sort().join(" ")

/**
 * A canonical string for an identity: equal for identities that may share a token, different for
 * any difference in provider, endpoint, client, scope (order-insensitive, as OAuth2 scopes are sets),
 * audience or extra parameters. Shared stores key tokens by it.
 *
 * @since 0.1.0
 * @category getters
 */
export const identityKey = (identity: Identity): string => {
  const extra = Object.entries(identity.extra ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return JSON.stringify([
    identity.provider,
    identity.endpoint,
    identity.clientId,
    normalizeScope(identity.scope),
    identity.audience ?? null,
    extra
  ])
}
