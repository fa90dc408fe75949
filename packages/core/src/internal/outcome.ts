/**
 * The client's one decision, in two pure steps. `classify` says what an attempt's answer means; `decide`
 * says what the request does next, from that outcome, what happened to the request so far and the
 * policy. Neither waits, sends or reads the clock: the journey in `ApiClient` does, around them.
 *
 * | outcome     | when                                          | decision                                   |
 * | ----------- | --------------------------------------------- | ------------------------------------------ |
 * | `Ok`        | any other response                            | return it                                  |
 * | `Renew`     | 401 to a request sent with a token            | renew once and retry, unless the challenge |
 * |             |                                               | is `insufficient_scope`, the token was     |
 * |             |                                               | already renewed or the body cannot be sent |
 * |             |                                               | again: then `Unauthorized`                 |
 * | `Throttled` | 429                                           | retry when the gate opens, while 429s in a |
 * |             |                                               | row (nobody admitted between) stay within  |
 * |             |                                               | `rateLimited` and the wait within          |
 * |             |                                               | `maxWait`; else `RateLimited`              |
 * | `Transient` | 5xx, a transport error, an attempt timeout    | retry after the schedule's delay (or the   |
 * |             |                                               | server's `Retry-After`, if later) for an   |
 * |             |                                               | idempotent, replayable request; else fail  |
 * | `Fail`      | any other error                               | fail                                       |
 */
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { DateTime, Option } from "effect"
import type * as AccessToken from "../AccessToken.js"
import * as Bearer from "../Bearer.js"
import type * as RateLimitHeaders from "../RateLimitHeaders.js"
import * as TollgateError from "../TollgateError.js"
import type { RetryReason } from "./metrics.js"

type Response = HttpClientResponse.HttpClientResponse

/** What an attempt's answer means. */
export type Outcome<E> =
  | { readonly _tag: "Ok"; readonly response: Response }
  | {
    readonly _tag: "Renew"
    readonly response: Response
    readonly token: AccessToken.AccessToken
    readonly challenge: Option.Option<string>
  }
  | { readonly _tag: "Throttled"; readonly response: Response; readonly info: RateLimitHeaders.RateLimitInfo }
  | {
    readonly _tag: "Transient"
    readonly failure: Response | E
    /** When the server said a retry may succeed (`Retry-After` on a 5xx), epoch milliseconds. */
    readonly retryAfter: number | undefined
  }
  | { readonly _tag: "Fail"; readonly error: E }

const isTransientError = (error: { readonly _tag: string; readonly reason?: unknown }): boolean =>
  (error._tag === "RequestError" && error.reason === "Transport") || error._tag === "Timeout"

/**
 * What an attempt's answer means: `answer` is the response, or the error the attempt failed with (the
 * token, the permit, the transport); `token` is the token the request was sent with, if any, and `info`
 * what the response said about the rate limit.
 */
export const classify = <E extends { readonly _tag: string }>(
  answer: { readonly response: Response } | { readonly error: E },
  token: AccessToken.AccessToken | undefined,
  info: RateLimitHeaders.RateLimitInfo
): Outcome<E> => {
  if ("error" in answer) {
    const error = answer.error
    return isTransientError(error)
      ? { _tag: "Transient", failure: error, retryAfter: undefined }
      : { _tag: "Fail", error }
  }
  const response = answer.response
  const status = response.status
  if (status === 401 && token !== undefined) {
    return { _tag: "Renew", response, token, challenge: Bearer.challenge(response.headers["www-authenticate"]) }
  }
  if (status === 429) return { _tag: "Throttled", response, info }
  if (status >= 500) {
    return {
      _tag: "Transient",
      failure: response,
      retryAfter: Option.getOrUndefined(Option.map(info.retryAt, DateTime.toEpochMillis))
    }
  }
  return { _tag: "Ok", response }
}

/** What happened to a request so far. */
export interface State {
  readonly renewed: boolean
  /** 429s in a row with no other request of the client admitted in between. */
  readonly rateLimited: number
  /** Transient failures retried. */
  readonly transient: number
  readonly firstLimitedAt: number | undefined
  /** The client's count of admitted responses at the last 429. */
  readonly admittedAt: number
}

export const initial: State = {
  renewed: false,
  rateLimited: 0,
  transient: 0,
  firstLimitedAt: undefined,
  admittedAt: -1
}

/** The rules of one request. */
export interface Policy {
  readonly provider: string
  /** Consecutive 429s retried at most. */
  readonly rateLimited: number
  /** The longest wait a retry may need (milliseconds). */
  readonly maxWait: number
  /** Transient failures may be retried (an idempotent method, or the caller opted in). */
  readonly idempotent: boolean
  /** The body can be sent again. */
  readonly replayable: boolean
  /** The request must be over by then (epoch milliseconds; `Infinity` without a bound). */
  readonly deadline: number
  /** The limiter key, named in `RateLimited`. */
  readonly key: string
}

/** What the journey knows when it decides. */
export interface Context {
  readonly now: number
  /** Responses the client has had admitted so far. */
  readonly admitted: number
  /**
   * For `Throttled`: the instant the gate was closed until (announced, or the backoff's); `undefined` when
   * the backoff schedule is exhausted. For `Transient`: the schedule's next delay, `undefined` when it is
   * exhausted (or the request may not be retried).
   */
  readonly next: number | undefined
}

/** What the request does next. */
export type Decision<E> =
  | { readonly _tag: "Return"; readonly response: Response }
  | {
    readonly _tag: "Fail"
    readonly error: E | TollgateError.Unauthorized | TollgateError.RateLimited | HttpClientError.ResponseError
    /** A refused token to drop from the cache (compare-and-set). */
    readonly invalidate: AccessToken.AccessToken | undefined
    /** A response whose body is read and dropped. */
    readonly discard: Response | undefined
  }
  | {
    readonly _tag: "Retry"
    readonly reason: RetryReason
    readonly state: State
    /** Sleep this long first; a 429 waits for the gate instead, inside the limiter. */
    readonly sleep: number
    readonly invalidate: AccessToken.AccessToken | undefined
    readonly discard: Response | undefined
  }

/** The next step of a request after `outcome`. */
export const decide = <E>(outcome: Outcome<E>, state: State, policy: Policy, context: Context): Decision<E> => {
  switch (outcome._tag) {
    case "Ok":
      return { _tag: "Return", response: outcome.response }
    case "Fail":
      return { _tag: "Fail", error: outcome.error, invalidate: undefined, discard: undefined }
    case "Renew": {
      const renewable = Bearer.isRenewable(outcome.challenge)
      // Drop exactly the token that was refused: a newer one installed meanwhile survives.
      const invalidate = renewable ? outcome.token : undefined
      if (!state.renewed && renewable && policy.replayable) {
        return {
          _tag: "Retry",
          reason: "401",
          state: { ...state, renewed: true },
          sleep: 0,
          invalidate,
          discard: outcome.response
        }
      }
      return {
        _tag: "Fail",
        error: new TollgateError.Unauthorized({
          provider: policy.provider,
          status: 401,
          challenge: Option.getOrUndefined(outcome.challenge),
          description: state.renewed ? "a freshly obtained token was refused as well" : undefined
        }),
        invalidate,
        discard: outcome.response
      }
    }
    case "Throttled": {
      const { now } = context
      const retryAt = context.next
      const firstLimitedAt = state.firstLimitedAt ?? now
      // Only 429s with nobody admitted in between count: while the server admits others, this request
      // (first in line again, at its old place) is just waiting its turn.
      const consecutive = context.admitted === state.admittedAt ? state.rateLimited + 1 : 1
      if (
        retryAt !== undefined && consecutive <= policy.rateLimited && policy.replayable &&
        retryAt - now <= policy.maxWait && retryAt - firstLimitedAt <= policy.maxWait && retryAt <= policy.deadline
      ) {
        return {
          _tag: "Retry",
          reason: "429",
          state: { ...state, rateLimited: consecutive, firstLimitedAt, admittedAt: context.admitted },
          sleep: 0,
          invalidate: undefined,
          discard: outcome.response
        }
      }
      return {
        _tag: "Fail",
        error: new TollgateError.RateLimited({
          provider: policy.provider,
          reason: "server",
          key: policy.key,
          retryAt: retryAt === undefined ? undefined : DateTime.unsafeMake(retryAt)
        }),
        invalidate: undefined,
        discard: outcome.response
      }
    }
    case "Transient": {
      const { now } = context
      const failure = outcome.failure
      if (policy.idempotent && policy.replayable && context.next !== undefined) {
        const sleep = Math.max(context.next, outcome.retryAfter === undefined ? 0 : outcome.retryAfter - now)
        if (sleep <= policy.maxWait && now + sleep < policy.deadline) {
          return {
            _tag: "Retry",
            reason: "transient",
            state: { ...state, transient: state.transient + 1 },
            sleep,
            invalidate: undefined,
            discard: isResponse(failure) ? failure : undefined
          }
        }
      }
      if (!isResponse(failure)) return { _tag: "Fail", error: failure, invalidate: undefined, discard: undefined }
      return {
        _tag: "Fail",
        error: new HttpClientError.ResponseError({
          request: failure.request as HttpClientRequest.HttpClientRequest,
          response: failure,
          reason: "StatusCode",
          description: `${policy.provider} answered HTTP ${failure.status} after ${state.transient + 1} attempt(s)`
        }),
        invalidate: undefined,
        discard: undefined
      }
    }
  }
}

/** Whether a response counts as admitted by the server (the 429 rule's "nobody admitted in between"). */
export const isAdmitted = (outcome: Outcome<unknown>): boolean =>
  outcome._tag === "Ok" || (outcome._tag === "Transient" && isResponse(outcome.failure))

const isResponse = (value: unknown): value is Response =>
  typeof value === "object" && value !== null && "status" in value && "headers" in value && !("_tag" in value)
