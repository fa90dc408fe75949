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
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import {
  Context,
  DateTime,
  Duration,
  Effect,
  FiberRef,
  Function,
  Inspectable,
  Layer,
  Metric,
  MetricBoundaries,
  Option,
  Random,
  Redacted,
  Stream,
  Tracer
} from "effect"
import type { Scope } from "effect"
import type * as AccessToken from "./AccessToken.js"
import * as Deadlines from "./internal/deadlines.js"
import * as Metrics from "./internal/metrics.js"
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
  /**
   * Consecutive 429s, with no other request of this client admitted in between, before failing with
   * `RateLimited`: while the server still admits others, a retried request keeps its place and waits.
   * Default: 3.
   */
  readonly rateLimited?: number | undefined
  /** Retries after a 5xx, a transport error or a timeout. Default: 2. */
  readonly transient?: number | undefined
  /** First backoff, doubled per retry, with jitter. Default: 500 milliseconds. */
  readonly baseDelay?: Duration.DurationInput | undefined
  /** Default: 30 seconds. */
  readonly maxDelay?: Duration.DurationInput | undefined
  /**
   * A 429 whose reset is further away than this fails at once with `RateLimited` (the gate stays
   * closed for every other request), and so does a request still refused this long after its first 429.
   * Default: 5 minutes.
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
  /** The request budget. Default: `RateLimiter.learned()`, the budget the server's headers announce. */
  readonly limiter?: RateLimiter.Service | undefined
  /** The limiter key of a request. Default: `"METHOD /path"`. */
  readonly keyOf?: ((request: HttpClientRequest.HttpClientRequest) => string) | undefined
  /**
   * Bound on each attempt, from sending to the response headers (the body streams afterwards, unbounded).
   * Default: 30 seconds; `Duration.infinity` turns it off.
   */
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
  /** Higher is admitted first (see `RateLimiter.PermitOptions.priority`). Default: 0. */
  readonly priority?: number | undefined
  readonly permitDeadline?: Duration.DurationInput | undefined
  readonly retryNonIdempotent?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category fiber refs
 */
export const currentRequestOptions: FiberRef.FiberRef<RequestOptions> = FiberRef.unsafeMake<RequestOptions>({})

/**
 * Runs `effect` with per-request settings: its cost in permits, its priority, a deadline for the permit,
 * or opting a non-idempotent request into transient retries.
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
export const defaultTimeout: Duration.Duration = Duration.seconds(30)

/**
 * @since 0.1.0
 * @category constants
 */
export const idempotentMethods: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"])

const permitWaitBoundaries = MetricBoundaries.exponential({ start: 0.001, factor: 4, count: 12 })

// The path of an absolute or relative URL, without query or fragment, found without a URL parser: this
// runs for every request.
const pathOf = (url: string): string => {
  const scheme = url.indexOf("://")
  const start = scheme === -1 ? 0 : url.indexOf("/", scheme + 3)
  if (start === -1) return "/"
  let end = url.length
  const query = url.indexOf("?", start)
  if (query !== -1) end = query
  const hash = url.indexOf("#", start)
  if (hash !== -1 && hash < end) end = hash
  return end === start ? "/" : url.slice(start, end)
}

const defaultKeyOf = (request: HttpClientRequest.HttpClientRequest): string =>
  `${request.method} ${pathOf(request.url)}`

// Headers that carry rate-limit information; a response with none of them needs no parsing.
const rateLimitHeaderNames = [
  "retry-after",
  "x-ratelimit-remaining",
  "x-ratelimit-reset",
  "x-ratelimit-limit",
  "x-rate-limit-remaining",
  "x-rate-limit-reset",
  "x-rate-limit-limit",
  "ratelimit",
  "ratelimit-remaining",
  "ratelimit-reset",
  "ratelimit-limit",
  "ratelimit-policy"
]

const hasRateLimitHeaders = (headers: Readonly<Record<string, string>>): boolean => {
  for (const name of rateLimitHeaderNames) if (headers[name] !== undefined) return true
  return false
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
    return Effect.mapError(this.original.formData, (error) => this.answered(error))
  }
  get json() {
    return Effect.mapError(this.original.json, (error) => this.answered(error))
  }
  get text() {
    return Effect.mapError(this.original.text, (error) => this.answered(error))
  }
  get urlParamsBody() {
    return Effect.mapError(this.original.urlParamsBody, (error) => this.answered(error))
  }
  get arrayBuffer() {
    return Effect.mapError(this.original.arrayBuffer, (error) => this.answered(error))
  }
  get stream() {
    return Stream.mapError(this.original.stream, (error) => this.answered(error))
  }
  // A body that fails to arrive (a connection dropped mid-body) fails with the platform's error, which
  // holds the request as sent, bearer token included, and prints it unredacted outside a fiber: it is
  // re-made to name this response and the caller's request instead.
  private answered(error: HttpClientError.ResponseError): HttpClientError.ResponseError {
    return new HttpClientError.ResponseError({
      request: this.request,
      response: this,
      reason: error.reason,
      cause: error.cause,
      ...(error.description === undefined ? {} : { description: error.description })
    })
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
 * fake). Without a limiter in `options`, a `RateLimiter.learned()` one is made in the current scope: the
 * budget the server's headers announce, with a 429 pausing every request.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, never, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const base = yield* HttpClient.HttpClient
    const clock = yield* Effect.clock
    const limiter = options.limiter ??
      (yield* Effect.orDie(RateLimiter.make(RateLimiter.learned(), { provider: options.provider })))
    const tokens = options.tokens
    const provider = options.provider
    const keyOf = options.keyOf ?? defaultKeyOf
    const fixedHeaders = Object.entries(options.headers ?? {})
    const baseUrl = options.baseUrl
    const requestedTimeout = Duration.decode(options.timeout ?? defaultTimeout)
    const timeout = Duration.isFinite(requestedTimeout) ? requestedTimeout : undefined
    const timeoutMillis = timeout === undefined ? 0 : Duration.toMillis(timeout)
    const deadlines = timeout === undefined ? undefined : yield* Deadlines.make
    const maxRateLimited = options.retry?.rateLimited ?? 3
    const maxTransient = options.retry?.transient ?? 2
    const baseDelay = Duration.toMillis(options.retry?.baseDelay ?? Duration.millis(500))
    const maxDelay = Duration.toMillis(options.retry?.maxDelay ?? Duration.seconds(30))
    const maxWait = Duration.toMillis(options.retry?.maxWait ?? Duration.minutes(5))
    const retryNonIdempotent = options.retry?.nonIdempotent ?? false
    const parseOptions = { resetFormat: options.resetFormat }
    const now = () => clock.unsafeCurrentTimeMillis()

    const requests = (status: string) =>
      Metrics.counter("tollgate_requests_total", "Requests sent through Tollgate, by response status class", {
        provider,
        status
      })
    const retries = (reason: string) =>
      Metrics.counter("tollgate_retries_total", "Requests retried, by reason", { provider, reason })
    const statusCounters = {
      "2xx": requests("2xx"),
      "3xx": requests("3xx"),
      "4xx": requests("4xx"),
      "5xx": requests("5xx"),
      "401": requests("401"),
      "429": requests("429")
    }
    const retryCounters = {
      unauthorized: retries("401"),
      rateLimited: retries("429"),
      transient: retries("transient")
    }
    const waitHistogram = Metrics.histogram(
      "tollgate_permit_wait_seconds",
      permitWaitBoundaries,
      "Time requests that queued spent waiting for a rate-limit permit",
      { provider }
    )
    const statusCounter = (status: number) =>
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
        : statusCounters["2xx"]

    // The Authorization value of each token, built once per token rather than once per request.
    const authorizations = new WeakMap<AccessToken.AccessToken, string>()
    const authorize = (request: HttpClientRequest.HttpClientRequest, token: AccessToken.AccessToken) => {
      let value = authorizations.get(token)
      if (value === undefined) {
        value = `Bearer ${Redacted.value(token.value)}`
        authorizations.set(token, value)
      }
      return HttpClientRequest.setHeader(request, "authorization", value)
    }

    const prepare = (request: HttpClientRequest.HttpClientRequest) => {
      let prepared = baseUrl !== undefined && !isAbsolute(request.url)
        ? HttpClientRequest.setUrl(request, joinUrl(baseUrl, request.url))
        : request
      // Fixed headers do not override what the caller set on the request.
      for (const [name, value] of fixedHeaders) {
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

    const noToken = Effect.succeed(Option.none<AccessToken.AccessToken>())
    const currentToken = tokens === undefined ? noToken : Effect.map(tokens.get, Option.some)

    // The platform's own span around an attempt would end holding the request as sent, bearer token
    // included (as its response's and its errors' `request`), which a tracer printing span exits outside
    // a fiber shows unredacted. As for token requests, it is switched off; the trace context still
    // travels, from the `tollgate.request` span around the whole request.
    const send = (
      request: HttpClientRequest.HttpClientRequest,
      token: Option.Option<AccessToken.AccessToken>
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, Error> =>
      Effect.withFiberRuntime((fiber) => {
        let outgoing = token._tag === "Some" ? authorize(request, token.value) : request
        const parent = Context.getOption(fiber.currentContext, Tracer.ParentSpan)
        if (
          parent._tag === "Some" && parent.value._tag === "Span" &&
          fiber.getFiberRef(FiberRef.currentTracerEnabled) &&
          fiber.getFiberRef(HttpClient.currentTracerPropagation) &&
          !fiber.getFiberRef(HttpClient.currentTracerDisabledWhen)(outgoing)
        ) {
          outgoing = HttpClientRequest.setHeaders(outgoing, HttpTraceContext.toHeaders(parent.value))
        }
        const sent = Effect.locally(base.execute(outgoing), HttpClient.currentTracerDisabledWhen, Function.constTrue)
        return deadlines === undefined || timeout === undefined ? sent : deadlines.bound(
          sent,
          timeoutMillis,
          () => new TollgateError.Timeout({ provider, operation: "API request", after: timeout })
        )
      })

    // Holding a permit: the token, the gate, the request, and what the response says about the budget.
    const sendWithPermit = (
      request: HttpClientRequest.HttpClientRequest,
      subject: RateLimiter.Subject,
      permit: RateLimiter.PermitOptions,
      queuedAt: number
    ): Effect.Effect<readonly [HttpClientResponse.HttpClientResponse, Option.Option<AccessToken.AccessToken>], Error> =>
      Effect.suspend(() => {
        // Only requests that queued are timed: the histogram then shows how long waits are, and an
        // uncontended request pays for no metric update.
        const waited = now() - queuedAt
        const recordWait = waited > 0 ? Metric.update(waitHistogram, waited / 1000) : Effect.void
        return Effect.zipRight(
          recordWait,
          Effect.flatMap(currentToken, (token) =>
            // A 429 seen by another fiber while this one waited for its token closes the gate for it too.
            Effect.zipRight(
              limiter.awaitGate(subject),
              Effect.flatMap(send(request, token), (response) => {
                // Every response is reported, one that says nothing too: a learning budget counts those.
                const observed = limiter.observe(
                  hasRateLimitHeaders(response.headers)
                    ? RateLimitHeaders.parse(response.headers, DateTime.unsafeMake(now()), parseOptions)
                    : RateLimitHeaders.empty,
                  permit
                )
                return Effect.as(
                  Effect.zipRight(observed, Metric.update(statusCounter(response.status), 1)),
                  [response, token] as const
                )
              })
            ))
        )
      })

    const attempt = (
      request: HttpClientRequest.HttpClientRequest,
      subject: RateLimiter.Subject,
      permit: RateLimiter.PermitOptions,
      queuedAt: number,
      retriesSoFar: number
    ): Effect.Effect<Attempt, Error> =>
      Effect.flatMap(
        limiter.withPermit(permit)(Effect.suspend(() => sendWithPermit(request, subject, permit, queuedAt))),
        ([response, token]): Effect.Effect<Attempt> => {
          if (response.status === 401 && Option.isSome(token)) {
            return Effect.succeed({ _tag: "Unauthorized", response, token: token.value })
          }
          if (response.status !== 429) {
            admitted++
            return Effect.succeed({ _tag: "Response", response })
          }
          const at = now()
          const info = RateLimitHeaders.parse(response.headers, DateTime.unsafeMake(at), parseOptions)
          const announced = RateLimitHeaders.waitUntil(info)
          return Effect.flatMap(
            Option.isSome(announced)
              ? Effect.succeed(announced.value.epochMillis)
              : Effect.map(backoff(retriesSoFar), (d) => at + d),
            (retryAt) =>
              Effect.as(
                limiter.pauseUntil(DateTime.unsafeMake(retryAt), {
                  ...subject,
                  limit: Option.getOrUndefined(info.limit)
                }),
                { _tag: "RateLimited", response, retryAt } as const
              )
          )
        }
      )

    const discard = (response: HttpClientResponse.HttpClientResponse) => Effect.ignore(response.arrayBuffer)

    interface State {
      readonly renewed: boolean
      /** 429s in a row with no other request admitted in between. */
      readonly rateLimited: number
      readonly transient: number
      readonly firstLimitedAt: number | undefined
      /** `admitted` at the last 429. */
      readonly admittedAt: number
    }
    // Responses other than 429 this client got: whether the server still admits anyone.
    let admitted = 0

    const execute = (
      request: HttpClientRequest.HttpClientRequest
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, Error> => {
      const prepared = prepare(request)
      const key = keyOf(prepared)
      const subject: RateLimiter.Subject = { key, request: prepared }
      const replayable = isReplayable(prepared)
      const run = Effect.flatMap(FiberRef.get(currentRequestOptions), (perRequest) => {
        const idempotent = idempotentMethods.has(prepared.method) || retryNonIdempotent ||
          perRequest.retryNonIdempotent === true
        const deadline = perRequest.permitDeadline ?? options.permitDeadline
        // A retry keeps the place its request took when it first asked for a permit.
        const requestedAt = now()
        const loop = (state: State): Effect.Effect<HttpClientResponse.HttpClientResponse, Error> => {
          const retries = state.rateLimited + state.transient + (state.renewed ? 1 : 0)
          const permit: RateLimiter.PermitOptions = {
            key,
            request: prepared,
            cost: perRequest.cost,
            deadline,
            priority: perRequest.priority,
            requestedAt
          }
          return Effect.matchEffect(attempt(prepared, subject, permit, now(), retries), {
            onFailure: (error) => {
              const transient = (error._tag === "RequestError" && error.reason === "Transport") ||
                error._tag === "Timeout"
              if (transient && idempotent && replayable && state.transient < maxTransient) {
                return Effect.zipRight(
                  Effect.zipRight(
                    Metric.update(retryCounters.transient, 1),
                    Effect.flatMap(backoff(state.transient), (delay) => Effect.sleep(Duration.millis(delay)))
                  ),
                  Effect.suspend(() => loop({ ...state, transient: state.transient + 1 }))
                )
              }
              return Effect.fail(error)
            },
            onSuccess: (result) => {
              switch (result._tag) {
                case "Response":
                  return result.response.status < 500
                    ? Effect.succeed(result.response)
                    : serverError(result.response, state, idempotent, replayable, loop)
                case "Unauthorized":
                  return unauthorized(result, state, replayable, loop)
                case "RateLimited":
                  return rateLimited(result, state, replayable, loop)
              }
            }
          })
        }
        return loop({ renewed: false, rateLimited: 0, transient: 0, firstLimitedAt: undefined, admittedAt: -1 })
      })
      return run.pipe(
        Effect.mapBoth({
          onFailure: (error) => withoutCredentials(error, prepared),
          onSuccess: (response) => answering(response, prepared)
        }),
        Effect.tap((response) => Effect.annotateCurrentSpan("http.response.status_code", response.status)),
        Effect.withSpan("tollgate.request", {
          kind: "client",
          captureStackTrace: false,
          attributes: {
            "tollgate.provider": provider,
            "http.request.method": prepared.method,
            "url.path": pathOf(prepared.url)
          }
        })
      )
    }

    type Loop = (state: State) => Effect.Effect<HttpClientResponse.HttpClientResponse, Error>

    const unauthorized = (
      result: Extract<Attempt, { _tag: "Unauthorized" }>,
      state: State,
      replayable: boolean,
      loop: Loop
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, Error> => {
      const challenge = bearerChallenge(result.response.headers["www-authenticate"])
      const renewable = Option.getOrUndefined(challenge) !== "insufficient_scope"
      // Drop exactly the token that was refused: a newer one installed meanwhile survives.
      const invalidate = renewable ? Effect.asVoid(tokens!.invalidate(result.token)) : Effect.void
      if (!state.renewed && renewable && replayable) {
        return Effect.zipRight(
          Effect.zipRight(
            Effect.zipRight(invalidate, discard(result.response)),
            Metric.update(retryCounters.unauthorized, 1)
          ),
          Effect.suspend(() => loop({ ...state, renewed: true }))
        )
      }
      return Effect.zipRight(
        Effect.zipRight(invalidate, discard(result.response)),
        Effect.fail(
          new TollgateError.Unauthorized({
            provider,
            status: 401,
            challenge: Option.getOrUndefined(challenge),
            description: state.renewed ? "a freshly obtained token was refused as well" : undefined
          })
        )
      )
    }

    const rateLimited = (
      result: Extract<Attempt, { _tag: "RateLimited" }>,
      state: State,
      replayable: boolean,
      loop: Loop
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, Error> => {
      const at = now()
      const firstLimitedAt = state.firstLimitedAt ?? at
      // Only 429s with nobody admitted in between count: while the server admits others, this request
      // (first in line again, at its old place) is just waiting its turn.
      const consecutive = admitted === state.admittedAt ? state.rateLimited + 1 : 1
      if (
        consecutive <= maxRateLimited && replayable && result.retryAt - at <= maxWait &&
        result.retryAt - firstLimitedAt <= maxWait
      ) {
        // The gate is closed until `retryAt`; the retry waits for it inside the limiter.
        return Effect.zipRight(
          Effect.zipRight(discard(result.response), Metric.update(retryCounters.rateLimited, 1)),
          Effect.suspend(() => loop({ ...state, rateLimited: consecutive, firstLimitedAt, admittedAt: admitted }))
        )
      }
      return Effect.zipRight(
        discard(result.response),
        Effect.fail(
          new TollgateError.RateLimited({
            provider,
            reason: "server",
            key: keyOf(result.response.request),
            retryAt: DateTime.unsafeMake(result.retryAt)
          })
        )
      )
    }

    const serverError = (
      response: HttpClientResponse.HttpClientResponse,
      state: State,
      idempotent: boolean,
      replayable: boolean,
      loop: Loop
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, Error> => {
      const giveUp = Effect.fail(
        new HttpClientError.ResponseError({
          request: response.request,
          response,
          reason: "StatusCode",
          description: `${provider} answered HTTP ${response.status} after ${state.transient + 1} attempt(s)`
        })
      )
      if (!(idempotent && replayable && state.transient < maxTransient)) return giveUp
      return Effect.flatMap(backoff(state.transient), (backoffMillis) => {
        const at = now()
        const retryAfter = RateLimitHeaders.parseRetryAfter(response.headers["retry-after"], DateTime.unsafeMake(at))
        const delay = Math.max(
          backoffMillis,
          Option.match(retryAfter, { onNone: () => 0, onSome: (instant) => instant.epochMillis - at })
        )
        if (delay > maxWait) return giveUp
        return Effect.zipRight(
          Effect.zipRight(
            Effect.zipRight(discard(response), Metric.update(retryCounters.transient, 1)),
            Effect.sleep(Duration.millis(delay))
          ),
          Effect.suspend(() => loop({ ...state, transient: state.transient + 1 }))
        )
      })
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
