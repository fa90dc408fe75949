/**
 * Reads what a server says about its rate limit: `Retry-After` (seconds or an HTTP date), the
 * `X-RateLimit-Limit/Remaining/Reset` family (reset as epoch seconds, epoch milliseconds or seconds
 * until reset), the IETF `RateLimit` / `RateLimit-Policy` fields (every draft shape seen in the wild),
 * and provider bodies such as `{"errors":[{"code":88}]}`.
 *
 * @since 0.1.0
 */
import type * as Headers from "@effect/platform/Headers"
import { DateTime, Duration, Option, Predicate } from "effect"

/**
 * What one response said. Every field is optional because servers say as little as they like.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimitInfo {
  /** The quota of the window the server applies. */
  readonly limit: Option.Option<number>
  /** Requests left in the current window, as the server counts them. */
  readonly remaining: Option.Option<number>
  /** When the current window resets and the quota is whole again. */
  readonly resetAt: Option.Option<DateTime.Utc>
  /** The earliest instant the server said a retry may succeed (`Retry-After`). */
  readonly retryAt: Option.Option<DateTime.Utc>
  /** The window length, when a policy header gives it. */
  readonly window: Option.Option<Duration.Duration>
}

/**
 * How to read a bare reset number. `auto` tells epoch seconds, epoch milliseconds and seconds-until
 * apart by magnitude: no server means a delta of 30 years, and no epoch instant is below 10^9.
 *
 * @since 0.1.0
 * @category models
 */
export type ResetFormat = "auto" | "epoch-seconds" | "epoch-millis" | "delta-seconds"

/**
 * @since 0.1.0
 * @category models
 */
export interface ParseOptions {
  /** Default: `auto`. */
  readonly resetFormat?: ResetFormat | undefined
}

/**
 * An answer that said nothing about limits.
 *
 * @since 0.1.0
 * @category constructors
 */
export const empty: RateLimitInfo = {
  limit: Option.none(),
  remaining: Option.none(),
  resetAt: Option.none(),
  retryAt: Option.none(),
  window: Option.none()
}

const EPOCH_SECONDS_FLOOR = 1e9
const EPOCH_MILLIS_FLOOR = 1e12

const leadingNumber = (value: string | undefined): Option.Option<number> => {
  if (value === undefined) return Option.none()
  const match = /^\s*(-?\d+(?:\.\d+)?)/.exec(value)
  if (match === null || match[1] === undefined) return Option.none()
  const parsed = Number(match[1])
  return Number.isFinite(parsed) ? Option.some(parsed) : Option.none()
}

const nonNegative = (value: Option.Option<number>): Option.Option<number> =>
  Option.filter(value, (n) => n >= 0).pipe(Option.map(Math.floor))

const header = (headers: Headers.Headers, ...names: ReadonlyArray<string>): string | undefined => {
  for (const name of names) {
    const value = headers[name]
    if (value !== undefined && value.length > 0) return value
  }
  return undefined
}

// The range a `Date`, and so a `DateTime`, can hold. A server may send any number of digits; one that
// names an instant outside it is ignored rather than thrown as an invalid date.
const MAX_INSTANT_MILLIS = 8.64e15

const toInstant = (millis: number): Option.Option<DateTime.Utc> =>
  Number.isFinite(millis) && Math.abs(millis) <= MAX_INSTANT_MILLIS
    ? Option.some(DateTime.unsafeMake(millis))
    : Option.none()

const afterSeconds = (now: DateTime.Utc, seconds: number): number =>
  DateTime.toEpochMillis(now) + Math.max(0, seconds) * 1000

const resetMillis = (value: number, now: DateTime.Utc, format: ResetFormat): number => {
  const resolved: ResetFormat = format !== "auto"
    ? format
    : value >= EPOCH_MILLIS_FLOOR
    ? "epoch-millis"
    : value >= EPOCH_SECONDS_FLOOR
    ? "epoch-seconds"
    : "delta-seconds"
  switch (resolved) {
    case "epoch-millis":
      return value
    case "epoch-seconds":
      return value * 1000
    default:
      return afterSeconds(now, value)
  }
}

/**
 * Turns a bare reset number into an instant, clamped to the range a `DateTime` can hold.
 *
 * @since 0.1.0
 * @category parsing
 */
export const resetInstant = (value: number, now: DateTime.Utc, format: ResetFormat = "auto"): DateTime.Utc => {
  const millis = resetMillis(value, now, format)
  return DateTime.unsafeMake(
    Number.isNaN(millis)
      ? DateTime.toEpochMillis(now)
      : Math.max(-MAX_INSTANT_MILLIS, Math.min(MAX_INSTANT_MILLIS, millis))
  )
}

/**
 * Reads `Retry-After`: a number of seconds, or an HTTP date (RFC 9110 §10.2.3).
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseRetryAfter = (value: string | undefined, now: DateTime.Utc): Option.Option<DateTime.Utc> => {
  if (value === undefined) return Option.none()
  const trimmed = value.trim()
  if (/^\d+(\.\d+)?$/.test(trimmed)) return toInstant(afterSeconds(now, Number(trimmed)))
  const date = Date.parse(trimmed)
  if (Number.isNaN(date) || !/[a-z]/i.test(trimmed)) return Option.none()
  return Option.some(DateTime.unsafeMake(Math.max(date, DateTime.toEpochMillis(now))))
}

interface StructuredItem {
  /** The member's name (`"burst"` or `burst`), absent in the draft-07 dictionary. */
  readonly name: string | undefined
  readonly params: ReadonlyMap<string, string>
}

// Splits on `separator` wherever it is not inside a quoted string.
const splitUnquoted = (value: string, separator: string): Array<string> => {
  const parts: Array<string> = []
  let start = 0
  let quoted = false
  for (let i = 0; i < value.length; i++) {
    const char = value[i]
    if (char === "\\" && quoted) i++
    else if (char === "\"") quoted = !quoted
    else if (char === separator && !quoted) {
      parts.push(value.slice(start, i))
      start = i + 1
    }
  }
  parts.push(value.slice(start))
  return parts
}

const unquote = (value: string): string =>
  value.length >= 2 && value.startsWith("\"") && value.endsWith("\"") ? value.slice(1, -1) : value

const setParam = (params: Map<string, string>, part: string): void => {
  const eq = part.indexOf("=")
  if (eq > 0) params.set(part.slice(0, eq).trim().toLowerCase(), unquote(part.slice(eq + 1).trim()))
}

// RFC 8941 list members `"name";r=5;t=30, "other";r=1` (draft-08+), or draft-07 shapes: the dictionary
// `limit=10, remaining=5, reset=30`, whose members together describe one policy and become one unnamed
// item, and the policy list `10;w=60, 1000;w=3600`, whose leading number is the quota.
const parseStructuredList = (value: string): ReadonlyArray<StructuredItem> => {
  const items: Array<StructuredItem> = []
  const dictionary = new Map<string, string>()
  for (const member of splitUnquoted(value, ",")) {
    const [head = "", ...rest] = splitUnquoted(member, ";").map((part) => part.trim())
    if (head.length === 0) continue
    const params = new Map<string, string>()
    for (const part of rest) setParam(params, part)
    if (!head.startsWith("\"") && head.includes("=")) {
      setParam(dictionary, head)
      for (const [key, param] of params) dictionary.set(key, param)
    } else if (/^\d/.test(head)) {
      params.set("q", head)
      items.push({ name: undefined, params })
    } else {
      items.push({ name: unquote(head), params })
    }
  }
  if (dictionary.size > 0) items.push({ name: undefined, params: dictionary })
  return items
}

const numberParam = (item: StructuredItem, ...names: ReadonlyArray<string>): Option.Option<number> => {
  for (const name of names) {
    const value = leadingNumber(item.params.get(name))
    if (Option.isSome(value)) return value
  }
  return Option.none()
}

const minOption = (values: ReadonlyArray<Option.Option<number>>): Option.Option<number> =>
  values.reduce<Option.Option<number>>(
    (acc, value) =>
      Option.isNone(value) ? acc : Option.isNone(acc) ? value : Option.some(Math.min(acc.value, value.value)),
    Option.none()
  )

const maxOption = (values: ReadonlyArray<Option.Option<number>>): Option.Option<number> =>
  values.reduce<Option.Option<number>>(
    (acc, value) =>
      Option.isNone(value) ? acc : Option.isNone(acc) ? value : Option.some(Math.max(acc.value, value.value)),
    Option.none()
  )

const parseIetf = (headers: Headers.Headers): {
  readonly limit: Option.Option<number>
  readonly remaining: Option.Option<number>
  readonly resetSeconds: Option.Option<number>
  readonly windowSeconds: Option.Option<number>
} => {
  const field = header(headers, "ratelimit")
  const policy = header(headers, "ratelimit-policy")
  const items = field === undefined ? [] : parseStructuredList(field)
  const policies = policy === undefined ? [] : parseStructuredList(policy)
  // With several limits at once (a burst window and a daily quota) the one with the fewest requests left
  // binds, and among equally spent ones the one that resets last. Its remaining count, reset and quota
  // belong together: the fewest remaining of one with the latest reset of another would close the gate
  // for the daily reset when only the one-second burst window is spent.
  let binding: { readonly item: StructuredItem; readonly remaining: number; readonly reset: number } | undefined
  for (const item of items) {
    const remaining = numberParam(item, "r", "remaining").pipe(
      Option.filter((n) => n >= 0),
      Option.getOrElse(() => Infinity)
    )
    const reset = Option.getOrElse(numberParam(item, "t", "reset"), () => -Infinity)
    if (
      binding === undefined || remaining < binding.remaining ||
      (remaining === binding.remaining && reset > binding.reset)
    ) binding = { item, remaining, reset }
  }
  const named = binding?.item.name
  const ownLimit = binding === undefined ? Option.none() : numberParam(binding.item, "limit", "q")
  const quota = (item: StructuredItem) => numberParam(item, "q")
  const matching = named !== undefined
    ? policies.find((item) => item.name === named)
    : Option.isSome(ownLimit)
    ? policies.find((item) => Option.getOrUndefined(quota(item)) === ownLimit.value)
    : policies.length === 1
    ? policies[0]
    : undefined
  return {
    remaining: binding === undefined || binding.remaining === Infinity ? Option.none() : Option.some(binding.remaining),
    resetSeconds: binding === undefined || binding.reset === -Infinity ? Option.none() : Option.some(binding.reset),
    limit: Option.isSome(ownLimit)
      ? ownLimit
      : matching !== undefined
      ? quota(matching)
      : minOption(policies.map(quota)),
    windowSeconds: matching !== undefined
      ? numberParam(matching, "w")
      : maxOption(policies.map((item) => numberParam(item, "w")))
  }
}

// Every header `parse` reads; a response with none of them says nothing about limits.
const names = [
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

/**
 * Whether `headers` carry any rate-limit header at all: checked per response before parsing, so the
 * common answer that says nothing costs a dozen lookups and no allocation.
 *
 * @since 0.2.0
 * @category predicates
 */
export const isPresent = (headers: Headers.Headers): boolean => {
  for (const name of names) if (headers[name] !== undefined) return true
  return false
}

/**
 * Reads every rate-limit signal from response headers. `now` is the local instant the response was
 * received; relative values are counted from it.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (headers: Headers.Headers, now: DateTime.Utc, options?: ParseOptions): RateLimitInfo => {
  const format = options?.resetFormat ?? "auto"
  const ietf = parseIetf(headers)
  const limit = Option.orElse(
    nonNegative(leadingNumber(header(headers, "x-ratelimit-limit", "x-rate-limit-limit", "ratelimit-limit"))),
    () => nonNegative(ietf.limit)
  )
  const remaining = Option.orElse(
    nonNegative(
      leadingNumber(header(headers, "x-ratelimit-remaining", "x-rate-limit-remaining", "ratelimit-remaining"))
    ),
    () => nonNegative(ietf.remaining)
  )
  const legacyReset = leadingNumber(header(headers, "x-ratelimit-reset", "x-rate-limit-reset"))
  // The IETF drafts define reset as seconds until reset, never an epoch.
  const ietfReset = Option.orElse(leadingNumber(header(headers, "ratelimit-reset")), () => ietf.resetSeconds)
  const resetAt = Option.isSome(legacyReset)
    ? toInstant(resetMillis(legacyReset.value, now, format))
    : Option.flatMap(ietfReset, (seconds) => toInstant(afterSeconds(now, seconds)))
  return {
    limit,
    remaining,
    resetAt,
    retryAt: parseRetryAfter(header(headers, "retry-after"), now),
    window: Option.map(Option.filter(ietf.windowSeconds, (w) => w > 0), Duration.seconds)
  }
}

/**
 * What `headers` say, parsed once: `empty` (the same value every time) when they carry no rate-limit
 * header, otherwise `parse` at the local instant `nowMillis`.
 *
 * @example
 * ```ts
 * import { Headers } from "@effect/platform"
 * import { RateLimitHeaders } from "@tollgate/core"
 * import { Option } from "effect"
 *
 * const headers = Headers.fromInput({ "x-ratelimit-limit": "100", "x-ratelimit-remaining": "0", "retry-after": "30" })
 * const info = RateLimitHeaders.fromHeaders(headers, Date.now())
 * console.log(Option.getOrNull(info.limit), Option.getOrNull(info.remaining)) // 100 0
 * console.log(Option.isSome(info.retryAt)) // true: 30 seconds from now
 * ```
 *
 * @since 0.2.0
 * @category parsing
 */
export const fromHeaders = (headers: Headers.Headers, nowMillis: number, options?: ParseOptions): RateLimitInfo =>
  isPresent(headers) ? parse(headers, DateTime.unsafeMake(nowMillis), options) : empty

/**
 * True when the server said something about its limit.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isInformative = (info: RateLimitInfo): boolean =>
  Option.isSome(info.limit) || Option.isSome(info.remaining) || Option.isSome(info.resetAt) ||
  Option.isSome(info.retryAt)

/**
 * The instant a rate-limited client should wait for: the later of `Retry-After` and the reset.
 *
 * @since 0.1.0
 * @category getters
 */
export const waitUntil = (info: RateLimitInfo): Option.Option<DateTime.Utc> => {
  if (Option.isNone(info.retryAt)) return info.resetAt
  if (Option.isNone(info.resetAt)) return info.retryAt
  return Option.some(DateTime.max(info.retryAt.value, info.resetAt.value))
}

/**
 * The error codes that mean "rate limit exceeded" in provider bodies shaped like
 * `{"errors":[{"code":88,"message":"Rate limit exceeded"}]}` (the Token project and its Twitter
 * lineage).
 *
 * @since 0.1.0
 * @category constants
 */
export const rateLimitBodyCodes: ReadonlySet<number | string> = new Set([88, "88"])

/**
 * Whether a decoded JSON body reports a rate limit: an `errors` array holding a known code, or a
 * top-level `code` that is one.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isRateLimitBody = (
  body: unknown,
  codes: ReadonlySet<number | string> = rateLimitBodyCodes
): boolean => {
  if (!Predicate.isRecord(body)) return false
  const errors = body["errors"]
  if (Array.isArray(errors)) {
    return errors.some((entry) =>
      Predicate.isRecord(entry) && (typeof entry["code"] === "number" || typeof entry["code"] === "string") &&
      codes.has(entry["code"])
    )
  }
  const code = body["code"]
  return (typeof code === "number" || typeof code === "string") && codes.has(code)
}
