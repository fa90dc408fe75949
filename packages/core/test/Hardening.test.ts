/**
 * Issue #18's token-side hardening: tokens that cannot be sent in a header, bodies past a cap, a bound
 * on `TokenCache.get`, one scrubber for every encoding a server can echo, URLs described without their
 * credentials, errors that cross processes through their Schema, and messages true in every context.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import {
  ConfigError,
  DateTime,
  Duration,
  Effect,
  Either,
  Encoding,
  Fiber,
  Option,
  Redacted,
  Schema,
  TestClock
} from "effect"
import * as fc from "fast-check"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as BaseUrl from "../src/BaseUrl.js"
import * as HeaderValue from "../src/HeaderValue.js"
import * as OAuth2 from "../src/OAuth2.js"
import * as Scrub from "../src/Scrub.js"
import * as TokenCache from "../src/TokenCache.js"
import * as TokenExchange from "../src/TokenExchange.js"
import * as TokenSource from "../src/TokenSource.js"
import * as TollgateError from "../src/TollgateError.js"
import * as AuthServer from "./utils/AuthServer.js"
import * as FakeSource from "./utils/FakeSource.js"
import * as Loopback from "./utils/Loopback.js"

const CLIENT_ID = "hardening-client"
const CLIENT_SECRET = "s3cr3t+/= wïth spaces&more"

describe("header values", () => {
  it.each([
    ["at_abc.DEF-123_~+/=", undefined],
    ["tab\tinside is allowed", undefined],
    ["latin-1 é is sendable", undefined],
    ["evil\r\nX-Injected: 1", "CR or LF"],
    ["new\nline", "CR or LF"],
    ["nul\0byte", "NUL"],
    ["bell\u0007", "control character"],
    ["emoji 😀", "outside Latin-1"],
    [" padded", "leading or trailing whitespace"]
  ])("%j: %s", (value, problem) => {
    const found = HeaderValue.problem(value)
    if (problem === undefined) expect(found).toBeUndefined()
    else expect(found).toContain(problem)
    expect(found ?? "").not.toContain(value.trim())
    const validated = HeaderValue.validate("ApiClient.make", "headers.ApplicationId", value)
    expect(Either.isLeft(validated)).toBe(problem !== undefined)
  })

  it.scopedLive("a token response whose token or token_type holds CR/LF is a MalformedTokenResponse", () =>
    Effect.gen(function*() {
      for (
        const body of [
          { access_token: "good\r\nX-Evil: 1", token_type: "Bearer", expires_in: 60 },
          { access_token: "good", token_type: "Bearer\r\nX-Evil: 1", expires_in: 60 }
        ]
      ) {
        const server = yield* AuthServer.make({
          clientId: CLIENT_ID,
          clientSecret: CLIENT_SECRET,
          tokenAnswer: () => ({ status: 200, body })
        })
        const source = yield* OAuth2.make({
          tokenUrl: server.tokenUrl,
          clientId: CLIENT_ID,
          clientSecret: Redacted.make(CLIENT_SECRET)
        })
        const error = yield* Effect.flip(source.fetch)
        expect(error._tag).toBe("MalformedTokenResponse")
        expect(error.message).not.toContain("X-Evil")
      }
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

  it.scoped("a token that cannot be sent is never cached, whatever source made it", () =>
    Effect.gen(function*() {
      const { calls, source } = yield* FakeSource.make()
      const bad = TokenSource.make({
        identity: source.identity,
        fetch: Effect.map(source.fetch, (token) =>
          new (token.constructor as typeof token.constructor & (new(a: unknown) => typeof token))({
            ...token,
            value: Redacted.make("line\nbreak")
          }))
      })
      const cache = yield* TokenCache.make(bad, { retry: { attempts: 1 } })
      const error = yield* Effect.flip(cache.get)
      expect(error).toMatchObject({ _tag: "MalformedTokenResponse", field: "access_token" })
      expect(Option.isNone(yield* cache.current)).toBe(true)
      expect(calls.fetch).toBe(1)
    }))
})

/** A server whose token endpoint answers `status` with a body of `bytes` bytes, written as the client reads. */
const hugeBody = (status: number, bytes: number, declareLength: boolean) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly sent: () => number; readonly server: Http.Server }>((resume) => {
      let sent = 0
      const server = Http.createServer((req, res) => {
        req.resume()
        req.on("end", () => {
          res.writeHead(status, {
            "content-type": status === 200 ? "application/json" : "text/html",
            ...(declareLength ? { "content-length": String(bytes) } : {})
          })
          const chunk = Buffer.alloc(64 * 1024, status === 200 ? "a" : "<")
          if (status === 200) res.write("{\"access_token\":\"")
          const pump = () => {
            while (sent < bytes) {
              sent += chunk.length
              if (!res.write(chunk)) return void res.once("drain", pump)
            }
            res.end(status === 200 ? "\"}" : "")
          }
          res.on("error", () => undefined)
          pump()
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as AddressInfo).port
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}/token`, sent: () => sent, server }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

describe("bounded bodies", () => {
  it.scopedLive.each(
    [
      [200, true, "MalformedTokenResponse"],
      [200, false, "MalformedTokenResponse"],
      [503, false, "TokenEndpointUnavailable"]
    ] as const
  )(
    "a 50 MB body with status %i (declared length: %s) fails as %s without being downloaded",
    ([status, declared, tag]) =>
      Effect.gen(function*() {
        const server = yield* hugeBody(status, 50 * 1024 * 1024, declared)
        const source = yield* OAuth2.make({
          tokenUrl: server.url,
          clientId: CLIENT_ID,
          clientSecret: Redacted.make(CLIENT_SECRET)
        })
        const before = process.memoryUsage().heapUsed
        const error = yield* Effect.flip(source.fetch)
        expect(error._tag).toBe(tag)
        expect(error.message).toContain("a body larger than 1 MiB")
        // Reading stopped at the cap: the server could write a few socket buffers more, never the 50 MB.
        expect(server.sent()).toBeLessThan(20 * 1024 * 1024)
        expect(process.memoryUsage().heapUsed - before).toBeLessThan(30 * 1024 * 1024)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici))
  )

  it.scopedLive("the cap is configurable", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.serve(() => ({ status: 200, body: { access_token: "x".repeat(5000) } }))
      const request = (maxBodyBytes: number) =>
        TokenExchange.requestToken({
          provider: "acme",
          request: HttpClientRequest.post(`${server.url}/token`),
          maxBodyBytes,
          success: Schema.Struct({ access_token: Schema.String }),
          toFields: (body) => Either.right({ value: body.access_token })
        })
      expect((yield* Effect.flip(request(4096))).message).toContain("a body larger than 4 KiB")
      expect(Redacted.value((yield* request(8192)).value)).toHaveLength(5000)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
})

describe("TokenCache.get is bounded", () => {
  // Issue #18: a token endpoint that never answers made one get last 3 × 15 s = 45 s.
  it.scoped("a hung endpoint fails a get with Timeout after `timeout` (30 s by default), retries included", () =>
    Effect.gen(function*() {
      const { calls, source } = yield* FakeSource.make({
        latency: "15 seconds",
        fail: () =>
          new TollgateError.Timeout({ provider: "fake", operation: "token request", after: Duration.seconds(15) })
      })
      const cache = yield* TokenCache.make(source)
      const fiber = yield* Effect.fork(Effect.flip(cache.get))
      yield* TestClock.adjust("29 seconds")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(fiber)
      expect(error).toMatchObject({ _tag: "Timeout", operation: "token request" })
      expect(Duration.toSeconds(error._tag === "Timeout" ? error.after : Duration.zero)).toBe(30)
      expect(calls.fetch).toBe(2)
      const custom = yield* TokenCache.make((yield* FakeSource.make({ latency: "1 hour" })).source, {
        timeout: "5 seconds"
      })
      const quick = yield* Effect.fork(Effect.flip(custom.get))
      yield* TestClock.adjust("5 seconds")
      expect((yield* Fiber.join(quick))._tag).toBe("Timeout")
    }))
})

describe("one scrubber", () => {
  const secret = "p@ss w/ord+=é:\"x\\"
  const id = "client id"
  const forms = [
    secret,
    encodeURIComponent(secret),
    encodeURIComponent(secret).replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()),
    new URLSearchParams([["", secret]]).toString().slice(1),
    new URLSearchParams([["", secret]]).toString().slice(1).replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()),
    JSON.stringify(secret).slice(1, -1),
    JSON.stringify(secret).slice(1, -1).replace(/é/g, "\\u00e9").replace(/\//g, "\\/"),
    Encoding.encodeBase64(`${id}:${secret}`),
    Encoding.encodeBase64Url(`${id}:${secret}`)
  ]

  it.each(forms)("removes the secret echoed as %j", (form) => {
    const scrubbed = Scrub.text(`echo: ${form} end`, [secret, `${id}:${secret}`])
    expect(scrubbed).toBe("echo: <redacted> end")
  })

  it("removes URL user-info from free text", () => {
    expect(Scrub.text("could not reach redis://admin:hunter22@cache.internal:6379/0")).toBe(
      "could not reach redis://<redacted>@cache.internal:6379/0"
    )
  })

  it.prop("whatever surrounds it, no encoding of a secret survives", {
    secret: fc.string({ minLength: 4, maxLength: 24 }),
    before: fc.string({ maxLength: 20 }),
    after: fc.string({ maxLength: 20 }),
    encoding: fc.integer({ min: 0, max: 6 })
  }, ({ after, before, encoding, secret }) => {
    const encoded = [
      secret,
      encodeURIComponent(secret),
      encodeURIComponent(secret).toLowerCase(),
      new URLSearchParams([["", secret]]).toString().slice(1),
      JSON.stringify(secret).slice(1, -1),
      Encoding.encodeBase64(secret),
      Encoding.encodeBase64Url(secret)
    ][encoding]!
    // Lower-casing a whole percent-encoded string also lowers the secret's own letters: scrub that too.
    const secrets = encoding === 2 ? [secret, secret.toLowerCase()] : [secret]
    const scrubbed = Scrub.text(`${before}${encoded}${after}`, secrets, { maxLength: 10_000 })
    expect(scrubbed).toContain("<redacted>")
  })

  it.scopedLive("an endpoint that echoes the form body, lowercase percent-encoded, leaks nothing into ProviderError", () =>
    Effect.gen(function*() {
      const server = yield* AuthServer.make({
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        intercept: (request) => ({
          status: 400,
          body: {
            error: "invalid_request",
            error_description: `got ${request.rawBody.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase())} with ${
              request.headers.authorization ?? ""
            }`
          }
        })
      })
      for (const authMethod of ["client_secret_post", "client_secret_basic"] as const) {
        const source = yield* OAuth2.make({
          tokenUrl: server.tokenUrl,
          clientId: CLIENT_ID,
          clientSecret: Redacted.make(CLIENT_SECRET),
          authMethod
        })
        const error = yield* Effect.flip(source.fetch)
        expect(error._tag).toBe("ProviderError")
        const text = `${error.message} ${JSON.stringify(error)}`
        expect(text).toContain("<redacted>")
        for (const form of [CLIENT_SECRET, encodeURIComponent(CLIENT_SECRET), OAuth2.formEncode(CLIENT_SECRET)]) {
          expect(text.toLowerCase()).not.toContain(form.toLowerCase())
        }
        expect(text).not.toContain(
          Redacted.value(OAuth2.basicAuthorization(CLIENT_ID, Redacted.make(CLIENT_SECRET))).slice(6)
        )
      }
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
})

describe("URLs", () => {
  // Issue #18: an unparseable URL was described with its user-info (`client:S3cret@`).
  it.each([
    "https://client:S3cret@exa mple.com",
    "https://client:S3cret@example.com/path?key=S3cret",
    "https://client:S3cr/et@exa mple.com",
    "client:S3cret@example.com"
  ])("the description of %j keeps no credential", (url) => {
    const result = BaseUrl.validate("NORA_BASE_URL", url)
    const message = Either.isLeft(result) ? String(result.left) : ""
    expect(message).toContain("NORA_BASE_URL")
    expect(message).not.toContain("S3cr")
    expect(message).not.toContain("client:")
    expect(ConfigError.isConfigError(Either.isLeft(result) ? result.left : undefined)).toBe(true)
  })

  it.each([
    ["https://user:pass@api.test", "credentials must not be embedded"],
    ["http://api.test", "plain http is refused"],
    ["http://127.0.0.1:8080", "must be allowed explicitly"]
  ])("BaseUrl.decode refuses %j with an InvalidArgument", (url, why) => {
    const result = BaseUrl.decode(url, { module: "ApiClient.make", argument: "baseUrl" })
    if (Either.isRight(result)) return expect.fail("expected a refusal")
    expect(result.left).toMatchObject({ _tag: "InvalidArgument", module: "ApiClient.make", argument: "baseUrl" })
    expect(result.left.message).toContain(why)
    expect(result.left.message).not.toContain("pass@")
  })

  it("BaseUrl.decode accepts https and allowed loopback http", () => {
    expect(BaseUrl.decode("https://api.test/v1/", { module: "m", argument: "a" })).toEqual(
      Either.right("https://api.test/v1")
    )
    expect(BaseUrl.decode("http://127.0.0.1:1/x", { module: "m", argument: "a", allowInsecureLoopback: true })).toEqual(
      Either.right("http://127.0.0.1:1/x")
    )
  })
})

describe("errors", () => {
  it.prop("every token error survives a JSON round trip through its Schema", {
    error: fc.oneof(
      fc.record({
        status: fc.option(fc.integer({ min: 400, max: 599 }), { nil: undefined }),
        code: fc.option(fc.string(), { nil: undefined })
      })
        .map((f) => new TollgateError.InvalidCredentials({ provider: "p", ...f })),
      fc.record({ field: fc.string(), expected: fc.string(), received: fc.string() })
        .map((f) => new TollgateError.MalformedTokenResponse({ provider: "p", ...f })),
      fc.record({
        retryAt: fc.option(fc.integer({ min: 0, max: 4e12 }), { nil: undefined }),
        attempts: fc.option(fc.nat(), { nil: undefined })
      })
        .map(({ attempts, retryAt }) =>
          new TollgateError.TokenEndpointUnavailable({
            provider: "p",
            reason: "r",
            attempts,
            retryAt: retryAt === undefined ? undefined : DateTime.unsafeMake(retryAt)
          })
        ),
      fc.record({ code: fc.string(), description: fc.option(fc.string(), { nil: undefined }) })
        .map((f) => new TollgateError.ProviderError({ provider: "p", ...f })),
      fc.nat({ max: 1e9 }).map((after) =>
        new TollgateError.Timeout({ provider: "p", operation: "token request", after: Duration.millis(after) })
      )
    )
  }, ({ error }) => {
    const json = JSON.stringify(Schema.encodeSync(TollgateError.TokenErrorSchema)(error))
    const decoded = Schema.decodeUnknownSync(TollgateError.TokenErrorSchema)(JSON.parse(json))
    expect(decoded).toBeInstanceOf(error.constructor)
    expect(Schema.encodeSync(TollgateError.TokenErrorSchema)(decoded)).toEqual(JSON.parse(json))
    expect(decoded.message).toBe(error.message)
    expect(decoded.retryable).toBe(error.retryable)
  })

  // Issue #17: a one-shot request (the CLI's) must not promise that "a later request tries again".
  it("TokenEndpointUnavailable says only what is true in every context", () => {
    const plain = new TollgateError.TokenEndpointUnavailable({ provider: "acme", reason: "HTTP 503", status: 503 })
    expect(plain.message).toBe("The acme token endpoint is unavailable: HTTP 503 (HTTP 503).")
    const timed = new TollgateError.TokenEndpointUnavailable({
      provider: "acme",
      reason: "the endpoint's own rate limit was exceeded",
      status: 429,
      retryAt: DateTime.unsafeMake(Date.UTC(2026, 0, 1, 12))
    })
    expect(timed.message).toBe(
      "The acme token endpoint is unavailable: the endpoint's own rate limit was exceeded (HTTP 429). Retry after 2026-01-01T12:00:00.000Z."
    )
    for (const error of [plain, timed]) expect(error.message).not.toMatch(/tries again|later request/)
  })
})
