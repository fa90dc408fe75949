/**
 * A provider as a definition: a value that states what is particular to one API (its options as a
 * Schema, its variables, its token endpoint, its fixed headers, its limits) and gets from `define` what a
 * provider module offers: its Tags, `make`, `layer`, `layerConfig`, `config` and its token source.
 *
 * The design: `docs/providers.md` in the repository.
 *
 * @since 0.2.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as AccessToken from "@tollgate/core/AccessToken"
import type * as ApiClient from "@tollgate/core/ApiClient"
import type * as RateLimiter from "@tollgate/core/RateLimiter"
import type * as RateLimitHeaders from "@tollgate/core/RateLimitHeaders"
import type * as TokenCache from "@tollgate/core/TokenCache"
import type * as TokenSource from "@tollgate/core/TokenSource"
import type { Config, ConfigError, Context, Duration, Effect, Either, Layer, Schema } from "effect"
import type * as EffectScope from "effect/Scope"
import * as internal from "./internal/definition.js"
import * as Internal from "./internal/provider.js"
import type * as TokenEndpoint from "./TokenEndpoint.js"

// ---------------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------------

/**
 * A provider's own options, as the fields of a Schema Struct. What a caller passes is the fields'
 * encoded side, what the provider works with their decoded side (a scope normalised, a default filled in).
 *
 * @since 0.2.0
 * @category options
 */
export type Fields = Schema.Struct.Fields

/**
 * The options every provider has: where its API is, and whether plain http to loopback (a sandbox) is
 * acceptable. Read from the definition's `baseUrl` variable and `TOLLGATE_ALLOW_INSECURE_LOOPBACK`.
 *
 * @since 0.2.0
 * @category options
 */
export interface Connection {
  /** The API's base URL: https, or http to loopback with `allowInsecureLoopback`. */
  readonly baseUrl?: string | undefined
  /** Accept `http://` for 127.0.0.0/8, `::1` and `localhost` (sandboxes, tests). Default: false. */
  readonly allowInsecureLoopback?: boolean | undefined
}

/**
 * The settings of a provider that are not credentials or addresses: every default a definition sets is
 * overridable here.
 *
 * @since 0.2.0
 * @category options
 */
export interface Tuning {
  /**
   * The API's request budget. Default: the provider's documented limit, or `RateLimiter.learned()` (what the
   * server's headers announce, or its 429s teach) where the docs give none.
   */
  readonly limits?: RateLimiter.Policy | undefined
  /** The limit on token requests. Default: the provider's documented one, if any. */
  readonly tokenLimits?: RateLimiter.Policy | undefined
  /** Refresh lead, safety margin, retries, cooldown and revocation of the token cache. */
  readonly tokenCache?: Omit<TokenCache.Options, "limiter"> | undefined
  /** Bound on each request to the token endpoint. Default: 15 seconds. */
  readonly tokenTimeout?: Duration.DurationInput | undefined
  /** How to read token lifetimes, on top of the provider's own reading. */
  readonly lifetime?: AccessToken.LifetimePolicy | undefined
  /** Tuning of the authenticated client; `headers` are added to the provider's own. */
  readonly client?: Pick<ApiClient.Options, "timeout" | "permitDeadline" | "retry" | "headers"> | undefined
}

// A definition of any fields (`Any`) takes and gives any options.
type IfAny<F, T> = boolean extends (F extends never ? true : false) ? any : T

type OptionalKeys<T> = { [K in keyof T]-?: {} extends Pick<T, K> ? K : never }[keyof T]

/**
 * `T` with `undefined` accepted wherever a key is optional, as options objects are written.
 *
 * @since 0.2.0
 * @category options
 */
export type Loose<T> =
  & { readonly [K in Exclude<keyof T, OptionalKeys<T>>]: T[K] }
  & { readonly [K in OptionalKeys<T>]?: T[K] | undefined }

/**
 * What `make` and `layer` accept: the provider's own options, its connection and any tuning.
 *
 * @since 0.2.0
 * @category options
 */
export type Options<F extends Fields> = IfAny<F, Loose<Schema.Struct.Encoded<F>> & Connection & Tuning>

/**
 * What `layerConfig` accepts on top of the environment: any option, which wins over the variable.
 *
 * @since 0.2.0
 * @category options
 */
export type Overrides<F extends Fields> = Partial<Options<F>>

/**
 * The options once decoded: normalised, defaults filled in, every rule checked.
 *
 * @since 0.2.0
 * @category options
 */
export type Resolved<F extends Fields> = IfAny<F, Schema.Struct.Type<F> & Connection>

/**
 * What the token source alone needs: the options without the fields that only API requests carry.
 *
 * @since 0.2.0
 * @category options
 */
export type SourceOptions<F extends Fields, H extends string = never> = IfAny<
  F,
  & Omit<Loose<Schema.Struct.Encoded<F>>, H>
  & {
    readonly [K in keyof Loose<Schema.Struct.Encoded<F>> as K extends H ? K : never]?: Loose<
      Schema.Struct.Encoded<F>
    >[K]
  }
  & Connection
  & {
    /** Bound on each token request. Default: 15 seconds. */
    readonly timeout?: Duration.DurationInput | undefined
    readonly lifetime?: AccessToken.LifetimePolicy | undefined
  }
>

// ---------------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------------

/**
 * A documented limit: `limit` requests in any `window`, per key of `per` when the provider limits each
 * endpoint (or account) on its own. Enforced as a sliding window.
 *
 * @since 0.2.0
 * @category definitions
 */
export interface Limit {
  readonly limit: number
  readonly window: Duration.DurationInput
  readonly per?: ((subject: RateLimiter.Subject) => string) | undefined
}

/**
 * A provider's three Tags: its client, its token cache and its limiter.
 *
 * @since 0.2.0
 * @category definitions
 */
export interface Tags<Key extends string> {
  readonly client: Context.Tag<`${Key}Client`, ApiClient.Service>
  readonly tokens: Context.Tag<`${Key}Tokens`, TokenCache.Service>
  readonly limiter: Context.Tag<`${Key}Limiter`, RateLimiter.Service>
}

/**
 * The three services a provider's `make` returns and its Layer provides under its Tags.
 *
 * @since 0.2.0
 * @category definitions
 */
export interface Services {
  readonly client: ApiClient.Service
  readonly tokens: TokenCache.Service
  readonly limiter: RateLimiter.Service
}

/**
 * What `define` takes: the provider's facts.
 *
 * @since 0.2.0
 * @category definitions
 */
export interface Input<
  Name extends string,
  Key extends string,
  F extends Fields,
  V extends Readonly<Record<string, string>>,
  H extends string,
  TH extends string
> {
  /** Its name in errors, logs, spans, metrics and on the command line. */
  readonly name: Name
  readonly title: string
  /** The prefix of its Tags' keys: `${key}Client`, `${key}Tokens`, `${key}Limiter`. */
  readonly key: Key
  /** The environment variable of each option `config` reads (`baseUrl` included), each named once here. */
  readonly variables: V & { readonly [K in keyof V]: K extends keyof F | "baseUrl" ? string : never }
  /** The API's base URL: a default for the `baseUrl` option, or how the options build it. */
  readonly baseUrl: string | ((options: Resolved<F>) => string | undefined)
  /** Rules across options, as Schema filter issues with a `path`: for every use, and for API clients. */
  readonly rules?: {
    readonly token?: ((options: Resolved<F>) => Schema.FilterOutput | ReadonlyArray<Schema.FilterOutput>) | undefined
    readonly api?: ((options: Resolved<F>) => Schema.FilterOutput | ReadonlyArray<Schema.FilterOutput>) | undefined
  } | undefined
  readonly token: TokenEndpoint.TokenEndpoint<Resolved<F>, TH>
  /** Headers every API request carries, by option field (checked as header values): `{ ApplicationId: "applicationId" }`. */
  readonly headers?: Readonly<Record<string, H>> | undefined
  /** The documented API limit; none when the docs give none (a 429 still closes the gate). */
  readonly limit?: Limit | undefined
  /** The documented limit of the token endpoint, taken by the token cache before each grant. */
  readonly tokenLimits?: RateLimiter.Policy | undefined
  /** The API's limit covers its token endpoint too: token requests take permits of the API's limiter. */
  readonly tokenRequestsCount?: boolean | undefined
  /** The token cache's defaults for this provider (a refresh lead it recommends). */
  readonly tokenCache?: Omit<TokenCache.Options, "limiter"> | undefined
  /** How to read its token lifetimes. */
  readonly lifetime?: ((options: Resolved<F>) => AccessToken.LifetimePolicy) | undefined
  /** The limiter key of a request (default: core's, `METHOD /path`). */
  readonly keyOf?: ((options: Resolved<F>) => (request: HttpClientRequest.HttpClientRequest) => string) | undefined
  /** How to read a bare `X-RateLimit-Reset`. */
  readonly resetFormat?: RateLimitHeaders.ResetFormat | undefined
}

/**
 * A provider: its facts, and everything a provider module offers, built from them.
 *
 * @since 0.2.0
 * @category definitions
 */
export interface Definition<
  Name extends string = string,
  Key extends string = string,
  F extends Fields = Fields,
  V extends Readonly<Record<string, string>> = Readonly<Record<string, string>>,
  H extends string = string
> {
  readonly name: Name
  readonly title: string
  readonly tags: Tags<Key>
  /** The variable of each option `config` reads, in order. `TOLLGATE_ALLOW_INSECURE_LOOPBACK` besides. */
  readonly variables: V
  /** The documented API limit, as data (`keyed` when it holds per key). */
  readonly limit:
    | { readonly limit: number; readonly windowMillis: number; readonly keyed: boolean }
    | undefined
  /** The documented limit as a policy, or `RateLimiter.learned()` where the docs give none. */
  readonly defaultLimits: RateLimiter.Policy
  readonly tokenLimits: RateLimiter.Policy | undefined
  /** A limit of the documented shape (per key or not) with other numbers: a sandbox's, a plan's. */
  readonly limitsFor: (limit: { readonly limit: number; readonly window: Duration.DurationInput }) => RateLimiter.Policy
  /** The options Schema: decodes what `make` accepts into `Resolved`, every rule included. */
  readonly schema: Schema.Schema<Resolved<F>, IfAny<F, Loose<Schema.Struct.Encoded<F>> & Connection>>
  /**
   * Options from plain values, as an emulator's credentials or a JSON document hold them (secrets as
   * strings), validated like `make`'s. Extra properties are ignored.
   */
  readonly parse: (values: unknown) => Either.Either<Resolved<F>, ConfigError.ConfigError>
  /** The options from the environment; every error names its variable once. */
  readonly config: Config.Config<Options<F>>
  /** The token source alone. Options it refuses are a `ConfigError` naming the option, as in `make`. */
  readonly tokenSource: (
    options: SourceOptions<F, H>
  ) => Effect.Effect<TokenSource.Service, ConfigError.ConfigError, HttpClient.HttpClient>
  /** The token cache, the limiter and the client, alive for the current scope. */
  readonly make: (
    options: Options<F>
  ) => Effect.Effect<Services, ConfigError.ConfigError, HttpClient.HttpClient | EffectScope.Scope>
  readonly layer: (
    options: Options<F>
  ) => Layer.Layer<Provided<Key>, ConfigError.ConfigError, HttpClient.HttpClient>
  /**
   * `layer` with options from `config` (default: the environment, through the definition's `config`),
   * overrides winning where they are defined. A bad environment fails the Layer when it is built.
   */
  readonly layerConfig: {
    (overrides?: Overrides<F>): Layer.Layer<Provided<Key>, ConfigError.ConfigError, HttpClient.HttpClient>
    (
      config: Config.Config<Options<F>>,
      overrides?: Overrides<F>
    ): Layer.Layer<Provided<Key>, ConfigError.ConfigError, HttpClient.HttpClient>
  }
}

/**
 * The services a provider's Layer provides, by the identifiers of its Tags.
 *
 * @since 0.2.0
 * @category definitions
 */
export type Provided<Key extends string> = IfAny<Key, `${Key}Client` | `${Key}Tokens` | `${Key}Limiter`>

/**
 * The `Options` of a definition.
 *
 * @since 0.2.0
 * @category definitions
 */
export type OptionsOf<D extends Any> = Parameters<D["make"]>[0]

/**
 * The `SourceOptions` of a definition.
 *
 * @since 0.2.0
 * @category definitions
 */
export type SourceOptionsOf<D extends Any> = Parameters<D["tokenSource"]>[0]

/**
 * Any definition, for code that loops over providers.
 *
 * @since 0.2.0
 * @category definitions
 */
export type Any = Definition<string, any, any, Readonly<Record<string, string>>, any>

/**
 * A provider from its options (the fields of their Schema, see `Field`) and its facts. Every variable name
 * is written once, in `variables`; the options are validated through Schema wherever they come from
 * (code, the environment, plain values), with errors that name the option or the variable.
 *
 * @example
 * ```ts
 * import { Field, Provider, TokenEndpoint } from "@tollgate/providers"
 * import { Schema } from "effect"
 *
 * export const Acme = Provider.define({ clientId: Field.Text, clientSecret: Field.Secret, tenant: Field.Text }, {
 *   name: "acme",
 *   title: "Acme",
 *   key: "@acme/Acme",
 *   variables: {
 *     clientId: "ACME_CLIENT_ID",
 *     clientSecret: "ACME_CLIENT_SECRET",
 *     tenant: "ACME_TENANT",
 *     baseUrl: "ACME_BASE_URL"
 *   },
 *   baseUrl: "https://api.acme.example",
 *   headers: { "X-Tenant": "tenant" },
 *   token: TokenEndpoint.exchange({
 *     path: "/oauth/token",
 *     encoding: "form",
 *     params: (options) => ({ client_id: options.clientId, client_secret: options.clientSecret }),
 *     success: Schema.Struct({ access_token: Schema.String, expires_in: Schema.Number }),
 *     token: (body) => ({ value: body.access_token, expiresIn: body.expires_in }),
 *     identity: (options) => ({ clientId: options.clientId, extra: { tenant: options.tenant } })
 *   }),
 *   limit: { limit: 100, window: "1 minute" }
 * })
 *
 * // What a provider module offers, derived from the facts above.
 * console.log(typeof Acme.layerConfig, typeof Acme.make, typeof Acme.tokenSource, Acme.tags.client.key)
 * ```
 *
 * @since 0.2.0
 * @category definitions
 */
export const define: <
  const Name extends string,
  const Key extends string,
  F extends Fields,
  const V extends Readonly<Record<string, string>>,
  const H extends keyof F & string = never,
  const TH extends keyof F & string = never
>(options: F, input: Input<Name, Key, F, V, H, TH>) => Definition<Name, Key, F, V, Exclude<H, TH>> = internal.define

/**
 * The variable that allows plain http to loopback base URLs (sandboxes, tests), for every provider.
 *
 * @since 0.2.0
 * @category constants
 */
export const allowInsecureLoopbackVariable: string = Internal.allowInsecureLoopbackVariable
