/**
 * How a provider obtains tokens from its options (see `Provider.define`): `exchange` for a token endpoint
 * of its own making, described as data (where it is, how the client authenticates, the Schemas of its
 * success and failure bodies, its refresh and revocation), `oauth2` for a standard one.
 *
 * @since 0.2.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as AccessToken from "@tollgate/core/AccessToken"
import type * as OAuth2 from "@tollgate/core/OAuth2"
import type * as TokenExchange from "@tollgate/core/TokenExchange"
import type * as TokenSource from "@tollgate/core/TokenSource"
import type * as TollgateError from "@tollgate/core/TollgateError"
import type { Duration, Effect, Option, Redacted, Schema } from "effect"
import * as internal from "./internal/exchange.js"

/**
 * What a token endpoint strategy receives besides the options.
 *
 * @since 0.2.0
 * @category token endpoints
 */
export interface SourceContext {
  readonly provider: string
  /** The API's base URL, which custom token endpoints live on. */
  readonly baseUrl: string | undefined
  readonly timeout: Duration.DurationInput | undefined
  readonly lifetime: AccessToken.LifetimePolicy | undefined
  /** Every `Redacted` value of the options, scrubbed from any text an error carries. */
  readonly secrets: ReadonlyArray<Redacted.Redacted<string>>
}

/**
 * How a provider obtains tokens from its options: `exchange` for a token endpoint of its own making,
 * `oauth2` for a standard one, or any function to a `TokenSource`.
 *
 * @since 0.2.0
 * @category token endpoints
 */
export interface TokenEndpoint<O, TH extends string = never> {
  /** The option fields sent as headers to the token endpoint (so the token source needs them). */
  readonly headerFields: ReadonlyArray<TH>
  readonly source: (
    options: O,
    context: SourceContext
  ) => Effect.Effect<TokenSource.Service, never, HttpClient.HttpClient>
}

/**
 * Parameters of a token request: `Redacted` values are sent as their value and scrubbed from errors.
 *
 * @since 0.2.0
 * @category token endpoints
 */
export type Params = Readonly<Record<string, string | Redacted.Redacted<string>>>

/**
 * What an error body says, in Tollgate's terms: it becomes a `ProviderError`, scrubbed of every secret.
 *
 * @since 0.2.0
 * @category token endpoints
 */
export interface Refusal {
  readonly code: string
  readonly description?: string | undefined
}

/**
 * A provider's own error bodies: the statuses they come with (default: every status but 401, 403, 408,
 * 429 and 5xx, which keep core's meaning, so that outages are retried and bad credentials are not), their
 * Schema, and what they say. A body that does not decode keeps core's reading of its status.
 *
 * @since 0.2.0
 * @category token endpoints
 */
export interface Failure<A, I> {
  readonly status?: ((status: number) => boolean) | undefined
  readonly schema: Schema.Schema<A, I>
  readonly read: (body: A) => Refusal
}

/**
 * A token endpoint of the provider's own making: where it is, how the client authenticates (its
 * credentials as JSON, form or query parameters, and headers from options), the Schemas of its success
 * and failure bodies, and optionally its refresh and revocation.
 *
 * @since 0.2.0
 * @category token endpoints
 */
export interface Exchange<O, A, I, FA = never, FI = never, TH extends string = never> {
  /** The path on the API's base URL. */
  readonly path: string
  /** Where the parameters go: a JSON body, a form body, or the query. */
  readonly encoding: "json" | "form" | "query"
  readonly params: (options: O) => Params
  /** Headers sent to every token endpoint, by option field: `{ accountId: "accountId" }`. */
  readonly headers?: Readonly<Record<string, TH>> | undefined
  readonly success: Schema.Schema<A, I>
  /** The token in a decoded success body. On a refresh, a missing refresh token keeps the old one. */
  readonly token: (body: A) => TokenExchange.TokenFields
  readonly failure?: Failure<FA, FI> | undefined
  /** What makes two tokens interchangeable, besides the provider and the endpoint. */
  readonly identity: (options: O) => Omit<TokenSource.Identity, "provider" | "endpoint">
  /** The refresh grant: sent with `Authorization: Bearer <access token>`. */
  readonly refresh?: {
    readonly path: string
    readonly params: (options: O, refreshToken: Redacted.Redacted<string>) => Params
  } | undefined
  readonly revoke?: {
    readonly path: string
    readonly params: (options: O, token: AccessToken.AccessToken) => Params
  } | undefined
}

/**
 * A token endpoint of the provider's own making (see `Exchange`), on core's `TokenExchange`: bounded,
 * statuses mapped to typed errors, malformed bodies described by field, secrets scrubbed.
 *
 * @since 0.2.0
 * @category token endpoints
 */
export const exchange: <O, A, I, FA = never, FI = never, const TH extends keyof O & string = never>(
  spec: Exchange<O, A, I, FA, FI, TH>
) => TokenEndpoint<O, TH> = internal.exchange

/**
 * A failure for statuses that mean the provider refused the request, whatever the body's shape: the code
 * and description come from wherever the common shapes put them (OAuth2 `error`, `code`, a NestJS
 * `message` list, `errors[0]`), with fallbacks for a body that says neither.
 *
 * @since 0.2.0
 * @category token endpoints
 */
export const refusal: (options: {
  readonly status: (status: number) => boolean
  readonly code: string
  readonly description?: string | undefined
}) => Failure<unknown, unknown> = internal.refusal

/**
 * The meaning `failure` gives a reply, as a token request's `refine`: a `ProviderError` scrubbed of
 * `secrets` when the status is one of its own and the body decodes, otherwise nothing.
 *
 * @since 0.2.0
 * @category token endpoints
 */
export const refine: <A, I>(
  provider: string,
  failure: Failure<A, I>
) => (
  secrets: ReadonlyArray<Redacted.Redacted<string>>
) => (reply: TokenExchange.Reply) => Option.Option<TollgateError.TokenError> = internal.refine

/**
 * A standard RFC 6749 token endpoint: core's `OAuth2` with the settings the options give (its URL, the
 * client authentication method, the scope).
 *
 * @since 0.2.0
 * @category token endpoints
 */
export const oauth2: <O>(
  settings: (options: O) => Omit<OAuth2.Options, "provider" | "timeout">
) => TokenEndpoint<O> = internal.oauth2
