/**
 * One request to a token endpoint, from the wire to a typed result. Every provider's `TokenSource` is
 * built on it, so every provider gets the same guarantees: a bounded time, no platform span or error
 * that could carry the credentials, HTTP statuses mapped to typed errors, and malformed bodies
 * described by field and kind, never by value.
 *
 * @since 0.1.0
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { DateTime, Duration, Effect, Either, Function, Option, Predicate, Redacted, Schema, Stream } from "effect"
import * as AccessToken from "./AccessToken.js"
import * as HeaderValue from "./HeaderValue.js"
import { describeBody } from "./internal/describe.js"
import * as ParseIssue from "./internal/parseIssue.js"
import * as RateLimitHeaders from "./RateLimitHeaders.js"
import * as Scrub from "./Scrub.js"
import * as TollgateError from "./TollgateError.js"

/**
 * A token endpoint's answer, read whole up to a cap: small, and needed whole to decide what it means.
 *
 * @since 0.1.0
 * @category models
 */
export interface Reply {
  readonly status: number
  readonly headers: Headers.Headers
  /** The body parsed as JSON, when it is JSON. */
  readonly body: Option.Option<unknown>
  /**
   * What the body is when it is not JSON ("an HTML page", "an empty body", "a body larger than 1 MiB"),
   * for error messages.
   */
  readonly bodyKind: string
  /** Whether the body was larger than the cap, and so not read (`body` is then `None`). */
  readonly oversized?: boolean | undefined
  /** The local instant the response was received. */
  readonly receivedAt: DateTime.Utc
  /** The server's clock when it answered (`Date`), when it said. */
  readonly serverDate: Option.Option<DateTime.Utc>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RequestOptions {
  /** Names the provider in errors, logs and spans. */
  readonly provider: string
  /** Names the operation in errors and spans. Default: "token request". */
  readonly operation?: string | undefined
  readonly request: HttpClientRequest.HttpClientRequest
  /** Bound on the whole exchange, body included. Default: 15 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
  /** Removed from any provider text that ends up in an error. */
  readonly secrets?: ReadonlyArray<Redacted.Redacted<string>> | undefined
  /**
   * The largest body read, in bytes: past it the rest is not downloaded and the reply counts as
   * unusable (a 2xx is a `MalformedTokenResponse`, a 5xx an outage as usual). Default: 1 MiB, hundreds of
   * times any real token response.
   */
  readonly maxBodyBytes?: number | undefined
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaultTimeout: Duration.Duration = Duration.seconds(15)

/**
 * @since 0.2.0
 * @category constants
 */
export const defaultMaxBodyBytes = 1024 * 1024

const formatBytes = (bytes: number): string =>
  bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0
    ? `${bytes / (1024 * 1024)} MiB`
    : bytes >= 1024 && bytes % 1024 === 0
    ? `${bytes / 1024} KiB`
    : `${bytes} bytes`

// The body as text, or `undefined` when it is larger than `max` bytes: reading stops there (a declared
// length past the cap is not read at all) and the stream's finalizer cancels the rest of the download.
const readCapped = (
  response: HttpClientResponse.HttpClientResponse,
  max: number
): Effect.Effect<string | undefined, HttpClientError.ResponseError> =>
  Effect.suspend(() => {
    const declared = Number(response.headers["content-length"])
    let size = Number.isFinite(declared) && declared > max ? declared : 0
    const chunks: Array<Uint8Array> = []
    return Stream.runForEachWhile(response.stream, (chunk) =>
      Effect.sync(() => {
        if (size > max) return false
        size += chunk.length
        if (size > max) return false
        chunks.push(chunk)
        return true
      })).pipe(Effect.map(() => {
        if (size > max) return undefined
        const bytes = new Uint8Array(size)
        let offset = 0
        for (const chunk of chunks) {
          bytes.set(chunk, offset)
          offset += chunk.length
        }
        return new TextDecoder().decode(bytes)
      }))
  }).pipe(
    // A web `Response` without a body (a 204) has no stream at all.
    Effect.catchIf((error) => error.reason === "EmptyBody", () => Effect.succeed(""))
  )

const describeRequestError = (error: HttpClientError.HttpClientError): string => {
  if (error._tag === "RequestError" && error.reason === "InvalidUrl") return "the endpoint URL is not a valid URL"
  if (error._tag === "RequestError" && error.reason === "Encode") return "the request body could not be encoded"
  if (error._tag === "ResponseError") return "the response body could not be read"
  // Platform messages quote the URL, which may carry credentials in its query: only the cause's code
  // (ECONNREFUSED, ECONNRESET, UND_ERR_SOCKET...) is safe to repeat.
  const cause: unknown = error.cause
  const code = Predicate.hasProperty(cause, "code") && typeof cause.code === "string"
    ? cause.code
    : Predicate.hasProperty(cause, "cause") && Predicate.hasProperty(cause.cause, "code") &&
        typeof cause.cause.code === "string"
    ? cause.cause.code
    : undefined
  return code === undefined ? "the connection failed" : `the connection failed (${code})`
}

const parseJson = (text: string): Option.Option<unknown> => {
  if (text.trim().length === 0) return Option.none()
  try {
    return Option.some(JSON.parse(text))
  } catch {
    return Option.none()
  }
}

const serverDate = (headers: Headers.Headers): Option.Option<DateTime.Utc> =>
  Option.flatMap(Headers.get(headers, "date"), (value) => {
    const millis = Date.parse(value)
    return Number.isNaN(millis) ? Option.none() : Option.some(DateTime.unsafeMake(millis))
  })

/**
 * Sends one request and reads the whole answer. Transport failures and timeouts become typed errors;
 * the platform's own span is switched off because it would record the full URL, and with it any
 * credential sent as a query parameter. A Tollgate span with safe attributes replaces it.
 *
 * @since 0.1.0
 * @category requests
 */
export const send = (
  options: RequestOptions
): Effect.Effect<Reply, TollgateError.TokenError, HttpClient.HttpClient> => {
  const timeout = Duration.decode(options.timeout ?? defaultTimeout)
  const maxBodyBytes = options.maxBodyBytes ?? defaultMaxBodyBytes
  const operation = options.operation ?? "token request"
  const path = URL.canParse(options.request.url) ? new URL(options.request.url).pathname : "(invalid url)"
  // The span ends with the value of the effect it wraps; a tracer that looks at it must not find the
  // reply, whose body holds the token. So the spanned effect stores the reply in a cell of its own run
  // and returns nothing.
  const exchange = (cell: { reply?: Reply }) =>
    Effect.flatMap(HttpClient.HttpClient, (client) =>
      client.execute(options.request).pipe(
        Effect.flatMap((response) => Effect.map(readCapped(response, maxBodyBytes), (text) => ({ response, text }))),
        Effect.mapError((error) =>
          new TollgateError.TokenEndpointUnavailable({
            provider: options.provider,
            reason: describeRequestError(error)
          })
        ),
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new TollgateError.Timeout({ provider: options.provider, operation, after: timeout })
        }),
        Effect.flatMap(({ response, text }) =>
          Effect.map(DateTime.now, (receivedAt): Reply => {
            const body = text === undefined ? Option.none() : parseJson(text)
            return {
              status: response.status,
              headers: response.headers,
              body,
              bodyKind: text === undefined
                ? `a body larger than ${formatBytes(maxBodyBytes)}`
                : Option.isSome(body)
                ? "JSON"
                : describeBody(response.headers["content-type"], text),
              oversized: text === undefined,
              receivedAt,
              serverDate: serverDate(response.headers)
            }
          })
        ),
        Effect.tap((reply) => Effect.annotateCurrentSpan("http.response.status_code", reply.status)),
        Effect.map((reply) => {
          cell.reply = reply
        }),
        Effect.locally(HttpClient.currentTracerDisabledWhen, Function.constTrue),
        Effect.withSpan(`tollgate.${operation.replace(/\s+/g, "_")}`, {
          kind: "client",
          attributes: {
            "tollgate.provider": options.provider,
            "http.request.method": options.request.method,
            "url.path": path
          }
        })
      ))
  return Effect.suspend(() => {
    const cell: { reply?: Reply } = {}
    return Effect.map(exchange(cell), () => cell.reply!)
  })
}

const firstString = (...values: ReadonlyArray<unknown>): string | undefined => {
  for (const value of values) {
    if (typeof value === "string" && value.length > 0) return value
    if (typeof value === "number") return String(value)
  }
  return undefined
}

/**
 * The provider's own error code and description from a JSON error body, in any of the common shapes:
 * OAuth2 `error` / `error_description`, `code` / `description` (Nomba), `message`, and
 * `errors: [{ code, message }]`. The description is scrubbed of the request's secrets and bounded.
 *
 * @since 0.1.0
 * @category decoding
 */
export const errorDetails = (
  reply: Reply,
  secrets: ReadonlyArray<Redacted.Redacted<string>> = []
): { readonly code: string | undefined; readonly description: string | undefined } => {
  const body = Option.getOrUndefined(reply.body)
  if (!Predicate.isRecord(body)) return { code: undefined, description: undefined }
  const errors = Array.isArray(body["errors"]) && Predicate.isRecord(body["errors"][0]) ? body["errors"][0] : {}
  const nested = Predicate.isRecord(body["error"]) ? body["error"] : {}
  const code = firstString(body["error"], body["code"], errors["code"], nested["code"])
  // NestJS and class-validator send `message` as a list of strings.
  const messages = Array.isArray(body["message"]) && body["message"].every((m) => typeof m === "string")
    ? body["message"].join("; ")
    : body["message"]
  const description = firstString(
    body["error_description"],
    body["description"],
    messages,
    errors["message"],
    nested["message"]
  )
  const plain = secrets.map((secret) => Redacted.value(secret))
  return {
    code: code === undefined ? undefined : Scrub.text(code, plain, { maxLength: 80 }),
    description: description === undefined ? undefined : Scrub.text(description, plain)
  }
}

/**
 * The default meaning of a non-2xx answer: 401 and 403 reject the credentials; 429 is the endpoint's
 * own rate limit, with the instant from `Retry-After` or the rate-limit headers; 408 and 5xx are
 * outages; any other status is the provider refusing the request.
 *
 * @since 0.1.0
 * @category decoding
 */
export const failureFor = (
  reply: Reply,
  options: { readonly provider: string; readonly secrets?: ReadonlyArray<Redacted.Redacted<string>> | undefined }
): TollgateError.TokenError => {
  const { code, description } = errorDetails(reply, options.secrets)
  const status = reply.status
  const withBody = Option.isSome(reply.body) ? "" : ` with ${reply.bodyKind}`
  if (status === 401 || status === 403) {
    return new TollgateError.InvalidCredentials({ provider: options.provider, status, code, description })
  }
  if (status === 429) {
    const info = RateLimitHeaders.parse(reply.headers, reply.receivedAt)
    return new TollgateError.TokenEndpointUnavailable({
      provider: options.provider,
      reason: "the endpoint's own rate limit was exceeded",
      status,
      retryAt: Option.getOrUndefined(RateLimitHeaders.waitUntil(info))
    })
  }
  if (status === 408 || status >= 500) {
    return new TollgateError.TokenEndpointUnavailable({
      provider: options.provider,
      reason: `HTTP ${status}${withBody}`,
      status
    })
  }
  return new TollgateError.ProviderError({
    provider: options.provider,
    code: code ?? `HTTP ${status}`,
    description: description ?? (status === 404 || status === 405
      ? "the token endpoint URL looks wrong"
      : Option.isSome(reply.body)
      ? undefined
      : `the server answered ${reply.bodyKind}`),
    status
  })
}

/**
 * Decodes a JSON reply body with a Schema. A failure names the first field that did not fit, what it
 * should have been and what kind of value arrived.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeBody = <A, I>(
  reply: Reply,
  schema: Schema.Schema<A, I>,
  provider: string
): Either.Either<A, TollgateError.MalformedTokenResponse> => {
  if (Option.isNone(reply.body)) {
    return Either.left(
      new TollgateError.MalformedTokenResponse({
        provider,
        field: "(body)",
        expected: reply.oversized === true ? "a JSON object within the body size cap" : "a JSON object",
        received: reply.bodyKind,
        status: reply.status
      })
    )
  }
  return Schema.decodeUnknownEither(schema, { errors: "first", onExcessProperty: "ignore" })(reply.body.value).pipe(
    Either.mapLeft((error) => {
      const summary = ParseIssue.summarize(error.issue)
      return new TollgateError.MalformedTokenResponse({ provider, ...summary, status: reply.status })
    })
  )
}

/**
 * What a provider's response says about a token, in Tollgate's terms.
 *
 * @since 0.1.0
 * @category models
 */
export interface TokenFields extends AccessToken.Lifetime {
  readonly value: string
  readonly type?: string | undefined
  readonly refreshToken?: string | undefined
  readonly scope?: string | undefined
  /** The name of the field `value` came from, for error messages. Default: "access_token". */
  readonly valueField?: string | undefined
}

/**
 * Turns decoded fields into an `AccessToken`, counting the lifetime from the reply's receipt time and
 * correcting an absolute expiry with the reply's `Date`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const toAccessToken = (
  reply: Reply,
  fields: TokenFields,
  options: { readonly provider: string; readonly lifetime?: AccessToken.LifetimePolicy | undefined }
): Either.Either<AccessToken.AccessToken, TollgateError.MalformedTokenResponse> => {
  const malformed = (field: string, expected: string, received: string) =>
    new TollgateError.MalformedTokenResponse({
      provider: options.provider,
      field,
      expected,
      received,
      status: reply.status
    })
  if (fields.value.trim().length === 0) {
    return Either.left(malformed(fields.valueField ?? "access_token", "a non-empty string", "an empty string"))
  }
  // A token that cannot be sent would fail every request for its whole lifetime, with no 401 to drop it.
  const unsendable = HeaderValue.problem(fields.value)
  if (unsendable !== undefined) {
    return Either.left(
      malformed(fields.valueField ?? "access_token", "a token that can be sent in an HTTP header", unsendable)
    )
  }
  if (fields.type !== undefined && fields.type.toLowerCase() !== "bearer") {
    return Either.left(malformed("token_type", "\"Bearer\"", "another token type"))
  }
  return AccessToken.make({
    ...options.lifetime,
    value: Redacted.make(fields.value),
    type: fields.type,
    receivedAt: reply.receivedAt,
    expiresIn: fields.expiresIn,
    expiresAt: fields.expiresAt,
    serverDate: fields.serverDate ?? Option.getOrUndefined(reply.serverDate),
    refreshToken: fields.refreshToken === undefined || fields.refreshToken.length === 0
      ? undefined
      : Redacted.make(fields.refreshToken),
    scope: fields.scope
  }).pipe(Either.mapLeft((issue) => malformed(issue.field, issue.expected, issue.received)))
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TokenRequestOptions<A, I> extends RequestOptions {
  readonly lifetime?: AccessToken.LifetimePolicy | undefined
  /** The shape of a successful body. */
  readonly success: Schema.Schema<A, I>
  /** Reads the token out of a decoded body; may fail, e.g. on a provider code inside a 200. */
  readonly toFields: (body: A, reply: Reply) => Either.Either<TokenFields, TollgateError.TokenError>
  /**
   * Provider-specific meaning of a reply, consulted before the status defaults and for every status,
   * 2xx included: an OAuth2 `invalid_client`, a Nomba code other than "00".
   */
  readonly refine?: ((reply: Reply) => Option.Option<TollgateError.TokenError>) | undefined
}

/**
 * Runs a whole token request: send, classify, decode, build the token.
 *
 * @since 0.1.0
 * @category requests
 */
export const requestToken = <A, I>(
  options: TokenRequestOptions<A, I>
): Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError, HttpClient.HttpClient> =>
  Effect.flatMap(send(options), (reply) => {
    const refined = options.refine === undefined ? Option.none() : options.refine(reply)
    if (Option.isSome(refined)) return Effect.fail(refined.value)
    if (reply.status < 200 || reply.status >= 300) {
      return Effect.fail(failureFor(reply, options))
    }
    return decodeBody(reply, options.success, options.provider).pipe(
      Either.flatMap((body) => options.toFields(body, reply)),
      Either.flatMap((fields) => toAccessToken(reply, fields, options))
    )
  })

/**
 * Runs a request whose answer carries no token (revocation): any 2xx the provider does not refine
 * into an error is success.
 *
 * @since 0.1.0
 * @category requests
 */
export const requestOk = (
  options: RequestOptions & {
    readonly refine?: ((reply: Reply) => Option.Option<TollgateError.TokenError>) | undefined
  }
): Effect.Effect<Reply, TollgateError.TokenError, HttpClient.HttpClient> =>
  Effect.flatMap(send(options), (reply) => {
    const refined = options.refine === undefined ? Option.none() : options.refine(reply)
    if (Option.isSome(refined)) return Effect.fail(refined.value)
    return reply.status >= 200 && reply.status < 300 ? Effect.succeed(reply) : Effect.fail(failureFor(reply, options))
  })

/**
 * A number that some servers send as a string (`"3600"`): both decode to a number.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Seconds: Schema.Schema<number, number | string> = Schema.Union(
  Schema.Number,
  Schema.NumberFromString
).annotations({ identifier: "a number of seconds" })
