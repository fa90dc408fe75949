/**
 * The ApiClient's options, checked once where they enter: every number and duration through the one
 * `Checker`, the base URL through `BaseUrl.decode`, fixed headers through `HeaderValue`. A value the
 * client cannot work with is an `InvalidArgument` naming the option, never a throw.
 */
import { Duration, Effect, Either, Schedule, ScheduleDecision, ScheduleIntervals } from "effect"
import type * as ApiClient from "../ApiClient.js"
import * as BaseUrl from "../BaseUrl.js"
import * as HeaderValue from "../HeaderValue.js"
import type * as RateLimitHeaders from "../RateLimitHeaders.js"
import type * as TollgateError from "../TollgateError.js"
import { Checker, MAX_COUNT, MAX_PRIORITY } from "./validate.js"

/** The options, checked and in milliseconds (`Infinity` where a bound is off). */
export interface Config {
  readonly provider: string
  readonly baseUrl: string | undefined
  /** Names lower-cased, as the platform keeps them. */
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>
  readonly timeout: number
  readonly requestTimeout: number
  readonly permitDeadline: Duration.DurationInput | undefined
  readonly propagate: boolean
  readonly resetFormat: RateLimitHeaders.ResetFormat | undefined
  readonly rateLimited: number
  readonly maxWait: number
  readonly nonIdempotent: boolean
  readonly schedule: Schedule.Schedule<unknown, any>
  readonly backoff: Schedule.Schedule<unknown, any>
}

export const defaults = {
  timeout: Duration.seconds(30),
  requestTimeout: Duration.infinity,
  rateLimited: 3,
  transient: 2,
  baseDelay: Duration.millis(500),
  maxDelay: Duration.seconds(30),
  maxWait: Duration.minutes(5)
} as const

/** Exponential from `baseDelay`, doubling, capped at `maxDelay`, each delay drawn from its upper half. */
export const backoff = (options?: {
  readonly baseDelay?: Duration.DurationInput | undefined
  readonly maxDelay?: Duration.DurationInput | undefined
}): Schedule.Schedule<Duration.Duration> => {
  const max = Duration.decode(options?.maxDelay ?? defaults.maxDelay)
  return Schedule.exponential(options?.baseDelay ?? defaults.baseDelay, 2).pipe(
    Schedule.modifyDelay((_, delay) => Duration.min(delay, max)),
    Schedule.jitteredWith({ min: 0.5, max: 1 })
  )
}

/** `backoff`, at most `retries` times. */
export const retrying = (options?: {
  readonly retries?: number | undefined
  readonly baseDelay?: Duration.DurationInput | undefined
  readonly maxDelay?: Duration.DurationInput | undefined
}): Schedule.Schedule<unknown> =>
  Schedule.intersect(backoff(options), Schedule.recurs(options?.retries ?? defaults.transient))

const resetFormats: ReadonlySet<unknown> = new Set(["auto", "epoch-seconds", "epoch-millis", "delta-seconds"])
// RFC 9110 §5.6.2: a header name is a token.
const headerName = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

export const decode = (input: ApiClient.Options): Either.Either<Config, TollgateError.InvalidArgument> => {
  const check = new Checker("ApiClient.make")
  const duration = (name: string, value: unknown, infinite: boolean, positive = true) =>
    check.duration(name, value, { positive, infinite, max: Number.MAX_SAFE_INTEGER })
  if (typeof input.provider !== "string" || input.provider.trim().length === 0) {
    check.fail("provider", "a non-empty name", input.provider)
  }
  const headers: Array<readonly [string, string]> = []
  for (const [name, value] of Object.entries(input.headers ?? {})) {
    if (!headerName.test(name)) check.fail("headers", "header names made of RFC 9110 token characters", "a name")
    else if (typeof value !== "string") check.fail(`headers.${name}`, "a string", value)
    else {
      const valid = HeaderValue.validate("ApiClient.make", `headers.${name}`, value)
      if (Either.isLeft(valid)) check.issue ??= valid.left
      headers.push([name.toLowerCase(), value])
    }
  }
  const retry = input.retry ?? {}
  const transient = retry.transient === undefined
    ? defaults.transient
    : check.count("retry.transient", retry.transient, 0)
  const baseDelay = duration("retry.baseDelay", retry.baseDelay ?? defaults.baseDelay, false, false)
  const maxDelay = duration("retry.maxDelay", retry.maxDelay ?? defaults.maxDelay, false, false)
  const config: Config = {
    provider: input.provider,
    baseUrl: undefined,
    headers,
    timeout: duration("timeout", input.timeout ?? defaults.timeout, true),
    requestTimeout: duration("requestTimeout", input.requestTimeout ?? defaults.requestTimeout, true),
    permitDeadline: input.permitDeadline === undefined
      ? undefined
      : Duration.millis(check.duration("permitDeadline", input.permitDeadline, { positive: false, infinite: true })),
    propagate: input.propagateTraceContext === true,
    resetFormat: input.resetFormat,
    rateLimited: retry.rateLimited === undefined
      ? defaults.rateLimited
      : check.count("retry.rateLimited", retry.rateLimited, 0),
    maxWait: check.duration("retry.maxWait", retry.maxWait ?? defaults.maxWait, {
      positive: false,
      infinite: true,
      max: Number.MAX_SAFE_INTEGER
    }),
    nonIdempotent: retry.nonIdempotent === true,
    schedule: retry.schedule ?? retrying({ retries: transient, baseDelay, maxDelay }),
    backoff: retry.backoff ?? backoff({ baseDelay, maxDelay })
  }
  if (input.resetFormat !== undefined && !resetFormats.has(input.resetFormat)) {
    check.fail("resetFormat", "one of auto, epoch-seconds, epoch-millis, delta-seconds", input.resetFormat)
  }
  if (input.keyOf !== undefined && typeof input.keyOf !== "function") check.fail("keyOf", "a function", input.keyOf)
  let baseUrl: string | undefined
  if (input.baseUrl !== undefined) {
    const decoded = BaseUrl.decode(input.baseUrl, {
      module: "ApiClient.make",
      argument: "baseUrl",
      allowInsecureLoopback: input.allowInsecureLoopback
    })
    if (Either.isLeft(decoded)) check.issue ??= decoded.left
    else baseUrl = decoded.right
  }
  return check.issue === undefined ? Either.right({ ...config, baseUrl }) : Either.left(check.issue)
}

/** Per-request settings checked the way the limiter will read them. */
export const decodeRequest = <A extends ApiClient.RequestOptions>(
  input: A
): Either.Either<A, TollgateError.InvalidArgument> => {
  const check = new Checker("ApiClient.withRequestOptions")
  if (input.cost !== undefined) check.count("cost", input.cost)
  if (input.priority !== undefined) check.number("priority", input.priority, -MAX_PRIORITY, MAX_PRIORITY)
  if (input.permitDeadline !== undefined) {
    check.duration("permitDeadline", input.permitDeadline, { positive: false, infinite: true, max: MAX_COUNT * 1000 })
  }
  if (input.retryNonIdempotent !== undefined && typeof input.retryNonIdempotent !== "boolean") {
    check.fail("retryNonIdempotent", "a boolean", input.retryNonIdempotent)
  }
  return check.issue === undefined ? Either.right(input) : Either.left(check.issue)
}

/** A schedule's next delay after `input` (and its new state), or `undefined` once it is done. */
export const step = <In>(
  schedule: Schedule.Schedule<unknown, In>,
  state: unknown,
  input: In,
  now: number
): Effect.Effect<{ readonly delay: number; readonly state: unknown } | undefined> =>
  Effect.map(schedule.step(now, input, state), ([next, , decision]) =>
    ScheduleDecision.isDone(decision)
      ? undefined
      : { delay: Math.max(0, ScheduleIntervals.start(decision.intervals) - now), state: next })
