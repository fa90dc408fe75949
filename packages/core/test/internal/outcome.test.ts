import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, Either, Option, Redacted } from "effect"
import * as fc from "fast-check"
import * as AccessToken from "../../src/AccessToken.js"
import * as Outcome from "../../src/internal/outcome.js"
import * as RateLimitHeaders from "../../src/RateLimitHeaders.js"
import * as TollgateError from "../../src/TollgateError.js"

const request = HttpClientRequest.get("https://api.test/v1/forms")
const response = (status: number, headers: Record<string, string> = {}) =>
  HttpClientResponse.fromWeb(request, new Response("{}", { status, headers }))
const token = Either.getOrThrow(
  AccessToken.make({ value: Redacted.make("t"), receivedAt: DateTime.unsafeMake(0), expiresIn: 3600 })
)
const transport = new HttpClientError.RequestError({ request, reason: "Transport", cause: new Error("reset") })
const timeout = new TollgateError.Timeout({ provider: "p", operation: "API request", after: Duration.seconds(30) })
const info = (headers: Record<string, string>, now = 0) =>
  RateLimitHeaders.fromHeaders(response(200, headers).headers, now)

const policy: Outcome.Policy = {
  provider: "p",
  key: "GET /v1/forms",
  rateLimited: 3,
  maxWait: 300_000,
  idempotent: true,
  replayable: true,
  deadline: Number.POSITIVE_INFINITY
}
const at = (now: number, next: number | undefined, admitted = 0): Outcome.Context => ({ now, admitted, next })

describe("Outcome.classify", () => {
  it("names what each answer means", () => {
    const empty = RateLimitHeaders.empty
    expect(Outcome.classify({ response: response(200) }, token, empty)._tag).toBe("Ok")
    expect(Outcome.classify({ response: response(404) }, token, empty)._tag).toBe("Ok")
    expect(Outcome.classify({ response: response(401) }, undefined, empty)._tag).toBe("Ok")
    expect(Outcome.classify({ response: response(401) }, token, empty)).toMatchObject({ _tag: "Renew", token })
    expect(Outcome.classify({ response: response(429) }, token, empty)._tag).toBe("Throttled")
    expect(Outcome.classify({ response: response(503) }, token, empty)._tag).toBe("Transient")
    expect(Outcome.classify({ error: transport }, token, empty)._tag).toBe("Transient")
    expect(Outcome.classify({ error: timeout }, token, empty)._tag).toBe("Transient")
    const invalid = new HttpClientError.RequestError({ request, reason: "InvalidUrl" })
    expect(Outcome.classify({ error: invalid }, token, empty)._tag).toBe("Fail")
    const refused = new TollgateError.InvalidCredentials({ provider: "p", status: 401 })
    expect(Outcome.classify({ error: refused }, token, empty)._tag).toBe("Fail")
  })

  it("reads the challenge of a 401 and the Retry-After of a 5xx from what was parsed once", () => {
    const challenged = response(401, { "www-authenticate": "Bearer realm=\"api\", error=\"insufficient_scope\"" })
    expect(Outcome.classify({ response: challenged }, token, RateLimitHeaders.empty)).toMatchObject({
      _tag: "Renew",
      challenge: Option.some("insufficient_scope")
    })
    const unavailable = response(503, { "retry-after": "7" })
    expect(Outcome.classify({ response: unavailable }, token, info({ "retry-after": "7" }, 1_000))).toMatchObject({
      _tag: "Transient",
      retryAfter: 8_000
    })
  })
})

describe("Outcome.decide", () => {
  const renew = Outcome.classify({ response: response(401) }, token, RateLimitHeaders.empty)
  const throttled = Outcome.classify({ response: response(429) }, token, RateLimitHeaders.empty)
  const unavailable = Outcome.classify({ response: response(503) }, token, RateLimitHeaders.empty)
  const dropped = Outcome.classify({ error: transport }, token, RateLimitHeaders.empty)

  it("returns an Ok response and fails a Fail error as they are", () => {
    const ok = Outcome.classify({ response: response(200) }, token, RateLimitHeaders.empty)
    expect(Outcome.decide(ok, Outcome.initial, policy, at(0, undefined))._tag).toBe("Return")
    const failure = Outcome.classify({ error: timeout }, undefined, RateLimitHeaders.empty)
    expect(Outcome.decide({ _tag: "Fail", error: failure }, Outcome.initial, policy, at(0, undefined))).toMatchObject({
      _tag: "Fail"
    })
  })

  it("renews a refused token once, never for insufficient_scope or a body that cannot be sent again", () => {
    expect(Outcome.decide(renew, Outcome.initial, policy, at(0, undefined))).toMatchObject({
      _tag: "Retry",
      reason: "401",
      invalidate: token,
      state: { renewed: true }
    })
    const again = Outcome.decide(renew, { ...Outcome.initial, renewed: true }, policy, at(0, undefined))
    expect(again).toMatchObject({ _tag: "Fail", invalidate: token, error: { _tag: "Unauthorized" } })
    const scope = Outcome.classify(
      { response: response(401, { "www-authenticate": "Bearer error=\"insufficient_scope\"" }) },
      token,
      RateLimitHeaders.empty
    )
    expect(Outcome.decide(scope, Outcome.initial, policy, at(0, undefined))).toMatchObject({
      _tag: "Fail",
      invalidate: undefined,
      error: { _tag: "Unauthorized", challenge: "insufficient_scope" }
    })
    expect(Outcome.decide(renew, Outcome.initial, { ...policy, replayable: false }, at(0, undefined))).toMatchObject({
      _tag: "Fail",
      invalidate: token
    })
  })

  it("retries a 429 at the gate's reopening while nobody else is admitted, up to rateLimited in a row", () => {
    let state = Outcome.initial
    for (let i = 1; i <= 3; i++) {
      const decision = Outcome.decide(throttled, state, policy, at(i * 1_000, i * 1_000 + 5_000, 7))
      expect(decision).toMatchObject({ _tag: "Retry", reason: "429", sleep: 0 })
      if (decision._tag === "Retry") state = decision.state
    }
    expect(Outcome.decide(throttled, state, policy, at(4_000, 9_000, 7))).toMatchObject({
      _tag: "Fail",
      error: { _tag: "RateLimited", reason: "server", key: "GET /v1/forms" }
    })
    // Someone was admitted since the last 429: this one is waiting its turn, and counts from 1 again.
    expect(Outcome.decide(throttled, state, policy, at(4_000, 9_000, 8))).toMatchObject({
      _tag: "Retry",
      state: { rateLimited: 1 }
    })
  })

  it("fails a 429 whose reset is past maxWait, past maxWait since the first 429, or past the request's bound", () => {
    expect(Outcome.decide(throttled, Outcome.initial, policy, at(0, 300_001))).toMatchObject({ _tag: "Fail" })
    const limitedLongAgo = { ...Outcome.initial, rateLimited: 1, firstLimitedAt: 0, admittedAt: 0 }
    expect(Outcome.decide(throttled, limitedLongAgo, policy, at(200_000, 301_000, 1))).toMatchObject({
      _tag: "Fail",
      error: { retryAt: DateTime.unsafeMake(301_000) }
    })
    expect(Outcome.decide(throttled, Outcome.initial, { ...policy, deadline: 4_000 }, at(0, 5_000))).toMatchObject({
      _tag: "Fail"
    })
    // An exhausted backoff schedule leaves no instant to retry at.
    expect(Outcome.decide(throttled, Outcome.initial, policy, at(0, undefined))).toMatchObject({
      _tag: "Fail",
      error: { _tag: "RateLimited", retryAt: undefined }
    })
  })

  it("retries a transient failure after the schedule's delay or the server's Retry-After, whichever is later", () => {
    expect(Outcome.decide(dropped, Outcome.initial, policy, at(0, 500))).toMatchObject({
      _tag: "Retry",
      reason: "transient",
      sleep: 500,
      discard: undefined
    })
    const later = { ...unavailable, retryAfter: 9_000 } as Outcome.Outcome<never>
    expect(Outcome.decide(later, Outcome.initial, policy, at(1_000, 500))).toMatchObject({ sleep: 8_000 })
    expect(Outcome.decide(unavailable, Outcome.initial, policy, at(0, 500))).toMatchObject({
      _tag: "Retry",
      discard: { status: 503 }
    })
  })

  it("fails a transient failure it may not retry, a 5xx as a ResponseError that keeps the response", () => {
    const cases: ReadonlyArray<readonly [Outcome.Policy, number | undefined]> = [
      [{ ...policy, idempotent: false }, 500],
      [{ ...policy, replayable: false }, 500],
      [policy, undefined],
      [{ ...policy, maxWait: 100 }, 500],
      [{ ...policy, deadline: 400 }, 500]
    ]
    for (const [rules, next] of cases) {
      const decision = Outcome.decide(unavailable, { ...Outcome.initial, transient: 1 }, rules, at(0, next))
      expect(decision).toMatchObject({
        _tag: "Fail",
        error: { _tag: "ResponseError", reason: "StatusCode", description: "p answered HTTP 503 after 2 attempt(s)" }
      })
      expect(Outcome.decide(dropped, Outcome.initial, rules, at(0, next))).toMatchObject({
        _tag: "Fail",
        error: transport
      })
    }
  })

  it("is total: every outcome in every state gets exactly one decision, and retries always move the state on", () => {
    const outcomes = [renew, throttled, unavailable, dropped]
    fc.assert(fc.property(
      fc.constantFrom(...outcomes),
      fc.record({
        renewed: fc.boolean(),
        rateLimited: fc.nat(5),
        transient: fc.nat(5),
        firstLimitedAt: fc.option(fc.nat(1_000_000), { nil: undefined }),
        admittedAt: fc.integer({ min: -1, max: 10 })
      }),
      fc.record({ idempotent: fc.boolean(), replayable: fc.boolean(), rateLimited: fc.nat(4) }),
      fc.nat(1_000_000),
      fc.option(fc.nat(1_000_000), { nil: undefined }),
      fc.nat(10),
      (outcome, state, rules, now, next, admitted) => {
        const decision = Outcome.decide(outcome, state, { ...policy, ...rules }, at(now, next, admitted))
        if (decision._tag !== "Retry") return
        expect(decision.state).not.toEqual(state)
        expect(decision.sleep).toBeGreaterThanOrEqual(0)
        expect(decision.sleep).toBeLessThanOrEqual(policy.maxWait)
      }
    ))
  })
})
