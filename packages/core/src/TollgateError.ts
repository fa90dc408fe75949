/**
 * The typed errors Tollgate fails with. Each one says what happened and what to do about it, and none
 * ever carries a secret: fields hold provider names, status codes, field paths and *kinds* of values,
 * never credential or token bytes.
 *
 * @since 0.1.0
 */
import { DateTime, Duration, Predicate, Schema } from "effect"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("@tollgate/core/TollgateError")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * True for every error defined in this module.
 *
 * @since 0.1.0
 * @category refinements
 */
export const isTollgateError = (u: unknown): u is TollgateError => Predicate.hasProperty(u, TypeId)

const formatStatus = (status: number | undefined): string => status === undefined ? "" : `HTTP ${status}`

const detail = (parts: ReadonlyArray<string | undefined>): string => {
  const present = parts.filter((part): part is string => part !== undefined && part.length > 0)
  return present.length === 0 ? "" : ` (${present.join(", ")})`
}

/**
 * The token endpoint rejected the client credentials (HTTP 401, OAuth2 `invalid_client`, or the
 * provider's equivalent). Retrying cannot help, so Tollgate never retries it: fix the client id, secret
 * or organisation in configuration.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidCredentials extends Schema.TaggedError<InvalidCredentials>("@tollgate/core/InvalidCredentials")(
  "InvalidCredentials",
  {
    provider: Schema.String,
    status: Schema.optional(Schema.Number),
    code: Schema.optional(Schema.String),
    description: Schema.optional(Schema.String)
  }
) {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  /**
   * @since 0.1.0
   */
  readonly retryable = false
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.provider} rejected the client credentials${
      detail([formatStatus(this.status), this.code, this.description])
    }. Check the configured client id and secret; this is not retried.`
  }
}

/**
 * The token endpoint answered, but not with a token Tollgate can use: a missing or mistyped field, a
 * body that is not JSON, a lifetime that is zero, negative or in the past. `received` describes the
 * *kind* of value that came back ("a negative number", "missing", "an HTML page"), never its bytes.
 *
 * @since 0.1.0
 * @category errors
 */
export class MalformedTokenResponse
  extends Schema.TaggedError<MalformedTokenResponse>("@tollgate/core/MalformedTokenResponse")(
    "MalformedTokenResponse",
    {
      provider: Schema.String,
      field: Schema.String,
      expected: Schema.String,
      received: Schema.String,
      status: Schema.optional(Schema.Number)
    }
  )
{
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  /**
   * @since 0.1.0
   */
  readonly retryable = false
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.provider} sent a token response Tollgate cannot use${
      detail([formatStatus(this.status)])
    }: field "${this.field}" should be ${this.expected} but was ${this.received}.`
  }
}

/**
 * The token endpoint could not be reached or did not answer usefully: transport failure, 5xx, 429 on
 * the token endpoint itself, or a timeout, after the configured retries. `retryAt` is the earliest
 * instant the endpoint said it would accept another request, when it said so.
 *
 * @since 0.1.0
 * @category errors
 */
export class TokenEndpointUnavailable
  extends Schema.TaggedError<TokenEndpointUnavailable>("@tollgate/core/TokenEndpointUnavailable")(
    "TokenEndpointUnavailable",
    {
      provider: Schema.String,
      reason: Schema.String,
      status: Schema.optional(Schema.Number),
      retryAt: Schema.optional(Schema.DateTimeUtc),
      attempts: Schema.optional(Schema.Number)
    }
  )
{
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  /**
   * @since 0.1.0
   */
  readonly retryable = true
  /**
   * @since 0.1.0
   */
  override get message(): string {
    const attempts = this.attempts === undefined ? undefined : `${this.attempts} attempt(s)`
    // True wherever it is read: in a cache that backs off, and in a one-shot request that never retries.
    const retry = this.retryAt === undefined ? "" : ` Retry after ${DateTime.formatIso(this.retryAt)}.`
    return `The ${this.provider} token endpoint is unavailable: ${this.reason}${
      detail([formatStatus(this.status), attempts])
    }.${retry}`
  }
}

/**
 * The provider understood the request and refused it with its own error code: an OAuth2 error such as
 * `invalid_scope` or `invalid_grant`, a Nomba `code` other than "00" (even with HTTP 200), a 4xx from
 * the API. `description` is the provider's own text with any secret removed.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProviderError extends Schema.TaggedError<ProviderError>("@tollgate/core/ProviderError")(
  "ProviderError",
  {
    provider: Schema.String,
    code: Schema.String,
    description: Schema.optional(Schema.String),
    status: Schema.optional(Schema.Number)
  }
) {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  /**
   * @since 0.1.0
   */
  readonly retryable = false
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.provider} refused the request with code "${this.code}"${
      detail([formatStatus(this.status), this.description])
    }.`
  }
}

/**
 * An operation took longer than its configured bound. `operation` names it ("token request", "API
 * request", "revoke").
 *
 * @since 0.1.0
 * @category errors
 */
export class Timeout extends Schema.TaggedError<Timeout>("@tollgate/core/Timeout")("Timeout", {
  provider: Schema.String,
  operation: Schema.String,
  after: Schema.Duration
}) {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  /**
   * @since 0.1.0
   */
  readonly retryable = true
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `The ${this.provider} ${this.operation} timed out after ${Duration.format(this.after)}.`
  }
}

/**
 * Why a request was not sent, or not answered, because of a rate limit:
 *
 * - `deadline`: the limiter predicted a wait longer than the request's deadline, so it failed at once
 * - `timeout`: the request waited in the queue for longer than its timeout
 * - `cost`: the request costs more permits than the limit can ever grant
 * - `server`: the server kept answering 429 after the bounded retries
 * - `closed`: the limiter's scope closed while the request waited
 * - `unavailable`: a shared limiter could not reach its store (Redis), so it refused rather than risk
 *   overdrawing the budget
 *
 * @since 0.1.0
 * @category models
 */
export type RateLimitedReason = "deadline" | "timeout" | "cost" | "server" | "closed" | "unavailable"

/**
 * The request was refused by a rate limit, ours or the server's; `retryAt` is the earliest instant a
 * retry could succeed when that is known.
 *
 * @since 0.1.0
 * @category errors
 */
export class RateLimited extends Schema.TaggedError<RateLimited>("@tollgate/core/RateLimited")("RateLimited", {
  provider: Schema.String,
  reason: Schema.Literal("deadline", "timeout", "cost", "server", "closed", "unavailable"),
  key: Schema.optional(Schema.String),
  retryAt: Schema.optional(Schema.DateTimeUtc)
}) {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  /**
   * @since 0.1.0
   */
  readonly retryable = true
  /**
   * @since 0.1.0
   */
  override get message(): string {
    const where = this.key === undefined || this.key === "" ? this.provider : `${this.provider} ${this.key}`
    const retry = this.retryAt === undefined ? "" : ` Retry after ${DateTime.formatIso(this.retryAt)}.`
    switch (this.reason) {
      case "deadline":
        return `The rate limit for ${where} cannot admit this request before its deadline.${retry}`
      case "timeout":
        return `The request to ${where} waited for a rate-limit permit past its timeout.${retry}`
      case "cost":
        return `The request to ${where} costs more permits than the rate limit can ever grant.`
      case "server":
        return `${where} kept answering 429 Too Many Requests after the bounded retries.${retry}`
      case "closed":
        return `The rate limiter for ${where} was shut down while the request waited.`
      case "unavailable":
        return `The shared rate limiter for ${where} cannot reach its store, so the request was not sent (failing closed).${retry}`
    }
  }
}

/**
 * The API rejected the bearer token even after Tollgate replaced it with a fresh one, or rejected it in
 * a way renewal cannot fix (`insufficient_scope`, a body that cannot be replayed). `challenge` is the
 * error code from `WWW-Authenticate` when the server sent one.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>("@tollgate/core/Unauthorized")("Unauthorized", {
  provider: Schema.String,
  status: Schema.Number,
  challenge: Schema.optional(Schema.String),
  description: Schema.optional(Schema.String)
}) {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  /**
   * @since 0.1.0
   */
  readonly retryable = false
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.provider} rejected the request as unauthorized${
      detail([formatStatus(this.status), this.challenge, this.description])
    }. A fresh token did not help; check the client's permissions.`
  }
}

/**
 * A value passed to a Tollgate constructor or per-request option that it cannot work with: a limit that
 * is not a positive integer, a duration that is negative or infinite, a URL that cannot be used, a cost
 * that is not a finite positive number. It names the function and the argument and says what was
 * expected; `received` describes the value (numbers are shown, strings only by kind), so it never echoes
 * a secret. It is a programming or configuration error: retrying cannot help.
 *
 * @since 0.2.0
 * @category errors
 */
export class InvalidArgument extends Schema.TaggedError<InvalidArgument>("@tollgate/core/InvalidArgument")(
  "InvalidArgument",
  {
    /** The function or option group that refused the value, e.g. "RateLimiter.slidingWindow". */
    module: Schema.String,
    /** The argument, e.g. "limit" or "cost". */
    argument: Schema.String,
    expected: Schema.String,
    received: Schema.String
  }
) {
  /**
   * @since 0.2.0
   */
  readonly [TypeId]: TypeId = TypeId
  /**
   * @since 0.2.0
   */
  readonly retryable = false
  /**
   * @since 0.2.0
   */
  override get message(): string {
    return `${this.module}: ${this.argument} must be ${this.expected}, but was ${this.received}.`
  }
}

/**
 * An authorization server's metadata (RFC 8414, or OpenID Connect discovery) that Tollgate will not
 * trust: an `issuer` other than the one asked for (RFC 8414 §3.3), an endpoint that is not https, a
 * required field missing, or no client authentication method Tollgate can use. `url` is the metadata
 * document's address without user-info, query or fragment. Retrying cannot help: fix the issuer or the
 * server.
 *
 * @since 0.2.0
 * @category errors
 */
export class InvalidServerMetadata
  extends Schema.TaggedError<InvalidServerMetadata>("@tollgate/core/InvalidServerMetadata")("InvalidServerMetadata", {
    provider: Schema.String,
    url: Schema.String,
    field: Schema.String,
    expected: Schema.String,
    received: Schema.String
  })
{
  /**
   * @since 0.2.0
   */
  readonly [TypeId]: TypeId = TypeId
  /**
   * @since 0.2.0
   */
  readonly retryable = false
  /**
   * @since 0.2.0
   */
  override get message(): string {
    return `The ${this.provider} authorization server metadata at ${this.url} cannot be used: "${this.field}" should be ${this.expected} but was ${this.received}.`
  }
}

/**
 * Every error that obtaining a token can fail with.
 *
 * @since 0.1.0
 * @category models
 */
export type TokenError =
  | InvalidCredentials
  | MalformedTokenResponse
  | TokenEndpointUnavailable
  | ProviderError
  | Timeout

/**
 * Every error defined in this module.
 *
 * @since 0.1.0
 * @category models
 */
export type TollgateError = TokenError | RateLimited | Unauthorized | InvalidArgument | InvalidServerMetadata

/**
 * The Schema of every `TokenError`: what a shared store encodes a failed token request with, so that
 * every process of a fleet decodes the same typed error (provider, status, retry instant and all).
 * Encoded values are plain JSON; they never hold a secret, because the errors never do.
 *
 * @since 0.2.0
 * @category schemas
 */
export const TokenErrorSchema = Schema.Union(
  InvalidCredentials,
  MalformedTokenResponse,
  TokenEndpointUnavailable,
  ProviderError,
  Timeout
)

/**
 * Whether a token error is worth retrying after a backoff: transport failures, 5xx, 429 and timeouts
 * are; rejected credentials, malformed responses and provider refusals are not.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isRetryable = (error: TollgateError): boolean => error.retryable
