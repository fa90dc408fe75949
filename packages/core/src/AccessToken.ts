/**
 * A bearer token and what Tollgate knows about its life: when it was obtained, when it stops being
 * valid (if anyone said), the refresh token that renews it and the scope it was granted.
 *
 * @since 0.1.0
 */
import { DateTime, Duration, Either, Option, Redacted, Schema } from "effect"
import { kindOf } from "./internal/describe.js"
import * as Jwt from "./internal/jwt.js"

/**
 * The token as Tollgate keeps it. `value` and `refreshToken` are `Redacted`: printing, logging or
 * `JSON.stringify`-ing a token shows `<redacted>`. Encoding it with its Schema (for a shared store)
 * does produce the raw value, on purpose.
 *
 * @since 0.1.0
 * @category models
 */
export class AccessToken extends Schema.Class<AccessToken>("@tollgate/core/AccessToken")({
  value: Schema.Redacted(Schema.String),
  type: Schema.String,
  obtainedAt: Schema.DateTimeUtcFromNumber,
  expiresAt: Schema.OptionFromNullOr(Schema.DateTimeUtcFromNumber),
  refreshToken: Schema.OptionFromNullOr(Schema.Redacted(Schema.String)),
  scope: Schema.OptionFromNullOr(Schema.String)
}) {
  /**
   * How long the token was granted for, when it has an expiry.
   *
   * @since 0.1.0
   */
  get lifetime(): Option.Option<Duration.Duration> {
    return Option.map(this.expiresAt, (expiresAt) => DateTime.distanceDuration(this.obtainedAt, expiresAt))
  }

  /**
   * The `Authorization` header value. The scheme is always `Bearer`, whatever case the provider used
   * for `token_type`, because RFC 6750 clients send it that way.
   *
   * @since 0.1.0
   */
  get authorization(): Redacted.Redacted<string> {
    return Redacted.make(`Bearer ${Redacted.value(this.value)}`)
  }
}

/**
 * Two tokens are the same token when their values are equal, whichever object carries them. This is
 * the comparison behind compare-and-set invalidation.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isSameToken = (self: AccessToken, that: AccessToken): boolean =>
  self === that || Redacted.value(self.value) === Redacted.value(that.value)

/**
 * What the provider said about the token's lifetime. Any combination may be missing.
 *
 * @since 0.1.0
 * @category models
 */
export interface Lifetime {
  /** `expires_in`: seconds counted from when the response was received. */
  readonly expiresIn?: number | undefined
  /** An absolute expiry, read on the provider's clock. */
  readonly expiresAt?: DateTime.Utc | undefined
  /** The provider's clock when it answered (the HTTP `Date` header), used to cancel clock skew. */
  readonly serverDate?: DateTime.Utc | undefined
}

/**
 * How to interpret a lifetime: the provider's stated maximum (absolute or huge values are clamped to
 * it), the lifetime to assume when nothing is said, and whether to read `exp` from a JWT.
 *
 * @since 0.1.0
 * @category models
 */
export interface LifetimePolicy {
  /** Default: 24 hours. */
  readonly maxLifetime?: Duration.DurationInput | undefined
  /** Used when neither the response nor a JWT `exp` gives an expiry. Default: none (valid until a 401). */
  readonly defaultLifetime?: Duration.DurationInput | undefined
  /** Default: true. */
  readonly readJwtExpiry?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface MakeOptions extends Lifetime, LifetimePolicy {
  readonly value: Redacted.Redacted<string>
  readonly type?: string | undefined
  /** The local instant the token response was received. */
  readonly receivedAt: DateTime.Utc
  readonly refreshToken?: Redacted.Redacted<string> | undefined
  readonly scope?: string | undefined
}

/**
 * Why a lifetime could not be accepted; the token request turns it into a `MalformedTokenResponse`.
 *
 * @since 0.1.0
 * @category models
 */
export interface LifetimeIssue {
  readonly field: string
  readonly expected: string
  readonly received: string
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxLifetime: Duration.Duration = Duration.hours(24)

// The latest instant a `Date`, and so a `DateTime`, can hold: an unbounded `maxLifetime` must not turn a
// huge lifetime into an invalid date.
const MAX_INSTANT_MILLIS = 8.64e15

const resolveExpiry = (options: MakeOptions): Either.Either<Option.Option<number>, LifetimeIssue> => {
  const received = DateTime.toEpochMillis(options.receivedAt)
  const maxMillis = Duration.toMillis(options.maxLifetime ?? defaultMaxLifetime)
  const expiry = (lifetimeMillis: number) =>
    Math.min(received + Math.min(lifetimeMillis, maxMillis), MAX_INSTANT_MILLIS)
  // Instants are whole milliseconds: a shorter lifetime is a token that expires on arrival.
  const clampRemaining = (field: string, remaining: number) =>
    remaining >= 1
      ? Either.right(Option.some(expiry(remaining)))
      : Either.left<LifetimeIssue>({
        field,
        expected: "an instant after the response was received",
        received: "an instant in the past"
      })
  // An absolute instant is compared with the provider's own clock when it told us the time (or, for a
  // JWT, when it was issued), so a skewed local clock cannot shorten or stretch the lifetime.
  const fromAbsolute = (field: string, instantMillis: number, issuedMillis: Option.Option<number>) => {
    const reference = options.serverDate !== undefined
      ? DateTime.toEpochMillis(options.serverDate)
      : Option.getOrElse(issuedMillis, () => received)
    return clampRemaining(field, instantMillis - reference)
  }

  if (options.expiresIn !== undefined) {
    const seconds = options.expiresIn
    if (!Number.isFinite(seconds) || seconds <= 0) {
      return Either.left({ field: "expires_in", expected: "a positive number of seconds", received: kindOf(seconds) })
    }
    if (seconds * 1000 < 1) {
      return Either.left({
        field: "expires_in",
        expected: "a positive number of seconds",
        received: "less than a millisecond"
      })
    }
    return Either.right(Option.some(expiry(seconds * 1000)))
  }
  if (options.expiresAt !== undefined) {
    return fromAbsolute("expiresAt", DateTime.toEpochMillis(options.expiresAt), Option.none())
  }
  if (options.readJwtExpiry !== false) {
    const claims = Jwt.timeClaims(Redacted.value(options.value))
    if (Option.isSome(claims) && Option.isSome(claims.value.exp)) {
      return fromAbsolute(
        "exp",
        claims.value.exp.value * 1000,
        Option.map(claims.value.iat, (iat) => iat * 1000)
      )
    }
  }
  if (options.defaultLifetime !== undefined) {
    const millis = Duration.toMillis(options.defaultLifetime)
    // A zero default would mint tokens that are expired on arrival, and the cache would spin on them.
    if (!(millis >= 1)) {
      return Either.left({ field: "defaultLifetime", expected: "a positive duration", received: kindOf(millis) })
    }
    return Either.right(Option.some(expiry(millis)))
  }
  return Either.right(Option.none())
}

/**
 * Builds a token from what the provider said, in this order of trust: `expires_in` counted from local
 * receipt; an absolute `expiresAt` (corrected by the server's `Date` header and clamped between receipt
 * and receipt plus `maxLifetime`); the JWT `exp` claim, decoded without verification; the policy's
 * `defaultLifetime`; otherwise no expiry. A lifetime that is zero, negative, not a number or already in
 * the past is an issue, not a token that would expire on arrival.
 *
 * @example
 * ```ts
 * import { AccessToken } from "@tollgate/core"
 * import { DateTime, Either, Redacted } from "effect"
 *
 * const receivedAt = DateTime.unsafeMake(Date.now())
 * const token = AccessToken.make({ value: Redacted.make("t0k3n"), expiresIn: 3600, receivedAt })
 * console.log(Either.isRight(token)) // true
 *
 * // A lifetime that would expire on arrival is an issue, not a token.
 * const refused = AccessToken.make({ value: Redacted.make("t0k3n"), expiresIn: -1, receivedAt })
 * console.log(Either.isLeft(refused) && refused.left.field) // "expires_in"
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: MakeOptions): Either.Either<AccessToken, LifetimeIssue> =>
  Either.map(resolveExpiry(options), (expiresAt) =>
    new AccessToken({
      value: options.value,
      type: options.type ?? "Bearer",
      obtainedAt: options.receivedAt,
      expiresAt: Option.map(expiresAt, DateTime.unsafeMake),
      refreshToken: Option.fromNullable(options.refreshToken),
      scope: Option.fromNullable(options.scope)
    }))
