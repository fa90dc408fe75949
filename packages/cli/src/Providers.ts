/**
 * The providers the CLI knows: for each, how to build its authenticated client, token cache and limiter
 * from the environment (the provider module's own `config`, so the same `NORA_CLIENT_ID`, … variables a
 * service uses) or from a running sandbox (its emulator's address, public test credentials and limits,
 * scaled by the sandbox's time scale), and the documented limit the summary measures against. The
 * generic `oauth2` provider is built from explicit settings instead.
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
import * as Nomba from "@tollgate/providers/nomba"
import * as Nora from "@tollgate/providers/nora"
import * as Norce from "@tollgate/providers/norce"
import * as TokenProject from "@tollgate/providers/token-project"
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
export type Name = "nora" | "norce" | "nomba" | "token-project" | "oauth2"

/**
 * The providers with a module of their own in `@tollgate/providers`, configured from the environment.
 *
 * @since 0.1.0
 * @category models
 */
export type Preset = Exclude<Name, "oauth2">

/**
 * Settings every provider module accepts on top of its credentials: limits, token cache, token timeout
 * and client tuning. The CLI uses them to keep `token`'s token alive after it exits, and to scale limits
 * to a sandbox's time.
 *
 * @since 0.1.0
 * @category models
 */
export interface Tuning extends Nora.Overrides {}

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
  /** The environment variables `fromEnv` reads, required ones first. */
  readonly variables: ReadonlyArray<string>
  /** The provider's documented API limit; undefined when its docs give none. */
  readonly documentedLimit: Report.Limit | undefined
  /** The provider configured by its module's `config` (its environment variables). */
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

const built = (name: Name, limit: Report.Limit | undefined) => (services: Nora.Services): Built => ({
  name,
  client: services.client,
  tokens: services.tokens,
  limiter: services.limiter,
  limit
})

const slidingLimit = (limit: Report.Limit): RateLimiter.Policy =>
  RateLimiter.slidingWindow({ limit: limit.limit, window: Duration.millis(limit.windowMillis) })

const noraLimit: Report.Limit = { limit: 60, windowMillis: 60_000 }
const tokenProjectLimit: Report.Limit = { limit: 10, windowMillis: 120_000, perEndpoint: true }

/**
 * Nora (Formflow): `NORA_CLIENT_ID`, `NORA_CLIENT_SECRET`, `NORA_ORGANIZATION_ID`, `NORA_BASE_URL`.
 *
 * @since 0.1.0
 * @category registry
 */
export const nora: Entry = {
  name: "nora",
  title: "Nora (Formflow)",
  variables: ["NORA_CLIENT_ID", "NORA_CLIENT_SECRET", "NORA_ORGANIZATION_ID", "NORA_BASE_URL"],
  documentedLimit: noraLimit,
  fromEnv: (tuning) =>
    Effect.flatMap(Nora.config, (options) => Nora.make({ ...options, ...tuning })).pipe(
      Effect.map(built("nora", tuning?.limits === undefined ? noraLimit : undefined))
    ),
  fromSandbox: (sandbox, tuning) => {
    const emulator = sandbox.nora
    const limit: Report.Limit = { limit: emulator.rateLimit.limit, windowMillis: emulator.rateLimit.windowMillis }
    return Nora.make({
      ...tuning,
      clientId: emulator.credentials.clientId,
      clientSecret: Redacted.make(emulator.credentials.clientSecret),
      organizationId: emulator.credentials.organizationId,
      baseUrl: emulator.baseUrl,
      allowInsecureLoopback: true,
      limits: tuning?.limits ?? slidingLimit(limit)
    }).pipe(Effect.map(built("nora", tuning?.limits === undefined ? limit : undefined)))
  }
}

/**
 * Norce Commerce / Storm: `NORCE_CLIENT_ID`, `NORCE_CLIENT_SECRET`, `NORCE_APPLICATION_ID`, and where the
 * client lives (`NORCE_CLIENT_NAME` or `NORCE_BASE_URL`, …). No documented API limit.
 *
 * @since 0.1.0
 * @category registry
 */
export const norce: Entry = {
  name: "norce",
  title: "Norce Commerce / Storm",
  variables: [
    Norce.variables.clientId,
    Norce.variables.clientSecret,
    Norce.variables.applicationId,
    Norce.variables.clientName,
    Norce.variables.baseUrl,
    Norce.variables.platform,
    Norce.variables.environment,
    Norce.variables.scope,
    Norce.variables.region,
    Norce.variables.tokenUrl
  ],
  documentedLimit: undefined,
  fromEnv: (tuning) =>
    Effect.flatMap(Norce.config, (options) => Norce.make({ ...options, ...tuning })).pipe(
      Effect.map(built("norce", undefined))
    ),
  fromSandbox: (sandbox, tuning) => {
    const emulator = sandbox.norce
    return Norce.make({
      ...tuning,
      clientId: emulator.credentials.clientId,
      clientSecret: Redacted.make(emulator.credentials.clientSecret),
      applicationId: emulator.credentials.applicationId,
      baseUrl: emulator.baseUrl,
      allowInsecureLoopback: true,
      // The emulator's token bucket (by default the documented 3 per minute, burst 20), on its clock.
      tokenLimits: RateLimiter.tokenBucket({
        rate: 1,
        interval: Duration.millis(emulator.tokenRateLimit.refillIntervalMillis),
        burst: emulator.tokenRateLimit.capacity
      })
    }).pipe(Effect.map(built("norce", undefined)))
  }
}

/**
 * Nomba: `NOMBA_CLIENT_ID`, `NOMBA_CLIENT_SECRET`, `NOMBA_ACCOUNT_ID`, `NOMBA_BASE_URL`. No documented
 * limit; tokens are refreshed and revoked.
 *
 * @since 0.1.0
 * @category registry
 */
export const nomba: Entry = {
  name: "nomba",
  title: "Nomba",
  variables: ["NOMBA_CLIENT_ID", "NOMBA_CLIENT_SECRET", "NOMBA_ACCOUNT_ID", "NOMBA_BASE_URL"],
  documentedLimit: undefined,
  fromEnv: (tuning) =>
    Effect.flatMap(Nomba.config, (options) => Nomba.make({ ...options, ...tuning })).pipe(
      Effect.map(built("nomba", undefined))
    ),
  fromSandbox: (sandbox, tuning) => {
    const emulator = sandbox.nomba
    return Nomba.make({
      ...tuning,
      clientId: emulator.credentials.clientId,
      clientSecret: Redacted.make(emulator.credentials.clientSecret),
      accountId: emulator.credentials.accountId,
      baseUrl: emulator.baseUrl,
      allowInsecureLoopback: true
    }).pipe(Effect.map(built("nomba", undefined)))
  }
}

/**
 * The Token project: `TOKEN_PROJECT_KEY`, `TOKEN_PROJECT_SECRET`, `TOKEN_PROJECT_BASE_URL`,
 * `TOKEN_PROJECT_TOKEN_LIFETIME`. 10 requests per 2 minutes per endpoint.
 *
 * @since 0.1.0
 * @category registry
 */
export const tokenProject: Entry = {
  name: "token-project",
  title: "Token project",
  variables: ["TOKEN_PROJECT_KEY", "TOKEN_PROJECT_SECRET", "TOKEN_PROJECT_BASE_URL", "TOKEN_PROJECT_TOKEN_LIFETIME"],
  documentedLimit: tokenProjectLimit,
  fromEnv: (tuning) =>
    Effect.flatMap(TokenProject.config, (options) => TokenProject.make({ ...options, ...tuning })).pipe(
      Effect.map(built("token-project", tuning?.limits === undefined ? tokenProjectLimit : undefined))
    ),
  fromSandbox: (sandbox, tuning) => {
    const emulator = sandbox.tokenProject
    const limit: Report.Limit = {
      limit: emulator.rateLimit.limit,
      windowMillis: emulator.rateLimit.windowMillis,
      perEndpoint: true
    }
    return TokenProject.make({
      ...tuning,
      key: emulator.credentials.key,
      secret: Redacted.make(emulator.credentials.secret),
      baseUrl: emulator.baseUrl,
      allowInsecureLoopback: true,
      limits: tuning?.limits ?? RateLimiter.keyed(TokenProject.endpointOf, slidingLimit(limit))
    }).pipe(Effect.map(built("token-project", tuning?.limits === undefined ? limit : undefined)))
  }
}

/**
 * The providers with a module of their own, in the order help lists them. Each entry is a small value;
 * everything else the CLI knows about providers (the names it accepts, their help, the lookup) is
 * derived from this list.
 *
 * @since 0.2.0
 * @category registry
 */
export const presets: ReadonlyArray<Entry> = [nora, norce, nomba, tokenProject]

/**
 * The four provider modules by name.
 *
 * @since 0.1.0
 * @category registry
 */
export const registry: Readonly<Record<Preset, Entry>> = Object.fromEntries(
  presets.map((entry) => [entry.name, entry])
) as Record<Preset, Entry>

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
    })
    const tokens = yield* TokenCache.makeWithBackend(source, tuning?.tokenCache)
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
