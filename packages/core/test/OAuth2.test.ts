import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Either, Option, Redacted, Schema } from "effect"
import { inspect } from "node:util"
import * as AccessToken from "../src/AccessToken.js"
import * as OAuth2 from "../src/OAuth2.js"
import * as TokenExchange from "../src/TokenExchange.js"
import type * as TollgateError from "../src/TollgateError.js"
import * as AuthServer from "./utils/AuthServer.js"
import * as Loopback from "./utils/Loopback.js"
import * as Recording from "./utils/Recording.js"

const CLIENT_ID = "tollgate client:1"
const CLIENT_SECRET = "pä ss:/+&=%word€"

/** The Basic credentials exactly as RFC 6749 §2.3.1 builds them, for checks and leak detection. */
const basicCredentials = Buffer.from(
  `${encodeURIComponent(CLIENT_ID).replace(/%20/g, "+")}:${OAuth2.formEncode(CLIENT_SECRET)}`,
  "utf8"
).toString("base64")

const clients = [
  ["undici", NodeHttpClient.layerUndici],
  ["fetch", FetchHttpClient.layer]
] as const

const serverOptions: AuthServer.Options = { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }

const sourceFor = (server: AuthServer.AuthServer, options?: Partial<OAuth2.Options>) =>
  OAuth2.make({
    provider: "loopback-idp",
    tokenUrl: server.tokenUrl,
    clientId: CLIENT_ID,
    clientSecret: Redacted.make(CLIENT_SECRET),
    revocationUrl: server.revocationUrl,
    ...options
  })

/** A token endpoint answering valid requests with `answer(body)`: any body, any status, any headers. */
const answering = (answer: (body: Record<string, unknown>) => Loopback.Answer, options?: Partial<AuthServer.Options>) =>
  AuthServer.make({ ...serverOptions, ...options, tokenAnswer: ({ body }) => answer(body) })

const fetchWith = (
  answer: (body: Record<string, unknown>) => Loopback.Answer,
  options?: Partial<OAuth2.Options>
) =>
  Effect.gen(function*() {
    const server = yield* answering(answer)
    const source = yield* sourceFor(server, options)
    const before = yield* DateTime.now
    const result = yield* Effect.either(source.fetch)
    const after = yield* DateTime.now
    return { server, result, before: before.epochMillis, after: after.epochMillis }
  })

const expiresAtMillis = (token: AccessToken.AccessToken) => DateTime.toEpochMillis(Option.getOrThrow(token.expiresAt))

const leftOf = <A, E>(result: Either.Either<A, E>): E => {
  if (Either.isRight(result)) throw new Error("expected a failure, got a token")
  return result.left
}

const rightOf = <A, E>(result: Either.Either<A, E>): A => {
  if (Either.isLeft(result)) throw new Error(`expected a token, got ${String(result.left)}`)
  return result.right
}

describe("OAuth2", () => {
  describe("encoding", () => {
    it("formEncode is application/x-www-form-urlencoded (RFC 6749 Appendix B)", () => {
      expect(OAuth2.formEncode("a b+c:d/e&f=g%h€")).toBe("a+b%2Bc%3Ad%2Fe%26f%3Dg%25h%E2%82%AC")
      expect(OAuth2.formEncode("plain-._~")).toBe("plain-._%7E")
    })

    it("basicAuthorization form-encodes id and secret before joining and base64", () => {
      const header = Redacted.value(OAuth2.basicAuthorization(CLIENT_ID, Redacted.make(CLIENT_SECRET)))
      expect(header).toBe(`Basic ${basicCredentials}`)
      const decoded = Buffer.from(header.slice("Basic ".length), "base64").toString("utf8")
      // Exactly one raw ":" survives: the separator.
      expect(decoded.split(":")).toHaveLength(2)
      expect(decoded).toBe("tollgate+client%3A1:p%C3%A4+ss%3A%2F%2B%26%3D%25word%E2%82%AC")
      expect(String(OAuth2.basicAuthorization(CLIENT_ID, Redacted.make(CLIENT_SECRET)))).not.toContain(basicCredentials)
    })
  })

  for (const [clientName, clientLayer] of clients) {
    describe(`client authentication over ${clientName}`, () => {
      it.scopedLive("client_secret_basic: the server recovers the exact id and secret", () =>
        Effect.gen(function*() {
          const server = yield* AuthServer.make(serverOptions)
          const source = yield* sourceFor(server)
          const before = yield* DateTime.now
          const token = yield* source.fetch
          const after = yield* DateTime.now

          expect(server.requests).toHaveLength(1)
          const request = server.requests[0]!
          expect(request.method).toBe("POST")
          expect(request.path).toBe("/oauth/token")
          expect([...request.query.keys()]).toEqual([])
          expect(request.headers["content-type"]).toMatch(/^application\/x-www-form-urlencoded/)
          expect(request.headers["accept"]).toContain("application/json")
          expect(request.headers.authorization).toBe(`Basic ${basicCredentials}`)
          const form = new URLSearchParams(request.rawBody)
          expect([...form]).toEqual([["grant_type", "client_credentials"]])

          expect(server.authentications).toEqual([{
            method: "client_secret_basic",
            clientId: CLIENT_ID,
            clientSecret: CLIENT_SECRET,
            rawBasic: { id: "tollgate+client%3A1", secret: OAuth2.formEncode(CLIENT_SECRET) }
          }])

          expect(Redacted.value(token.value)).toBe(server.accessTokens[0])
          expect(token.type).toBe("Bearer")
          expect(token.refreshToken).toEqual(Option.none())
          const expiresAt = expiresAtMillis(token)
          expect(expiresAt).toBeGreaterThanOrEqual(before.epochMillis + 3_600_000)
          expect(expiresAt).toBeLessThanOrEqual(after.epochMillis + 3_600_000)
          expect(DateTime.toEpochMillis(token.obtainedAt)).toBe(expiresAt - 3_600_000)
        }).pipe(Effect.provide(clientLayer)))

      it.scopedLive("client_secret_post: id and secret travel form-encoded in the body, no Authorization", () =>
        Effect.gen(function*() {
          const server = yield* AuthServer.make(serverOptions)
          const source = yield* sourceFor(server, { authMethod: "client_secret_post" })
          const token = yield* source.fetch
          const request = server.requests[0]!
          expect(request.headers.authorization).toBeUndefined()
          expect(request.headers["content-type"]).toMatch(/^application\/x-www-form-urlencoded/)
          const form = new URLSearchParams(request.rawBody)
          expect(form.get("grant_type")).toBe("client_credentials")
          expect(form.get("client_id")).toBe(CLIENT_ID)
          expect(form.get("client_secret")).toBe(CLIENT_SECRET)
          // The raw body never holds the secret's reserved characters unescaped.
          expect(request.rawBody).not.toContain(CLIENT_SECRET)
          expect(request.rawBody).toContain(`client_secret=${OAuth2.formEncode(CLIENT_SECRET)}`)
          expect(server.authentications).toEqual([
            { method: "client_secret_post", clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }
          ])
          expect(Redacted.value(token.value)).toBe(server.accessTokens[0])
        }).pipe(Effect.provide(clientLayer)))

      it.scopedLive("a wrong secret is InvalidCredentials: 401 for basic, 400 for post", () =>
        Effect.gen(function*() {
          const server = yield* AuthServer.make({ ...serverOptions, clientSecret: `${CLIENT_SECRET}x` })
          const basic = yield* Effect.flip((yield* sourceFor(server)).fetch)
          expect(basic._tag).toBe("InvalidCredentials")
          expect(basic).toMatchObject({ status: 401, code: "invalid_client", retryable: false })
          const post = yield* Effect.flip((yield* sourceFor(server, { authMethod: "client_secret_post" })).fetch)
          expect(post._tag).toBe("InvalidCredentials")
          expect(post).toMatchObject({ status: 400, code: "invalid_client" })
          // The server did see the exact secret the client holds; it simply is not this client's.
          expect(server.authentications.map((a) => a.clientSecret)).toEqual([CLIENT_SECRET, CLIENT_SECRET])
        }).pipe(Effect.provide(clientLayer)))
    })
  }

  describe("grant parameters", () => {
    it.scopedLive("scope as a string is sent space-delimited and normalised", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make({ ...serverOptions, allowedScopes: ["read", "write"] })
        const source = yield* sourceFor(server, { scope: "  read   write " })
        const token = yield* source.fetch
        const form = new URLSearchParams(server.requests[0]!.rawBody)
        expect(form.get("scope")).toBe("read write")
        expect(server.requests[0]!.rawBody).toContain("scope=read+write")
        expect(token.scope).toEqual(Option.some("read write"))
        expect(source.identity.scope).toBe("read write")
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("scope as a list, audience, extra params and headers", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make(serverOptions)
        const source = yield* sourceFor(server, {
          scope: ["orders:read", "orders:write"],
          audience: "https://api.example.test/",
          extraParams: { resource: "urn:example:resource", "x&y": "a=b c" },
          headers: { "x-tenant": "t-1" }
        })
        yield* source.fetch
        const request = server.requests[0]!
        const form = new URLSearchParams(request.rawBody)
        expect(Object.fromEntries(form)).toEqual({
          grant_type: "client_credentials",
          scope: "orders:read orders:write",
          audience: "https://api.example.test/",
          resource: "urn:example:resource",
          "x&y": "a=b c"
        })
        expect(request.headers["x-tenant"]).toBe("t-1")
        expect(request.headers.authorization).toBe(`Basic ${basicCredentials}`)
        expect(source.identity).toEqual({
          provider: "loopback-idp",
          endpoint: server.tokenUrl,
          clientId: CLIENT_ID,
          scope: "orders:read orders:write",
          audience: "https://api.example.test/",
          extra: { resource: "urn:example:resource", "x&y": "a=b c" }
        })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("extra parameters never override the grant type, the scope or the audience", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make(serverOptions)
        const source = yield* sourceFor(server, {
          scope: "orders:read",
          extraParams: { grant_type: "password", scope: "admin", resource: "r" }
        })
        yield* source.fetch
        const form = Object.fromEntries(new URLSearchParams(server.requests[0]!.rawBody))
        expect(form).toEqual({ grant_type: "client_credentials", scope: "orders:read", resource: "r" })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("an empty scope list sends no scope; the response's scope wins over the requested one", () =>
      Effect.gen(function*() {
        const server = yield* answering((body) => ({ status: 200, body: { ...body, scope: "granted" } }))
        const token = yield* (yield* sourceFor(server, { scope: [] })).fetch
        expect(new URLSearchParams(server.requests[0]!.rawBody).has("scope")).toBe(false)
        expect(token.scope).toEqual(Option.some("granted"))
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("an unknown scope is a ProviderError carrying invalid_scope", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make({ ...serverOptions, allowedScopes: ["read"] })
        const error = yield* Effect.flip((yield* sourceFor(server, { scope: "read admin" })).fetch)
        expect(error._tag).toBe("ProviderError")
        expect(error).toMatchObject({ code: "invalid_scope", status: 400, description: "unknown scope admin" })
        expect(error.message).toContain("invalid_scope")
        expect(error.retryable).toBe(false)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })

  describe("success bodies", () => {
    it.scopedLive("expires_in as a number or a numeric string counts from receipt", () =>
      Effect.gen(function*() {
        for (const expiresIn of [3600, "3600"]) {
          const { before, after, result } = yield* fetchWith((body) => ({
            status: 200,
            body: { ...body, expires_in: expiresIn }
          }))
          const at = expiresAtMillis(rightOf(result))
          expect(at).toBeGreaterThanOrEqual(before + 3_600_000)
          expect(at).toBeLessThanOrEqual(after + 3_600_000)
        }
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("missing or null expires_in: no expiry, or the configured default", () =>
      Effect.gen(function*() {
        for (const expiresIn of [undefined, null]) {
          const answer = (body: Record<string, unknown>) => ({ status: 200, body: { ...body, expires_in: expiresIn } })
          const none = yield* fetchWith(answer)
          expect(rightOf(none.result).expiresAt).toEqual(Option.none())
          const withDefault = yield* fetchWith(answer, { lifetime: { defaultLifetime: "10 minutes" } })
          const at = expiresAtMillis(rightOf(withDefault.result))
          expect(at).toBeGreaterThanOrEqual(withDefault.before + 600_000)
          expect(at).toBeLessThanOrEqual(withDefault.after + 600_000)
        }
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("missing expires_in on a JWT access token: the exp claim decides", () =>
      Effect.gen(function*() {
        const now = Math.floor(Date.now() / 1000)
        const payload = Buffer.from(JSON.stringify({ iat: now, exp: now + 900 })).toString("base64url")
        // The server's Date, when present, is what `exp` is read against; a real one would tick to the next
        // second in about one run in a hundred, so the answer states the second the token was issued in.
        const { result } = yield* fetchWith((body) => ({
          status: 200,
          headers: { date: new Date(now * 1000).toUTCString() },
          body: { access_token: `eyJhbGciOiJSUzI1NiJ9.${payload}.sig`, token_type: body["token_type"] }
        }))
        const token = rightOf(result)
        expect(Option.map(token.lifetime, Duration.toMillis)).toEqual(Option.some(900_000))
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive.each<{ readonly value: unknown; readonly kind: string }>([
      { value: "soon", kind: "a string" },
      { value: "", kind: "an empty string" },
      { value: true, kind: "a boolean" },
      { value: { seconds: 3600 }, kind: "an object" }
    ])(
      "expires_in as $kind is a MalformedTokenResponse naming the field and the kind",
      ({ kind, value }) =>
        Effect.gen(function*() {
          const { result } = yield* fetchWith((body) => ({ status: 200, body: { ...body, expires_in: value } }))
          const error = leftOf(result)
          expect(error._tag).toBe("MalformedTokenResponse")
          expect(error).toMatchObject({
            field: "expires_in",
            expected: "a number of seconds",
            received: kind,
            status: 200
          })
          expect(error.message).toBe(
            `loopback-idp sent a token response Tollgate cannot use (HTTP 200): field "expires_in" should be a number of seconds but was ${kind}.`
          )
        }).pipe(Effect.provide(NodeHttpClient.layerUndici))
    )

    it.scopedLive("expires_in of zero or below is refused, not a token that expires on arrival", () =>
      Effect.gen(function*() {
        for (
          const [value, kind] of [[0, "zero"], [-60, "a negative number"], ["0", "zero"], ["-1", "a negative number"]]
        ) {
          const { result } = yield* fetchWith((body) => ({ status: 200, body: { ...body, expires_in: value } }))
          expect(leftOf(result)).toMatchObject({
            _tag: "MalformedTokenResponse",
            field: "expires_in",
            expected: "a positive number of seconds",
            received: kind
          })
        }
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("an absurdly large expires_in is clamped to the maximum lifetime", () =>
      Effect.gen(function*() {
        for (const value of [1e12, "99999999999999999999", 1.7976931348623157e308]) {
          const big = yield* fetchWith((body) => ({ status: 200, body: { ...body, expires_in: value } }))
          const at = expiresAtMillis(rightOf(big.result))
          expect(at).toBeGreaterThanOrEqual(big.before + 86_400_000)
          expect(at).toBeLessThanOrEqual(big.after + 86_400_000)
        }
        const capped = yield* fetchWith(
          (body) => ({ status: 200, body: { ...body, expires_in: 7200 } }),
          { lifetime: { maxLifetime: "1 hour" } }
        )
        expect(Option.map(rightOf(capped.result).lifetime, Duration.toMillis)).toEqual(Option.some(3_600_000))
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("token_type: missing means Bearer, any case of bearer is kept, mac is refused", () =>
      Effect.gen(function*() {
        const missing = yield* fetchWith(({ token_type: _, ...body }) => ({ status: 200, body }))
        expect(rightOf(missing.result).type).toBe("Bearer")
        const lower = yield* fetchWith((body) => ({ status: 200, body: { ...body, token_type: "bearer" } }))
        const token = rightOf(lower.result)
        expect(token.type).toBe("bearer")
        expect(Redacted.value(token.authorization)).toBe(`Bearer ${Redacted.value(token.value)}`)
        const mac = yield* fetchWith((body) => ({ status: 200, body: { ...body, token_type: "mac" } }))
        expect(leftOf(mac.result)).toMatchObject({
          _tag: "MalformedTokenResponse",
          field: "token_type",
          received: "another token type"
        })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("a missing, mistyped or empty access_token is named", () =>
      Effect.gen(function*() {
        const missing = yield* fetchWith(({ access_token: _, ...body }) => ({ status: 200, body }))
        expect(leftOf(missing.result)).toMatchObject({
          _tag: "MalformedTokenResponse",
          field: "access_token",
          expected: "string",
          received: "missing"
        })
        const numeric = yield* fetchWith((body) => ({ status: 200, body: { ...body, access_token: 12345 } }))
        expect(leftOf(numeric.result)).toMatchObject({ field: "access_token", received: "a number" })
        const empty = yield* fetchWith((body) => ({ status: 200, body: { ...body, access_token: "  " } }))
        expect(leftOf(empty.result)).toMatchObject({ field: "access_token", received: "an empty string" })
        const array = yield* fetchWith(() => ({ status: 200, body: [{ access_token: "x" }] }))
        expect(leftOf(array.result)).toMatchObject({ field: "(body)", received: "an array" })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("an HTML page, truncated JSON or an empty body with 200 is a MalformedTokenResponse", () =>
      Effect.gen(function*() {
        const html = yield* fetchWith(() => ({
          status: 200,
          headers: { "content-type": "text/html; charset=utf-8" },
          body: "<!DOCTYPE html><html><body>Sign in</body></html>"
        }))
        expect(leftOf(html.result)).toMatchObject({
          _tag: "MalformedTokenResponse",
          field: "(body)",
          expected: "a JSON object",
          received: "an HTML page",
          status: 200
        })
        expect(leftOf(html.result).message).toContain("an HTML page")
        const truncated = yield* fetchWith((body) => ({
          status: 200,
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body).slice(0, 30)
        }))
        expect(leftOf(truncated.result)).toMatchObject({ field: "(body)", received: "truncated or invalid JSON" })
        const empty = yield* fetchWith(() => ({ status: 200, body: "" }))
        expect(leftOf(empty.result)).toMatchObject({ field: "(body)", received: "an empty body" })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })

  describe("error responses (RFC 6749 §5.2)", () => {
    const oauthError = (status: number, error: string, headers?: Record<string, string>) => () => ({
      status,
      ...(headers === undefined ? {} : { headers }),
      body: { error, error_description: `${error} happened` }
    })

    it.scopedLive("invalid_client with 400 or 401 is InvalidCredentials", () =>
      Effect.gen(function*() {
        for (const status of [400, 401]) {
          const { result } = yield* fetchWith(oauthError(status, "invalid_client", { "www-authenticate": "Basic" }))
          const error = leftOf(result)
          expect(error._tag).toBe("InvalidCredentials")
          expect(error).toMatchObject({ status, code: "invalid_client", description: "invalid_client happened" })
          expect(error.message).toContain("rejected the client credentials")
          expect(error.retryable).toBe(false)
        }
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive.each(["invalid_scope", "unauthorized_client", "invalid_request", "unsupported_grant_type"])(
      "%s is a ProviderError with the code",
      (code) =>
        Effect.gen(function*() {
          const { result } = yield* fetchWith(oauthError(400, code))
          const error = leftOf(result)
          expect(error._tag).toBe("ProviderError")
          expect(error).toMatchObject({ code, status: 400, description: `${code} happened` })
          expect(error.message).toBe(
            `loopback-idp refused the request with code "${code}" (HTTP 400, ${code} happened).`
          )
        }).pipe(Effect.provide(NodeHttpClient.layerUndici))
    )

    it.scopedLive.each(["temporarily_unavailable", "server_error"])(
      "%s is an outage (TokenEndpointUnavailable, retried), not a refusal",
      (code) =>
        Effect.gen(function*() {
          const { result } = yield* fetchWith(oauthError(400, code))
          const error = leftOf(result)
          expect(error).toMatchObject({ _tag: "TokenEndpointUnavailable", status: 400, retryable: true })
          expect(error.message).toContain(code)
        }).pipe(Effect.provide(NodeHttpClient.layerUndici))
    )

    it.scopedLive("an error body in a 200 is still an error", () =>
      Effect.gen(function*() {
        const { result } = yield* fetchWith(oauthError(200, "unauthorized_client"))
        expect(leftOf(result)).toMatchObject({ _tag: "ProviderError", code: "unauthorized_client", status: 200 })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("401 or 403 with an empty body is InvalidCredentials", () =>
      Effect.gen(function*() {
        for (const status of [401, 403]) {
          const { result } = yield* fetchWith(() => ({ status, body: "" }))
          const error = leftOf(result)
          expect(error._tag).toBe("InvalidCredentials")
          expect(error).toMatchObject({ status })
          expect((error as TollgateError.InvalidCredentials).code).toBeUndefined()
        }
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("a 502 HTML page, a 503 and a 408 are TokenEndpointUnavailable", () =>
      Effect.gen(function*() {
        const html = yield* fetchWith(() => ({
          status: 502,
          headers: { "content-type": "text/html" },
          body: "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
        }))
        const error = leftOf(html.result)
        expect(error._tag).toBe("TokenEndpointUnavailable")
        expect(error).toMatchObject({ status: 502, reason: "HTTP 502 with an HTML page", retryable: true })
        expect(error.message).not.toContain("nginx")
        for (const status of [503, 408, 500]) {
          const { result } = yield* fetchWith(() => ({ status, body: { message: "down" } }))
          expect(leftOf(result)).toMatchObject({ _tag: "TokenEndpointUnavailable", status, reason: `HTTP ${status}` })
        }
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("429 with Retry-After is TokenEndpointUnavailable carrying retryAt", () =>
      Effect.gen(function*() {
        const { after, before, result } = yield* fetchWith(() => ({
          status: 429,
          headers: { "retry-after": "30" },
          body: { error: "slow_down", error_description: "too many token requests" }
        }))
        const error = leftOf(result)
        expect(error._tag).toBe("TokenEndpointUnavailable")
        const retryAt = DateTime.toEpochMillis((error as TollgateError.TokenEndpointUnavailable).retryAt!)
        expect(retryAt).toBeGreaterThanOrEqual(before + 30_000)
        expect(retryAt).toBeLessThanOrEqual(after + 30_000)
        expect(error.message).toContain("rate limit")
        expect(error.message).toContain(DateTime.formatIso(DateTime.unsafeMake(retryAt)))

        const reset = Math.floor(Date.now() / 1000) + 120
        const withReset = yield* fetchWith(() => ({
          status: 429,
          headers: { "x-ratelimit-reset": String(reset), "retry-after": "5" },
          body: ""
        }))
        expect(
          DateTime.toEpochMillis((leftOf(withReset.result) as TollgateError.TokenEndpointUnavailable).retryAt!)
        ).toBe(reset * 1000)
        const bare = yield* fetchWith(() => ({ status: 429, body: "" }))
        expect((leftOf(bare.result) as TollgateError.TokenEndpointUnavailable).retryAt).toBeUndefined()
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("a wrong token URL (404) says so", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make(serverOptions)
        const source = yield* sourceFor(server, { tokenUrl: `${server.url}/oauth2/tokens` })
        const error = yield* Effect.flip(source.fetch)
        expect(error).toMatchObject({
          _tag: "ProviderError",
          code: "HTTP 404",
          description: "the token endpoint URL looks wrong",
          status: 404
        })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })

  describe("transport", () => {
    for (const [clientName, clientLayer] of clients) {
      it.scopedLive(`connection refused is TokenEndpointUnavailable without the URL (${clientName})`, () =>
        Effect.gen(function*() {
          const port = yield* Loopback.closedPort
          const source = yield* OAuth2.make({
            tokenUrl: `http://127.0.0.1:${port}/oauth/token`,
            clientId: CLIENT_ID,
            clientSecret: Redacted.make(CLIENT_SECRET)
          })
          const error = yield* Effect.flip(source.fetch)
          expect(error._tag).toBe("TokenEndpointUnavailable")
          expect(error).toMatchObject({ provider: "oauth2", reason: "the connection failed (ECONNREFUSED)" })
          for (const text of Recording.renderError(error)) {
            expect(text).not.toContain("127.0.0.1")
            expect(text).not.toContain(String(port))
            expect(text).not.toContain("/oauth/token")
          }
        }).pipe(Effect.provide(clientLayer)))

      it.scopedLive(`a server that never answers is a Timeout (${clientName})`, () =>
        Effect.gen(function*() {
          const server = yield* AuthServer.make({ ...serverOptions, intercept: () => "hang" })
          const source = yield* sourceFor(server, { timeout: "300 millis" })
          const started = Date.now()
          const error = yield* Effect.flip(source.fetch)
          const elapsed = Date.now() - started
          expect(error._tag).toBe("Timeout")
          expect(error).toMatchObject({ operation: "token request", retryable: true })
          expect(error.message).toBe("The loopback-idp token request timed out after 300ms.")
          expect(elapsed).toBeGreaterThanOrEqual(290)
          expect(elapsed).toBeLessThan(3000)
          expect(server.requests).toHaveLength(1)
        }).pipe(Effect.provide(clientLayer)))
    }

    it.scopedLive("a connection dropped mid-request is TokenEndpointUnavailable", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make({ ...serverOptions, intercept: () => "destroy" })
        const error = yield* Effect.flip((yield* sourceFor(server)).fetch)
        expect(error._tag).toBe("TokenEndpointUnavailable")
        expect((error as TollgateError.TokenEndpointUnavailable).reason).toMatch(/^the connection failed/)
        expect(error.message).not.toContain(server.url)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })

  describe("refresh (RFC 6749 §6)", () => {
    it.scopedLive("sends the refresh_token grant with client authentication and keeps the old refresh token", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make({ ...serverOptions, refreshTokens: "issue" })
        const source = yield* sourceFor(server, { scope: "read" })
        const first = yield* source.fetch
        const refreshToken = Redacted.value(Option.getOrThrow(first.refreshToken))
        expect(server.refreshTokens.has(refreshToken)).toBe(true)

        const refresh = Option.getOrThrow(source.refresh)
        const second = yield* refresh(first)
        const request = server.requests[1]!
        expect(request.method).toBe("POST")
        expect(request.path).toBe("/oauth/token")
        expect(request.headers.authorization).toBe(`Basic ${basicCredentials}`)
        expect(Object.fromEntries(new URLSearchParams(request.rawBody))).toEqual({
          grant_type: "refresh_token",
          refresh_token: refreshToken
        })
        expect(Redacted.value(second.value)).toBe(server.accessTokens[1])
        expect(Redacted.value(second.value)).not.toBe(Redacted.value(first.value))
        // The server sent no new refresh token: the old one stays in force.
        expect(Option.map(second.refreshToken, Redacted.value)).toEqual(Option.some(refreshToken))
        expect(second.scope).toEqual(Option.some("read"))
        // And it still works.
        const third = yield* refresh(second)
        expect(Redacted.value(third.value)).toBe(server.accessTokens[2])
        expect(server.grants).toEqual(["client_credentials", "refresh_token", "refresh_token"])
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("takes the rotated refresh token when the server sends one", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make({ ...serverOptions, refreshTokens: "rotate" })
        const source = yield* sourceFor(server, { authMethod: "client_secret_post" })
        const first = yield* source.fetch
        const second = yield* Option.getOrThrow(source.refresh)(first)
        const oldRefresh = Redacted.value(Option.getOrThrow(first.refreshToken))
        const newRefresh = Redacted.value(Option.getOrThrow(second.refreshToken))
        expect(newRefresh).not.toBe(oldRefresh)
        expect(server.refreshTokens.get(oldRefresh)).toEqual({ active: false })
        expect(server.refreshTokens.get(newRefresh)).toEqual({ active: true })
        const form = new URLSearchParams(server.requests[1]!.rawBody)
        expect(form.get("client_secret")).toBe(CLIENT_SECRET)
        expect(form.get("refresh_token")).toBe(oldRefresh)
        // Using the retired one is invalid_grant, a ProviderError.
        const error = yield* Effect.flip(Option.getOrThrow(source.refresh)(first))
        expect(error).toMatchObject({ _tag: "ProviderError", code: "invalid_grant", status: 400 })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("without a refresh token, refresh is a client_credentials grant; useRefreshToken: false has none", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make(serverOptions)
        const source = yield* sourceFor(server)
        const first = yield* source.fetch
        expect(first.refreshToken).toEqual(Option.none())
        yield* Option.getOrThrow(source.refresh)(first)
        expect(server.grants).toEqual(["client_credentials", "client_credentials"])
        expect(Option.isNone((yield* sourceFor(server, { useRefreshToken: false })).refresh)).toBe(true)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })

  describe("revocation (RFC 7009)", () => {
    it.scopedLive("revokes the access token and the refresh token, each with its hint", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make({ ...serverOptions, refreshTokens: "issue" })
        const source = yield* sourceFor(server)
        const token = yield* source.fetch
        yield* Option.getOrThrow(source.revoke)(token)
        const revokeRequests = server.requests.filter((r) => r.path === "/oauth/revoke")
        expect(revokeRequests).toHaveLength(2)
        for (const request of revokeRequests) {
          expect(request.method).toBe("POST")
          expect(request.headers["content-type"]).toMatch(/^application\/x-www-form-urlencoded/)
          expect(request.headers.authorization).toBe(`Basic ${basicCredentials}`)
        }
        expect(revokeRequests.map((r) => Object.fromEntries(new URLSearchParams(r.rawBody)))).toEqual([
          { token: Redacted.value(token.value), token_type_hint: "access_token" },
          { token: Redacted.value(Option.getOrThrow(token.refreshToken)), token_type_hint: "refresh_token" }
        ])
        expect(server.refreshTokens.get(Redacted.value(Option.getOrThrow(token.refreshToken)))).toEqual({
          active: false
        })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("with client_secret_post and no refresh token: one request, credentials in the body", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make(serverOptions)
        const source = yield* sourceFor(server, { authMethod: "client_secret_post" })
        const token = yield* source.fetch
        yield* Option.getOrThrow(source.revoke)(token)
        const revokeRequests = server.requests.filter((r) => r.path === "/oauth/revoke")
        expect(revokeRequests).toHaveLength(1)
        expect(revokeRequests[0]!.headers.authorization).toBeUndefined()
        expect(Object.fromEntries(new URLSearchParams(revokeRequests[0]!.rawBody))).toEqual({
          token: Redacted.value(token.value),
          token_type_hint: "access_token",
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET
        })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("without a revocation URL there is no revoke", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make(serverOptions)
        const source = yield* sourceFor(server, { revocationUrl: undefined })
        expect(Option.isNone(source.revoke)).toBe(true)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("a server that cannot revoke access tokens still gets the refresh token revoked", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make({ ...serverOptions, refreshTokens: "issue" })
        const source = yield* sourceFor(server)
        const token = yield* source.fetch
        // RFC 7009 §2.2.1: a server that does not revoke access tokens answers unsupported_token_type.
        const picky = yield* AuthServer.make({
          ...serverOptions,
          intercept: () => ({ status: 400, body: { error: "unsupported_token_type" } })
        })
        const pickySource = yield* sourceFor(server, {
          revocationUrl: `${picky.url}/oauth/token`
        })
        const error = yield* Effect.flip(Option.getOrThrow(pickySource.revoke)(token))
        expect(error).toMatchObject({ _tag: "ProviderError", code: "unsupported_token_type" })
        // Both tokens were still presented: the failure of one does not keep the other alive.
        expect(picky.requests.map((r) => new URLSearchParams(r.rawBody).get("token_type_hint"))).toEqual([
          "access_token",
          "refresh_token"
        ])
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("a revocation outage is TokenEndpointUnavailable", () =>
      Effect.gen(function*() {
        const server = yield* AuthServer.make(serverOptions)
        const source = yield* sourceFor(server, { revocationUrl: `${server.url}/down` })
        const token = yield* source.fetch
        const down = yield* Loopback.serve(() => ({ status: 503, body: "" }))
        const downSource = yield* sourceFor(server, { revocationUrl: `${down.url}/revoke` })
        const error = yield* Effect.flip(Option.getOrThrow(downSource.revoke)(token))
        expect(error).toMatchObject({ _tag: "TokenEndpointUnavailable", status: 503 })
        expect(Option.isSome(source.revoke)).toBe(true)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })

  describe("secrets never leak (invariant 8)", () => {
    const forbiddenForms = (secret: string) => [
      secret,
      encodeURIComponent(secret),
      OAuth2.formEncode(secret)
    ]

    /** Asserts none of `secrets` occurs in any of `texts`, naming the first leak. */
    const expectNoLeak = (texts: ReadonlyArray<string>, secrets: ReadonlyArray<string>) => {
      const forms = secrets.flatMap(forbiddenForms)
      for (const text of texts) {
        for (const form of forms) {
          if (text.includes(form)) throw new Error(`leaked ${JSON.stringify(form)} in: ${text.slice(0, 400)}`)
        }
      }
    }

    it.scopedLive("OAuth2: logs, errors, tokens and spans never carry the secret or any token", () =>
      Effect.gen(function*() {
        const { spans, tracer } = yield* Recording.tracer
        const logs = yield* Recording.logger
        // A misbehaving server that echoes whatever it was sent, in every place it can.
        const echo = (request: Loopback.Recorded) =>
          `${request.rawBody} ${request.headers.authorization ?? ""} ${
            decodeURIComponent(request.rawBody.replace(/\+/g, " "))
          } ${
            Buffer.from((request.headers.authorization ?? "").replace("Basic ", ""), "base64").toString("utf8")
          } ${CLIENT_SECRET}`
        const server = yield* AuthServer.make({
          ...serverOptions,
          refreshTokens: "rotate",
          intercept: (request) => {
            const scope = new URLSearchParams(request.rawBody).get("scope")
            switch (scope) {
              case "leak-description":
                return { status: 400, body: { error: "invalid_scope", error_description: echo(request) } }
              case "leak-code":
                return { status: 400, body: { error: `invalid_${CLIENT_SECRET}`, error_description: "x" } }
              case "leak-401":
                return { status: 401, body: { error: "invalid_client", error_description: echo(request) } }
              case "leak-message":
                return { status: 403, body: { errors: [{ code: 99, message: echo(request) }] } }
              case "leak-html":
                return { status: 502, headers: { "content-type": "text/html" }, body: `<html>${echo(request)}</html>` }
              case "leak-200-html":
                return { status: 200, headers: { "content-type": "text/html" }, body: `<html>${echo(request)}</html>` }
              case "leak-expires":
                return { status: 200, body: { access_token: "at_leaky_0001", expires_in: CLIENT_SECRET } }
              case "leak-type":
                return { status: 200, body: { access_token: "at_leaky_0002", token_type: CLIENT_SECRET } }
              case "leak-truncated":
                return {
                  status: 200,
                  headers: { "content-type": "application/json" },
                  body: `{"access_token":"at_leaky_0003","refresh_token":"${CLIENT_SECRET}`
                }
              default:
                return undefined
            }
          }
        })
        const hang = yield* AuthServer.make({ ...serverOptions, intercept: () => "hang" })
        const errors: Array<unknown> = []
        const tokens: Array<AccessToken.AccessToken> = []
        const run = <A extends AccessToken.AccessToken | void>(effect: Effect.Effect<A, TollgateError.TokenError>) =>
          effect.pipe(
            Effect.tap((a) => {
              if (a !== undefined) tokens.push(a)
            }),
            Effect.tapErrorCause(Effect.logError),
            Effect.tapError((error) => Effect.sync(() => errors.push(error))),
            Effect.tap((a) => Effect.logInfo("obtained", a)),
            Effect.withSpan("app.operation"),
            Effect.either
          )

        const program = Effect.gen(function*() {
          for (
            const scope of [
              "leak-description",
              "leak-code",
              "leak-401",
              "leak-message",
              "leak-html",
              "leak-200-html",
              "leak-expires",
              "leak-type",
              "leak-truncated"
            ]
          ) {
            for (const authMethod of ["client_secret_basic", "client_secret_post"] as const) {
              yield* run((yield* sourceFor(server, { scope, authMethod })).fetch)
            }
          }
          const source = yield* sourceFor(server)
          const token = rightOf(yield* run(source.fetch))
          const refreshed = rightOf(yield* run(Option.getOrThrow(source.refresh)(token)))
          // The retired refresh token is refused, and the server's answer names it.
          const echoing = yield* AuthServer.make({
            ...serverOptions,
            intercept: (request) => ({
              status: 400,
              body: { error: "invalid_grant", error_description: `refresh token ${echo(request)} is revoked` }
            })
          })
          const echoSource = yield* sourceFor(echoing, { revocationUrl: `${echoing.url}/oauth/token` })
          yield* run(Option.getOrThrow(echoSource.refresh)(refreshed))
          yield* run(Option.getOrThrow(echoSource.revoke)(refreshed))
          yield* run(Option.getOrThrow(source.revoke)(refreshed))
          // Timeouts and refused connections too.
          yield* run((yield* sourceFor(hang, { timeout: "100 millis" })).fetch)
          const port = yield* Loopback.closedPort
          yield* run(
            (yield* sourceFor(server, { tokenUrl: `http://127.0.0.1:${port}/oauth/token` })).fetch
          )
        })
        yield* logs.provide(program).pipe(Effect.withTracer(tracer))

        // The checks saw what they are checking: failures of each kind, tokens, logs and spans.
        expect(new Set(errors.map((e) => (e as TollgateError.TokenError)._tag))).toEqual(
          new Set([
            "ProviderError",
            "InvalidCredentials",
            "TokenEndpointUnavailable",
            "MalformedTokenResponse",
            "Timeout"
          ])
        )
        expect(tokens.length).toBeGreaterThanOrEqual(2)
        expect(logs.lines.length).toBeGreaterThan(errors.length)
        expect(spans.filter((s) => s.name === "tollgate.token_request").length).toBeGreaterThan(10)
        expect(spans.some((s) => s.name === "tollgate.token_refresh")).toBe(true)
        expect(spans.some((s) => s.name === "tollgate.token_revocation")).toBe(true)
        // No platform span: it would record the full URL.
        expect(spans.every((s) => s.name.startsWith("tollgate.") || s.name.startsWith("app."))).toBe(true)

        const secrets = [
          CLIENT_SECRET,
          basicCredentials,
          ...server.accessTokens,
          ...server.refreshTokens.keys(),
          ...hang.accessTokens,
          "at_leaky_000"
        ]
        const rendered = [
          ...errors.flatMap(Recording.renderError),
          ...tokens.flatMap((token) => [String(token), JSON.stringify(token), inspect(token, { depth: Infinity })]),
          ...logs.lines,
          ...spans.map(Recording.renderSpan)
        ]
        expectNoLeak(rendered, secrets)
        // The echoed descriptions still arrive, with the secrets cut out.
        const described = errors.filter((e): e is TollgateError.ProviderError =>
          (e as TollgateError.TokenError)._tag === "ProviderError" &&
          (e as TollgateError.ProviderError).code === "invalid_scope"
        )
        expect(described[0]?.description).toContain("<redacted>")
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    const TOKEN_PROJECT_KEY = "LJHyxcBqWKLhZdxZo9X5yBFvJQpWYfCT"
    const TOKEN_PROJECT_SECRET = "vbQ6esJg+f9k/KymZ9H&KKmMaHZ=LRmGN"

    const tokenProjectRequest = (url: string, timeout?: Duration.DurationInput) =>
      TokenExchange.requestToken({
        provider: "token-project",
        request: HttpClientRequest.post(url).pipe(
          HttpClientRequest.setUrlParams({ key: TOKEN_PROJECT_KEY, secret: TOKEN_PROJECT_SECRET })
        ),
        timeout,
        secrets: [Redacted.make(TOKEN_PROJECT_KEY), Redacted.make(TOKEN_PROJECT_SECRET)],
        success: Schema.Struct({ token_type: Schema.String, access_token: Schema.String }),
        toFields: (body) => Either.right({ value: body.access_token, type: body.token_type }),
        lifetime: { defaultLifetime: "1 hour" }
      })

    const tokenProjectServer = Loopback.serve((request) => {
      const ok = request.query.get("key") === TOKEN_PROJECT_KEY && request.query.get("secret") === TOKEN_PROJECT_SECRET
      switch (request.path) {
        case "/auth/token":
          return ok
            ? { status: 200, body: { token_type: "bearer", access_token: "eyJhbGciOiJSUzI1NiJ9.e30.tp_issued_token" } }
            : { status: 401, body: { message: "unauthorized" } }
        case "/echo/auth/token":
          return {
            status: 401,
            body: { message: `Invalid credentials for ${request.path}?${request.query.toString()}` }
          }
        case "/limited/auth/token":
          return {
            status: 429,
            headers: { "retry-after": "60", "x-ratelimit-reset": String(Math.floor(Date.now() / 1000) + 60) },
            body: { errors: [{ code: 88, message: `Rate limit exceeded for key ${TOKEN_PROJECT_KEY}` }] }
          }
        case "/broken/auth/token":
          return { status: 500, headers: { "content-type": "text/html" }, body: `<pre>${request.query}</pre>` }
        case "/hang/auth/token":
          return "hang"
        default:
          return { status: 404, body: "" }
      }
    })

    it.scopedLive("credentials in the URL query (Token project) reach neither spans nor errors", () =>
      Effect.gen(function*() {
        const { spans, tracer } = yield* Recording.tracer
        const logs = yield* Recording.logger
        const server = yield* tokenProjectServer
        const port = yield* Loopback.closedPort
        const results = yield* Effect.all([
          tokenProjectRequest(`${server.url}/auth/token`),
          tokenProjectRequest(`${server.url}/echo/auth/token`),
          tokenProjectRequest(`${server.url}/limited/auth/token`),
          tokenProjectRequest(`${server.url}/broken/auth/token`),
          tokenProjectRequest(`${server.url}/hang/auth/token`, "100 millis"),
          tokenProjectRequest(`http://127.0.0.1:${port}/auth/token`)
        ].map((effect) => effect.pipe(Effect.tapErrorCause(Effect.logWarning), Effect.either))).pipe(
          logs.provide,
          Effect.withTracer(tracer)
        )

        // The credentials did reach the server, in the query, as the provider documents.
        expect(server.requests[0]!.query.get("secret")).toBe(TOKEN_PROJECT_SECRET)
        const token = rightOf(results[0]!)
        expect(Redacted.value(token.value)).toBe("eyJhbGciOiJSUzI1NiJ9.e30.tp_issued_token")
        expect(results.slice(1).map((r) => leftOf(r)._tag)).toEqual([
          "InvalidCredentials",
          "TokenEndpointUnavailable",
          "TokenEndpointUnavailable",
          "Timeout",
          "TokenEndpointUnavailable"
        ])
        const echoed = leftOf(results[1]!) as TollgateError.InvalidCredentials
        expect(echoed.description).toBe("Invalid credentials for /echo/auth/token?key=<redacted>&secret=<redacted>")

        const tollgateSpans = spans.filter((s) => s.name === "tollgate.token_request")
        expect(tollgateSpans).toHaveLength(6)
        expect(spans).toHaveLength(6)
        expect(Object.fromEntries(tollgateSpans[0]!.attributes)).toEqual({
          "tollgate.provider": "token-project",
          "http.request.method": "POST",
          "url.path": "/auth/token",
          "http.response.status_code": 200
        })
        expectNoLeak(
          [
            ...results.flatMap((r) => Either.isLeft(r) ? Recording.renderError(r.left) : [inspect(r.right)]),
            ...logs.lines,
            ...spans.map(Recording.renderSpan)
          ],
          [TOKEN_PROJECT_KEY, TOKEN_PROJECT_SECRET, "tp_issued_token"]
        )
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("control: the platform's own span would have recorded the secret", () =>
      Effect.gen(function*() {
        const { spans, tracer } = yield* Recording.tracer
        const server = yield* tokenProjectServer
        yield* HttpClient.execute(
          HttpClientRequest.post(`${server.url}/auth/token`).pipe(
            HttpClientRequest.setUrlParams({ key: TOKEN_PROJECT_KEY, secret: TOKEN_PROJECT_SECRET })
          )
        ).pipe(Effect.withTracer(tracer))
        expect(() => expectNoLeak(spans.map(Recording.renderSpan), [TOKEN_PROJECT_SECRET])).toThrow(/leaked/)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })
})
