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
import * as TokenExchange from "@tollgate/core/TokenExchange"
import type { Context } from "effect"
import { Duration, Schema } from "effect"
import * as Field from "./Field.js"
import * as Provider from "./Provider.js"
import * as TokenEndpoint from "./TokenEndpoint.js"

/** The documented API host ("All API requests are made to https://main.formflow-dev.net").
 * @since 0.1.0
 * @category constants */
export const defaultBaseUrl = "https://main.formflow-dev.net"

/** The token endpoint's path on the base URL.
 * @since 0.1.0
 * @category constants */
export const tokenPath = "/api/token"

/** Tokens are valid for 3600 seconds: a larger `expires_in` is clamped to it, so a misbehaving response
 * cannot make Tollgate hold a token longer than Nora says it lives.
 * @since 0.1.0
 * @category constants */
export const maxLifetime: Duration.Duration = Duration.hours(1)

/** The documented 200 body: `{ token, expires_in, token_type }`.
 * @since 0.1.0
 * @category schemas */
export const TokenResponse = Schema.Struct({
  token: Schema.String,
  expires_in: TokenExchange.Seconds,
  token_type: Schema.optional(Schema.NullOr(Schema.String))
})

// "400 bad request - missing or invalid parameters", with a NestJS body (`{ statusCode, message, error }`):
// a `ProviderError` with its text, scrubbed of the secret. 401, 429 and 5xx keep core's meaning.
const badRequest = TokenEndpoint.refusal({
  status: (status) => status === 400,
  code: "Bad Request",
  description: "missing or invalid parameters"
})

/** Nora as a definition: everything else in this module is read from it.
 * @since 0.2.0
 * @category definitions */
export const definition = Provider.define({
  clientId: Field.Text,
  clientSecret: Field.Secret,
  organizationId: Field.Text
}, {
  name: "nora",
  title: "Nora (Formflow)",
  key: "@tollgate/providers/Nora/Nora",
  variables: {
    clientId: "NORA_CLIENT_ID",
    clientSecret: "NORA_CLIENT_SECRET",
    organizationId: "NORA_ORGANIZATION_ID",
    baseUrl: "NORA_BASE_URL"
  },
  baseUrl: defaultBaseUrl,
  token: TokenEndpoint.exchange({
    path: tokenPath,
    encoding: "json",
    params: (o) => ({ clientId: o.clientId, clientSecret: o.clientSecret, organizationId: o.organizationId }),
    success: TokenResponse,
    token: (body) => ({
      value: body.token,
      valueField: "token",
      type: body.token_type ?? undefined,
      expiresIn: body.expires_in
    }),
    failure: badRequest,
    identity: (o) => ({ clientId: o.clientId, extra: { organizationId: o.organizationId } })
  }),
  lifetime: () => ({ maxLifetime }),
  // "60 requests per minute", as a sliding window so that no minute at the server ever sees 61, token
  // requests included: they take their permits from the same limiter (so do a `limits` configured instead).
  limit: { limit: 60, window: "1 minute" },
  tokenRequestsCount: true
})

/** The meaning of a 400, as a token request's `refine` (the definition's own reading of Nora's replies).
 * @since 0.1.0
 * @category decoding */
export const refineError = TokenEndpoint.refine(definition.name, badRequest)

// What every provider module offers, read from its definition (`Provider.Definition` documents each).

/** @since 0.1.0
 * @category constants */
export const provider = definition.name, defaultLimits = definition.defaultLimits
/** @since 0.1.0
 * @category tags */
export const NoraClient = definition.tags.client,
  NoraTokens = definition.tags.tokens,
  NoraLimiter = definition.tags.limiter
/** @since 0.1.0
 * @category tags */
export type NoraClient = Context.Tag.Identifier<typeof NoraClient>
/** @since 0.1.0
 * @category tags */
export type NoraTokens = Context.Tag.Identifier<typeof NoraTokens>
/** @since 0.1.0
 * @category tags */
export type NoraLimiter = Context.Tag.Identifier<typeof NoraLimiter>
/** @since 0.1.0
 * @category models */
export interface Options extends Provider.OptionsOf<typeof definition> {}
/** @since 0.1.0
 * @category models */
export interface Credentials extends Pick<Options, "clientId" | "clientSecret" | "organizationId"> {}
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
 * import { Nora } from "@tollgate/providers"
 * import { NoraSandbox, Sandbox } from "@tollgate/testing"
 * import { Effect, Redacted } from "effect"
 *
 * const { clientId, clientSecret, organizationId } = NoraSandbox.defaultCredentials
 * const options = {
 *   clientId,
 *   clientSecret: Redacted.make(clientSecret),
 *   organizationId,
 *   baseUrl: "https://nora.sandbox.test"
 * }
 *
 * Effect.gen(function*() {
 *   // The provider's emulator, reached in memory; in production the HttpClient is undici or fetch.
 *   const emulator = yield* NoraSandbox.make()
 *   const http = Sandbox.makeClient(() => emulator.app)
 *   const services = yield* Effect.provideService(Nora.make(options), HttpClient.HttpClient, http)
 *   console.log((yield* services.client.get("/api/forms")).status) // 200
 *   // The token source alone, without the cache and the limiter.
 *   const source = yield* Effect.provideService(Nora.tokenSource(options), HttpClient.HttpClient, http)
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
 * import { Nora } from "@tollgate/providers"
 * import { NoraSandbox, Sandbox } from "@tollgate/testing"
 * import { ConfigProvider, Effect, Layer } from "effect"
 *
 * // `layerConfig()` reads the NORA_* variables, here from a map; `layer(options)` takes the options as values.
 * const { clientId, clientSecret, organizationId } = NoraSandbox.defaultCredentials
 * const environment = ConfigProvider.fromMap(
 *   new Map([
 *     ["NORA_CLIENT_ID", clientId],
 *     ["NORA_CLIENT_SECRET", clientSecret],
 *     ["NORA_ORGANIZATION_ID", organizationId],
 *     ["NORA_BASE_URL", "https://nora.sandbox.test"]
 *   ])
 * )
 * const Live = Layer.unwrapEffect(Effect.map(NoraSandbox.make(), (emulator) =>
 *   Nora.layerConfig().pipe(
 *     Layer.provide(Layer.succeed(HttpClient.HttpClient, Sandbox.makeClient(() => emulator.app))),
 *     Layer.provide(Layer.setConfigProvider(environment))
 *   )))
 *
 * Effect.flatMap(Nora.NoraClient, (client) => client.get("/api/forms")).pipe(
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
