/**
 * `OAuth2.fromIssuer`: RFC 8414 metadata (with the path-insertion rule), the OpenID Connect fallback,
 * checking what the metadata says, choosing an authentication method, and revocation at scope close
 * with no endpoint configured by hand. Against our own strict server and against `oidc-provider`, an
 * OpenID Certified authorization server we did not write.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Option, Redacted, Schedule, Scope } from "effect"
import * as AuthorizationServer from "../src/AuthorizationServer.js"
import * as OAuth2 from "../src/OAuth2.js"
import * as TokenCache from "../src/TokenCache.js"
import * as AuthServer from "./utils/AuthServer.js"
import * as Loopback from "./utils/Loopback.js"
import * as OidcProvider from "./utils/OidcProvider.js"

const CLIENT_ID = "discovery-client"
const CLIENT_SECRET = "discovery-s3cret-value"

const fromIssuer = (issuer: string, options?: Partial<OAuth2.IssuerOptions>) =>
  OAuth2.fromIssuer({
    provider: "idp",
    issuer,
    clientId: CLIENT_ID,
    clientSecret: Redacted.make(CLIENT_SECRET),
    allowInsecureLoopback: true,
    ...options
  })

const own = (options?: Partial<AuthServer.Options>) =>
  AuthServer.make({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, ...options })

describe("OAuth2 discovery", () => {
  it("builds both metadata locations from an issuer, inserting RFC 8414's segment before the path", () => {
    expect(AuthorizationServer.metadataUrls("https://auth.test")).toEqual([
      "https://auth.test/.well-known/oauth-authorization-server",
      "https://auth.test/.well-known/openid-configuration"
    ])
    expect(AuthorizationServer.metadataUrls("https://auth.test/tenants/a/")).toEqual([
      "https://auth.test/.well-known/oauth-authorization-server/tenants/a",
      "https://auth.test/tenants/a/.well-known/openid-configuration"
    ])
  })

  it("chooses the first client authentication method it implements that the server lists", () => {
    expect(AuthorizationServer.chooseAuthMethod(["private_key_jwt", "client_secret_post", "client_secret_basic"])).toBe(
      "client_secret_basic"
    )
    expect(AuthorizationServer.chooseAuthMethod(["none", "client_secret_post"])).toBe("client_secret_post")
    expect(AuthorizationServer.chooseAuthMethod(["private_key_jwt", "tls_client_auth"])).toBeUndefined()
  })

  describe("against our own server", () => {
    it.scopedLive("RFC 8414 metadata of an issuer with a path: token and revocation endpoints, no hand configuration", () =>
      Effect.gen(function*() {
        const server = yield* own({ issuerPath: "/tenants/a", refreshTokens: "issue" })
        const metadata = yield* AuthorizationServer.discover(server.issuer, { allowInsecureLoopback: true })
        expect(metadata).toMatchObject({
          issuer: server.issuer,
          url: `${server.url}/.well-known/oauth-authorization-server/tenants/a`,
          tokenEndpoint: server.tokenUrl,
          revocationEndpoint: Option.some(server.revocationUrl)
        })
        const source = yield* fromIssuer(server.issuer)
        const token = yield* source.fetch
        yield* Option.getOrThrow(source.revoke)(token)
        expect(server.revocations.map((r) => r.hint)).toEqual(["access_token", "refresh_token"])
        expect(server.requests[0]!.path).toBe("/.well-known/oauth-authorization-server/tenants/a")
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("falls back to OpenID Connect discovery when the RFC 8414 document is missing", () =>
      Effect.gen(function*() {
        const server = yield* own({ issuerPath: "/realm", discovery: "openid-configuration" })
        const source = yield* fromIssuer(server.issuer)
        yield* source.fetch
        expect(server.requests.slice(0, 2).map((r) => r.path)).toEqual([
          "/.well-known/oauth-authorization-server/realm",
          "/realm/.well-known/openid-configuration"
        ])
        expect(Option.isSome(source.revoke)).toBe(true)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("authenticates the way the server says it accepts: client_secret_post when that is all it lists", () =>
      Effect.gen(function*() {
        const server = yield* own({
          metadata: (document) => ({
            ...document,
            token_endpoint_auth_methods_supported: ["private_key_jwt", "client_secret_post"],
            revocation_endpoint_auth_methods_supported: ["client_secret_post"]
          })
        })
        const source = yield* fromIssuer(server.issuer)
        const token = yield* source.fetch
        yield* Option.getOrThrow(source.revoke)(token)
        expect(server.authentications.map((a) => a.method)).toEqual(["client_secret_post", "client_secret_post"])
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive.each<{
      readonly name: string
      readonly edit: (document: Record<string, unknown>) => Record<string, unknown>
      readonly field: string
    }>([
      { name: "another issuer", edit: (d) => ({ ...d, issuer: "https://evil.test" }), field: "issuer" },
      {
        name: "a plain http token endpoint on another host",
        edit: (d) => ({ ...d, token_endpoint: "http://evil.test/token" }),
        field: "token_endpoint"
      },
      {
        name: "a revocation endpoint with credentials in it",
        edit: (d) => ({ ...d, revocation_endpoint: "https://user:pw@evil.test/revoke" }),
        field: "revocation_endpoint"
      },
      {
        name: "no client authentication method Tollgate implements",
        edit: (d) => ({ ...d, token_endpoint_auth_methods_supported: ["private_key_jwt", "tls_client_auth"] }),
        field: "token_endpoint_auth_methods_supported"
      },
      {
        name: "no client_credentials grant",
        edit: (d) => ({ ...d, grant_types_supported: ["authorization_code"] }),
        field: "grant_types_supported"
      },
      { name: "no token endpoint", edit: ({ token_endpoint: _, ...d }) => d, field: "token_endpoint" }
    ])("metadata with $name is refused as InvalidServerMetadata", ({ edit, field }) =>
      Effect.gen(function*() {
        const server = yield* own({ metadata: edit })
        const error = yield* Effect.flip(fromIssuer(server.issuer))
        expect(error).toMatchObject({ _tag: "InvalidServerMetadata", field })
        expect(error.message).not.toContain("pw@")
        // Nothing was sent to an endpoint the metadata named.
        expect(server.requests.every((r) => r.method === "GET")).toBe(true)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("an issuer without metadata anywhere, or an unusable issuer, is a typed error", () =>
      Effect.gen(function*() {
        const server = yield* own({ discovery: "none" })
        expect(yield* Effect.flip(fromIssuer(server.issuer))).toMatchObject({
          _tag: "InvalidServerMetadata",
          field: "(document)",
          received: "HTTP 404"
        })
        expect(yield* Effect.flip(fromIssuer(server.issuer, { allowInsecureLoopback: false }))).toMatchObject({
          _tag: "InvalidArgument",
          argument: "issuer"
        })
        const withSecret = yield* Effect.flip(fromIssuer("https://id:pa55word@auth.test"))
        expect(withSecret._tag).toBe("InvalidArgument")
        expect(withSecret.message).not.toContain("pa55word")
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("a metadata outage is retried, then TokenEndpointUnavailable", () =>
      Effect.gen(function*() {
        const down = yield* Loopback.serve(() => ({ status: 503, body: "" }))
        const error = yield* Effect.flip(fromIssuer(down.url))
        expect(error).toMatchObject({ _tag: "TokenEndpointUnavailable", status: 503 })
        expect(error.message).toContain("metadata")
        expect(down.requests).toHaveLength(3)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("without a revocation endpoint in the metadata, the source cannot revoke", () =>
      Effect.gen(function*() {
        const server = yield* own({ metadata: ({ revocation_endpoint: _, ...d }) => d })
        const source = yield* fromIssuer(server.issuer)
        expect(Option.isNone(source.revoke)).toBe(true)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })

  describe("against oidc-provider", () => {
    it.scopedLive("a TokenCache built from an issuer revokes its token at scope close, no endpoint configured by hand", () =>
      Effect.gen(function*() {
        const idp = yield* OidcProvider.make({
          clientId: CLIENT_ID,
          clientSecret: CLIENT_SECRET,
          ttl: 300,
          path: "/tenants/acme"
        })
        const source = yield* fromIssuer(idp.issuer)
        const scope = yield* Scope.make()
        const cache = yield* Scope.extend(TokenCache.make(source), scope)
        const token = yield* cache.get
        expect(yield* Effect.promise(() => idp.isActive(Redacted.value(token.value)))).toBe(true)
        yield* Scope.close(scope, Exit.void)
        expect((yield* cache.stats).revocations).toBe(1)
        expect(yield* Effect.promise(() => idp.isActive(Redacted.value(token.value)))).toBe(false)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("an explicit authMethod is used as given: client_secret_post", () =>
      Effect.gen(function*() {
        const idp = yield* OidcProvider.make({
          clientId: CLIENT_ID,
          clientSecret: CLIENT_SECRET,
          ttl: 300,
          authMethod: "client_secret_post"
        })
        const token = yield* (yield* fromIssuer(idp.issuer, { authMethod: "client_secret_post" })).fetch
        expect(yield* Effect.promise(() => idp.isActive(Redacted.value(token.value)))).toBe(true)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    // Issue #14's acceptance, at a fifth of the scale (tokens of 1 s instead of 5): steady traffic for
    // three lifetimes costs at most ceil(3) + 1 grants, and two idle lifetimes cost none.
    it.scopedLive(
      "short tokens: steady traffic costs at most ceil(busy / lifetime) + 1 grants; idle costs none",
      () =>
        Effect.gen(function*() {
          const idp = yield* OidcProvider.make({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, ttl: 1 })
          const cache = yield* TokenCache.make(yield* fromIssuer(idp.issuer))
          const start = Date.now()
          yield* cache.get.pipe(
            Effect.repeat({ schedule: Schedule.spaced("20 millis"), while: () => Date.now() - start < 3_000 })
          )
          expect(idp.grants()).toBeLessThanOrEqual(4)
          // A renewal the last callers asked for may still be landing; after it, silence.
          yield* Effect.sleep(Duration.millis(300))
          const busy = idp.grants()
          yield* Effect.sleep(Duration.seconds(2))
          expect(idp.grants()).toBe(busy)
          expect(busy).toBeLessThanOrEqual(4)
        }).pipe(Effect.provide(NodeHttpClient.layerUndici)),
      20_000
    )
  })
})
