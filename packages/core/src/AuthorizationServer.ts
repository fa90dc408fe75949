/**
 * What an authorization server says about itself: its metadata (RFC 8414, falling back to OpenID
 * Connect Discovery 1.0), read from its issuer identifier and checked before anything is sent to the
 * endpoints it names. `OAuth2.fromIssuer` builds a token source from it.
 *
 * @since 0.2.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Duration, Effect, Either, Option, Schedule, Schema } from "effect"
import * as BaseUrl from "./BaseUrl.js"
import * as TokenExchange from "./TokenExchange.js"
import * as TollgateError from "./TollgateError.js"

/**
 * A client authentication method Tollgate implements (RFC 6749 §2.3.1).
 *
 * @since 0.2.0
 * @category models
 */
export type AuthMethod = "client_secret_basic" | "client_secret_post"

/**
 * What Tollgate uses of an authorization server's metadata (RFC 8414 §2, or OpenID Connect Discovery
 * 1.0 §3), after checking it.
 *
 * @since 0.2.0
 * @category models
 */
export interface ServerMetadata {
  readonly issuer: string
  /** Where the metadata was read. */
  readonly url: string
  readonly tokenEndpoint: string
  readonly revocationEndpoint: Option.Option<string>
  /** `token_endpoint_auth_methods_supported`; RFC 8414's default `client_secret_basic` when absent. */
  readonly tokenAuthMethods: ReadonlyArray<string>
  /** `revocation_endpoint_auth_methods_supported`, with the same default. */
  readonly revocationAuthMethods: ReadonlyArray<string>
  /** `grant_types_supported`, when the server lists them. */
  readonly grantTypes: Option.Option<ReadonlyArray<string>>
}

const Metadata = Schema.Struct({
  issuer: Schema.String,
  token_endpoint: Schema.String,
  revocation_endpoint: Schema.optional(Schema.NullOr(Schema.String)),
  token_endpoint_auth_methods_supported: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  revocation_endpoint_auth_methods_supported: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  grant_types_supported: Schema.optional(Schema.NullOr(Schema.Array(Schema.String)))
})

/**
 * The two places an issuer's metadata may be, in the order they are tried: RFC 8414 §3.1 inserts
 * `/.well-known/oauth-authorization-server` between the host and the issuer's path; OpenID Connect
 * Discovery appends `/.well-known/openid-configuration` to the issuer.
 *
 * @since 0.2.0
 * @category discovery
 */
export const metadataUrls = (issuer: string): readonly [string, string] => {
  const url = new URL(issuer)
  const path = url.pathname.replace(/\/+$/, "")
  return [
    `${url.origin}/.well-known/oauth-authorization-server${path}`,
    `${url.origin}${path}/.well-known/openid-configuration`
  ]
}

/**
 * The client authentication methods Tollgate implements, in order of preference.
 *
 * @since 0.2.0
 * @category constants
 */
export const implemented: ReadonlyArray<AuthMethod> = ["client_secret_basic", "client_secret_post"]

/**
 * The first method Tollgate implements that `supported` lists.
 *
 * @since 0.2.0
 * @category discovery
 */
export const chooseAuthMethod = (supported: ReadonlyArray<string>): AuthMethod | undefined =>
  implemented.find((method) => supported.includes(method))

/**
 * @since 0.2.0
 * @category models
 */
export interface DiscoveryOptions {
  /** Names the provider in errors. Default: "oauth2". */
  readonly provider?: string | undefined
  /** Accept an `http://` issuer and endpoints on loopback (tests, sandboxes). Default: false. */
  readonly allowInsecureLoopback?: boolean | undefined
  /** Bound on each metadata request. Default: 15 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * Errors of discovery: the issuer itself is unusable (`InvalidArgument`), the metadata cannot be fetched
 * (`TokenEndpointUnavailable`, `Timeout`: retryable), or it is not trustworthy (`InvalidServerMetadata`).
 *
 * @since 0.2.0
 * @category models
 */
export type DiscoveryError =
  | TollgateError.InvalidArgument
  | TollgateError.InvalidServerMetadata
  | TollgateError.TokenEndpointUnavailable
  | TollgateError.Timeout

/**
 * Reads and checks an issuer's metadata: RFC 8414 first, OpenID Connect discovery when the server has
 * no RFC 8414 document. The `issuer` in the document must be the one asked for (RFC 8414 §3.3: a
 * trailing slash aside) and every endpoint https, so metadata can never send credentials elsewhere.
 * Outages are retried twice with backoff.
 *
 * @since 0.2.0
 * @category discovery
 */
export const discover = (
  issuer: string,
  options: DiscoveryOptions = {}
): Effect.Effect<ServerMetadata, DiscoveryError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const provider = options.provider ?? "oauth2"
    const allowInsecureLoopback = options.allowInsecureLoopback
    const normalized = yield* BaseUrl.decode(issuer, {
      module: "OAuth2.discover",
      argument: "issuer",
      allowInsecureLoopback
    })
    const trimmed = issuer.trim()
    const [rfc8414, openid] = metadataUrls(normalized)

    const fetch = (url: string) =>
      TokenExchange.send({
        provider,
        operation: "metadata request",
        request: HttpClientRequest.get(url).pipe(HttpClientRequest.acceptJson),
        timeout: options.timeout
      }).pipe(
        Effect.mapError((error) =>
          error._tag === "TokenEndpointUnavailable"
            ? new TollgateError.TokenEndpointUnavailable({
              provider,
              reason: `its metadata at ${BaseUrl.describe(url)} could not be fetched: ${error.reason}`
            })
            : error as TollgateError.Timeout
        ),
        Effect.flatMap((reply) =>
          reply.status >= 500 || reply.status === 429 || reply.status === 408
            ? Effect.fail(
              new TollgateError.TokenEndpointUnavailable({
                provider,
                reason: `its metadata at ${BaseUrl.describe(url)} answered HTTP ${reply.status}`,
                status: reply.status
              })
            )
            : Effect.succeed(reply)
        ),
        Effect.retry({
          schedule: Schedule.exponential("250 millis"),
          times: 2,
          while: (error) => error.retryable
        })
      )

    const invalid = (url: string, field: string, expected: string, received: string) =>
      new TollgateError.InvalidServerMetadata({ provider, url: BaseUrl.describe(url), field, expected, received })

    let url = rfc8414
    let reply = yield* fetch(rfc8414)
    if (reply.status < 200 || reply.status >= 300) {
      url = openid
      reply = yield* fetch(openid)
      if (reply.status < 200 || reply.status >= 300) {
        return yield* Effect.fail(
          invalid(url, "(document)", "metadata at the RFC 8414 or the OpenID Connect location", `HTTP ${reply.status}`)
        )
      }
    }
    const document = yield* Either.mapLeft(
      TokenExchange.decodeBody(reply, Metadata, provider),
      (error) => invalid(url, error.field, error.expected, error.received)
    )
    const sameIssuer = (a: string, b: string) => a.replace(/\/$/, "") === b.replace(/\/$/, "")
    if (!sameIssuer(document.issuer, trimmed)) {
      return yield* Effect.fail(
        invalid(url, "issuer", `the issuer asked for (${BaseUrl.describe(trimmed)})`, "another issuer")
      )
    }
    const endpoint = (field: string, value: string) =>
      Either.mapLeft(
        BaseUrl.checkEndpoint(value, { allowInsecureLoopback }),
        (why) => invalid(url, field, "an https URL", why)
      )
    const tokenEndpoint = yield* endpoint("token_endpoint", document.token_endpoint)
    const revocationEndpoint = document.revocation_endpoint == null
      ? Option.none<string>()
      : Option.some(yield* endpoint("revocation_endpoint", document.revocation_endpoint))
    const grantTypes = Option.fromNullable(document.grant_types_supported)
    if (Option.isSome(grantTypes) && !grantTypes.value.includes("client_credentials")) {
      return yield* Effect.fail(
        invalid(url, "grant_types_supported", "a list including client_credentials", grantTypes.value.join(", "))
      )
    }
    return {
      issuer: document.issuer,
      url,
      tokenEndpoint,
      revocationEndpoint,
      tokenAuthMethods: document.token_endpoint_auth_methods_supported ?? ["client_secret_basic"],
      revocationAuthMethods: document.revocation_endpoint_auth_methods_supported ?? ["client_secret_basic"],
      grantTypes
    }
  })
