/**
 * The Token project APIs: an app key and secret, sent as query parameters to `POST /auth/token`, buy a
 * JWT Bearer token that carries `iat` but no `exp` and stays valid until the app is deleted. Every
 * endpoint is limited on its own ("the most common" limit is 10 requests over any 2 minutes), reported by
 * `X-RateLimit-*` headers, with 429 bodies `{"errors":[{"code":88,…}]}`. The docs call `X-RateLimit-Reset`
 * both "the remaining window" and "UTC epoch seconds": it is read either way (`auto`).
 *
 * @since 0.1.0
 */
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as RateLimiter from "@tollgate/core/RateLimiter"
import * as RateLimitHeaders from "@tollgate/core/RateLimitHeaders"
import type { Context } from "effect"
import { Duration, Schema } from "effect"
import * as Field from "./Field.js"
import * as Provider from "./Provider.js"
import * as TokenEndpoint from "./TokenEndpoint.js"

/** The documented API host; point `baseUrl` at a sandbox for tests.
 * @since 0.1.0
 * @category constants */
export const defaultBaseUrl = "https://api.token-project.eu"

/** The token endpoint's path on the base URL.
 * @since 0.1.0
 * @category constants */
export const tokenPath = "/auth/token"

/** How long a token is kept when its JWT has no `exp` (the documented case): one hour. Any value works, as
 * the token itself does not expire; an hour costs 24 token requests a day, bounds how long a leaked token
 * stays in use by us, and a 401 renews sooner anyway. A JWT that does carry `exp` wins.
 * @since 0.1.0
 * @category constants */
export const defaultLifetime: Duration.Duration = Duration.hours(1)

/** The error code of a rate-limited answer (`{"errors":[{"code":88,"message":"Rate limit exceeded"}]}`).
 * @since 0.1.0
 * @category constants */
export const rateLimitCode = 88

/** The segment that replaces an ID-like path segment in endpoint keys.
 * @since 0.1.0
 * @category constants */
export const idPlaceholder = ":id"

/** Whether a path segment looks like an identifier rather than a route name: all digits; a UUID; `0x` and
 * hex (an address, a hash); 12 or more hex digits (an ObjectId); or 16 or more URL-safe characters with a
 * digit (app keys, IPFS CIDs, random ids). Route names are words ("notarizations"), which none match.
 * @since 0.1.0
 * @category endpoint keys */
export const isIdSegment = (segment: string): boolean =>
  /^\d+$/.test(segment) ||
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(segment) ||
  /^0x[0-9a-f]+$/i.test(segment) ||
  /^[0-9a-f]{12,}$/i.test(segment) ||
  (segment.length >= 16 && /^[A-Za-z0-9_~.-]+$/.test(segment) && /\d/.test(segment))

const decodeSegment = (segment: string): string => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

/** A path with its ID-like segments replaced by `:id`, without a trailing slash:
 * `/notarizations/stamps/5f8d0d55b54764421b7156c9` is `/notarizations/stamps/:id`.
 * @since 0.1.0
 * @category endpoint keys */
export const normalizePath = (path: string): string => {
  const normalized = path
    .split("/")
    .map((segment) => (segment.length > 0 && isIdSegment(decodeSegment(segment)) ? idPlaceholder : segment))
    .join("/")
  return normalized.length > 1 ? normalized.replace(/\/+$/, "") : normalized
}

/** The endpoint a request counts against: its method and normalised path, without the query
 * (`GET /notarizations/stamps/:id`). The default `endpointOf` option.
 * @since 0.1.0
 * @category endpoint keys */
export const endpointKey = (request: HttpClientRequest.HttpClientRequest): string => {
  const url = request.url
  const path = URL.canParse(url) ? new URL(url).pathname : url.replace(/[?#].*$/, "")
  return `${request.method} ${normalizePath(path)}`
}

/** The limiter key of a permit: the key the client computed, or the endpoint of the request.
 * @since 0.1.0
 * @category endpoint keys */
export const endpointOf = (subject: RateLimiter.Subject): string =>
  subject.key ?? (subject.request === undefined ? "" : endpointKey(subject.request))

/** The documented answer: `{ token_type: "bearer", access_token }`.
 * @since 0.1.0
 * @category schemas */
export const TokenResponse = Schema.Struct({
  token_type: Schema.optional(Schema.NullOr(Schema.String)),
  access_token: Schema.String
})

const rateLimitCodes: ReadonlySet<number | string> = new Set([rateLimitCode, String(rateLimitCode)])

/** Whether a body is the rate-limit error (code 88), for a response a program reads itself (the client
 * already treats every 429 as a rate limit).
 * @since 0.1.0
 * @category decoding */
export const isRateLimitBody = (body: unknown): boolean => RateLimitHeaders.isRateLimitBody(body, rateLimitCodes)

/** The Token project as a definition: everything else in this module is read from it.
 * @since 0.2.0
 * @category definitions */
export const definition = Provider.define({
  key: Field.Text,
  secret: Field.Secret,
  /** The lifetime of a token whose JWT has no `exp`. Default: 1 hour. */
  defaultLifetime: Field.optional(Field.Lifetime),
  /** The endpoint key of a request, for the per-endpoint limits and the 429 gate. Default: `endpointKey`. */
  endpointOf: Field.optional(Field.KeyFunction)
}, {
  name: "token-project",
  title: "Token project",
  key: "@tollgate/providers/TokenProject/TokenProject",
  variables: {
    key: "TOKEN_PROJECT_KEY",
    secret: "TOKEN_PROJECT_SECRET",
    baseUrl: "TOKEN_PROJECT_BASE_URL",
    defaultLifetime: "TOKEN_PROJECT_TOKEN_LIFETIME"
  },
  baseUrl: defaultBaseUrl,
  // The key and secret in the query (never in spans or errors); a 401 or 403 is `InvalidCredentials`.
  token: TokenEndpoint.exchange({
    path: tokenPath,
    encoding: "query",
    params: (o) => ({ key: o.key, secret: o.secret }),
    success: TokenResponse,
    token: (body) => ({ value: body.access_token, type: body.token_type ?? undefined }),
    identity: (o) => ({ clientId: o.key })
  }),
  lifetime: (o) => ({ defaultLifetime: o.defaultLifetime ?? defaultLifetime, readJwtExpiry: true }),
  // "10 requests over any 2-minute interval", per endpoint: a sliding window per endpoint key.
  limit: { limit: 10, window: "2 minutes", per: endpointOf },
  keyOf: (o) => o.endpointOf ?? endpointKey,
  resetFormat: "auto"
})

// What every provider module offers, read from its definition (`Provider.Definition` documents each).

/** @since 0.1.0
 * @category constants */
export const provider = definition.name, defaultLimits = definition.defaultLimits
/** @since 0.1.0
 * @category tags */
export const TokenProjectClient = definition.tags.client,
  TokenProjectTokens = definition.tags.tokens,
  TokenProjectLimiter = definition.tags.limiter
/** @since 0.1.0
 * @category tags */
export type TokenProjectClient = Context.Tag.Identifier<typeof TokenProjectClient>
/** @since 0.1.0
 * @category tags */
export type TokenProjectTokens = Context.Tag.Identifier<typeof TokenProjectTokens>
/** @since 0.1.0
 * @category tags */
export type TokenProjectLimiter = Context.Tag.Identifier<typeof TokenProjectLimiter>
/** @since 0.1.0
 * @category models */
export interface Options extends Provider.OptionsOf<typeof definition> {}
/** @since 0.1.0
 * @category models */
export interface Credentials extends Pick<Options, "key" | "secret"> {}
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
 * import { TokenProject } from "@tollgate/providers"
 * import { TokenProjectSandbox, Sandbox } from "@tollgate/testing"
 * import { Effect, Redacted } from "effect"
 *
 * const { key, secret } = TokenProjectSandbox.defaultCredentials
 * const options = {
 *   key,
 *   secret: Redacted.make(secret),
 *   baseUrl: "https://token-project.sandbox.test"
 * }
 *
 * Effect.gen(function*() {
 *   // The provider's emulator, reached in memory; in production the HttpClient is undici or fetch.
 *   const emulator = yield* TokenProjectSandbox.make()
 *   const http = Sandbox.makeClient(() => emulator.app)
 *   const services = yield* Effect.provideService(TokenProject.make(options), HttpClient.HttpClient, http)
 *   console.log((yield* services.client.get("/storage/files")).status) // 200
 *   // The token source alone, without the cache and the limiter.
 *   const source = yield* Effect.provideService(TokenProject.tokenSource(options), HttpClient.HttpClient, http)
 *   console.log((yield* source.fetch).type) // "bearer"
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
 * import { TokenProject } from "@tollgate/providers"
 * import { TokenProjectSandbox, Sandbox } from "@tollgate/testing"
 * import { ConfigProvider, Effect, Layer } from "effect"
 *
 * // `layerConfig()` reads the TOKEN_PROJECT_* variables, here from a map;
 * // `layer(options)` takes the options as values.
 * const { key, secret } = TokenProjectSandbox.defaultCredentials
 * const environment = ConfigProvider.fromMap(
 *   new Map([
 *     ["TOKEN_PROJECT_KEY", key],
 *     ["TOKEN_PROJECT_SECRET", secret],
 *     ["TOKEN_PROJECT_BASE_URL", "https://token-project.sandbox.test"]
 *   ])
 * )
 * const Live = Layer.unwrapEffect(Effect.map(TokenProjectSandbox.make(), (emulator) =>
 *   TokenProject.layerConfig().pipe(
 *     Layer.provide(Layer.succeed(HttpClient.HttpClient, Sandbox.makeClient(() => emulator.app))),
 *     Layer.provide(Layer.setConfigProvider(environment))
 *   )))
 *
 * Effect.flatMap(TokenProject.TokenProjectClient, (client) => client.get("/storage/files")).pipe(
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
