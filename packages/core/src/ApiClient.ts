/**
 * The authenticated, rate-limited HTTP client: an `HttpClient` that composes, in this order, base URL
 * and fixed headers → a rate-limiter permit → a bearer token from the token cache → send → on 401,
 * renew exactly that token and retry once → on 429, close the gate until the server's reset and retry
 * under a bounded policy → on `Remaining: 0`, close the gate before the next request → on transient
 * failures, back off with jitter (idempotent methods only, unless the caller opts in).
 *
 * Request and response bodies stream through untouched. Leave out the token cache for an API without
 * auth, or the limiter for one without limits; each is an option, so a test can swap any for a fake.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import {
  Context,
  DateTime,
  Duration,
  Effect,
  FiberRef,
  Inspectable,
  Layer,
  Metric,
  MetricBoundaries,
  Option,
  Random,
  Redacted
} from "effect"
import type { Scope } from "effect"
import type * as AccessToken from "./AccessToken.js"
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

/**
 * The authenticated client is an ordinary `HttpClient` whose error channel says what can go wrong.
 *
 * @since 0.1.0
 * @category models
 */
export type Service = HttpClient.HttpClient.With<Error>

/**
 * The client of a program that talks to one API. Each provider module has a Tag of its own with the
 * same service type, so one program can talk to several APIs at once.
 *
 * @since 0.1.0
 * @category tags
 */
export class ApiClient extends Context.Tag("@tollgate/core/ApiClient")<ApiClient, Service>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface RetryOptions {
  /** Retries after a 429 before failing with `RateLimited`. Default: 3. */
  readonly rateLimited?: number | undefined
  /** Retries after a 5xx, a transport error or a timeout. Default: 2. */
  readonly transient?: number | undefined
  /** First backoff, doubled per retry, with jitter. Default: 500 milliseconds. */
  readonly baseDelay?: Duration.DurationInput | undefined
  /** Default: 30 seconds. */
  readonly maxDelay?: Duration.DurationInput | undefined
  /**
   * A 429 whose reset is further away than this fails at once with `RateLimited` (the gate stays
   * closed for every other request). Default: 5 minutes.
   */
  readonly maxWait?: Duration.DurationInput | undefined
  /** Also retry transient failures of non-idempotent methods (POST, PATCH). Default: false. */
  readonly nonIdempotent?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Names the provider in errors, spans and metrics. */
  readonly provider: string
  /** Prepended to relative request URLs. */
  readonly baseUrl?: string | undefined
  /** Added to every request (e.g. `ApplicationId`, `accountId`). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Where bearer tokens come from; without it requests are sent unauthenticated. */
  readonly tokens?: TokenCache.Service | undefined
  /** The request budget; without it only the server's own 429s and `Remaining: 0` pace requests. */
  readonly limiter?: RateLimiter.Service | undefined
  /** The limiter key of a request. Default: `"METHOD /path"`. */
  readonly keyOf?: ((request: HttpClientRequest.HttpClientRequest) => string) | undefined
  /** Bound on each attempt, from sending to the response headers. Default: none. */
  readonly timeout?: Duration.DurationInput | undefined
  /** Fail at once when the limiter predicts a longer wait than this. Default: none. */
  readonly permitDeadline?: Duration.DurationInput | undefined
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
  readonly cost?: number | undefined
  readonly permitDeadline?: Duration.DurationInput | undefined
  readonly retryNonIdempotent?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category fiber refs
 */
export const currentRequestOptions: FiberRef.FiberRef<RequestOptions> = FiberRef.unsafeMake<RequestOptions>({})

/**
 * Runs `effect` with per-request settings: its cost in permits, a deadline for the permit, or opting a
 * non-idempotent request into transient retries.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withRequestOptions: {
  (options: RequestOptions): <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(effect: Effect.Effect<A, E, R>, options: RequestOptions): Effect.Effect<A, E, R>
} = function() {
  if (arguments.length === 1) {
    const options = arguments[0] as RequestOptions
    return <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.locally(effect, currentRequestOptions, options)
  }
  return Effect.locally(arguments[0], currentRequestOptions, arguments[1] as RequestOptions)
} as any

/**
 * @since 0.1.0
 * @category constants
 */
export const idempotentMethods: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"])

const requestsTotal = Metric.counter("tollgate_requests_total", {
  description: "Requests sent through Tollgate, by provider and response status class",
  incremental: true
})
const retriesTotal = Metric.counter("tollgate_retries_total", {
  description: "Requests retried, by provider and reason",
  incremental: true
})
const permitWait = Metric.histogram(
  "tollgate_permit_wait_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 4, count: 12 }),
  "Time requests spent waiting for a rate-limit permit"
)

const defaultKeyOf = (request: HttpClientRequest.HttpClientRequest): string => {
  const url = request.url
  const query = url.indexOf("?")
  const path = URL.canParse(url) ? new URL(url).pathname : query === -1 ? url : url.slice(0, query)
  return `${request.method} ${path}`
}

const isAbsolute = (url: string): boolean => /^[a-z][a-z0-9+.-]*:/i.test(url)

const joinUrl = (base: string, url: string): string => {
  if (url.length === 0) return base
  if (base.endsWith("/") && url.startsWith("/")) return base + url.slice(1)
  if (!base.endsWith("/") && !url.startsWith("/") && !url.startsWith("?")) return `${base}/${url}`
  return base + url
}

/**
 * Reads the `error` parameter of a Bearer challenge (RFC 6750 §3): `invalid_token` means renew,
 * `insufficient_scope` means a new token will not help.
 *
 * @since 0.1.0
 * @category parsing
 */
export const bearerChallenge = (header: string | undefined): Option.Option<string> => {
  if (header === undefined) return Option.none()
  const match = /error\s*=\s*"?([a-z_]+)"?/i.exec(header)
  return match?.[1] === undefined ? Option.none() : Option.some(match[1].toLowerCase())
}

/**
 * The same response, reporting `request` as the request it answers. Platform responses and errors
 * print their request's headers, and outside a fiber nothing redacts them; the platform's own
 * response wrapper prints its original's request whatever you override. So the response handed back
 * is a thin view over the original whose `request` and printed form are those of the request the
 * caller built, before the bearer token was added.
 */
class AnsweredResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  declare private readonly original: HttpClientResponse.HttpClientResponse

  constructor(original: HttpClientResponse.HttpClientResponse, readonly request: HttpClientRequest.HttpClientRequest) {
    super()
    // Not enumerable, so no generic printer walks into the original and its request.
    Object.defineProperty(this, "original", { value: original, enumerable: false })
  }
  get status() {
    return this.original.status
  }
  get headers() {
    return this.original.headers
  }
  get cookies() {
    return this.original.cookies
  }
  get remoteAddress() {
    return this.original.remoteAddress
  }
  get formData() {
    return this.original.formData
  }
  get json() {
    return this.original.json
  }
  get text() {
    return this.original.text
  }
  get urlParamsBody() {
    return this.original.urlParamsBody
  }
  get arrayBuffer() {
    return this.original.arrayBuffer
  }
  get stream() {
    return this.original.stream
  }
  toJSON(): unknown {
    return HttpIncomingMessage.inspect(this, {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status
    })
  }
}

const answering = (
  response: HttpClientResponse.HttpClientResponse,
  request: HttpClientRequest.HttpClientRequest
): HttpClientResponse.HttpClientResponse => new AnsweredResponse(response, request)

const withoutCredentials = (error: Error, request: HttpClientRequest.HttpClientRequest): Error => {
  switch (error._tag) {
    case "RequestError":
      return new HttpClientError.RequestError({
        request,
        reason: error.reason,
        cause: error.cause,
        ...(error.description === undefined ? {} : { description: error.description })
      })
    case "ResponseError":
      return new HttpClientError.ResponseError({
        request,
        response: answering(error.response, request),
        reason: error.reason,
        cause: error.cause,
        ...(error.description === undefined ? {} : { description: error.description })
      })
    default:
      return error
  }
}

// A stream body is consumed by the first attempt; any other body can be sent again.
const isReplayable = (request: HttpClientRequest.HttpClientRequest): boolean => request.body._tag !== "Stream"

type Attempt =
  | { readonly _tag: "Response"; readonly response: HttpClientResponse.HttpClientResponse }
  | {
    readonly _tag: "Unauthorized"
    readonly response: HttpClientResponse.HttpClientResponse
    readonly token: AccessToken.AccessToken
  }
  | { readonly _tag: "RateLimited"; readonly response: HttpClientResponse.HttpClientResponse; readonly retryAt: number }

/**
 * Builds the client over the `HttpClient` in context (the transport: undici, fetch, or an in-memory
 * fake). Without a limiter in `options`, a gate-only one is made in the current scope, so a 429 still
 * pauses every request.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, never, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const base = yield* HttpClient.HttpClient
    const limiter = options.limiter ?? (yield* RateLimiter.make(RateLimiter.unlimited, { provider: options.provider }))
    const tokens = options.tokens
    const provider = options.provider
    const keyOf = options.keyOf ?? defaultKeyOf
    const headers = options.headers ?? {}
    const baseUrl = options.baseUrl
    const timeout = options.timeout === undefined ? undefined : Duration.decode(options.timeout)
    const maxRateLimited = options.retry?.rateLimited ?? 3
    const maxTransient = options.retry?.transient ?? 2
    const baseDelay = Duration.toMillis(options.retry?.baseDelay ?? Duration.millis(500))
    const maxDelay = Duration.toMillis(options.retry?.maxDelay ?? Duration.seconds(30))
    const maxWait = Duration.toMillis(options.retry?.maxWait ?? Duration.minutes(5))
    const retryNonIdempotent = options.retry?.nonIdempotent ?? false
    const resetFormat = options.resetFormat

    const tagged = <M extends Metric.Metric<any, any, any>>(metric: M, key: string, value: string): M =>
      Metric.tagged(Metric.tagged(metric, "provider", provider), key, value) as M
    const statusCounters = {
      "2xx": tagged(requestsTotal, "status", "2xx"),
      "3xx": tagged(requestsTotal, "status", "3xx"),
      "4xx": tagged(requestsTotal, "status", "4xx"),
      "5xx": tagged(requestsTotal, "status", "5xx"),
      "401": tagged(requestsTotal, "status", "401"),
      "429": tagged(requestsTotal, "status", "429")
    }
    const retryCounters = {
      unauthorized: tagged(retriesTotal, "reason", "401"),
      rateLimited: tagged(retriesTotal, "reason", "429"),
      transient: tagged(retriesTotal, "reason", "transient")
    }
    const waitHistogram = Metric.tagged(permitWait, "provider", provider)
    const countStatus = (status: number) =>
      Metric.update(
        status === 401
          ? statusCounters["401"]
          : status === 429
          ? statusCounters["429"]
          : status >= 500
          ? statusCounters["5xx"]
          : status >= 400
          ? statusCounters["4xx"]
          : status >= 300
          ? statusCounters["3xx"]
          : statusCounters["2xx"],
        1
      )

    const prepare = (request: HttpClientRequest.HttpClientRequest) => {
      let prepared = baseUrl !== undefined && !isAbsolute(request.url)
        ? HttpClientRequest.setUrl(request, joinUrl(baseUrl, request.url))
        : request
      // Fixed headers do not override what the caller set on the request.
      for (const [name, value] of Object.entries(headers)) {
        if (prepared.headers[name.toLowerCase()] === undefined) {
          prepared = HttpClientRequest.setHeader(prepared, name, value)
        }
      }
      return prepared
    }

    const backoff = (retry: number) =>
      Effect.map(Random.next, (r) => {
        const delay = Math.min(maxDelay, baseDelay * 2 ** retry)
        return Math.round(delay / 2 + (delay / 2) * r)
      })

    const sendOnce = (
      request: HttpClientRequest.HttpClientRequest,
      subject: RateLimiter.Subject
    ): Effect.Effect<readonly [HttpClientResponse.HttpClientResponse, Option.Option<AccessToken.AccessToken>], Error> =>
      Effect.gen(function*() {
        const token = tokens === undefined ? Option.none() : Option.some(yield* tokens.get)
        // A 429 seen by another fiber while this one waited for its token closes the gate for it too.
        yield* limiter.awaitGate(subject)
        const authorized = Option.match(token, {
          onNone: () => request,
          onSome: (token) => HttpClientRequest.setHeader(request, "authorization", Redacted.value(token.authorization))
        })
        const sent = base.execute(authorized)
        const response = yield* (timeout === undefined ? sent : Effect.timeoutFail(sent, {
          duration: timeout,
          onTimeout: () => new TollgateError.Timeout({ provider, operation: "API request", after: timeout })
        }))
        const now = yield* DateTime.now
        const info = RateLimitHeaders.parse(response.headers, now, { resetFormat })
        if (RateLimitHeaders.isInformative(info)) yield* limiter.observe(info, subject)
        yield* countStatus(response.status)
        return [response, token] as const
      })

    const attempt = (
      request: HttpClientRequest.HttpClientRequest,
      retriesSoFar: number
    ): Effect.Effect<Attempt, Error> =>
      Effect.gen(function*() {
        const perRequest = yield* FiberRef.get(currentRequestOptions)
        const subject: RateLimiter.Subject = { key: keyOf(request), request }
        const deadline = perRequest.permitDeadline ?? options.permitDeadline
        const queuedAt = yield* DateTime.now
        const [response, token] = yield* limiter.withPermit({ ...subject, cost: perRequest.cost, deadline })(
          Effect.zipRight(
            Effect.flatMap(DateTime.now, (now) =>
              Metric.update(waitHistogram, (now.epochMillis - queuedAt.epochMillis) / 1000)),
            sendOnce(request, subject)
          )
        )
        if (response.status === 401 && Option.isSome(token)) {
          return { _tag: "Unauthorized", response, token: token.value } as const
        }
        if (response.status === 429) {
          const now = yield* DateTime.now
          const info = RateLimitHeaders.parse(response.headers, now, { resetFormat })
          const announced = RateLimitHeaders.waitUntil(info)
          const retryAt = Option.isSome(announced)
            ? announced.value.epochMillis
            : now.epochMillis + (yield* backoff(retriesSoFar))
          yield* limiter.pauseUntil(DateTime.unsafeMake(retryAt), {
            ...subject,
            limit: Option.getOrUndefined(info.limit)
          })
          return { _tag: "RateLimited", response, retryAt } as const
        }
        return { _tag: "Response", response } as const
      })

    const discard = (response: HttpClientResponse.HttpClientResponse) => Effect.ignore(response.arrayBuffer)

    const execute = (
      request: HttpClientRequest.HttpClientRequest
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, Error> => {
      const prepared = prepare(request)
      const replayable = isReplayable(prepared)
      const loop = (
        state: { readonly renewed: boolean; readonly rateLimited: number; readonly transient: number }
      ): Effect.Effect<HttpClientResponse.HttpClientResponse, Error> =>
        Effect.gen(function*() {
          const perRequest = yield* FiberRef.get(currentRequestOptions)
          const idempotent = idempotentMethods.has(prepared.method) || retryNonIdempotent ||
            perRequest.retryNonIdempotent === true
          const retries = state.rateLimited + state.transient + (state.renewed ? 1 : 0)
          const outcome = yield* Effect.either(attempt(prepared, retries))
          if (outcome._tag === "Left") {
            const error = outcome.left
            const transient = (error._tag === "RequestError" && error.reason === "Transport") ||
              error._tag === "Timeout"
            if (transient && idempotent && replayable && state.transient < maxTransient) {
              yield* Metric.update(retryCounters.transient, 1)
              yield* Effect.sleep(Duration.millis(yield* backoff(state.transient)))
              return yield* loop({ ...state, transient: state.transient + 1 })
            }
            return yield* Effect.fail(error)
          }
          const result = outcome.right
          switch (result._tag) {
            case "Unauthorized": {
              const challenge = bearerChallenge(result.response.headers["www-authenticate"])
              const renewable = Option.getOrUndefined(challenge) !== "insufficient_scope"
              // Drop exactly the token that was refused: a newer one installed meanwhile survives.
              if (renewable) yield* tokens!.invalidate(result.token)
              if (!state.renewed && renewable && replayable) {
                yield* discard(result.response)
                yield* Metric.update(retryCounters.unauthorized, 1)
                return yield* loop({ ...state, renewed: true })
              }
              yield* discard(result.response)
              return yield* Effect.fail(
                new TollgateError.Unauthorized({
                  provider,
                  status: 401,
                  challenge: Option.getOrUndefined(challenge),
                  description: state.renewed ? "a freshly obtained token was refused as well" : undefined
                })
              )
            }
            case "RateLimited": {
              const now = yield* DateTime.now
              if (state.rateLimited < maxRateLimited && replayable && result.retryAt - now.epochMillis <= maxWait) {
                yield* discard(result.response)
                yield* Metric.update(retryCounters.rateLimited, 1)
                // The gate is closed until `retryAt`; the retry waits for it inside the limiter.
                return yield* loop({ ...state, rateLimited: state.rateLimited + 1 })
              }
              yield* discard(result.response)
              return yield* Effect.fail(
                new TollgateError.RateLimited({
                  provider,
                  reason: "server",
                  key: keyOf(prepared),
                  retryAt: DateTime.unsafeMake(result.retryAt)
                })
              )
            }
            case "Response": {
              const response = result.response
              if (response.status < 500) return response
              if (idempotent && replayable && state.transient < maxTransient) {
                const now = yield* DateTime.now
                const retryAfter = RateLimitHeaders.parseRetryAfter(response.headers["retry-after"], now)
                const delay = Math.max(
                  yield* backoff(state.transient),
                  Option.match(retryAfter, { onNone: () => 0, onSome: (at) => at.epochMillis - now.epochMillis })
                )
                if (delay <= maxWait) {
                  yield* discard(response)
                  yield* Metric.update(retryCounters.transient, 1)
                  yield* Effect.sleep(Duration.millis(delay))
                  return yield* loop({ ...state, transient: state.transient + 1 })
                }
              }
              return yield* Effect.fail(
                new HttpClientError.ResponseError({
                  request: prepared,
                  response,
                  reason: "StatusCode",
                  description: `${provider} answered HTTP ${response.status} after ${state.transient + 1} attempt(s)`
                })
              )
            }
          }
        })
      return loop({ renewed: false, rateLimited: 0, transient: 0 }).pipe(
        Effect.mapBoth({
          onFailure: (error) => withoutCredentials(error, prepared),
          onSuccess: (response) => answering(response, prepared)
        }),
        Effect.withSpan("tollgate.request", {
          kind: "client",
          attributes: {
            "tollgate.provider": provider,
            "http.request.method": prepared.method,
            "url.path": keyOf(prepared).slice(prepared.method.length + 1)
          }
        })
      )
    }

    return HttpClient.makeWith(
      (request: Effect.Effect<HttpClientRequest.HttpClientRequest, never, never>) => Effect.flatMap(request, execute),
      Effect.succeed as HttpClient.HttpClient.Preprocess<never, never>
    )
  })

/**
 * The client of a single-API program, from the `TokenCache` and `RateLimiter` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Omit<Options, "tokens" | "limiter">
): Layer.Layer<ApiClient, never, HttpClient.HttpClient | TokenCache.TokenCache | RateLimiter.RateLimiter> =>
  Layer.scoped(
    ApiClient,
    Effect.gen(function*() {
      const tokens = yield* TokenCache.TokenCache
      const limiter = yield* RateLimiter.RateLimiter
      return yield* make({ ...options, tokens, limiter })
    })
  )
