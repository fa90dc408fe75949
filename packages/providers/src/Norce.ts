/**
 * Norce Commerce and Norce Storm: standard OAuth2 client credentials (form-encoded, the client's id and
 * secret in the body, any RFC 6749 scope, by default the environment), a token endpoint limited to 3
 * requests per minute per IP with a burst of 20 more, and API requests that carry the `ApplicationId`
 * header. The API's own limits are not documented: none of our own (a 429 still closes the gate).
 *
 * @since 0.1.0
 */
import * as RateLimiter from "@tollgate/core/RateLimiter"
import type { Context } from "effect"
import { Either as E, Option as O, Schema } from "effect"
import * as Field from "./Field.js"
import * as Provider from "./Provider.js"
import * as TokenEndpoint from "./TokenEndpoint.js"

/** The environments: a segment of the Commerce host, the docs' scope values and the default scope.
 * @since 0.1.0
 * @category constants */
export const environments = ["playground", "stage", "prod"] as const

/** A Norce environment.
 * @since 0.1.0
 * @category models */
export type Environment = typeof environments[number]

/** Which Norce: Commerce (token endpoint on the client's own host) or Storm (`identity.storm.io`).
 * @since 0.1.0
 * @category models */
export type Platform = "commerce" | "storm"

/** The token endpoint paths (Commerce's on the client's host, a sandbox's too, Storm's on
 * `identity.storm.io`), Storm's token URL (the same for every Storm client), and the only region the docs
 * show (`api-se`).
 * @since 0.1.0
 * @category constants */
export const tokenPaths = { commerce: "/identity/1.0/connect/token", storm: "/1.0/connect/token" } as const,
  stormTokenUrl = "https://identity.storm.io/1.0/connect/token",
  defaultRegion = "se"

/** "Max 3 requests per minute per IP address, with a possibility to burst 20 more", read strictly (a burst
 * of 20 in all, refilled at 3 per minute): the token cache takes a permit before every token request.
 * @since 0.1.0
 * @category constants */
export const tokenEndpointLimits = RateLimiter.tokenBucket({ rate: 3, interval: "1 minute", burst: 20 })

/** Where a Commerce client lives: `[clientName].api-[region].[environment].norce.tech`.
 * @since 0.1.0
 * @category models */
export type CommerceHost = { clientName: string; region?: string | undefined; environment: Environment }

/** The Commerce API's base URL, without the environment segment for `prod`.
 * @since 0.1.0
 * @category urls */
export const commerceBaseUrl = (host: CommerceHost): string =>
  `https://${host.clientName}.api-${host.region ?? defaultRegion}.${
    host.environment === "prod" ? "" : `${host.environment}.`
  }norce.tech`

/** The Commerce token URL: the base URL and `/identity/1.0/connect/token`.
 * @since 0.1.0
 * @category urls */
export const commerceTokenUrl = (host: CommerceHost): string => `${commerceBaseUrl(host)}${tokenPaths.commerce}`

// Where the token endpoint and the API are: `baseUrl` moves both for Commerce, `tokenUrl` overrides.
const location = {
  platform: Field.optional(Field.oneOf("commerce", "storm"), "commerce"),
  environment: Field.optional(Field.oneOf(...environments), "prod"),
  scope: Field.optional(Field.Scope),
  clientName: Field.optional(Field.HostLabel),
  region: Field.optional(Field.HostLabel, defaultRegion),
  baseUrl: Field.optional(Field.Url),
  tokenUrl: Field.optional(Field.Url),
  allowInsecureLoopback: Field.optional(Schema.Boolean)
}
type Location = Schema.Struct.Type<typeof location>
type LocationOptions = Partial<Provider.Loose<Schema.Struct.Encoded<typeof location>>>

const hostOf = (o: Location) =>
  o.baseUrl ??
    (o.platform === "commerce" && o.clientName !== undefined
      ? commerceBaseUrl({ ...o, clientName: o.clientName })
      : undefined)
const tokenUrlOf = (o: Location) =>
  o.tokenUrl ?? (o.platform === "storm" ? stormTokenUrl : `${hostOf(o) ?? ""}${tokenPaths.commerce}`)

const tokenRule = (o: Location) =>
  o.platform === "commerce" && o.tokenUrl === undefined && hostOf(o) === undefined
    ? Field.missing("clientName", "Norce Commerce needs the client name (or a base URL)")
    : undefined
const apiRule = (o: Location) =>
  hostOf(o) === undefined
    ? Field.missing("baseUrl", `Norce ${o.platform === "storm" ? "Storm" : "Commerce"} needs the API's base URL`)
    : undefined

/** Norce as a definition: everything else in this module is read from it.
 * @since 0.2.0
 * @category definitions */
export const definition = Provider.define({
  clientId: Field.Text,
  clientSecret: Field.Secret,
  applicationId: Field.Text,
  ...location
}, {
  name: "norce",
  title: "Norce Commerce / Storm",
  key: "@tollgate/providers/Norce/Norce",
  variables: {
    clientId: "NORCE_CLIENT_ID",
    clientSecret: "NORCE_CLIENT_SECRET",
    applicationId: "NORCE_APPLICATION_ID",
    clientName: "NORCE_CLIENT_NAME",
    baseUrl: "NORCE_BASE_URL",
    platform: "NORCE_PLATFORM",
    environment: "NORCE_ENVIRONMENT",
    scope: "NORCE_SCOPE",
    region: "NORCE_REGION",
    tokenUrl: "NORCE_TOKEN_URL"
  },
  baseUrl: hostOf,
  rules: { token: tokenRule, api: apiRule },
  headers: { ApplicationId: "applicationId" },
  // The docs: "send client credentials in the body"; the scope is always sent, as the docs give no default.
  token: TokenEndpoint.oauth2((o) => ({
    tokenUrl: tokenUrlOf(o),
    clientId: o.clientId,
    clientSecret: o.clientSecret,
    authMethod: "client_secret_post",
    scope: o.scope ?? o.environment
  })),
  tokenLimits: tokenEndpointLimits
})

/** The names errors use for each setting: option names for `make`, variable names for `config`.
 * @since 0.1.0
 * @category models */
export interface SettingNames extends Partial<Record<keyof typeof location, string>> {}

const decodeLocation = Field.decoder(location, [tokenRule])

/** Where the token endpoint and the API are, and the scope (default: the environment), errors named by `names`.
 * @since 0.1.0
 * @category validation */
export const resolve = (options: LocationOptions, names?: SettingNames) =>
  E.map(decodeLocation(options, names), (o) => ({
    tokenUrl: tokenUrlOf(o),
    baseUrl: O.fromNullable(hostOf(o)),
    scope: o.scope ?? o.environment
  }))

/** Any RFC 6749 scope (the docs' examples use `lab` and `production` too), normalised to single spaces.
 * @since 0.1.0
 * @category validation */
export const validateScope = (name: string, value: string | ReadonlyArray<string>) =>
  Field.validate(Field.Scope, name, value)

// What every provider module offers, read from its definition (`Provider.Definition` documents each).

/** @since 0.1.0
 * @category constants */
export const provider = definition.name, variables = definition.variables, defaultLimits = definition.defaultLimits
/** @since 0.1.0
 * @category tags */
export const NorceClient = definition.tags.client,
  NorceTokens = definition.tags.tokens,
  NorceLimiter = definition.tags.limiter
/** @since 0.1.0
 * @category tags */
export type NorceClient = Context.Tag.Identifier<typeof NorceClient>
/** @since 0.1.0
 * @category tags */
export type NorceTokens = Context.Tag.Identifier<typeof NorceTokens>
/** @since 0.1.0
 * @category tags */
export type NorceLimiter = Context.Tag.Identifier<typeof NorceLimiter>
/** @since 0.1.0
 * @category models */
export interface Options extends Provider.OptionsOf<typeof definition> {}
/** @since 0.1.0
 * @category models */
export interface Credentials extends Pick<Options, "clientId" | "clientSecret" | "applicationId"> {}
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
 * import { Norce } from "@tollgate/providers"
 * import { NorceSandbox, Sandbox } from "@tollgate/testing"
 * import { Effect, Redacted } from "effect"
 *
 * const { clientId, clientSecret, applicationId } = NorceSandbox.defaultCredentials
 * const options = {
 *   clientId,
 *   clientSecret: Redacted.make(clientSecret),
 *   applicationId,
 *   baseUrl: "https://norce.sandbox.test"
 * }
 *
 * Effect.gen(function*() {
 *   // The provider's emulator, reached in memory; in production the HttpClient is undici or fetch.
 *   const emulator = yield* NorceSandbox.make()
 *   const http = Sandbox.makeClient(() => emulator.app)
 *   const services = yield* Effect.provideService(Norce.make(options), HttpClient.HttpClient, http)
 *   console.log((yield* services.client.get("/commerce/metadata/1.1/GetApplication?format=json")).status) // 200
 *   // The token source alone, without the cache and the limiter.
 *   const source = yield* Effect.provideService(Norce.tokenSource(options), HttpClient.HttpClient, http)
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
 * import { Norce } from "@tollgate/providers"
 * import { NorceSandbox, Sandbox } from "@tollgate/testing"
 * import { ConfigProvider, Effect, Layer } from "effect"
 *
 * // `layerConfig()` reads the NORCE_* variables, here from a map; `layer(options)` takes the options as values.
 * const { clientId, clientSecret, applicationId } = NorceSandbox.defaultCredentials
 * const environment = ConfigProvider.fromMap(
 *   new Map([
 *     ["NORCE_CLIENT_ID", clientId],
 *     ["NORCE_CLIENT_SECRET", clientSecret],
 *     ["NORCE_APPLICATION_ID", applicationId],
 *     ["NORCE_BASE_URL", "https://norce.sandbox.test"]
 *   ])
 * )
 * const Live = Layer.unwrapEffect(Effect.map(NorceSandbox.make(), (emulator) =>
 *   Norce.layerConfig().pipe(
 *     Layer.provide(Layer.succeed(HttpClient.HttpClient, Sandbox.makeClient(() => emulator.app))),
 *     Layer.provide(Layer.setConfigProvider(environment))
 *   )))
 *
 * Effect.flatMap(Norce.NorceClient, (client) => client.get("/commerce/metadata/1.1/GetApplication?format=json")).pipe(
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
