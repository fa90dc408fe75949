/**
 * The authenticated, rate-limited HTTP client: the platform's `HttpClient` with a request's journey
 * applied. Base URL and fixed headers → a permit → a bearer token → one attempt → what the answer means
 * (`Ok | Renew | Throttled | Transient | Fail`) → what happens next (return, fail, or retry after a token
 * renewal, after the gate reopens, after a backoff). The limiter hears once per response what it said.
 * Responses and errors never carry the bearer token; bodies stream through untouched. A request with a
 * permit free, a token at hand and a quiet 2xx takes the fast path: no retry machinery, no fiber, one span.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Context, Duration, Effect, Either, FiberRef, Layer } from "effect"
import type { Schedule, Scope } from "effect"
import { dual } from "effect/Function"
import * as BaseUrl from "./BaseUrl.js"
import * as ClientOptions from "./internal/clientOptions.js"
import * as Deadlines from "./internal/deadlines.js"
import * as Facets from "./internal/facets.js"
import { Journeys } from "./internal/journey.js"
import { ClientMetrics } from "./internal/metrics.js"
import { Sender } from "./internal/send.js"
import * as RateLimiter from "./RateLimiter.js"
import * as RateLimitHeaders from "./RateLimitHeaders.js"
import * as TokenCache from "./TokenCache.js"
import * as TollgateError from "./TollgateError.js"

/**
 * Everything a request through the client can fail with.
 *
 * @since 0.1.0
 * @category models
 */
export type Error =
  | HttpClientError.HttpClientError
  | TollgateError.TokenError
  | TollgateError.RateLimited
  | TollgateError.Unauthorized
  | TollgateError.InvalidArgument

/**
 * The authenticated client is an ordinary `HttpClient` whose error channel says what can go wrong.
 *
 * @since 0.1.0
 * @category models
 */
export type Service = HttpClient.HttpClient.With<Error>

/**
 * The client of a program that talks to one API; each provider has a Tag of its own with this service.
 *
 * @since 0.1.0
 * @category tags
 */
export class ApiClient extends Context.Tag("@tollgate/core/ApiClient")<ApiClient, Service>() {}

/**
 * A transient failure: a 5xx response, a transport error or an attempt's `Timeout`.
 *
 * @since 0.2.0
 * @category models
 */
export type Transient = HttpClientResponse.HttpClientResponse | HttpClientError.HttpClientError | TollgateError.Timeout

/**
 * @since 0.1.0
 * @category models
 */
export interface RetryOptions {
  /** 429s in a row, with no other request of this client admitted in between, before `RateLimited`. Default: 3. */
  readonly rateLimited?: number | undefined
  /** Retries after a 5xx, a transport error or a timeout (with the default `schedule`). Default: 2. */
  readonly transient?: number | undefined
  /** First backoff, doubled per retry, with jitter (default schedules). Default: 500 milliseconds. */
  readonly baseDelay?: Duration.DurationInput | undefined
  /** Default: 30 seconds. */
  readonly maxDelay?: Duration.DurationInput | undefined
  /** A retry that must wait longer than this (a far reset, a long `Retry-After`) fails instead. Default: 5 minutes. */
  readonly maxWait?: Duration.DurationInput | undefined
  /** Also retry transient failures of non-idempotent methods (POST, PATCH). Default: false. */
  readonly nonIdempotent?: boolean | undefined
  /** When to retry a transient failure, and after how long. Default: `transientSchedule` of the numbers above. */
  readonly schedule?: Schedule.Schedule<unknown, Transient> | undefined
  /** The wait after a 429 that names no reset instant. Default: `backoffSchedule` of the numbers above. */
  readonly backoff?: Schedule.Schedule<unknown, HttpClientResponse.HttpClientResponse> | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Names the provider in errors, spans and metrics. */
  readonly provider: string
  /** Prepended to relative request URLs: https, without credentials (checked by `BaseUrl.decode`). */
  readonly baseUrl?: string | undefined
  /** Accept a plain-http `baseUrl` on loopback (sandboxes, tests). Default: false. */
  readonly allowInsecureLoopback?: boolean | undefined
  /** Added to every request unless it sets them (e.g. `ApplicationId`); checked as header values. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Where bearer tokens come from; without it requests are sent unauthenticated. */
  readonly tokens?: TokenCache.Service | undefined
  /** The request budget. Default: `RateLimiter.learned()`, the budget the server's headers announce. */
  readonly limiter?: RateLimiter.Service | undefined
  /** The limiter key of a request. Default: `"METHOD /path"`. */
  readonly keyOf?: ((request: HttpClientRequest.HttpClientRequest) => string) | undefined
  /** Bound on each attempt, from sending to the response headers. Default: 30 seconds; `Duration.infinity`: none. */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * Bound on the whole request (token and permit waits, attempts, retries), then `Timeout`. Default: none:
   * a batch queued behind its budget waits its turn, and each wait has a bound of its own anyway (the
   * cache's `timeout`, `timeout`, `maxWait`, `permitDeadline`).
   */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /** Fail at once when the limiter predicts a longer wait than this. Default: none. */
  readonly permitDeadline?: Duration.DurationInput | undefined
  /** Send `traceparent`/`b3` to the API: third-party hosts are outside the trust boundary. Default: false. */
  readonly propagateTraceContext?: boolean | undefined
  readonly retry?: RetryOptions | undefined
  /** How to read a bare `X-RateLimit-Reset`. Default: `auto`. */
  readonly resetFormat?: RateLimitHeaders.ResetFormat | undefined
}

/**
 * Per-request settings, set around a request with `withRequestOptions`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestOptions {
  /** Permits the request takes: a whole number. Default: 1. */
  readonly cost?: number | undefined
  /** Higher is admitted first (see `RateLimiter.PermitOptions.priority`). Default: 0. */
  readonly priority?: number | undefined
  readonly permitDeadline?: Duration.DurationInput | undefined
  /** Retry transient failures of this request even if its method is not idempotent. */
  readonly retryNonIdempotent?: boolean | undefined
}

const noRequestOptions: RequestOptions = {}

/**
 * @since 0.1.0
 * @category fiber refs
 */
export const currentRequestOptions: FiberRef.FiberRef<RequestOptions> = FiberRef.unsafeMake(noRequestOptions)

/**
 * Runs `effect` with per-request settings (its cost in permits, its priority, a deadline for the permit,
 * transient retries for a non-idempotent request), checked first: a bad one fails with `InvalidArgument`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withRequestOptions: {
  (
    options: RequestOptions
  ): <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | TollgateError.InvalidArgument, R>
  <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options: RequestOptions
  ): Effect.Effect<A, E | TollgateError.InvalidArgument, R>
} = dual(
  2,
  <A, E, R>(effect: Effect.Effect<A, E, R>, options: RequestOptions) =>
    Either.match(ClientOptions.decodeRequest(options), {
      onLeft: (issue) => Effect.fail(issue),
      onRight: (checked) => Effect.locally(effect, currentRequestOptions, checked)
    })
)

/**
 * @since 0.1.0
 * @category constants
 */
export const defaultTimeout: Duration.Duration = Duration.seconds(30)

/**
 * @since 0.1.0
 * @category constants
 */
export const idempotentMethods: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"])

/**
 * The default transient-retry schedule: `retries` times (default 2), exponential from `baseDelay`
 * (500 ms) to `maxDelay` (30 s), each delay drawn from the upper half of its value.
 *
 * @since 0.2.0
 * @category retries
 */
export const transientSchedule: (options?: {
  readonly retries?: number | undefined
  readonly baseDelay?: Duration.DurationInput | undefined
  readonly maxDelay?: Duration.DurationInput | undefined
}) => Schedule.Schedule<unknown> = ClientOptions.retrying

/**
 * The default wait after a 429 without a reset: the same backoff, uncounted (the consecutive-429 rule
 * bounds those retries).
 *
 * @since 0.2.0
 * @category retries
 */
export const backoffSchedule: (options?: {
  readonly baseDelay?: Duration.DurationInput | undefined
  readonly maxDelay?: Duration.DurationInput | undefined
}) => Schedule.Schedule<Duration.Duration> = ClientOptions.backoff

/**
 * Builds the client over the `HttpClient` in context (the transport: undici, fetch, or an in-memory fake).
 * Without a limiter in `options`, a `RateLimiter.learned()` one is made in the current scope. Bad options
 * fail with `InvalidArgument`.
 *
 * @example
 * ```ts
 * import { HttpClient, HttpClientResponse } from "@effect/platform"
 * import { ApiClient, RateLimiter } from "@tollgate/core"
 * import { Effect } from "effect"
 *
 * // The transport is any HttpClient: undici or fetch in production, here an in-memory API.
 * const transport = HttpClient.make((request) =>
 *   Effect.succeed(HttpClientResponse.fromWeb(request, Response.json({ url: request.url }))))
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 10, window: "1 second" }))
 *   const client = yield* ApiClient.make({ provider: "acme", baseUrl: "https://api.acme.example", limiter })
 *   const response = yield* client.get("/items/1")
 *   console.log(response.status, yield* response.json) // 200 { url: "https://api.acme.example/items/1" }
 * }).pipe(Effect.scoped, Effect.provideService(HttpClient.HttpClient, transport))
 *
 * Effect.runPromise(program)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<Service, TollgateError.InvalidArgument, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* ClientOptions.decode(options)
    const { provider } = config
    const limiter = options.limiter ?? (yield* Effect.orDie(RateLimiter.make(RateLimiter.learned(), { provider })))
    const tokens = options.tokens
    const journeys = new Journeys({
      config,
      clock: yield* Effect.clock,
      limiter,
      tokens,
      node: Facets.limiterNode(limiter),
      peek: tokens === undefined ? () => undefined : Facets.tokenPeek(tokens),
      sender: new Sender({
        provider,
        base: yield* HttpClient.HttpClient,
        deadlines: yield* Deadlines.make,
        propagate: config.propagate
      }),
      metrics: new ClientMetrics(provider),
      keyOf: options.keyOf ?? ((request) => `${request.method} ${BaseUrl.pathOf(request.url)}`),
      idempotentMethods
    }, noRequestOptions)

    // 1. The base URL and the fixed headers (which never override the caller's own).
    const prepare = (request: HttpClientRequest.HttpClientRequest) =>
      config.headers.reduce(
        (prepared, [name, value]) =>
          prepared.headers[name] === undefined ? HttpClientRequest.setHeader(prepared, name, value) : prepared,
        config.baseUrl === undefined || BaseUrl.isAbsolute(request.url)
          ? request
          : HttpClientRequest.setUrl(request, BaseUrl.join(config.baseUrl, request.url))
      )

    const spanOptions = { kind: "client", captureStackTrace: false } as const
    // 2. One span per request, when tracing is on; then the journey (internal/journey.ts): permit, token,
    //    exchange, classify, report, decide, and the view that never carries the bearer token.
    const execute = (request: HttpClientRequest.HttpClientRequest) =>
      Effect.withFiberRuntime<HttpClientResponse.HttpClientResponse, Error>((fiber) => {
        const perRequest = fiber.getFiberRef(currentRequestOptions)
        const tags = fiber.getFiberRef(FiberRef.currentMetricLabels)
        if (!fiber.getFiberRef(FiberRef.currentTracerEnabled)) {
          return journeys.run(journeys.begin(request, perRequest, undefined, tags), perRequest, fiber)
        }
        return Effect.useSpan("tollgate.request", spanOptions, (span) => {
          span.attribute("tollgate.provider", provider)
          span.attribute("http.request.method", request.method)
          span.attribute("url.path", BaseUrl.pathOf(request.url))
          return journeys.run(journeys.begin(request, perRequest, span, tags), perRequest, fiber)
        })
      })

    // Requests mapped by the caller (`HttpClient.mapRequest`) are prepared after their mapping, as sent.
    return HttpClient.makeWith(
      (request: Effect.Effect<HttpClientRequest.HttpClientRequest>) =>
        Effect.flatMap(request, (request) => execute(prepare(request))),
      Effect.succeed as HttpClient.HttpClient.Preprocess<never, never>
    )
  })

/**
 * The client of a single-API program, from the `TokenCache` and `RateLimiter` in context.
 *
 * @example
 * ```ts
 * import { HttpClient, HttpClientResponse } from "@effect/platform"
 * import { AccessToken, ApiClient, RateLimiter, TokenCache, TokenSource } from "@tollgate/core"
 * import { DateTime, Effect, Either, Layer, Redacted } from "effect"
 *
 * const source = TokenSource.make({
 *   identity: { provider: "acme", endpoint: "https://auth.acme.example/token", clientId: "my-client" },
 *   fetch: Effect.map(DateTime.now, (receivedAt) =>
 *     Either.getOrThrow(AccessToken.make({ value: Redacted.make("t0k3n"), expiresIn: 3600, receivedAt })))
 * })
 * // An in-memory API that says whether the request carried a bearer token.
 * const Transport = Layer.succeed(
 *   HttpClient.HttpClient,
 *   HttpClient.make((request) =>
 *     Effect.succeed(
 *       HttpClientResponse.fromWeb(
 *         request,
 *         Response.json({ bearer: request.headers.authorization?.startsWith("Bearer ") })
 *       )
 *     )
 *   )
 * )
 *
 * const ApiLive = ApiClient.layer({ provider: "acme", baseUrl: "https://api.acme.example" }).pipe(
 *   Layer.provide(TokenCache.layer().pipe(Layer.provide(TokenSource.layer(source)))),
 *   Layer.provide(RateLimiter.layer(RateLimiter.slidingWindow({ limit: 60, window: "1 minute" }))),
 *   Layer.provide(Transport)
 * )
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* ApiClient.ApiClient
 *   const response = yield* client.get("/me")
 *   console.log(yield* response.json) // { bearer: true }
 * })
 * Effect.runPromise(Effect.provide(program, ApiLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Omit<Options, "tokens" | "limiter">
): Layer.Layer<
  ApiClient,
  TollgateError.InvalidArgument,
  HttpClient.HttpClient | TokenCache.TokenCache | RateLimiter.RateLimiter
> =>
  Layer.scoped(
    ApiClient,
    Effect.flatMap(Effect.all([TokenCache.TokenCache, RateLimiter.RateLimiter]), ([tokens, limiter]) =>
      make({ ...options, tokens, limiter }))
  )
