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
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as TollgateError from "@tollgate/core/TollgateError"
import type { Context } from "effect"
import { Duration, Effect, Either, Schema } from "effect"
import * as Field from "./Field.js"
import * as Provider from "./Provider.js"
import * as TokenEndpoint from "./TokenEndpoint.js"

/** The documented production host; point `baseUrl` at a sandbox for tests.
 * @since 0.1.0
 * @category constants */
export const defaultBaseUrl = "https://api.nomba.com"

/** The three token endpoints, relative to the base URL.
 * @since 0.1.0
 * @category constants */
export const paths = {
  issue: "/v1/auth/token/issue",
  refresh: "/v1/auth/token/refresh",
  revoke: "/v1/auth/token/revoke"
}

/** "Access tokens expire after 30 minutes": an `expiresAt` further away (a skewed server clock) is clamped.
 * @since 0.1.0
 * @category constants */
export const maxLifetime: Duration.Duration = Duration.minutes(30)

/** The code of a successful answer.
 * @since 0.1.0
 * @category constants */
export const successCode = "00"

/** A refusal: any `code` other than "00" (a string, a number, even `null`), whatever the HTTP status.
 * @since 0.2.0
 * @category schemas */
export const Refusal = Schema.Struct({
  code: Schema.Union(Schema.String, Schema.Number, Schema.Null).pipe(Schema.filter((code) => code !== successCode)),
  description: Schema.optional(Schema.NullOr(Schema.String))
})

/** Nomba's envelope, a union on `code`: `{ code: "00", description, data }`, or a `Refusal`.
 * @since 0.2.0
 * @category schemas */
export const Envelope = <A, I>(data: Schema.Schema<A, I>) =>
  Schema.Union(
    Schema.Struct({
      code: Schema.Literal(successCode),
      description: Schema.optional(Schema.NullOr(Schema.String)),
      data
    }),
    Refusal
  )

/** A successful issue or refresh: `data: { businessId, access_token, refresh_token, expiresAt }` (ISO).
 * @since 0.1.0
 * @category schemas */
export const TokenResponse = Envelope(Schema.Struct({
  businessId: Schema.optional(Schema.NullOr(Schema.String)),
  access_token: Schema.String,
  refresh_token: Schema.optional(Schema.NullOr(Schema.String)),
  expiresAt: Schema.DateTimeUtc
})).members[0]

const refusal = (body: typeof Refusal.Type): TokenEndpoint.Refusal => ({
  code: body.code === null ? "unknown" : String(body.code),
  description: body.description ?? undefined
})

// For every status but 401/403 (rejected), 408, 429 and 5xx (outages), whose meaning core keeps.
const failure: TokenEndpoint.Failure<typeof Refusal.Type, typeof Refusal.Encoded> = { schema: Refusal, read: refusal }

/** Nomba as a definition: everything else in this module is read from it.
 * @since 0.2.0
 * @category definitions */
export const definition = Provider.define({
  clientId: Field.Text,
  clientSecret: Field.Secret,
  accountId: Field.Text
}, {
  name: "nomba",
  title: "Nomba",
  key: "@tollgate/providers/Nomba/Nomba",
  variables: {
    clientId: "NOMBA_CLIENT_ID",
    clientSecret: "NOMBA_CLIENT_SECRET",
    accountId: "NOMBA_ACCOUNT_ID",
    baseUrl: "NOMBA_BASE_URL"
  },
  baseUrl: defaultBaseUrl,
  headers: { accountId: "accountId" },
  token: TokenEndpoint.exchange({
    path: paths.issue,
    encoding: "json",
    headers: { accountId: "accountId" },
    params: (o) => ({ grant_type: "client_credentials", client_id: o.clientId, client_secret: o.clientSecret }),
    success: TokenResponse,
    token: ({ data }) => ({
      value: data.access_token,
      valueField: "data.access_token",
      refreshToken: data.refresh_token ?? undefined,
      expiresAt: data.expiresAt
    }),
    failure,
    identity: (o) => ({ clientId: o.clientId, extra: { accountId: o.accountId } }),
    refresh: { path: paths.refresh, params: (_, token) => ({ grant_type: "refresh_token", refresh_token: token }) },
    revoke: { path: paths.revoke, params: (o, token) => ({ clientId: o.clientId, access_token: token.value }) }
  }),
  lifetime: () => ({ maxLifetime }),
  // Nomba's documented refresh lead, kept even though core's default for a 30-minute token is shorter.
  tokenCache: { refreshBefore: Duration.minutes(5) }
  // No documented API limit: none of our own (a 429 still closes the gate); pass `limits` when you know it.
})

const decodeEnvelope = Schema.decodeUnknownEither(Envelope(Schema.Unknown), { onExcessProperty: "ignore" })

/** Reads a Nomba API response: the `data` of a `{ code: "00", data }` envelope, or a `ProviderError` with
 * the code and description when the code is anything else, whatever the HTTP status.
 * @since 0.1.0
 * @category decoding */
export const envelope = (
  response: HttpClientResponse.HttpClientResponse
): Effect.Effect<unknown, TollgateError.ProviderError | HttpClientError.ResponseError> =>
  Effect.flatMap(response.json, (body) => {
    const decoded = Either.getOrUndefined(decodeEnvelope(body))
    if (decoded !== undefined && "data" in decoded) return Effect.succeed(decoded.data)
    const refused = decoded === undefined ? undefined : refusal(decoded)
    return Effect.fail(
      new TollgateError.ProviderError({
        provider: definition.name,
        code: refused?.code ?? `HTTP ${response.status}`,
        description: refused === undefined ? "the answer is not a Nomba envelope" : refused.description?.slice(0, 300),
        status: response.status
      })
    )
  })

/** The meaning of a refusal, as a token request's `refine` (the definition's own reading of Nomba's replies).
 * @since 0.1.0
 * @category decoding */
export const refineCode = TokenEndpoint.refine("nomba", failure)

// What every provider module offers, read from its definition (`Provider.Definition` documents each).

/** @since 0.1.0
 * @category constants */
export const provider = definition.name, defaultLimits = definition.defaultLimits
/** @since 0.1.0
 * @category tags */
export const NombaClient = definition.tags.client,
  NombaTokens = definition.tags.tokens,
  NombaLimiter = definition.tags.limiter
/** @since 0.1.0
 * @category tags */
export type NombaClient = Context.Tag.Identifier<typeof NombaClient>
/** @since 0.1.0
 * @category tags */
export type NombaTokens = Context.Tag.Identifier<typeof NombaTokens>
/** @since 0.1.0
 * @category tags */
export type NombaLimiter = Context.Tag.Identifier<typeof NombaLimiter>
/** @since 0.1.0
 * @category models */
export interface Options extends Provider.OptionsOf<typeof definition> {}
/** @since 0.1.0
 * @category models */
export interface Credentials extends Pick<Options, "clientId" | "clientSecret" | "accountId"> {}
/** @since 0.1.0
 * @category models */
export interface SourceOptions extends Provider.SourceOptionsOf<typeof definition> {}
/** @since 0.1.0
 * @category models */
export interface Overrides extends Partial<Options> {}
/** @since 0.1.0
 * @category models */
export interface Services extends Provider.Services {}
/**
 * @example
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { Nomba } from "@tollgate/providers"
 * import { NombaSandbox, Sandbox } from "@tollgate/testing"
 * import { Effect, Redacted } from "effect"
 *
 * const { clientId, clientSecret, accountId } = NombaSandbox.defaultCredentials
 * const options = {
 *   clientId,
 *   clientSecret: Redacted.make(clientSecret),
 *   accountId,
 *   baseUrl: "https://nomba.sandbox.test"
 * }
 *
 * Effect.gen(function*() {
 *   // The provider's emulator, reached in memory; in production the HttpClient is undici or fetch.
 *   const emulator = yield* NombaSandbox.make()
 *   const http = Sandbox.makeClient(() => emulator.app)
 *   const services = yield* Effect.provideService(Nomba.make(options), HttpClient.HttpClient, http)
 *   console.log((yield* services.client.get("/v1/accounts")).status) // 200
 *   // The token source alone, without the cache and the limiter.
 *   const source = yield* Effect.provideService(Nomba.tokenSource(options), HttpClient.HttpClient, http)
 *   console.log((yield* source.fetch).type) // "Bearer"
 * }).pipe(Effect.scoped, Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = definition.make, tokenSource = definition.tokenSource
/**
 * @example
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { Nomba } from "@tollgate/providers"
 * import { NombaSandbox, Sandbox } from "@tollgate/testing"
 * import { ConfigProvider, Effect, Layer } from "effect"
 *
 * // `layerConfig()` reads the NOMBA_* variables, here from a map; `layer(options)` takes the options as values.
 * const { clientId, clientSecret, accountId } = NombaSandbox.defaultCredentials
 * const environment = ConfigProvider.fromMap(
 *   new Map([
 *     ["NOMBA_CLIENT_ID", clientId],
 *     ["NOMBA_CLIENT_SECRET", clientSecret],
 *     ["NOMBA_ACCOUNT_ID", accountId],
 *     ["NOMBA_BASE_URL", "https://nomba.sandbox.test"]
 *   ])
 * )
 * const Live = Layer.unwrapEffect(Effect.map(NombaSandbox.make(), (emulator) =>
 *   Nomba.layerConfig().pipe(
 *     Layer.provide(Layer.succeed(HttpClient.HttpClient, Sandbox.makeClient(() => emulator.app))),
 *     Layer.provide(Layer.setConfigProvider(environment))
 *   )))
 *
 * Effect.flatMap(Nomba.NombaClient, (client) => client.get("/v1/accounts")).pipe(
 *   Effect.map((response) => console.log(response.status)), // 200
 *   Effect.provide(Live),
 *   Effect.runPromise
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = definition.layer, layerConfig = definition.layerConfig
/** @since 0.1.0
 * @category config */
export const config = definition.config
