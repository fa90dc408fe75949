import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Either, Fiber, Option, Redacted, Schema, TestClock } from "effect"
import * as fc from "fast-check"
import { inspect } from "node:util"
import { describeBody, kindOf } from "../src/internal/describe.js"
import * as Scrub from "../src/Scrub.js"
import * as TokenExchange from "../src/TokenExchange.js"
import * as TollgateError from "../src/TollgateError.js"
import * as Loopback from "./utils/Loopback.js"
import * as Recording from "./utils/Recording.js"

const NOW = 1_700_000_000_000
const provider = "acme"

const reply = (status: number, body: unknown, headers: Record<string, string> = {}): TokenExchange.Reply => ({
  status,
  headers: Headers.fromInput(headers),
  body: body === undefined ? Option.none() : Option.some(body),
  bodyKind: body === undefined ? "an empty body" : "JSON",
  receivedAt: DateTime.unsafeMake(NOW),
  serverDate: Option.none()
})

/** An in-memory transport answering every request with `answer`, after `latency` on the Effect clock. */
const memoryClient = (
  answer: (request: HttpClientRequest.HttpClientRequest) => Response,
  latency: Duration.DurationInput = Duration.zero
) =>
  HttpClient.make((request) => Effect.as(Effect.sleep(latency), HttpClientResponse.fromWeb(request, answer(request))))

const jsonResponse = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } })

const OAuthish = Schema.Struct({ access_token: Schema.String, expires_in: Schema.optional(TokenExchange.Seconds) })

const requestWith = (client: HttpClient.HttpClient, overrides?: Partial<TokenExchange.TokenRequestOptions<any, any>>) =>
  TokenExchange.requestToken({
    provider,
    request: HttpClientRequest.post("https://auth.acme.test/token"),
    success: OAuthish,
    toFields: (body: typeof OAuthish.Type) => Either.right({ value: body.access_token, expiresIn: body.expires_in }),
    ...overrides
  }).pipe(Effect.provideService(HttpClient.HttpClient, client))

describe("TokenExchange", () => {
  describe("over an in-memory transport, on the TestClock", () => {
    it.effect("counts expires_in from the instant the response arrived", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(NOW)
        const client = memoryClient(() => jsonResponse(200, { access_token: "tok_1", expires_in: 600 }), "2 seconds")
        const fiber = yield* Effect.fork(requestWith(client))
        yield* TestClock.adjust("2 seconds")
        const token = yield* Fiber.join(fiber)
        expect(DateTime.toEpochMillis(token.obtainedAt)).toBe(NOW + 2000)
        expect(Option.map(token.expiresAt, DateTime.toEpochMillis)).toEqual(Option.some(NOW + 2000 + 600_000))
      }))

    it.effect("corrects an absolute expiry with the server's Date header (Nomba-style expiresAt)", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(NOW)
        // The server's clock runs 7 minutes ahead of ours; its token lives 30 minutes on its own clock.
        const serverNow = NOW + 7 * 60_000
        const client = memoryClient(() =>
          jsonResponse(200, { data: { token: "tok_2", expiresAt: new Date(serverNow + 30 * 60_000).toISOString() } }, {
            date: new Date(serverNow).toUTCString()
          })
        )
        const Body = Schema.Struct({ data: Schema.Struct({ token: Schema.String, expiresAt: Schema.DateTimeUtc }) })
        const token = yield* TokenExchange.requestToken({
          provider,
          request: HttpClientRequest.post("https://auth.acme.test/token"),
          success: Body,
          toFields: (body) => Either.right({ value: body.data.token, expiresAt: body.data.expiresAt })
        }).pipe(Effect.provideService(HttpClient.HttpClient, client))
        expect(Option.map(token.expiresAt, DateTime.toEpochMillis)).toEqual(Option.some(NOW + 30 * 60_000))
      }))

    it.effect("an unreadable Date header is ignored", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(NOW)
        const client = memoryClient(() =>
          jsonResponse(200, { token: "tok", expiresAt: NOW + 60_000 }, { date: "yesterday-ish" })
        )
        const token = yield* TokenExchange.requestToken({
          provider,
          request: HttpClientRequest.post("https://auth.acme.test/token"),
          success: Schema.Struct({ token: Schema.String, expiresAt: Schema.DateTimeUtcFromNumber }),
          toFields: (body) => Either.right({ value: body.token, expiresAt: body.expiresAt })
        }).pipe(Effect.provideService(HttpClient.HttpClient, client))
        expect(Option.map(token.expiresAt, DateTime.toEpochMillis)).toEqual(Option.some(NOW + 60_000))
      }))

    it.effect("times out with the configured bound (default 15 seconds)", () =>
      Effect.gen(function*() {
        const client = memoryClient(() => jsonResponse(200, { access_token: "late" }), "1 hour")
        const fiber = yield* Effect.fork(Effect.flip(requestWith(client)))
        yield* TestClock.adjust("14999 millis")
        expect(fiber.unsafePoll()).toBeNull()
        yield* TestClock.adjust("1 millis")
        const error = yield* Fiber.join(fiber)
        expect(error).toBeInstanceOf(TollgateError.Timeout)
        expect(error).toMatchObject({ provider, operation: "token request" })
        expect(Duration.toMillis((error as TollgateError.Timeout).after)).toBe(15_000)

        const short = yield* Effect.fork(
          Effect.flip(requestWith(client, { timeout: "2 seconds", operation: "refresh" }))
        )
        yield* TestClock.adjust("2 seconds")
        expect(yield* Fiber.join(short)).toMatchObject({ _tag: "Timeout", operation: "refresh" })
      }))

    it.effect("refine sees every reply, 2xx included, before the status defaults", () =>
      Effect.gen(function*() {
        const client = memoryClient(() => jsonResponse(200, { code: "99", description: "account locked" }))
        const error = yield* Effect.flip(requestWith(client, {
          refine: (r) =>
            Option.some(
              new TollgateError.ProviderError({ provider, code: String((r.body as any).value.code), status: r.status })
            )
        }))
        expect(error).toMatchObject({ _tag: "ProviderError", code: "99", status: 200 })
        // Without a refine the same body is simply not a token.
        const plain = yield* Effect.flip(requestWith(client))
        expect(plain).toMatchObject({ _tag: "MalformedTokenResponse", field: "access_token", received: "missing" })
      }))

    it.effect("toFields may fail with a typed error", () =>
      Effect.gen(function*() {
        const client = memoryClient(() => jsonResponse(200, { access_token: "x" }))
        const error = yield* Effect.flip(requestWith(client, {
          toFields: () => Either.left(new TollgateError.ProviderError({ provider, code: "nope" }))
        }))
        expect(error).toMatchObject({ _tag: "ProviderError", code: "nope" })
      }))

    it.effect("an invalid URL is reported without quoting it", () =>
      Effect.gen(function*() {
        const client = memoryClient(() => jsonResponse(200, {}))
        const error = yield* Effect.flip(
          requestWith(client, { request: HttpClientRequest.post("not a url?secret=hunter2hunter2") })
        )
        expect(error).toMatchObject({ _tag: "TokenEndpointUnavailable", reason: "the endpoint URL is not a valid URL" })
        for (const text of Recording.renderError(error)) expect(text).not.toContain("hunter2")
      }))

    it.effect("requestOk accepts any 2xx and classifies the rest", () =>
      Effect.gen(function*() {
        for (const status of [200, 204]) {
          const ok = yield* TokenExchange.requestOk({
            provider,
            request: HttpClientRequest.post("https://auth.acme.test/revoke")
          }).pipe(
            Effect.provideService(HttpClient.HttpClient, memoryClient(() => new Response(null, { status })))
          )
          expect(ok.status).toBe(status)
          expect(ok.bodyKind).toBe("an empty body")
        }
        const failed = yield* Effect.flip(
          TokenExchange.requestOk({ provider, request: HttpClientRequest.post("https://auth.acme.test/revoke") }).pipe(
            Effect.provideService(HttpClient.HttpClient, memoryClient(() => jsonResponse(401, { error: "x" })))
          )
        )
        expect(failed).toMatchObject({ _tag: "InvalidCredentials", status: 401, code: "x" })
      }))
  })

  describe("failureFor", () => {
    it.each([
      [401, "InvalidCredentials"],
      [403, "InvalidCredentials"],
      [429, "TokenEndpointUnavailable"],
      [408, "TokenEndpointUnavailable"],
      [500, "TokenEndpointUnavailable"],
      [502, "TokenEndpointUnavailable"],
      [503, "TokenEndpointUnavailable"],
      [504, "TokenEndpointUnavailable"],
      [400, "ProviderError"],
      [404, "ProviderError"],
      [405, "ProviderError"],
      [409, "ProviderError"],
      [422, "ProviderError"],
      [302, "ProviderError"]
    ])("HTTP %i is %s", (status, tag) => {
      const error = TokenExchange.failureFor(reply(status, undefined), { provider })
      expect(error._tag).toBe(tag)
      expect(error.retryable).toBe(tag === "TokenEndpointUnavailable")
    })

    it("429 takes its instant from Retry-After or the rate-limit headers", () => {
      const error = TokenExchange.failureFor(
        reply(429, { errors: [{ code: 88, message: "Rate limit exceeded" }] }, { "x-ratelimit-reset": "45" }),
        { provider }
      ) as TollgateError.TokenEndpointUnavailable
      expect(DateTime.toEpochMillis(error.retryAt!)).toBe(NOW + 45_000)
      expect(error.reason).toBe("the endpoint's own rate limit was exceeded")
    })

    it("a 4xx without details says what came back", () => {
      const html: TokenExchange.Reply = { ...reply(400, undefined), bodyKind: "an HTML page" }
      expect(TokenExchange.failureFor(html, { provider })).toMatchObject({
        code: "HTTP 400",
        description: "the server answered an HTML page"
      })
      expect(TokenExchange.failureFor(reply(404, undefined), { provider })).toMatchObject({
        description: "the token endpoint URL looks wrong"
      })
      expect(TokenExchange.failureFor(reply(418, {}), { provider })).toMatchObject({ code: "HTTP 418" })
      expect((TokenExchange.failureFor(reply(418, {}), { provider }) as TollgateError.ProviderError).description)
        .toBeUndefined()
    })
  })

  describe("errorDetails", () => {
    it.each([
      [{ error: "invalid_grant", error_description: "expired" }, "invalid_grant", "expired"],
      [{ code: "01", description: "Invalid client" }, "01", "Invalid client"],
      [{ code: 42, message: "broken" }, "42", "broken"],
      [{ errors: [{ code: 88, message: "Rate limit exceeded" }] }, "88", "Rate limit exceeded"],
      [{ error: { code: "E1", message: "nested" } }, "E1", "nested"],
      [{ message: "only a message" }, undefined, "only a message"],
      [
        { statusCode: 400, message: ["clientId must be a string", "organizationId should not be empty"] },
        undefined,
        "clientId must be a string; organizationId should not be empty"
      ],
      [{ error: "", error_description: "" }, undefined, undefined],
      [{}, undefined, undefined],
      [[1, 2], undefined, undefined],
      ["text", undefined, undefined]
    ])("reads %j", (body, code, description) => {
      expect(TokenExchange.errorDetails(reply(400, body))).toEqual({ code, description })
    })

    it("scrubs a secret echoed inside JSON text, escaped", () => {
      const secret = "quote\"and\\backslash"
      const echoed = JSON.stringify({ got: secret })
      const details = TokenExchange.errorDetails(reply(400, { error: "invalid_request", error_description: echoed }), [
        Redacted.make(secret)
      ])
      expect(details.description).toBe("{\"got\":\"<redacted>\"}")
    })

    it("scrubs every secret, in raw, percent- and form-encoded forms, and bounds the length", () => {
      const secret = "s3cr:t +/&é"
      const body = {
        error: `bad_${secret}`,
        error_description: `got ${secret} / ${encodeURIComponent(secret)} / ${
          new URLSearchParams([["x", secret]]).toString().slice(2)
        } ${"x".repeat(400)}`
      }
      const details = TokenExchange.errorDetails(reply(400, body), [Redacted.make(secret)])
      expect(details.code).toBe("bad_<redacted>")
      expect(details.description).toMatch(/^got <redacted> \/ <redacted> \/ <redacted> x+…$/)
      expect(details.description!.length).toBe(301)
    })
  })

  describe("decodeBody", () => {
    it("names the field, the expectation and the kind, never the value", () => {
      const secret = "tok_live_abcdefghijklmnopqrstuvwxyz"
      const Body = Schema.Struct({
        access_token: Schema.String,
        expires_in: Schema.optional(Schema.NullOr(TokenExchange.Seconds)),
        data: Schema.optional(Schema.Struct({ items: Schema.Array(Schema.Number) }))
      })
      const cases: ReadonlyArray<readonly [unknown, Record<string, string>]> = [
        [{ access_token: 1 }, { field: "access_token", expected: "string", received: "a number" }],
        [{}, { field: "access_token", expected: "string", received: "missing" }],
        [{ access_token: "x", expires_in: secret }, {
          field: "expires_in",
          expected: "a number of seconds",
          received: "a string"
        }],
        [{ access_token: "x", expires_in: [secret] }, { field: "expires_in", received: "an array" }],
        [{ access_token: "x", data: { items: [1, secret] } }, {
          field: "data.items[1]",
          expected: "number",
          received: "a string"
        }],
        [secret, { field: "(body)", received: "a string" }],
        [null, { field: "(body)", received: "null" }]
      ]
      for (const [body, expected] of cases) {
        const result = TokenExchange.decodeBody(reply(200, body), Body, provider)
        const error = Either.getLeft(result).pipe(Option.getOrThrow)
        expect(error).toMatchObject({ _tag: "MalformedTokenResponse", status: 200, ...expected })
        for (const text of Recording.renderError(error)) expect(text).not.toContain(secret)
      }
    })

    it("ignores fields it does not know", () => {
      const result = TokenExchange.decodeBody(reply(200, { access_token: "x", extra: 1 }), OAuthish, provider)
      expect(result).toEqual(Either.right({ access_token: "x" }))
    })

    it("Seconds reads a number or a numeric string", () => {
      const decode = Schema.decodeUnknownEither(TokenExchange.Seconds)
      expect(decode(3600)).toEqual(Either.right(3600))
      expect(decode("3600")).toEqual(Either.right(3600))
      expect(decode("1.5")).toEqual(Either.right(1.5))
      expect(Either.isLeft(decode("soon"))).toBe(true)
      expect(Either.isLeft(decode(true))).toBe(true)
    })
  })

  describe("toAccessToken", () => {
    it("refuses an empty value and a non-bearer type, and keeps a non-empty refresh token", () => {
      const r = reply(200, {})
      expect(TokenExchange.toAccessToken(r, { value: " ", valueField: "token" }, { provider })).toEqual(
        Either.left(expect.objectContaining({ field: "token", received: "an empty string" }))
      )
      expect(Either.getLeft(TokenExchange.toAccessToken(r, { value: "t", type: "DPoP" }, { provider }))).toEqual(
        Option.some(expect.objectContaining({ field: "token_type", received: "another token type" }))
      )
      const token = Either.getOrThrow(
        TokenExchange.toAccessToken(r, { value: "t", type: "BEARER", refreshToken: "" }, { provider })
      )
      expect(token.refreshToken).toEqual(Option.none())
      const withRefresh = Either.getOrThrow(
        TokenExchange.toAccessToken(r, { value: "t", refreshToken: "rt" }, { provider })
      )
      expect(Option.map(withRefresh.refreshToken, Redacted.value)).toEqual(Option.some("rt"))
    })

    it("turns a lifetime issue into a MalformedTokenResponse with the reply's status", () => {
      const error = Either.getLeft(TokenExchange.toAccessToken(reply(201, {}), { value: "t", expiresIn: -5 }, {
        provider
      }))
      expect(error).toEqual(
        Option.some(expect.objectContaining({
          _tag: "MalformedTokenResponse",
          field: "expires_in",
          received: "a negative number",
          status: 201
        }))
      )
    })
  })

  describe("describe helpers", () => {
    it.each([
      [undefined, "missing"],
      [null, "null"],
      ["", "an empty string"],
      ["x", "a string"],
      [0, "zero"],
      [-1, "a negative number"],
      [1, "a number"],
      [Number.NaN, "NaN"],
      [Number.POSITIVE_INFINITY, "an infinite number"],
      [true, "a boolean"],
      [[], "an array"],
      [{}, "an object"],
      [1n, "bigint"]
    ])("kindOf(%s) is %s", (value, kind) => {
      expect(kindOf(value)).toBe(kind)
    })

    it.each([
      ["text/html", "<p>hi</p>", "an HTML page"],
      [undefined, "<!DOCTYPE html><html></html>", "an HTML page"],
      ["application/json", "{\"a\":", "truncated or invalid JSON"],
      ["text/plain", "Bad Gateway", "plain text"],
      ["application/xml; charset=utf-8", "<a/>", "an application/xml body"],
      ["image/png", "xyz", "an image/png body"],
      [undefined, "garbage", "a body that is not JSON"],
      ["text/html", "   ", "an empty body"]
    ])("describeBody(%s, %j) is %s", (type, text, expected) => {
      expect(describeBody(type, text)).toBe(expected)
    })

    it.prop("scrub removes every secret whatever surrounds it", {
      secret: fc.string({ minLength: 4, maxLength: 30 }),
      before: fc.string(),
      after: fc.string()
    }, ({ after, before, secret }) => {
      const scrubbed = Scrub.text(`${before}${secret}${after}`, [secret], { maxLength: 10_000 })
      expect(scrubbed).toContain("<redacted>")
      expect(Scrub.text(secret, [secret], { maxLength: 10_000 })).toBe("<redacted>")
    })
  })

  describe("against a loopback server", () => {
    it.scopedLive("a body that stalls after the headers still times out", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.serve(() => "stall-body")
        const started = Date.now()
        const error = yield* Effect.flip(
          TokenExchange.requestToken({
            provider,
            request: HttpClientRequest.post(`${server.url}/token`),
            timeout: "300 millis",
            success: OAuthish,
            toFields: (body) => Either.right({ value: body.access_token })
          })
        )
        expect(error._tag).toBe("Timeout")
        expect(Date.now() - started).toBeLessThan(3000)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("the span is Tollgate's own, named by the operation, with safe attributes only", () =>
      Effect.gen(function*() {
        const { spans, tracer } = yield* Recording.tracer
        const server = yield* Loopback.serve(() => ({
          status: 200,
          body: { access_token: "tok_span", expires_in: 60 }
        }))
        yield* TokenExchange.requestToken({
          provider,
          operation: "token refresh",
          request: HttpClientRequest.post(`${server.url}/v1/auth/token/refresh`).pipe(
            HttpClientRequest.setUrlParams({ client_secret: "do-not-record-me" })
          ),
          success: OAuthish,
          toFields: (body) => Either.right({ value: body.access_token, expiresIn: body.expires_in })
        }).pipe(Effect.withTracer(tracer))
        expect(spans.map((s) => s.name)).toEqual(["tollgate.token_refresh"])
        expect(spans[0]!.kind).toBe("client")
        expect(Object.fromEntries(spans[0]!.attributes)).toEqual({
          "tollgate.provider": provider,
          "http.request.method": "POST",
          "url.path": "/v1/auth/token/refresh",
          "http.response.status_code": 200
        })
        expect(server.requests[0]!.query.get("client_secret")).toBe("do-not-record-me")
        // Even a tracer that inspects the value a span ended with finds no token there.
        expect(spans[0]!.status._tag).toBe("Ended")
        expect(inspect(spans[0]!.status, { depth: Infinity })).not.toContain("tok_span")
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })
})
