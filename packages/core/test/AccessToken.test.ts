import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Either, Option, Redacted, Schema, TestClock } from "effect"
import * as fc from "fast-check"
import { inspect } from "node:util"
import * as AccessToken from "../src/AccessToken.js"

const SECRET_TOKEN = "at-0123456789-SECRET-VALUE"
const SECRET_REFRESH = "rt-9876543210-SECRET-REFRESH"

const RECEIVED = 1_700_000_000_000
const receivedAt = DateTime.unsafeMake(RECEIVED)
const HOUR = 3_600_000
const DAY = 24 * HOUR

const b64url = (text: string) => Buffer.from(text, "utf8").toString("base64url")
/** A compact JWS with the given payload; the signature is never checked. */
const jwt = (payload: unknown) =>
  `${b64url(JSON.stringify({ alg: "RS256", typ: "JWT" }))}.${b64url(JSON.stringify(payload))}.c2lnbmF0dXJl`
const seconds = (millis: number) => Math.floor(millis / 1000)

const make = (options: Partial<AccessToken.MakeOptions>) =>
  AccessToken.make({ value: Redacted.make(SECRET_TOKEN), receivedAt, ...options })

/** The expiry in epoch millis, failing the test when the lifetime was rejected. */
const expiryOf = (options: Partial<AccessToken.MakeOptions>): Option.Option<number> => {
  const result = make(options)
  if (Either.isLeft(result)) throw new Error(`unexpected issue: ${JSON.stringify(result.left)}`)
  return Option.map(result.right.expiresAt, DateTime.toEpochMillis)
}

const issueOf = (options: Partial<AccessToken.MakeOptions>): AccessToken.LifetimeIssue => {
  const result = make(options)
  if (Either.isRight(result)) throw new Error(`expected an issue, got expiry ${String(result.right.expiresAt)}`)
  return result.left
}

describe("AccessToken", () => {
  describe("expires_in", () => {
    it("counts seconds from local receipt", () => {
      expect(expiryOf({ expiresIn: 3600 })).toEqual(Option.some(RECEIVED + HOUR))
      expect(expiryOf({ expiresIn: 1.5 })).toEqual(Option.some(RECEIVED + 1500))
    })

    it.effect("counts from the receipt instant read on the (test) clock, not from when the token is used", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(RECEIVED)
        const now = yield* DateTime.now
        const token = yield* Either.match(
          AccessToken.make({ value: Redacted.make(SECRET_TOKEN), receivedAt: now, expiresIn: 600 }),
          { onLeft: () => Effect.die("issue"), onRight: Effect.succeed }
        )
        yield* TestClock.adjust("5 minutes")
        expect(DateTime.toEpochMillis(token.obtainedAt)).toBe(RECEIVED)
        expect(Option.map(token.expiresAt, DateTime.toEpochMillis)).toEqual(Option.some(RECEIVED + 600_000))
        expect(Option.map(token.lifetime, Duration.toMillis)).toEqual(Option.some(600_000))
      }))

    it("ignores the server's Date header: a relative lifetime needs no skew correction", () => {
      const serverDate = DateTime.unsafeMake(RECEIVED - 10 * 60_000)
      expect(expiryOf({ expiresIn: 600, serverDate })).toEqual(Option.some(RECEIVED + 600_000))
    })

    it("is clamped to maxLifetime (24 hours by default)", () => {
      expect(expiryOf({ expiresIn: 10 * 365 * 86_400 })).toEqual(Option.some(RECEIVED + DAY))
      expect(expiryOf({ expiresIn: Number.MAX_VALUE })).toEqual(Option.some(RECEIVED + DAY))
      expect(expiryOf({ expiresIn: 7200, maxLifetime: "1 hour" })).toEqual(Option.some(RECEIVED + HOUR))
      expect(expiryOf({ expiresIn: 1800, maxLifetime: "1 hour" })).toEqual(Option.some(RECEIVED + HOUR / 2))
    })

    it("stays a valid instant with an unbounded maxLifetime", () => {
      const expiry = expiryOf({ expiresIn: 1e300, maxLifetime: Duration.infinity })
      expect(Option.isSome(expiry)).toBe(true)
      expect(Option.getOrThrow(expiry)).toBeGreaterThan(RECEIVED + 100 * 365 * DAY)
      expect(Number.isFinite(Option.getOrThrow(expiry))).toBe(true)
    })

    it.each([
      [0, "zero"],
      [-1, "a negative number"],
      [-3600, "a negative number"],
      [Number.NaN, "NaN"],
      [Number.POSITIVE_INFINITY, "an infinite number"],
      [Number.NEGATIVE_INFINITY, "an infinite number"]
    ])("rejects %s as %s", (expiresIn, kind) => {
      expect(issueOf({ expiresIn })).toEqual({
        field: "expires_in",
        expected: "a positive number of seconds",
        received: kind
      })
    })

    it("rejects a lifetime shorter than a millisecond: the token would expire on arrival", () => {
      const issue = issueOf({ expiresIn: 0.0001 })
      expect(issue.field).toBe("expires_in")
      expect(issue.received).not.toContain("0.0001")
    })

    it("is rejected even when a usable absolute expiry or default is also present", () => {
      const issue = issueOf({
        expiresIn: 0,
        expiresAt: DateTime.unsafeMake(RECEIVED + HOUR),
        defaultLifetime: "1 hour"
      })
      expect(issue.field).toBe("expires_in")
    })
  })

  describe("absolute expiresAt", () => {
    it("without a server Date, counts from local receipt", () => {
      expect(expiryOf({ expiresAt: DateTime.unsafeMake(RECEIVED + 30 * 60_000) })).toEqual(
        Option.some(RECEIVED + 30 * 60_000)
      )
    })

    it("cancels a local clock that runs ahead of the server", () => {
      // Local clock is 5 minutes ahead: the server says it is 11:55 when we read 12:00.
      const serverDate = DateTime.unsafeMake(RECEIVED - 5 * 60_000)
      const expiresAt = DateTime.unsafeMake(RECEIVED - 5 * 60_000 + 30 * 60_000)
      expect(expiryOf({ expiresAt, serverDate })).toEqual(Option.some(RECEIVED + 30 * 60_000))
    })

    it("cancels a local clock that runs behind the server", () => {
      const serverDate = DateTime.unsafeMake(RECEIVED + 2 * HOUR)
      const expiresAt = DateTime.unsafeMake(RECEIVED + 2 * HOUR + 30 * 60_000)
      expect(expiryOf({ expiresAt, serverDate })).toEqual(Option.some(RECEIVED + 30 * 60_000))
    })

    it("accepts an expiry that looks past on a skewed local clock but is future on the server's", () => {
      // Local clock 1 hour fast: the token expires 30 minutes from the server's now, which is "30
      // minutes ago" locally.
      const serverDate = DateTime.unsafeMake(RECEIVED - HOUR)
      const expiresAt = DateTime.unsafeMake(RECEIVED - 30 * 60_000)
      expect(expiryOf({ expiresAt, serverDate })).toEqual(Option.some(RECEIVED + 30 * 60_000))
    })

    it("is clamped to receipt + maxLifetime", () => {
      expect(expiryOf({ expiresAt: DateTime.unsafeMake(RECEIVED + 400 * DAY) })).toEqual(Option.some(RECEIVED + DAY))
      expect(
        expiryOf({ expiresAt: DateTime.unsafeMake(RECEIVED + 3 * HOUR), maxLifetime: Duration.hours(2) })
      ).toEqual(Option.some(RECEIVED + 2 * HOUR))
      // The clamp applies to the skew-corrected lifetime.
      expect(
        expiryOf({
          expiresAt: DateTime.unsafeMake(RECEIVED + 50 * HOUR),
          serverDate: DateTime.unsafeMake(RECEIVED + 48 * HOUR)
        })
      ).toEqual(Option.some(RECEIVED + 2 * HOUR))
    })

    it.each([
      ["in the past", RECEIVED - 1000, undefined],
      ["exactly now", RECEIVED, undefined],
      ["in the past on the server's clock", RECEIVED + HOUR, RECEIVED + 2 * HOUR],
      ["exactly the server's now", RECEIVED + HOUR, RECEIVED + HOUR]
    ])("rejects an instant %s", (_, expiresAtMillis, serverMillis) => {
      expect(
        issueOf({
          expiresAt: DateTime.unsafeMake(expiresAtMillis),
          serverDate: serverMillis === undefined ? undefined : DateTime.unsafeMake(serverMillis)
        })
      ).toEqual({
        field: "expiresAt",
        expected: "an instant after the response was received",
        received: "an instant in the past"
      })
    })

    it("yields to expires_in and wins over a JWT exp and the default", () => {
      const expiresAt = DateTime.unsafeMake(RECEIVED + 20 * 60_000)
      expect(expiryOf({ expiresIn: 60, expiresAt })).toEqual(Option.some(RECEIVED + 60_000))
      const value = Redacted.make(jwt({ exp: seconds(RECEIVED + HOUR) }))
      expect(expiryOf({ value, expiresAt, defaultLifetime: "5 hours" })).toEqual(Option.some(RECEIVED + 20 * 60_000))
    })
  })

  describe("JWT exp", () => {
    it("without iat, counts from local receipt", () => {
      const value = Redacted.make(jwt({ sub: "client", exp: seconds(RECEIVED) + 900 }))
      expect(expiryOf({ value })).toEqual(Option.some(RECEIVED + 900_000))
    })

    it("without iat but with a server Date, is corrected for skew", () => {
      const serverSeconds = seconds(RECEIVED) + 3600
      const value = Redacted.make(jwt({ exp: serverSeconds + 900 }))
      expect(expiryOf({ value, serverDate: DateTime.unsafeMake(serverSeconds * 1000) })).toEqual(
        Option.some(RECEIVED + 900_000)
      )
    })

    it("with iat, lasts exp - iat from receipt whatever the local clock says", () => {
      // Issued and expiring on a server clock two hours ahead of ours.
      const iat = seconds(RECEIVED) + 7200
      const value = Redacted.make(jwt({ iat, exp: iat + 1800 }))
      expect(expiryOf({ value })).toEqual(Option.some(RECEIVED + 1_800_000))
    })

    it("with iat and a server Date, uses the Date as the reference", () => {
      const serverSeconds = seconds(RECEIVED) - 600
      const value = Redacted.make(jwt({ iat: serverSeconds - 300, exp: serverSeconds + 1200 }))
      expect(expiryOf({ value, serverDate: DateTime.unsafeMake(serverSeconds * 1000) })).toEqual(
        Option.some(RECEIVED + 1_200_000)
      )
    })

    it("decodes base64url payloads with '-' and '_' and no padding", () => {
      const payload = { note: "???>>>~~~", exp: seconds(RECEIVED) + 60 }
      const encoded = b64url(JSON.stringify(payload))
      expect(encoded).toMatch(/[-_]/)
      expect(encoded).not.toContain("=")
      const value = Redacted.make(`eyJhbGciOiJub25lIn0.${encoded}.`)
      // An unsigned token has an empty third part and is still read.
      expect(expiryOf({ value })).toEqual(Option.some(RECEIVED + 60_000))
    })

    it("is clamped to maxLifetime", () => {
      const value = Redacted.make(jwt({ exp: seconds(RECEIVED) + 90 * 86_400 }))
      expect(expiryOf({ value })).toEqual(Option.some(RECEIVED + DAY))
      expect(expiryOf({ value, maxLifetime: "10 minutes" })).toEqual(Option.some(RECEIVED + 600_000))
    })

    it("rejects an exp in the past and an exp before iat", () => {
      expect(issueOf({ value: Redacted.make(jwt({ exp: seconds(RECEIVED) - 10 })) })).toMatchObject({
        field: "exp",
        received: "an instant in the past"
      })
      const iat = seconds(RECEIVED)
      expect(issueOf({ value: Redacted.make(jwt({ iat, exp: iat - 1 })) })).toMatchObject({ field: "exp" })
      expect(issueOf({ value: Redacted.make(jwt({ iat, exp: iat })) })).toMatchObject({ field: "exp" })
    })

    it("rejects a fractional exp less than a millisecond after the reference", () => {
      const value = Redacted.make(jwt({ exp: RECEIVED / 1000 + 0.0004 }))
      expect(issueOf({ value })).toMatchObject({ field: "exp", received: "an instant in the past" })
      expect(expiryOf({ value: Redacted.make(jwt({ exp: RECEIVED / 1000 + 0.25 })) })).toEqual(
        Option.some(RECEIVED + 250)
      )
    })

    it("is ignored when readJwtExpiry is false", () => {
      const value = Redacted.make(jwt({ exp: seconds(RECEIVED) + 60 }))
      expect(expiryOf({ value, readJwtExpiry: false })).toEqual(Option.none())
      expect(expiryOf({ value, readJwtExpiry: false, defaultLifetime: "2 hours" })).toEqual(
        Option.some(RECEIVED + 2 * HOUR)
      )
      // An exp in the past is not an issue when exp is not read.
      const expired = Redacted.make(jwt({ exp: seconds(RECEIVED) - 60 }))
      expect(expiryOf({ value: expired, readJwtExpiry: false })).toEqual(Option.none())
    })

    it.each([
      ["an opaque token", "opaque-token-value"],
      ["two parts", `${b64url("{}")}.${b64url(JSON.stringify({ exp: 2e9 }))}`],
      ["four parts", `a.${b64url(JSON.stringify({ exp: 2e9 }))}.c.d`],
      ["an empty payload", "a..c"],
      ["a payload that is not base64url", "a.!!!***.c"],
      ["a payload that is not JSON", `a.${b64url("not json")}.c`],
      ["a JSON array payload", `a.${b64url("[1,2]")}.c`],
      ["a JSON string payload", `a.${b64url("\"exp\"")}.c`],
      ["exp as a string", `a.${b64url(JSON.stringify({ exp: "2000000000" }))}.c`],
      ["exp as null", `a.${b64url(JSON.stringify({ exp: null }))}.c`],
      ["iat without exp (Token project)", jwt({ sub: "app", iat: seconds(RECEIVED) })]
    ])("falls through to the default for %s", (_, token) => {
      expect(expiryOf({ value: Redacted.make(token) })).toEqual(Option.none())
      expect(expiryOf({ value: Redacted.make(token), defaultLifetime: "45 minutes" })).toEqual(
        Option.some(RECEIVED + 45 * 60_000)
      )
    })

    it("ignores a non-numeric iat and counts from receipt", () => {
      const value = Redacted.make(jwt({ iat: "yesterday", exp: seconds(RECEIVED) + 120 }))
      expect(expiryOf({ value })).toEqual(Option.some(RECEIVED + 120_000))
    })
  })

  describe("defaultLifetime", () => {
    it("applies only when nothing else is known, clamped to maxLifetime", () => {
      expect(expiryOf({})).toEqual(Option.none())
      expect(expiryOf({ defaultLifetime: "1 hour" })).toEqual(Option.some(RECEIVED + HOUR))
      expect(expiryOf({ defaultLifetime: "3 days" })).toEqual(Option.some(RECEIVED + DAY))
      expect(expiryOf({ defaultLifetime: "3 days", maxLifetime: "7 days" })).toEqual(Option.some(RECEIVED + 3 * DAY))
      expect(expiryOf({ defaultLifetime: "1 hour", expiresIn: 60 })).toEqual(Option.some(RECEIVED + 60_000))
    })

    it("a zero or negative default is an issue, not tokens expired on arrival", () => {
      for (const defaultLifetime of [Duration.zero, Duration.millis(0.5), "-1 seconds" as const]) {
        expect(issueOf({ defaultLifetime: defaultLifetime as Duration.DurationInput })).toMatchObject({
          field: "defaultLifetime"
        })
      }
    })

    it("follows the full order of trust: expires_in, expiresAt, JWT exp, default", () => {
      const value = Redacted.make(jwt({ exp: seconds(RECEIVED) + 3000 }))
      const all = {
        value,
        expiresIn: 1000,
        expiresAt: DateTime.unsafeMake(RECEIVED + 2_000_000),
        defaultLifetime: Duration.seconds(4000)
      }
      expect(expiryOf(all)).toEqual(Option.some(RECEIVED + 1_000_000))
      expect(expiryOf({ ...all, expiresIn: undefined })).toEqual(Option.some(RECEIVED + 2_000_000))
      expect(expiryOf({ ...all, expiresIn: undefined, expiresAt: undefined })).toEqual(
        Option.some(RECEIVED + 3_000_000)
      )
      expect(expiryOf({ ...all, expiresIn: undefined, expiresAt: undefined, value: Redacted.make("opaque") }))
        .toEqual(Option.some(RECEIVED + 4_000_000))
    })
  })

  describe("the token", () => {
    it("keeps what the provider said", () => {
      const token = Either.getOrThrow(
        make({ type: "bearer", refreshToken: Redacted.make(SECRET_REFRESH), scope: "read write", expiresIn: 60 })
      )
      expect(Redacted.value(token.value)).toBe(SECRET_TOKEN)
      expect(token.type).toBe("bearer")
      expect(Option.map(token.refreshToken, Redacted.value)).toEqual(Option.some(SECRET_REFRESH))
      expect(token.scope).toEqual(Option.some("read write"))
      expect(DateTime.toEpochMillis(token.obtainedAt)).toBe(RECEIVED)
      // The scheme is always "Bearer", whatever case the provider used.
      expect(Redacted.value(token.authorization)).toBe(`Bearer ${SECRET_TOKEN}`)
    })

    it("defaults the type to Bearer and has no refresh token, scope or lifetime unless told", () => {
      const token = Either.getOrThrow(make({}))
      expect(token.type).toBe("Bearer")
      expect(token.refreshToken).toEqual(Option.none())
      expect(token.scope).toEqual(Option.none())
      expect(token.lifetime).toEqual(Option.none())
    })

    it("is the same token as another object carrying the same value, and only then", () => {
      const a = Either.getOrThrow(make({ expiresIn: 60 }))
      const b = Either.getOrThrow(make({ expiresIn: 120 }))
      const c = Either.getOrThrow(make({ value: Redacted.make("another") }))
      expect(AccessToken.isSameToken(a, a)).toBe(true)
      expect(AccessToken.isSameToken(a, b)).toBe(true)
      expect(AccessToken.isSameToken(a, c)).toBe(false)
    })

    it("never shows the token or refresh token when printed, stringified or inspected", () => {
      const value = jwt({ sub: SECRET_TOKEN, exp: seconds(RECEIVED) + 60 })
      const token = Either.getOrThrow(
        make({ value: Redacted.make(value), refreshToken: Redacted.make(SECRET_REFRESH), scope: "s" })
      )
      const renderings = [
        String(token),
        `${token}`,
        JSON.stringify(token),
        JSON.stringify({ nested: [token] }),
        inspect(token),
        inspect(token, { depth: Infinity, showHidden: true, getters: true }),
        inspect({ token }, { depth: Infinity }),
        String(token.authorization),
        inspect(token.authorization),
        JSON.stringify(token.authorization),
        String(token.refreshToken),
        inspect(token.refreshToken, { depth: Infinity })
      ]
      for (const text of renderings) {
        expect(text).not.toContain(value)
        expect(text).not.toContain(SECRET_TOKEN)
        expect(text).not.toContain(SECRET_REFRESH)
        // Not even a fragment of the JWT payload.
        expect(text).not.toContain(value.split(".")[1]!.slice(0, 16))
      }
      expect(renderings.some((text) => text.includes("<redacted>"))).toBe(true)
    })

    it("encodes with its Schema to the raw value (for shared stores) and decodes back", () => {
      const token = Either.getOrThrow(
        make({ refreshToken: Redacted.make(SECRET_REFRESH), expiresIn: 60, scope: "s" })
      )
      const encoded = Schema.encodeSync(AccessToken.AccessToken)(token)
      expect(encoded.value).toBe(SECRET_TOKEN)
      expect(encoded.refreshToken).toBe(SECRET_REFRESH)
      expect(encoded.expiresAt).toBe(RECEIVED + 60_000)
      const decoded = Schema.decodeSync(AccessToken.AccessToken)(encoded)
      expect(AccessToken.isSameToken(decoded, token)).toBe(true)
      expect(decoded.expiresAt).toEqual(token.expiresAt)
      expect(Option.map(decoded.refreshToken, Redacted.value)).toEqual(Option.some(SECRET_REFRESH))
    })
  })

  describe("properties", () => {
    const lifetimeInput = fc.record({
      received: fc.integer({ min: 0, max: 4_000_000_000_000 }),
      expiresIn: fc.option(
        fc.oneof(
          fc.double({ noDefaultInfinity: false, noNaN: false }),
          fc.integer({ min: -100_000, max: 10_000_000 }),
          fc.constantFrom(0, -0, 0.0001, 1e-9, Number.MAX_VALUE, Number.MIN_VALUE)
        ),
        { nil: undefined }
      ),
      expiresAtOffset: fc.option(fc.integer({ min: -10 * DAY, max: 1000 * DAY }), { nil: undefined }),
      serverOffset: fc.option(fc.integer({ min: -DAY, max: DAY }), { nil: undefined }),
      jwt: fc.option(
        fc.record({
          exp: fc.option(fc.integer({ min: -10 * 86_400, max: 1000 * 86_400 }), { nil: undefined }),
          iat: fc.option(fc.integer({ min: -86_400, max: 86_400 }), { nil: undefined })
        }),
        { nil: undefined }
      ),
      maxLifetime: fc.option(fc.integer({ min: 1, max: 400 * DAY }), { nil: undefined }),
      defaultLifetime: fc.option(fc.integer({ min: 1, max: 100 * DAY }), { nil: undefined }),
      readJwtExpiry: fc.option(fc.boolean(), { nil: undefined })
    })

    it.prop("the expiry is always within (receivedAt, receivedAt + maxLifetime], or an issue", {
      input: lifetimeInput
    }, ({ input }) => {
      const received = DateTime.unsafeMake(input.received)
      const receivedSeconds = Math.floor(input.received / 1000)
      const value = input.jwt === undefined
        ? "opaque"
        : jwt({
          ...(input.jwt.exp === undefined ? {} : { exp: receivedSeconds + input.jwt.exp }),
          ...(input.jwt.iat === undefined ? {} : { iat: receivedSeconds + input.jwt.iat })
        })
      const result = AccessToken.make({
        value: Redacted.make(value),
        receivedAt: received,
        expiresIn: input.expiresIn,
        expiresAt: input.expiresAtOffset === undefined
          ? undefined
          : DateTime.unsafeMake(input.received + input.expiresAtOffset),
        serverDate: input.serverOffset === undefined
          ? undefined
          : DateTime.unsafeMake(input.received + input.serverOffset),
        maxLifetime: input.maxLifetime === undefined ? undefined : Duration.millis(input.maxLifetime),
        defaultLifetime: input.defaultLifetime === undefined ? undefined : Duration.millis(input.defaultLifetime),
        readJwtExpiry: input.readJwtExpiry
      })
      const max = input.maxLifetime ?? DAY
      if (Either.isLeft(result)) {
        expect(["expires_in", "expiresAt", "exp"]).toContain(result.left.field)
        expect(result.left.received).not.toContain(value)
        return
      }
      const token = result.right
      expect(DateTime.toEpochMillis(token.obtainedAt)).toBe(input.received)
      Option.match(token.expiresAt, {
        onNone: () => {
          // No expiry only when nothing at all said when the token expires.
          expect(input.expiresIn).toBeUndefined()
          expect(input.expiresAtOffset).toBeUndefined()
          expect(input.defaultLifetime).toBeUndefined()
        },
        onSome: (expiresAt) => {
          const at = DateTime.toEpochMillis(expiresAt)
          expect(at).toBeGreaterThan(input.received)
          expect(at).toBeLessThanOrEqual(input.received + max)
        }
      })
      if (input.expiresIn !== undefined) {
        // expires_in, when usable, decides alone.
        const expected = input.received + Math.min(Math.floor(input.expiresIn * 1000), max)
        expect(Option.map(token.expiresAt, DateTime.toEpochMillis)).toEqual(Option.some(expected))
      }
    }, { fastCheck: { numRuns: 500 } })

    it.prop("a positive expires_in always yields a token expiring after receipt", {
      expiresIn: fc.double({ min: 0.001, max: 1e12, noNaN: true })
    }, ({ expiresIn }) => {
      const token = Either.getOrThrow(make({ expiresIn }))
      const at = DateTime.toEpochMillis(Option.getOrThrow(token.expiresAt))
      expect(at).toBeGreaterThan(RECEIVED)
      expect(at).toBeLessThanOrEqual(RECEIVED + DAY)
    })
  })
})
