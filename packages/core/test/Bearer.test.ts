import { describe, expect, it } from "@effect/vitest"
import { DateTime, Either, Option, Redacted } from "effect"
import * as AccessToken from "../src/AccessToken.js"
import * as Bearer from "../src/Bearer.js"
import * as RateLimitHeaders from "../src/RateLimitHeaders.js"

describe("Bearer", () => {
  it("reads the error of a challenge in any of the shapes servers send", () => {
    expect(Bearer.challenge("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"expired\""))
      .toEqual(Option.some("invalid_token"))
    expect(Bearer.challenge("Bearer error=INSUFFICIENT_SCOPE")).toEqual(Option.some("insufficient_scope"))
    expect(Bearer.challenge("Bearer realm=\"api\"")).toEqual(Option.none())
    expect(Bearer.challenge(undefined)).toEqual(Option.none())
  })

  it("renewal helps with every challenge but insufficient_scope", () => {
    expect(Bearer.isRenewable(Option.none())).toBe(true)
    expect(Bearer.isRenewable(Option.some("invalid_token"))).toBe(true)
    expect(Bearer.isRenewable(Option.some("insufficient_scope"))).toBe(false)
  })

  it("builds a token's Authorization value once", () => {
    const token = Either.getOrThrow(
      AccessToken.make({ value: Redacted.make("abc"), receivedAt: DateTime.unsafeMake(0), expiresIn: 60 })
    )
    const value = Bearer.authorization(token)
    expect(value).toBe("Bearer abc")
    expect(Bearer.authorization(token)).toBe(value)
  })
})

describe("RateLimitHeaders.fromHeaders", () => {
  it("parses a response once, and a response that says nothing into the one empty value", () => {
    expect(RateLimitHeaders.isPresent({ "content-type": "application/json" } as never)).toBe(false)
    expect(RateLimitHeaders.fromHeaders({ "content-type": "application/json" } as never, 0)).toBe(
      RateLimitHeaders.empty
    )
    for (
      const name of ["retry-after", "x-ratelimit-remaining", "ratelimit", "ratelimit-policy", "x-rate-limit-reset"]
    ) {
      expect(RateLimitHeaders.isPresent({ [name]: "1" } as never)).toBe(true)
    }
    const info = RateLimitHeaders.fromHeaders(
      { "x-ratelimit-remaining": "0", "x-ratelimit-reset": "7" } as never,
      1_000
    )
    expect(Option.map(info.resetAt, DateTime.toEpochMillis)).toEqual(Option.some(8_000))
  })
})
