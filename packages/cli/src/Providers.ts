/**
 * The providers the CLI knows: for each definition of `@tollgate/providers` (`Providers.all`), how to build
 * its authenticated client, token cache and limiter from the environment (the definition's own `config`,
 * so the same `NORA_CLIENT_ID`, … variables a service uses) or from a running sandbox (its emulator's
 * address, public test credentials and limits, scaled by the sandbox's time scale), and the documented
 * limit the summary measures against. The generic `oauth2` provider is built from explicit settings instead.
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as ApiClient from "@tollgate/core/ApiClient"
import * as CoreApiClient from "@tollgate/core/ApiClient"
import * as BaseUrl from "@tollgate/core/BaseUrl"
import * as OAuth2 from "@tollgate/core/OAuth2"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as TokenCache from "@tollgate/core/TokenCache"
import type * as Provider from "@tollgate/providers/Provider"
import * as Definitions from "@tollgate/providers/Providers"
import type * as Sandbox from "@tollgate/testing/Sandbox"
import type { Scope } from "effect"
import { ConfigError, Duration, Effect, Either, Redacted } from "effect"
import * as Testing from "./internal/testing.js"
import type * as Report from "./Report.js"

/**
 * A provider's name on the command line.
 *
 * @since 0.1.0
 * @category models
 */
export type Name = Preset | "oauth2"

/**
 * The providers with a definition of their own in `@tollgate/providers`, configured from the environment.
 *
 * @since 0.1.0
 * @category models
 */
export type Preset = Definitions.Name

/**
 * Settings every provider accepts on top of its credentials: limits, token cache, token timeout and
 * client tuning. The CLI uses them to keep `token`'s token alive after it exits, and to scale limits to a
 * sandbox's time.
 *
 * @since 0.1.0
 * @category models
 */
export interface Tuning extends Provider.Tuning {}

/**
 * A provider ready to use: its three services, and the limit in force (scaled when it is a sandbox's).
 *
 * @since 0.1.0
 * @category models
 */
export interface Built {
  readonly name: Name
  readonly client: ApiClient.Service
  readonly tokens: TokenCache.Service
  readonly limiter: RateLimiter.Service
  /** The limit the client enforces, when there is one. */
  readonly limit: Report.Limit | undefined
}

/**
 * One provider of `@tollgate/providers`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  readonly name: Preset
  readonly title: string
  /** The environment variables `fromEnv` reads, in the definition's order (required ones first). */
  readonly variables: ReadonlyArray<string>
  /** The provider's documented API limit; undefined when its docs give none. */
  readonly documentedLimit: Report.Limit | undefined
  /** The provider configured by its definition's `config` (its environment variables). */
  readonly fromEnv: (
    tuning?: Tuning
  ) => Effect.Effect<Built, ConfigError.ConfigError, HttpClient.HttpClient | Scope.Scope>
  /**
   * The provider pointed at its emulator in `sandbox`, with the emulator's test credentials and its limits
   * as the emulator enforces them (divided by its time scale).
   */
  readonly fromSandbox: (
    sandbox: Sandbox.Service,
    tuning?: Tuning
  ) => Effect.Effect<Built, ConfigError.ConfigError, HttpClient.HttpClient | Scope.Scope>
}

/**
 * The entry of a definition: the same few lines for every provider, its own or yours.
 *
 * @since 0.2.0
 * @category registry
 */
export const entry = (definition: Provider.Any): Entry => {
  const name = definition.name as Preset
  const limitOf = (limit: { readonly limit: number; readonly windowMillis: number }): Report.Limit => ({
    limit: limit.limit,
    windowMillis: limit.windowMillis,
    ...(definition.limit?.keyed === true ? { perEndpoint: true } : {})
  })
  const documentedLimit = definition.limit === undefined ? undefined : limitOf(definition.limit)
  const built = (limit: Report.Limit | undefined) => (services: Provider.Services): Built => ({
    name,
    ...services,
    limit
  })
  return {
    name,
    title: definition.title,
    variables: Object.values(definition.variables),
    documentedLimit,
    fromEnv: (tuning) =>
      Effect.flatMap(definition.config, (options) => definition.make({ ...options, ...tuning })).pipe(
        Effect.map(built(tuning?.limits === undefined ? documentedLimit : undefined))
      ),
    fromSandbox: (sandbox, tuning) =>
      Effect.gen(function*() {
        const served: ReadonlyArray<Sandbox.Service[keyof Sandbox.Service]> = Object.values(sandbox)
        const emulator = served.find((emulator) => emulator.provider === definition.name)
        if (emulator === undefined) return yield* Effect.dieMessage(`the sandbox has no ${definition.name} emulator`)
        // The emulator's limits, on its clock: its API limit in the definition's shape (per endpoint or
        // not), and its token endpoint's bucket where it has one (Norce's, by default 3 per minute, burst 20).
        const limit = emulator.rateLimit === undefined ? undefined : limitOf(emulator.rateLimit)
        const bucket = "tokenRateLimit" in emulator ? emulator.tokenRateLimit : undefined
        const options = yield* definition.parse({
          ...emulator.credentials,
          baseUrl: emulator.baseUrl,
          allowInsecureLoopback: true
        })
        const services = yield* definition.make({
          ...options,
          ...tuning,
          limits: tuning?.limits ??
            (limit === undefined
              ? undefined
              : definition.limitsFor({ ...limit, window: Duration.millis(limit.windowMillis) })),
          tokenLimits: bucket === undefined ? tuning?.tokenLimits : RateLimiter.tokenBucket({
            rate: 1,
            interval: Duration.millis(bucket.refillIntervalMillis),
            burst: bucket.capacity
          })
        })
        return built(tuning?.limits === undefined ? limit : undefined)(services)
      })
  }
}

/**
 * The providers with a definition of their own, in the order help lists them. Everything else the CLI
 * knows about providers (the names it accepts, their help, the lookup) is derived from this list.
 *
 * @since 0.2.0
 * @category registry
 */
export const presets: ReadonlyArray<Entry> = Definitions.all.map(entry)

/**
 * The providers by name.
 *
 * @since 0.1.0
 * @category registry
 */
export const registry: Readonly<Record<Preset, Entry>> = Object.fromEntries(
  presets.map((entry) => [entry.name, entry])
) as Record<Preset, Entry>

/**
 * Each provider's entry, by the name it had before the registry was a loop.
 *
 * @since 0.1.0
 * @category registry
 */
export const nora: Entry = registry["nora"],
  norce: Entry = registry["norce"],
  nomba: Entry = registry["nomba"],
  tokenProject: Entry = registry["token-project"]

/**
 * Every provider name, in the order help lists them.
 *
 * @since 0.1.0
 * @category constants
 */
export const names: ReadonlyArray<Name> = [...presets.map((entry) => entry.name), "oauth2"]

/**
 * @since 0.1.0
 * @category predicates
 */
export const isName = (value: string): value is Name => (names as ReadonlyArray<string>).includes(value)

// ---------------------------------------------------------------------------------------------------
// Generic OAuth2
// ---------------------------------------------------------------------------------------------------

/**
 * The generic provider: any RFC 6749 client-credentials server. Names are the command-line flags they
 * come from, so errors point at the flag to fix.
 *
 * @since 0.1.0
 * @category models
 */
export interface OAuth2Settings {
  readonly tokenUrl: string
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
  /** Default: `client_secret_basic`. */
  readonly authMethod?: OAuth2.AuthMethod | undefined
  readonly scope?: string | undefined
  readonly audience?: string | undefined
  /** The API's base URL; only `call` and `load` need it. */
  readonly baseUrl?: string | undefined
  /** Fixed headers on every API request. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly allowInsecureLoopback?: boolean | undefined
}

const validateUrl = (flag: string, url: string, allowInsecureLoopback: boolean | undefined) =>
  BaseUrl.validate(flag, url, { allowInsecureLoopback })

/**
 * The generic OAuth2 provider from explicit settings: core's `OAuth2` token source, a token cache, no
 * limit of its own (a 429 still closes the gate) and, with a base URL, the authenticated client. Bad
 * URLs fail with a `ConfigError` naming the flag before anything is sent.
 *
 * @since 0.1.0
 * @category registry
 */
export const oauth2 = (
  settings: OAuth2Settings,
  tuning?: Tuning
): Effect.Effect<Built, ConfigError.ConfigError, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const allow = settings.allowInsecureLoopback
    const tokenUrl = yield* validateUrl("--token-url", settings.tokenUrl, allow)
    const baseUrl = settings.baseUrl === undefined
      ? undefined
      : yield* validateUrl("--base-url", settings.baseUrl, allow)
    if (settings.clientId.trim().length === 0) {
      return yield* Either.left(ConfigError.InvalidData(["--client-id"], "the client id must not be empty"))
    }
    const source = yield* OAuth2.make({
      provider: "oauth2",
      tokenUrl,
      clientId: settings.clientId.trim(),
      clientSecret: settings.clientSecret,
      authMethod: settings.authMethod,
      scope: settings.scope,
      audience: settings.audience,
      timeout: tuning?.tokenTimeout
    }).pipe(Effect.mapError((error) => ConfigError.InvalidData([error.argument], error.message)))
    const tokens = yield* TokenCache.makeWithBackend(source, tuning?.tokenCache)
      .pipe(Effect.mapError((error) => ConfigError.InvalidData(["tokenCache"], error.message)))
    const limiter = yield* RateLimiter.makeWithBackend(tuning?.limits ?? RateLimiter.unlimited, { provider: "oauth2" })
      .pipe(Effect.mapError((error) => ConfigError.InvalidData(["limits"], error.message)))
    const client = yield* CoreApiClient.make({
      provider: "oauth2",
      baseUrl,
      headers: { ...tuning?.client?.headers, ...settings.headers },
      tokens,
      limiter,
      timeout: tuning?.client?.timeout,
      permitDeadline: tuning?.client?.permitDeadline,
      retry: tuning?.client?.retry,
      allowInsecureLoopback: allow
    }).pipe(Effect.mapError((error) =>
      ConfigError.InvalidData([error.argument.startsWith("headers") ? "--header" : "--base-url"], error.message)
    ))
    return { name: "oauth2", client, tokens, limiter, limit: undefined } satisfies Built
  })

/**
 * The generic provider's settings for the sandbox: the Norce emulator, which speaks standard OAuth2
 * (either client authentication), with its test client, and its `ApplicationId` header on API requests.
 *
 * @since 0.1.0
 * @category registry
 */
export const oauth2Sandbox = (sandbox: Sandbox.Service): Effect.Effect<OAuth2Settings> =>
  Effect.map(Testing.loaded, ({ NorceSandbox }) => ({
    tokenUrl: `${sandbox.norce.baseUrl}${NorceSandbox.tokenPaths.commerce}`,
    clientId: sandbox.norce.credentials.clientId,
    clientSecret: Redacted.make(sandbox.norce.credentials.clientSecret),
    baseUrl: sandbox.norce.baseUrl,
    headers: { ApplicationId: sandbox.norce.credentials.applicationId },
    allowInsecureLoopback: true
  }))
