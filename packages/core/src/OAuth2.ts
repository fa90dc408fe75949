/**
 * OAuth 2.0 client credentials (RFC 6749 §4.4) against any standards-compliant authorization server:
 * `client_secret_basic` or `client_secret_post`, optional scope, audience and extra parameters, the
 * refresh_token grant (§6), token revocation (RFC 7009), and §5.2 error bodies as typed errors. Built
 * from an issuer (`fromIssuer`), it reads the server's metadata (RFC 8414, falling back to OpenID Connect
 * discovery) and knows its token and revocation endpoints and the authentication methods it accepts.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Effect, Either, Encoding, Option, Predicate, Redacted, Schema } from "effect"
import type * as AccessToken from "./AccessToken.js"
import * as AuthorizationServer from "./AuthorizationServer.js"
import * as BaseUrl from "./BaseUrl.js"
import * as HeaderValue from "./HeaderValue.js"
import { Checker } from "./internal/validate.js"
import * as TokenExchange from "./TokenExchange.js"
import * as TokenSource from "./TokenSource.js"
import * as TollgateError from "./TollgateError.js"

/**
 * How the client authenticates to the token endpoint (RFC 6749 §2.3.1): HTTP Basic, which every
 * server must support, or the credentials in the form body.
 *
 * @since 0.1.0
 * @category models
 */
export type AuthMethod = AuthorizationServer.AuthMethod

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Names the provider in errors, logs and spans. Default: "oauth2". */
  readonly provider?: string | undefined
  readonly tokenUrl: string
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
  /** Default: `client_secret_basic`. */
  readonly authMethod?: AuthMethod | undefined
  /** Space-delimited, or a list joined with spaces. */
  readonly scope?: string | ReadonlyArray<string> | undefined
  /** Sent as the `audience` parameter, an extension many servers use. */
  readonly audience?: string | undefined
  /** Further form parameters for the grant, e.g. `resource`. */
  readonly extraParams?: Readonly<Record<string, string>> | undefined
  /** Headers added to every request to the token and revocation endpoints. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /**
   * RFC 7009 endpoint; without it tokens are not revoked. `fromIssuer` takes it from the server's
   * metadata.
   */
  readonly revocationUrl?: string | undefined
  /** How the client authenticates to the revocation endpoint. Default: `authMethod`. */
  readonly revocationAuthMethod?: AuthMethod | undefined
  /** Whether to use the refresh_token grant when the server issues refresh tokens. Default: true. */
  readonly useRefreshToken?: boolean | undefined
  readonly timeout?: TokenExchange.RequestOptions["timeout"]
  readonly lifetime?: AccessToken.LifetimePolicy | undefined
}

/**
 * `application/x-www-form-urlencoded` encoding of one value, as RFC 6749 Appendix B asks for the
 * client id and secret before they are joined for HTTP Basic.
 *
 * @since 0.1.0
 * @category encoding
 */
export const formEncode = (value: string): string => new URLSearchParams([["", value]]).toString().slice(1)

/**
 * The `Authorization` header for `client_secret_basic`: each credential form-encoded, joined by ":",
 * then base64 (RFC 6749 §2.3.1). Plain HTTP Basic skips the form-encoding and breaks secrets holding
 * ":", "+", "%" or non-ASCII characters.
 *
 * @since 0.1.0
 * @category encoding
 */
export const basicAuthorization = (
  clientId: string,
  clientSecret: Redacted.Redacted<string>
): Redacted.Redacted<string> =>
  Redacted.make(
    `Basic ${Encoding.encodeBase64(`${formEncode(clientId)}:${formEncode(Redacted.value(clientSecret))}`)}`
  )

/**
 * A successful token response (RFC 6749 §5.1), lenient where servers commonly are: `token_type` may
 * be missing, `expires_in` may arrive as a string, optional fields may be `null`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const TokenResponse = Schema.Struct({
  access_token: Schema.String,
  token_type: Schema.optional(Schema.NullOr(Schema.String)),
  expires_in: Schema.optional(Schema.NullOr(TokenExchange.Seconds)),
  refresh_token: Schema.optional(Schema.NullOr(Schema.String)),
  scope: Schema.optional(Schema.NullOr(Schema.String))
})

/**
 * The §5.2 error codes that mean the client itself was not recognised.
 *
 * @since 0.1.0
 * @category constants
 */
export const credentialErrorCodes: ReadonlySet<string> = new Set(["invalid_client"])

/**
 * The §4.1.2.1 codes a server uses for its own trouble; some token endpoints send them too. They are
 * outages, retried like a 503, not refusals.
 *
 * @since 0.1.0
 * @category constants
 */
export const outageErrorCodes: ReadonlySet<string> = new Set(["temporarily_unavailable", "server_error"])

/**
 * Reads a §5.2 error body (`error`, `error_description`) on a 4xx, or on a 2xx that carries an error
 * instead of a token. `invalid_client` rejects the credentials; `temporarily_unavailable` and
 * `server_error` are outages; every other code is the server refusing the grant (`invalid_scope`,
 * `invalid_grant`, `unauthorized_client`...).
 *
 * @since 0.1.0
 * @category decoding
 */
export const refineError = (
  provider: string,
  secrets: ReadonlyArray<Redacted.Redacted<string>>
) =>
(reply: TokenExchange.Reply): Option.Option<TollgateError.TokenError> => {
  const isClientError = reply.status >= 400 && reply.status < 500 && reply.status !== 429
  const isOk = reply.status >= 200 && reply.status < 300
  const body = Option.getOrUndefined(reply.body)
  if (!(isClientError || isOk) || !Predicate.isRecord(body) || typeof body["error"] !== "string") {
    return Option.none()
  }
  if (isOk && typeof body["access_token"] === "string") return Option.none()
  const { code, description } = TokenExchange.errorDetails(reply, secrets)
  const errorCode = code ?? "invalid_request"
  if (outageErrorCodes.has(errorCode)) {
    return Option.some(
      new TollgateError.TokenEndpointUnavailable({
        provider,
        reason: description === undefined ? errorCode : `${errorCode}: ${description}`,
        status: reply.status
      })
    )
  }
  return Option.some(
    credentialErrorCodes.has(errorCode)
      ? new TollgateError.InvalidCredentials({ provider, status: reply.status, code: errorCode, description })
      : new TollgateError.ProviderError({ provider, code: errorCode, description, status: reply.status })
  )
}

const scopeString = (scope: Options["scope"]): string | undefined => {
  if (scope === undefined) return undefined
  const joined = typeof scope === "string" ? scope : scope.join(" ")
  const normalized = joined.split(/\s+/).filter((s) => s.length > 0).join(" ")
  return normalized.length === 0 ? undefined : normalized
}

/**
 * The identity tokens from these options are cached under.
 *
 * @since 0.1.0
 * @category getters
 */
export const identity = (options: Options): TokenSource.Identity => ({
  provider: options.provider ?? "oauth2",
  endpoint: options.tokenUrl,
  clientId: options.clientId,
  scope: scopeString(options.scope),
  audience: options.audience,
  extra: options.extraParams
})

/**
 * A `TokenSource` for a standard authorization server. The returned source carries the `HttpClient` it
 * was built with.
 *
 * @example
 * ```ts
 * import { HttpClient, HttpClientResponse } from "@effect/platform"
 * import { OAuth2 } from "@tollgate/core"
 * import { Effect, Redacted } from "effect"
 *
 * // An in-memory authorization server, so the example needs no network.
 * const authServer = HttpClient.make((request) =>
 *   Effect.succeed(
 *     HttpClientResponse.fromWeb(
 *       request,
 *       Response.json({ access_token: "t0k3n", token_type: "Bearer", expires_in: 3600 })
 *     )
 *   )
 * )
 *
 * const program = Effect.gen(function*() {
 *   const source = yield* OAuth2.make({
 *     provider: "acme",
 *     tokenUrl: "https://auth.acme.example/oauth/token",
 *     clientId: "my-client",
 *     clientSecret: Redacted.make("my-secret") // sent with HTTP Basic by default
 *   })
 *   const token = yield* source.fetch
 *   console.log(token.type, String(token.value)) // "Bearer" "<redacted>"
 * }).pipe(Effect.provideService(HttpClient.HttpClient, authServer))
 *
 * Effect.runPromise(program)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<TokenSource.Service, TollgateError.InvalidArgument, HttpClient.HttpClient> =>
  Effect.flatMap(HttpClient.HttpClient, (client) => {
    const invalid = validate(options)
    return invalid === undefined ? Effect.succeed(build(options, client)) : Effect.fail(invalid)
  })

/**
 * The first option of `options` that cannot work, as `InvalidArgument` (the one validation path of
 * `internal/validate.ts`), or `undefined`: the timeout a positive duration, every header value sendable.
 */
const validate = (options: Options): TollgateError.InvalidArgument | undefined => {
  const check = new Checker("OAuth2.make")
  if (options.timeout !== undefined) check.duration("timeout", options.timeout, { positive: true, infinite: true })
  if (check.issue !== undefined) return check.issue
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    const header = HeaderValue.validate("OAuth2.make", `headers.${name}`, value)
    if (Either.isLeft(header)) return header.left
  }
  return undefined
}

const build = (options: Options, client: HttpClient.HttpClient): TokenSource.Service => {
  {
    const provider = options.provider ?? "oauth2"
    const authMethod = options.authMethod ?? "client_secret_basic"
    const scope = scopeString(options.scope)
    const basic = basicAuthorization(options.clientId, options.clientSecret)
    // A server that echoes the Authorization header echoes the secret in base64: scrub that form too.
    const secrets = [
      options.clientSecret,
      Redacted.make(Redacted.value(basic).slice("Basic ".length)),
      // Scrub also finds `id:secret` echoed in base64 (standard or URL-safe) or any other encoding.
      Redacted.make(`${options.clientId}:${Redacted.value(options.clientSecret)}`)
    ]

    const formRequest = (url: string, params: Record<string, string | undefined>, method: AuthMethod = authMethod) => {
      const body: Record<string, string> = {}
      for (const [key, value] of Object.entries(params)) if (value !== undefined) body[key] = value
      if (method === "client_secret_post") {
        body["client_id"] = options.clientId
        body["client_secret"] = Redacted.value(options.clientSecret)
      }
      let request = HttpClientRequest.post(url).pipe(
        HttpClientRequest.setHeaders(options.headers ?? {}),
        HttpClientRequest.acceptJson,
        HttpClientRequest.bodyUrlParams(body)
      )
      if (method === "client_secret_basic") {
        request = HttpClientRequest.setHeader(request, "authorization", Redacted.value(basic))
      }
      return request
    }

    const grant = (
      params: Record<string, string | undefined>,
      previousRefreshToken: Option.Option<Redacted.Redacted<string>>,
      operation: string
    ) => {
      const requestSecrets = Option.match(previousRefreshToken, {
        onNone: () => secrets,
        onSome: (token) => [...secrets, token]
      })
      return TokenExchange.requestToken({
        provider,
        operation,
        request: formRequest(options.tokenUrl, params),
        timeout: options.timeout,
        secrets: requestSecrets,
        lifetime: options.lifetime,
        success: TokenResponse,
        // The §5.2 description is scrubbed of every secret this request carried, the token sent included.
        refine: refineError(provider, requestSecrets),
        toFields: (body) =>
          Either.right({
            value: body.access_token,
            type: body.token_type ?? undefined,
            expiresIn: body.expires_in ?? undefined,
            // RFC 6749 §6: a server that issues no new refresh token leaves the old one in force.
            refreshToken: body.refresh_token ??
              Option.getOrUndefined(Option.map(previousRefreshToken, Redacted.value)),
            scope: body.scope ?? scope
          })
      }).pipe(Effect.provideService(HttpClient.HttpClient, client))
    }

    const fetch = grant(
      // Extra parameters never override the grant itself, nor the scope and audience given explicitly.
      {
        ...options.extraParams,
        grant_type: "client_credentials",
        ...(scope === undefined ? {} : { scope }),
        ...(options.audience === undefined ? {} : { audience: options.audience })
      },
      Option.none(),
      "token request"
    )

    const refresh = (token: AccessToken.AccessToken) =>
      Option.match(token.refreshToken, {
        onNone: () => fetch,
        onSome: (refreshToken) =>
          grant(
            { grant_type: "refresh_token", refresh_token: Redacted.value(refreshToken) },
            Option.some(refreshToken),
            "token refresh"
          )
      })

    const revokeOne = (url: string, value: Redacted.Redacted<string>, hint: string) => {
      const requestSecrets = [...secrets, value]
      return TokenExchange.requestOk({
        provider,
        operation: "token revocation",
        request: formRequest(
          url,
          { token: Redacted.value(value), token_type_hint: hint },
          options.revocationAuthMethod ?? authMethod
        ),
        timeout: options.timeout,
        secrets: requestSecrets,
        refine: refineError(provider, requestSecrets)
      }).pipe(Effect.asVoid, Effect.provideService(HttpClient.HttpClient, client))
    }

    const revocationUrl = options.revocationUrl
    return TokenSource.make({
      identity: identity(options),
      fetch,
      refresh: options.useRefreshToken === false ? undefined : refresh,
      // Each token is revoked even when the other one fails: a server may refuse to revoke access tokens
      // (RFC 7009 §2.2.1 unsupported_token_type), and the long-lived refresh token matters most.
      revoke: revocationUrl === undefined ? undefined : (token) =>
        Effect.all([
          revokeOne(revocationUrl, token.value, "access_token"),
          Option.match(token.refreshToken, {
            onNone: () => Effect.void,
            onSome: (refreshToken) => revokeOne(revocationUrl, refreshToken, "refresh_token")
          })
        ], { mode: "validate" }).pipe(
          Effect.asVoid,
          Effect.mapError((errors) => Option.getOrThrow(Option.orElse(errors[0], () => errors[1])))
        )
    })
  }
}

/**
 * @since 0.2.0
 * @category models
 */
export interface IssuerOptions
  extends Omit<Options, "tokenUrl" | "revocationUrl" | "revocationAuthMethod">, AuthorizationServer.DiscoveryOptions
{
  /** The authorization server's issuer identifier, e.g. `https://auth.example.com` or `https://host/realms/x`. */
  readonly issuer: string
  /**
   * How the client authenticates. Default: the first of `client_secret_basic` and `client_secret_post`
   * the server lists (for the token and the revocation endpoint each).
   */
  readonly authMethod?: AuthMethod | undefined
}

/**
 * A `TokenSource` for the authorization server that `issuer` names: its endpoints and authentication
 * methods come from its metadata (`discover`). When the server has a revocation endpoint the source
 * can revoke, so a `TokenCache` over it revokes its token when its scope closes.
 *
 * @example
 * ```ts
 * import { HttpClient, HttpClientResponse } from "@effect/platform"
 * import { OAuth2 } from "@tollgate/core"
 * import { Effect, Redacted } from "effect"
 *
 * const issuer = "https://auth.acme.example"
 * // An in-memory authorization server with RFC 8414 metadata, so the example needs no network.
 * const authServer = HttpClient.make((request) =>
 *   Effect.succeed(HttpClientResponse.fromWeb(
 *     request,
 *     Response.json(
 *       request.url.includes("/.well-known/")
 *         ? {
 *           issuer,
 *           token_endpoint: `${issuer}/oauth/token`,
 *           token_endpoint_auth_methods_supported: ["client_secret_post"]
 *         }
 *         : { access_token: "t0k3n", token_type: "Bearer", expires_in: 3600 }
 *     )
 *   ))
 * )
 *
 * const program = Effect.gen(function*() {
 *   // The token endpoint and the authentication method come from the issuer's metadata.
 *   const source = yield* OAuth2.fromIssuer({
 *     issuer,
 *     clientId: "my-client",
 *     clientSecret: Redacted.make("my-secret")
 *   })
 *   console.log(source.identity.endpoint) // "https://auth.acme.example/oauth/token"
 *   const token = yield* source.fetch
 *   console.log(token.type) // "Bearer"
 * }).pipe(Effect.provideService(HttpClient.HttpClient, authServer))
 *
 * Effect.runPromise(program)
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromIssuer = (
  options: IssuerOptions
): Effect.Effect<TokenSource.Service, AuthorizationServer.DiscoveryError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const metadata = yield* AuthorizationServer.discover(options.issuer, options)
    const provider = options.provider ?? "oauth2"
    const refuse = (field: string, supported: ReadonlyArray<string>) =>
      new TollgateError.InvalidServerMetadata({
        provider,
        url: BaseUrl.describe(metadata.url),
        field,
        expected: `a list including ${AuthorizationServer.implemented.join(" or ")}`,
        received: supported.length === 0 ? "an empty list" : supported.join(", ")
      })
    const authMethod = options.authMethod ?? AuthorizationServer.chooseAuthMethod(metadata.tokenAuthMethods)
    if (authMethod === undefined) {
      return yield* Effect.fail(refuse("token_endpoint_auth_methods_supported", metadata.tokenAuthMethods))
    }
    const revocationAuthMethod = options.authMethod ??
      AuthorizationServer.chooseAuthMethod(metadata.revocationAuthMethods)
    if (Option.isSome(metadata.revocationEndpoint) && revocationAuthMethod === undefined) {
      yield* Effect.logWarning("Tollgate cannot authenticate to the revocation endpoint; tokens are not revoked").pipe(
        Effect.annotateLogs({ provider, supported: metadata.revocationAuthMethods.join(", ") })
      )
    }
    return yield* make({
      ...options,
      tokenUrl: metadata.tokenEndpoint,
      authMethod,
      revocationUrl: revocationAuthMethod === undefined
        ? undefined
        : Option.getOrUndefined(metadata.revocationEndpoint),
      revocationAuthMethod
    })
  })
