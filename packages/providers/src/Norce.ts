/**
 * Norce Commerce and Norce Storm: standard OAuth2 client credentials (form-encoded, the client's id and
 * secret in the body, a space-delimited scope, by default the environment: `playground`, `stage` or
 * `prod`), a token endpoint limited to 3 requests per minute per IP with a burst of 20 more, and API
 * requests that carry the `ApplicationId` header. The API's own limits are not documented.
 *
 * Commerce's token endpoint lives on the client's host,
 * `https://[clientname].api-[region].[environment].norce.tech/identity/1.0/connect/token` (no environment
 * segment in production); Storm's is `https://identity.storm.io/1.0/connect/token`.
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as AccessToken from "@tollgate/core/AccessToken"
import type * as ApiClient from "@tollgate/core/ApiClient"
import * as OAuth2 from "@tollgate/core/OAuth2"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import type * as TokenCache from "@tollgate/core/TokenCache"
import type * as TokenSource from "@tollgate/core/TokenSource"
import type { Layer, Redacted, Scope } from "effect"
import { Config, ConfigError, Context, Effect, Either, Option } from "effect"
import * as Provider from "./internal/provider.js"

/**
 * The name Tollgate gives Norce in errors, logs, spans and metrics.
 *
 * @since 0.1.0
 * @category constants
 */
export const provider = "norce"

/**
 * A Norce environment: a segment of the Commerce host, and the default scope.
 *
 * @since 0.1.0
 * @category models
 */
export type Environment = "playground" | "stage" | "prod"

/**
 * The environments, which the docs' parameter table also lists as the scope values. Other scopes are
 * accepted too: the docs' own examples use `lab` and `production`.
 *
 * @since 0.1.0
 * @category constants
 */
export const environments: ReadonlyArray<Environment> = ["playground", "stage", "prod"]

/**
 * Which Norce: Commerce (token endpoint on the client's own host) or Storm (`identity.storm.io`).
 *
 * @since 0.1.0
 * @category models
 */
export type Platform = "commerce" | "storm"

/**
 * The token endpoint paths: Commerce's on the client's host, Storm's on `identity.storm.io`. Sandboxes
 * serve the same paths on loopback.
 *
 * @since 0.1.0
 * @category constants
 */
export const tokenPaths = {
  commerce: "/identity/1.0/connect/token",
  storm: "/1.0/connect/token"
} as const

/**
 * Norce Storm's token endpoint, the same for every Storm client.
 *
 * @since 0.1.0
 * @category constants
 */
export const stormTokenUrl = "https://identity.storm.io/1.0/connect/token"

/**
 * The only region the docs show (`api-se`).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultRegion = "se"

/**
 * "Max 3 requests per minute per IP address, with a possibility to burst 20 more." The token cache
 * takes a permit from this bucket before every token request, so a crash loop or a fleet starting at
 * once never gets the account throttled. It reads the sentence strictly: a burst of 20 in all (not 3 + 20),
 * refilled at 3 per minute, so it stays within either reading of the docs.
 *
 * @since 0.1.0
 * @category constants
 */
export const tokenEndpointLimits: RateLimiter.Policy = RateLimiter.tokenBucket({
  rate: 3,
  interval: "1 minute",
  burst: 20
})

/**
 * Norce documents no API limit: none of our own by default (a 429 still closes the client's gate).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLimits: RateLimiter.Policy = RateLimiter.unlimited

/**
 * Where a Commerce client lives: `[clientName].api-[region].[environment].norce.tech`.
 *
 * @since 0.1.0
 * @category models
 */
export interface CommerceHost {
  readonly clientName: string
  /** Default: "se". */
  readonly region?: string | undefined
  readonly environment: Environment
}

/**
 * The Commerce API's base URL: `https://[clientName].api-[region].[environment].norce.tech`, without
 * the environment segment for `prod`.
 *
 * @since 0.1.0
 * @category urls
 */
export const commerceBaseUrl = (host: CommerceHost): string =>
  `https://${host.clientName}.api-${host.region ?? defaultRegion}.${
    host.environment === "prod" ? "" : `${host.environment}.`
  }norce.tech`

/**
 * The Commerce token URL,
 * `https://[clientName].api-[region].[environment].norce.tech/identity/1.0/connect/token` (no
 * environment segment for `prod`).
 *
 * @since 0.1.0
 * @category urls
 */
export const commerceTokenUrl = (host: CommerceHost): string => `${commerceBaseUrl(host)}${tokenPaths.commerce}`

/**
 * The OAuth2 integration user from Norce Admin, and the application the API requests act on.
 *
 * @since 0.1.0
 * @category models
 */
export interface Credentials {
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
  /** Sent as the `ApplicationId` header on every API request. */
  readonly applicationId: string
}

/**
 * What the token source needs: credentials, scope, and where the token endpoint is.
 *
 * @since 0.1.0
 * @category models
 */
export interface SourceOptions extends Omit<Credentials, "applicationId"> {
  /** Default: "commerce". */
  readonly platform?: Platform | undefined
  /**
   * Space-delimited scope values, or a list of them: `playground`, `stage`, `prod` (the docs' table),
   * `lab`, `production` (the docs' examples), or any other RFC 6749 scope your integration user has.
   * Default: the environment.
   */
  readonly scope?: string | ReadonlyArray<string> | undefined
  /** Commerce: the client's name, the first label of its host. Not needed with `baseUrl` or `tokenUrl`. */
  readonly clientName?: string | undefined
  /** Commerce: default "se". */
  readonly region?: string | undefined
  /** Commerce: default "prod" (no environment segment in the host). */
  readonly environment?: Environment | undefined
  /**
   * The API's base URL. For Commerce the token endpoint is on the same host, so this moves both (a
   * sandbox on loopback serves the same paths). Required for Storm's API.
   */
  readonly baseUrl?: string | undefined
  /** The token endpoint, overriding everything above (Storm sandboxes, proxies). */
  readonly tokenUrl?: string | undefined
  readonly allowInsecureLoopback?: boolean | undefined
  /** Bound on each token request. Default: 15 seconds. */
  readonly timeout?: ApiClient.Options["timeout"]
  /** How to read token lifetimes. Default: core's (`expires_in` from the response). */
  readonly lifetime?: AccessToken.LifetimePolicy | undefined
}

/**
 * Everything `make` and `layer` accept: credentials and application, scope, where the token endpoint
 * and the API are, and any default to override.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Credentials, Omit<SourceOptions, "timeout">, Overrides {}

/**
 * Settings `layerConfig` accepts on top of the environment.
 *
 * @since 0.1.0
 * @category models
 */
export interface Overrides extends Provider.Tuning {
  /** The limit on token requests. Default: `tokenEndpointLimits` (3 per minute, burst 20). */
  readonly tokenLimits?: RateLimiter.Policy | undefined
  readonly lifetime?: AccessToken.LifetimePolicy | undefined
}

/**
 * What `make` returns: the authenticated client, the token cache and the limiter of Norce, the same
 * services the Layer provides under its Tags.
 *
 * @since 0.1.0
 * @category models
 */
export interface Services extends Provider.Services {}

/**
 * The authenticated Norce client: Bearer token and `ApplicationId` header on every request.
 *
 * @since 0.1.0
 * @category tags
 */
export class NorceClient
  extends Context.Tag("@tollgate/providers/Norce/NorceClient")<NorceClient, ApiClient.Service>()
{}

/**
 * Norce's token cache, whose token requests are paced by `tokenEndpointLimits`.
 *
 * @since 0.1.0
 * @category tags
 */
export class NorceTokens
  extends Context.Tag("@tollgate/providers/Norce/NorceTokens")<NorceTokens, TokenCache.Service>()
{}

/**
 * Norce's API request limiter, for its stats.
 *
 * @since 0.1.0
 * @category tags
 */
export class NorceLimiter
  extends Context.Tag("@tollgate/providers/Norce/NorceLimiter")<NorceLimiter, RateLimiter.Service>()
{}

/**
 * The names errors use for each setting: option names for `make`, variable names for `config`.
 *
 * @since 0.1.0
 * @category models
 */
export interface SettingNames {
  readonly scope: string
  readonly environment: string
  readonly clientName: string
  readonly region: string
  readonly baseUrl: string
  readonly tokenUrl: string
}

const optionNames: SettingNames = {
  scope: "scope",
  environment: "environment",
  clientName: "clientName",
  region: "region",
  baseUrl: "baseUrl",
  tokenUrl: "tokenUrl"
}

/**
 * The variables `config` reads.
 *
 * @since 0.1.0
 * @category constants
 */
export const variables = {
  clientId: "NORCE_CLIENT_ID",
  clientSecret: "NORCE_CLIENT_SECRET",
  applicationId: "NORCE_APPLICATION_ID",
  platform: "NORCE_PLATFORM",
  scope: "NORCE_SCOPE",
  environment: "NORCE_ENVIRONMENT",
  clientName: "NORCE_CLIENT_NAME",
  region: "NORCE_REGION",
  baseUrl: "NORCE_BASE_URL",
  tokenUrl: "NORCE_TOKEN_URL"
} as const

// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), printable ASCII but space, `"` and `\`.
const scopeToken = /^[\x21\x23-\x5B\x5D-\x7E]+$/

/**
 * Checks a scope: one or more RFC 6749 scope values (printable ASCII without `"` or `\`), space-delimited,
 * and returns it normalised (single spaces). The docs list `playground`, `stage` and `prod` and use
 * `lab` and `production` in their examples; which ones an integration user may request is the token
 * endpoint's to say (`invalid_scope`).
 *
 * @since 0.1.0
 * @category validation
 */
export const validateScope = (
  name: string,
  scope: string | ReadonlyArray<string>
): Either.Either<string, ConfigError.ConfigError> => {
  const values = (typeof scope === "string" ? scope.split(/\s+/) : scope.flatMap((s) => s.split(/\s+/)))
    .filter((s) => s.length > 0)
  if (values.length === 0) {
    return Either.left(
      ConfigError.InvalidData([name], "expected a space-delimited scope, such as playground, stage or prod")
    )
  }
  const malformed = values.filter((value) => !scopeToken.test(value))
  if (malformed.length > 0) {
    return Either.left(
      ConfigError.InvalidData(
        [name],
        `expected scope values of printable ASCII without quotes or backslashes (RFC 6749 §3.3), got ${
          JSON.stringify(malformed[0]!.slice(0, 40))
        }`
      )
    )
  }
  return Either.right([...new Set(values)].join(" "))
}

const isEnvironment = (value: string): value is Environment => (environments as ReadonlyArray<string>).includes(value)

const hostLabel = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i

/**
 * Where the token endpoint and the API are, and the scope (default: the environment), from the options:
 * every check `make` runs before anything is sent. Errors name the settings by `names`.
 *
 * @since 0.1.0
 * @category validation
 */
export const resolve = (
  options: Omit<SourceOptions, "clientId" | "clientSecret" | "timeout" | "lifetime">,
  names: SettingNames = optionNames
): Either.Either<
  { readonly tokenUrl: string; readonly baseUrl: Option.Option<string>; readonly scope: string },
  ConfigError.ConfigError
> =>
  Either.gen(function*() {
    const allow = options.allowInsecureLoopback
    const environment = options.environment ?? "prod"
    if (!isEnvironment(environment)) {
      return yield* Either.left(ConfigError.InvalidData([names.environment], "expected playground, stage or prod"))
    }
    const scope = yield* validateScope(names.scope, options.scope ?? environment)
    const explicitBase = options.baseUrl === undefined
      ? Option.none<string>()
      : Option.some(yield* Provider.url(names.baseUrl, options.baseUrl, allow))
    const explicitToken = options.tokenUrl === undefined
      ? Option.none<string>()
      : Option.some(yield* Provider.url(names.tokenUrl, options.tokenUrl, allow))
    if ((options.platform ?? "commerce") === "storm") {
      return { tokenUrl: Option.getOrElse(explicitToken, () => stormTokenUrl), baseUrl: explicitBase, scope }
    }
    // Commerce: the API and the token endpoint share the client's host.
    const base = Option.isSome(explicitBase) ? explicitBase.value : yield* Either.gen(function*() {
      const clientName = options.clientName
      if (clientName === undefined) {
        if (Option.isSome(explicitToken)) return ""
        return yield* Either.left(
          ConfigError.MissingData([names.clientName], "Norce Commerce needs the client name (or a base URL)")
        )
      }
      if (!hostLabel.test(clientName)) {
        return yield* Either.left(ConfigError.InvalidData([names.clientName], "expected a host name label"))
      }
      const region = options.region ?? defaultRegion
      if (!hostLabel.test(region)) {
        return yield* Either.left(ConfigError.InvalidData([names.region], "expected a host name label, like se"))
      }
      return commerceBaseUrl({ clientName, region, environment })
    })
    return {
      tokenUrl: Option.getOrElse(explicitToken, () => `${base}${tokenPaths.commerce}`),
      baseUrl: base.length === 0 ? Option.none() : Option.some(base),
      scope
    }
  })

// The API's base URL, which the token source alone does not need: Storm's API is not on a documented
// host, and Commerce's is built from the client name.
const requireApiUrl = (
  resolved: { readonly baseUrl: Option.Option<string> },
  options: { readonly platform?: Platform | undefined },
  names: Pick<SettingNames, "baseUrl" | "clientName"> = optionNames
): Either.Either<string, ConfigError.ConfigError> =>
  Option.match(resolved.baseUrl, {
    onSome: Either.right,
    onNone: () =>
      Either.left(
        ConfigError.MissingData(
          [names.baseUrl],
          (options.platform ?? "commerce") === "storm"
            ? "Norce Storm needs the API's base URL"
            : `Norce Commerce needs the API's base URL, or ${names.clientName} to build it`
        )
      )
  })

/**
 * Norce's token source: core's OAuth2 client credentials with `client_secret_post` (the docs: "send
 * client credentials in the body"), the validated scope (always sent: the docs give it no default), the resolved token URL. `invalid_client` is
 * `InvalidCredentials`; `invalid_scope` and other §5.2 codes are `ProviderError`; a 429 from the
 * endpoint is `TokenEndpointUnavailable` with its retry instant. Invalid options are a defect here;
 * `make` and `layer` report them as a `ConfigError` first.
 *
 * @since 0.1.0
 * @category constructors
 */
export const tokenSource = (options: SourceOptions): Effect.Effect<TokenSource.Service, never, HttpClient.HttpClient> =>
  Effect.suspend(() => {
    const resolved = Either.getOrThrowWith(resolve(options), (error) => new Error(String(error)))
    return OAuth2.make({
      provider,
      tokenUrl: resolved.tokenUrl,
      clientId: options.clientId,
      clientSecret: options.clientSecret,
      authMethod: "client_secret_post",
      scope: resolved.scope,
      timeout: options.timeout,
      lifetime: options.lifetime
    })
  })

/**
 * The token cache (paced by `tokenEndpointLimits`), the limiter and the client, alive for the current
 * scope. Fails with a `ConfigError` for a malformed scope, an unknown environment, a missing client
 * name, or an unacceptable URL; Storm needs `baseUrl` for its API.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<Services, ConfigError.ConfigError, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const baseUrl = yield* Either.flatMap(resolve(options), (resolved) => requireApiUrl(resolved, options))
    const source = yield* tokenSource({ ...options, timeout: options.tokenTimeout })
    return yield* Provider.build({
      provider,
      source,
      baseUrl,
      headers: { ApplicationId: options.applicationId },
      limits: defaultLimits,
      tokenLimits: options.tokenLimits ?? tokenEndpointLimits,
      tuning: options
    })
  })

/**
 * Provides `NorceClient`, `NorceTokens` and `NorceLimiter`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<NorceClient | NorceTokens | NorceLimiter, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Provider.layer({ client: NorceClient, tokens: NorceTokens, limiter: NorceLimiter }, make(options))

/**
 * The options from the environment: `NORCE_CLIENT_ID`, `NORCE_CLIENT_SECRET` (redacted),
 * `NORCE_APPLICATION_ID` (required, non-empty); `NORCE_PLATFORM` (`commerce`, the default, or `storm`);
 * `NORCE_ENVIRONMENT` (`playground`, `stage` or `prod`, default `prod`); `NORCE_SCOPE` (space-delimited,
 * default: the environment); `NORCE_CLIENT_NAME` and `NORCE_REGION` (default `se`) to build the Commerce host;
 * `NORCE_BASE_URL` and `NORCE_TOKEN_URL` to override it (`NORCE_BASE_URL` is required for Storm); and
 * `TOLLGATE_ALLOW_INSECURE_LOOPBACK`. Every inconsistency is a `ConfigError` naming the variable.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.mapOrFail(
  Config.all({
    clientId: Provider.required(variables.clientId),
    clientSecret: Provider.secret(variables.clientSecret),
    applicationId: Provider.required(variables.applicationId),
    platform: Config.withDefault(Config.literal("commerce", "storm")(variables.platform), "commerce" as const),
    environment: Config.withDefault(
      Config.literal("playground", "stage", "prod")(variables.environment),
      "prod" as const
    ),
    scope: Provider.optional(variables.scope),
    clientName: Provider.optional(variables.clientName),
    region: Provider.withDefault(variables.region, defaultRegion),
    baseUrl: Provider.optional(variables.baseUrl),
    tokenUrl: Provider.optional(variables.tokenUrl),
    allowInsecureLoopback: Provider.allowInsecureLoopback
  }),
  (read) => {
    const options: Options = {
      ...read,
      scope: Option.getOrUndefined(read.scope),
      clientName: Option.getOrUndefined(read.clientName),
      baseUrl: Option.getOrUndefined(read.baseUrl),
      tokenUrl: Option.getOrUndefined(read.tokenUrl)
    }
    return resolve(options, variables).pipe(
      Either.flatMap((resolved) => requireApiUrl(resolved, options, variables)),
      Either.map(() => options)
    )
  }
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
): Layer.Layer<NorceClient | NorceTokens | NorceLimiter, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Provider.layerConfig(config, overrides, layer)
