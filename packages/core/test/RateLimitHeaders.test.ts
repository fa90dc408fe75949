import * as Headers from "@effect/platform/Headers"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Option, TestClock } from "effect"
import * as fc from "fast-check"
import * as RateLimitHeaders from "../src/RateLimitHeaders.js"

const NOW = 1_700_000_000_000
const now = DateTime.unsafeMake(NOW)

const parse = (input: Record<string, string>, options?: RateLimitHeaders.ParseOptions) =>
  RateLimitHeaders.parse(Headers.fromInput(input), now, options)

const millis = (instant: Option.Option<DateTime.Utc>) => Option.map(instant, DateTime.toEpochMillis)

describe("RateLimitHeaders", () => {
  describe("Retry-After", () => {
    it.each([
      ["120", NOW + 120_000],
      ["0", NOW],
      [" 30 ", NOW + 30_000],
      ["1.5", NOW + 1500]
    ])("reads %j as seconds from now", (value, expected) => {
      expect(millis(parse({ "Retry-After": value }).retryAt)).toEqual(Option.some(expected))
    })

    it("reads an IMF-fixdate, and the obsolete RFC 850 and asctime forms", () => {
      const at = NOW + 90_000
      const date = new Date(at)
      expect(millis(parse({ "Retry-After": date.toUTCString() }).retryAt)).toEqual(Option.some(at))
      expect(millis(parse({ "Retry-After": "Tuesday, 14-Nov-23 22:14:50 GMT" }).retryAt)).toEqual(
        Option.some(Date.UTC(2023, 10, 14, 22, 14, 50))
      )
      expect(millis(parse({ "Retry-After": "Tue Nov 14 22:14:50 2023" }).retryAt)).toEqual(
        Option.some(Date.parse("Tue Nov 14 22:14:50 2023"))
      )
    })

    it("treats a date in the past as now, never as an instant to wait for backwards", () => {
      expect(millis(parse({ "Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT" }).retryAt)).toEqual(Option.some(NOW))
    })

    it.each(["", "soon", "-5", "12abc", "NaN", "Infinity", "1e3", "0x10", "2023-11-14"])(
      "ignores the garbage value %j",
      (value) => {
        expect(parse({ "Retry-After": value }).retryAt).toEqual(Option.none())
      }
    )

    it("ignores values beyond any representable instant instead of throwing", () => {
      expect(parse({ "Retry-After": "99999999999999999999" }).retryAt).toEqual(Option.none())
      expect(RateLimitHeaders.parseRetryAfter("1".repeat(400), now)).toEqual(Option.none())
    })

    it("parseRetryAfter reads a raw value", () => {
      expect(millis(RateLimitHeaders.parseRetryAfter("7", now))).toEqual(Option.some(NOW + 7000))
      expect(RateLimitHeaders.parseRetryAfter(undefined, now)).toEqual(Option.none())
    })
  })

  describe("X-RateLimit-*", () => {
    it("reads the Token project's headers, with Reset in epoch seconds", () => {
      const resetSeconds = NOW / 1000 + 95
      const info = parse({
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "3",
        "X-RateLimit-Reset": String(resetSeconds)
      })
      expect(info.limit).toEqual(Option.some(10))
      expect(info.remaining).toEqual(Option.some(3))
      expect(millis(info.resetAt)).toEqual(Option.some(NOW + 95_000))
      expect(info.retryAt).toEqual(Option.none())
      expect(info.window).toEqual(Option.none())
    })

    it.each([
      ["epoch seconds", String(NOW / 1000 + 60), NOW + 60_000],
      ["epoch milliseconds", String(NOW + 60_000), NOW + 60_000],
      ["delta seconds", "60", NOW + 60_000],
      ["fractional delta seconds", "0.25", NOW + 250],
      ["a delta of zero", "0", NOW],
      ["epoch seconds in the past", String(NOW / 1000 - 60), NOW - 60_000],
      ["the smallest epoch-seconds value", "1000000000", 1_000_000_000_000],
      ["a delta just below it", "999999999", NOW + 999_999_999_000],
      ["the smallest epoch-millis value", "1000000000000", 1_000_000_000_000]
    ])("tells %s apart by magnitude", (_, value, expected) => {
      expect(millis(parse({ "X-RateLimit-Reset": value }).resetAt)).toEqual(Option.some(expected))
    })

    it("honours an explicit reset format", () => {
      expect(millis(parse({ "X-RateLimit-Reset": "60" }, { resetFormat: "epoch-seconds" }).resetAt)).toEqual(
        Option.some(60_000)
      )
      expect(
        millis(parse({ "X-RateLimit-Reset": String(NOW / 1000) }, { resetFormat: "delta-seconds" }).resetAt)
      ).toEqual(Option.some(NOW + NOW))
      expect(millis(parse({ "X-RateLimit-Reset": "5000" }, { resetFormat: "epoch-millis" }).resetAt)).toEqual(
        Option.some(5000)
      )
      expect(DateTime.toEpochMillis(RateLimitHeaders.resetInstant(30, now, "auto"))).toBe(NOW + 30_000)
    })

    it("treats a negative delta as now", () => {
      expect(millis(parse({ "X-RateLimit-Reset": "-30" }).resetAt)).toEqual(Option.some(NOW))
    })

    it("reads the X-Rate-Limit-* spelling too", () => {
      const info = parse({ "X-Rate-Limit-Limit": "100", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "9" })
      expect(info.limit).toEqual(Option.some(100))
      expect(info.remaining).toEqual(Option.some(0))
      expect(millis(info.resetAt)).toEqual(Option.some(NOW + 9000))
    })

    it("reads the leading quota of a draft-03 style list and floors fractions", () => {
      const info = parse({ "X-RateLimit-Limit": "10, 10;w=60, 1000;w=86400", "X-RateLimit-Remaining": "4.9" })
      expect(info.limit).toEqual(Option.some(10))
      expect(info.remaining).toEqual(Option.some(4))
    })

    it.each(["", "lots", "-1", "NaN", "Infinity", "   ", "ten"])("ignores the garbage count %j", (value) => {
      const info = parse({ "X-RateLimit-Limit": value, "X-RateLimit-Remaining": value })
      expect(info.limit).toEqual(Option.none())
      expect(info.remaining).toEqual(Option.none())
      expect(RateLimitHeaders.isInformative(info)).toBe(false)
    })

    it.each(["", "tomorrow", "NaN", "in 5 minutes"])("ignores the garbage reset %j", (value) => {
      expect(parse({ "X-RateLimit-Reset": value }).resetAt).toEqual(Option.none())
    })

    it("ignores resets beyond any representable instant instead of throwing", () => {
      for (const value of ["100000000000000000000000", "9".repeat(30), "8640000000000001"]) {
        expect(parse({ "X-RateLimit-Reset": value }).resetAt).toEqual(Option.none())
      }
      expect(parse({ "X-RateLimit-Reset": "9999999999999" }, { resetFormat: "delta-seconds" }).resetAt).toEqual(
        Option.none()
      )
    })
  })

  describe("IETF RateLimit fields", () => {
    it("reads the draft-03..06 separate fields as seconds until reset (never an epoch)", () => {
      const info = parse({ "RateLimit-Limit": "100", "RateLimit-Remaining": "42", "RateLimit-Reset": "1700000000" })
      expect(info.limit).toEqual(Option.some(100))
      expect(info.remaining).toEqual(Option.some(42))
      expect(millis(info.resetAt)).toEqual(Option.some(NOW + 1_700_000_000_000))
    })

    it("reads the draft-07 dictionary form with its policy", () => {
      const info = parse({ RateLimit: "limit=10, remaining=5, reset=30", "RateLimit-Policy": "10;w=60" })
      expect(info.limit).toEqual(Option.some(10))
      expect(info.remaining).toEqual(Option.some(5))
      expect(millis(info.resetAt)).toEqual(Option.some(NOW + 30_000))
      expect(info.window).toEqual(Option.some(Duration.seconds(60)))
    })

    it("reads the draft-07 dictionary in any order and spacing", () => {
      const info = parse({ RateLimit: "reset=7,remaining=0 ,  limit=3" })
      expect(info.limit).toEqual(Option.some(3))
      expect(info.remaining).toEqual(Option.some(0))
      expect(millis(info.resetAt)).toEqual(Option.some(NOW + 7000))
      expect(info.window).toEqual(Option.none())
    })

    it("reads the draft-08+ list form with a named policy", () => {
      const info = parse({ RateLimit: "\"default\";r=5;t=30", "RateLimit-Policy": "\"default\";q=10;w=60" })
      expect(info.limit).toEqual(Option.some(10))
      expect(info.remaining).toEqual(Option.some(5))
      expect(millis(info.resetAt)).toEqual(Option.some(NOW + 30_000))
      expect(info.window).toEqual(Option.some(Duration.seconds(60)))
    })

    it("reads token names, a partition key and unknown parameters", () => {
      const info = parse({
        RateLimit: "perUser;r=2;t=4;pk=:dXNlcg==:;x=\"y\"",
        "RateLimit-Policy": "perUser;q=20;w=10;qu=\"requests\""
      })
      expect(info.limit).toEqual(Option.some(20))
      expect(info.remaining).toEqual(Option.some(2))
      expect(millis(info.resetAt)).toEqual(Option.some(NOW + 4000))
      expect(info.window).toEqual(Option.some(Duration.seconds(10)))
    })

    it("reads a policy alone", () => {
      const info = parse({ "RateLimit-Policy": "\"hourly\";q=500;w=3600" })
      expect(info.limit).toEqual(Option.some(500))
      expect(info.remaining).toEqual(Option.none())
      expect(info.resetAt).toEqual(Option.none())
      expect(info.window).toEqual(Option.some(Duration.hours(1)))
      expect(RateLimitHeaders.isInformative(info)).toBe(true)
    })

    describe("several policies: the most restrictive wins", () => {
      it("the one with fewest requests left binds, with its own reset and quota", () => {
        const info = parse({
          RateLimit: "\"burst\";r=0;t=1, \"daily\";r=900;t=3600",
          "RateLimit-Policy": "\"burst\";q=10;w=1, \"daily\";q=1000;w=86400"
        })
        expect(info.remaining).toEqual(Option.some(0))
        // The burst window reopens in one second; waiting for the daily reset would stall for an hour.
        expect(millis(info.resetAt)).toEqual(Option.some(NOW + 1000))
        expect(info.limit).toEqual(Option.some(10))
        expect(info.window).toEqual(Option.some(Duration.seconds(1)))
      })

      it("when the long quota is the one exhausted, its reset and quota bind", () => {
        const info = parse({
          RateLimit: "\"burst\";r=7;t=1, \"daily\";r=0;t=3600",
          "RateLimit-Policy": "\"burst\";q=10;w=1, \"daily\";q=1000;w=86400"
        })
        expect(info.remaining).toEqual(Option.some(0))
        expect(millis(info.resetAt)).toEqual(Option.some(NOW + 3_600_000))
        expect(info.limit).toEqual(Option.some(1000))
        expect(info.window).toEqual(Option.some(Duration.days(1)))
      })

      it("among equally exhausted policies the latest reset binds", () => {
        const info = parse({ RateLimit: "\"a\";r=0;t=5, \"b\";r=0;t=50, \"c\";r=0;t=20" })
        expect(info.remaining).toEqual(Option.some(0))
        expect(millis(info.resetAt)).toEqual(Option.some(NOW + 50_000))
      })

      it("the draft-07 policy list pairs the quota with its own window", () => {
        const info = parse({
          RateLimit: "limit=100, remaining=0, reset=20",
          "RateLimit-Policy": "100;w=60, 5000;w=3600"
        })
        expect(info.limit).toEqual(Option.some(100))
        expect(info.window).toEqual(Option.some(Duration.minutes(1)))
        expect(millis(info.resetAt)).toEqual(Option.some(NOW + 20_000))
      })
    })

    it("prefers X-RateLimit-* when both families are present", () => {
      const info = parse({
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "2",
        "X-RateLimit-Reset": String(NOW / 1000 + 10),
        RateLimit: "limit=20, remaining=9, reset=99"
      })
      expect(info.limit).toEqual(Option.some(10))
      expect(info.remaining).toEqual(Option.some(2))
      expect(millis(info.resetAt)).toEqual(Option.some(NOW + 10_000))
    })

    it("falls back to the IETF fields when the X-RateLimit-* values are garbage", () => {
      const info = parse({ "X-RateLimit-Remaining": "n/a", "X-RateLimit-Reset": "never", RateLimit: "\"p\";r=1;t=2" })
      expect(info.remaining).toEqual(Option.some(1))
      expect(millis(info.resetAt)).toEqual(Option.some(NOW + 2000))
    })

    it.each([
      "",
      ",,,",
      ";;;",
      "r=",
      "\"unterminated;r=5",
      "limit=abc, remaining=, reset=-",
      "\"p\";r=-3;t=x",
      "=5, ==, ;=;"
    ])("ignores the garbage field %j", (value) => {
      const info = parse({ RateLimit: value, "RateLimit-Policy": value })
      expect(info.remaining).toEqual(Option.none())
      expect(info.limit).toEqual(Option.none())
      expect(info.window).toEqual(Option.none())
    })

    it("ignores a zero window", () => {
      expect(parse({ "RateLimit-Policy": "\"p\";q=5;w=0" }).window).toEqual(Option.none())
    })
  })

  describe("header names", () => {
    it("are case-insensitive as delivered by @effect/platform Headers", () => {
      const variants: ReadonlyArray<Record<string, string>> = [
        { "x-ratelimit-remaining": "1", "retry-after": "2", ratelimit: "limit=3" },
        { "X-RATELIMIT-REMAINING": "1", "RETRY-AFTER": "2", RATELIMIT: "limit=3" },
        { "X-RateLimit-Remaining": "1", "Retry-After": "2", RateLimit: "limit=3" }
      ]
      for (const input of variants) {
        const info = parse(input)
        expect(info.remaining).toEqual(Option.some(1))
        expect(millis(info.retryAt)).toEqual(Option.some(NOW + 2000))
        expect(info.limit).toEqual(Option.some(3))
      }
      // A Web Headers object and a tuple list are normalised the same way.
      const fromWeb = RateLimitHeaders.parse(
        Headers.fromInput(new globalThis.Headers({ "X-RateLimit-Remaining": "1" })),
        now
      )
      expect(fromWeb.remaining).toEqual(Option.some(1))
      const fromTuples = RateLimitHeaders.parse(Headers.fromInput([["X-RateLimit-Limit", "9"]]), now)
      expect(fromTuples.limit).toEqual(Option.some(9))
    })
  })

  describe("combining", () => {
    it("waitUntil is the later of Retry-After and the reset", () => {
      expect(millis(RateLimitHeaders.waitUntil(parse({ "Retry-After": "10", "X-RateLimit-Reset": "60" })))).toEqual(
        Option.some(NOW + 60_000)
      )
      expect(millis(RateLimitHeaders.waitUntil(parse({ "Retry-After": "90", "X-RateLimit-Reset": "60" })))).toEqual(
        Option.some(NOW + 90_000)
      )
      expect(millis(RateLimitHeaders.waitUntil(parse({ "Retry-After": "5" })))).toEqual(Option.some(NOW + 5000))
      expect(millis(RateLimitHeaders.waitUntil(parse({ RateLimit: "\"p\";r=0;t=8" })))).toEqual(
        Option.some(NOW + 8000)
      )
      expect(RateLimitHeaders.waitUntil(parse({}))).toEqual(Option.none())
      expect(RateLimitHeaders.waitUntil(RateLimitHeaders.empty)).toEqual(Option.none())
    })

    it("isInformative is false for a response that said nothing about limits", () => {
      expect(RateLimitHeaders.isInformative(parse({ "content-type": "application/json", date: "x" }))).toBe(false)
      expect(RateLimitHeaders.isInformative(RateLimitHeaders.empty)).toBe(false)
      expect(RateLimitHeaders.isInformative(parse({ "X-RateLimit-Remaining": "0" }))).toBe(true)
      expect(RateLimitHeaders.isInformative(parse({ "Retry-After": "1" }))).toBe(true)
    })

    it.effect("counts relative values from the given receipt instant (TestClock)", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(NOW)
        const received = yield* DateTime.now
        yield* TestClock.adjust("10 seconds")
        const info = RateLimitHeaders.parse(
          Headers.fromInput({ "Retry-After": "30", "X-RateLimit-Reset": "20" }),
          received
        )
        expect(millis(info.retryAt)).toEqual(Option.some(NOW + 30_000))
        expect(millis(info.resetAt)).toEqual(Option.some(NOW + 20_000))
      }))
  })

  describe("rate-limit bodies", () => {
    it.each([
      [{ errors: [{ code: 88, message: "Rate limit exceeded" }] }, true],
      [{ errors: [{ code: "88", message: "Rate limit exceeded" }] }, true],
      [{ errors: [{ code: 32, message: "Could not authenticate you" }, { code: 88 }] }, true],
      [{ code: 88 }, true],
      [{ code: "88" }, true],
      [{ errors: [{ code: 32, message: "Could not authenticate you" }] }, false],
      [{ errors: [] }, false],
      [{ errors: [null, 88, "88", { message: "88" }] }, false],
      [{ errors: { code: 88 } }, false],
      [{ code: 89 }, false],
      [{ code: true }, false],
      [{ code: null }, false],
      [{ error: { code: 88 } }, false],
      [[{ code: 88 }], false],
      [null, false],
      [undefined, false],
      ["88", false],
      [88, false]
    ])("isRateLimitBody(%j) is %s", (body, expected) => {
      expect(RateLimitHeaders.isRateLimitBody(body)).toBe(expected)
    })

    it("takes a provider's own codes", () => {
      const codes = new Set<number | string>([429, "RATE_LIMITED"])
      expect(RateLimitHeaders.isRateLimitBody({ code: "RATE_LIMITED" }, codes)).toBe(true)
      expect(RateLimitHeaders.isRateLimitBody({ errors: [{ code: 429 }] }, codes)).toBe(true)
      expect(RateLimitHeaders.isRateLimitBody({ errors: [{ code: 88 }] }, codes)).toBe(false)
    })
  })

  describe("properties", () => {
    const names = [
      "retry-after",
      "x-ratelimit-limit",
      "x-ratelimit-remaining",
      "x-ratelimit-reset",
      "x-rate-limit-limit",
      "x-rate-limit-remaining",
      "x-rate-limit-reset",
      "ratelimit",
      "ratelimit-policy",
      "ratelimit-limit",
      "ratelimit-remaining",
      "ratelimit-reset"
    ] as const
    // Strings that look like what servers send, plus arbitrary (and unicode) noise.
    const value = fc.oneof(
      fc.string(),
      fc.fullUnicodeString(),
      fc.stringMatching(/^[-0-9.e ]{0,40}$/),
      fc.stringMatching(/^("[a-z]{0,3}"?|[a-z]{0,3}|\d{0,25})(;[a-z]{0,2}=?("?[-0-9a-z.]{0,25}"?)?){0,4}$/),
      fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map(String),
      fc.double().map(String),
      fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15) }).map((d) => d.toUTCString())
    )
    const headers = fc.dictionary(fc.constantFrom(...names), value)
    const format = fc.constantFrom<RateLimitHeaders.ResetFormat>(
      "auto",
      "epoch-seconds",
      "epoch-millis",
      "delta-seconds"
    )

    it.prop("parse never throws and yields sane values on arbitrary headers", {
      input: headers,
      format,
      at: fc.integer({ min: 0, max: 4_000_000_000_000 })
    }, ({ at, format, input }) => {
      const received = DateTime.unsafeMake(at)
      const info = RateLimitHeaders.parse(Headers.fromInput(input), received, { resetFormat: format })
      for (const count of [info.limit, info.remaining]) {
        if (Option.isSome(count)) {
          expect(Number.isInteger(count.value)).toBe(true)
          expect(count.value).toBeGreaterThanOrEqual(0)
        }
      }
      // Retry-After never points before the response.
      if (Option.isSome(info.retryAt)) expect(DateTime.toEpochMillis(info.retryAt.value)).toBeGreaterThanOrEqual(at)
      for (const instant of [info.resetAt, info.retryAt, RateLimitHeaders.waitUntil(info)]) {
        if (Option.isSome(instant)) expect(Number.isFinite(DateTime.toEpochMillis(instant.value))).toBe(true)
      }
      if (Option.isSome(info.window)) expect(Duration.toMillis(info.window.value)).toBeGreaterThan(0)
    }, { fastCheck: { numRuns: 2000 } })

    it.prop("parseRetryAfter and isRateLimitBody never throw", {
      text: fc.oneof(fc.string(), fc.fullUnicodeString(), fc.stringMatching(/^\d{0,400}$/)),
      body: fc.jsonValue()
    }, ({ body, text }) => {
      const retryAt = RateLimitHeaders.parseRetryAfter(text, now)
      if (Option.isSome(retryAt)) expect(DateTime.toEpochMillis(retryAt.value)).toBeGreaterThanOrEqual(NOW)
      expect(typeof RateLimitHeaders.isRateLimitBody(body)).toBe("boolean")
      expect(typeof RateLimitHeaders.isRateLimitBody({ errors: [body] })).toBe("boolean")
    }, { fastCheck: { numRuns: 1000 } })

    it.prop("with several draft-08 policies, remaining and reset come from the same binding policy", {
      policies: fc.uniqueArray(
        fc.record({ name: fc.stringMatching(/^[a-z]{1,6}$/), r: fc.nat(1000), t: fc.nat(100_000) }),
        { minLength: 1, maxLength: 5, selector: (p) => p.name }
      )
    }, ({ policies }) => {
      const field = policies.map((p) => `"${p.name}";r=${p.r};t=${p.t}`).join(", ")
      const info = parse({ RateLimit: field })
      const fewest = Math.min(...policies.map((p) => p.r))
      const latestAmongFewest = Math.max(...policies.filter((p) => p.r === fewest).map((p) => p.t))
      expect(info.remaining).toEqual(Option.some(fewest))
      expect(millis(info.resetAt)).toEqual(Option.some(NOW + latestAmongFewest * 1000))
    })
  })
})
