import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import * as Providers from "../src/index.js"
import * as Loopback from "./utils/Loopback.js"

const { Nomba, Nora, Norce, TokenProject } = Providers

const env = (url: string) =>
  new Map(Object.entries({
    TOLLGATE_ALLOW_INSECURE_LOOPBACK: "true",
    NORA_CLIENT_ID: "nora-id",
    NORA_CLIENT_SECRET: "nora-secret",
    NORA_ORGANIZATION_ID: "nora-org",
    NORA_BASE_URL: url,
    NORCE_CLIENT_ID: "norce-id",
    NORCE_CLIENT_SECRET: "norce-secret",
    NORCE_APPLICATION_ID: "1042",
    NORCE_ENVIRONMENT: "stage",
    NORCE_BASE_URL: url,
    NOMBA_CLIENT_ID: "nomba-id",
    NOMBA_CLIENT_SECRET: "nomba-secret",
    NOMBA_ACCOUNT_ID: "nomba-account",
    NOMBA_BASE_URL: url,
    TOKEN_PROJECT_KEY: "tp-key",
    TOKEN_PROJECT_SECRET: "tp-secret",
    TOKEN_PROJECT_BASE_URL: url
  }))

/** All four providers on one loopback server: their paths do not overlap. */
const server = () => {
  let n = 0
  const tokens = new Map<string, string>()
  const mint = (provider: string) => {
    const token = Loopback.jwt({ provider, n: ++n, iat: Math.floor(Date.now() / 1000) })
    tokens.set(token, provider)
    return token
  }
  const bearer = (request: Loopback.Recorded) =>
    tokens.get((request.headers.authorization ?? "").replace("Bearer ", ""))
  return Effect.map(
    Loopback.serve((request) => {
      switch (`${request.method} ${request.path}`) {
        case "POST /api/token": {
          const body = JSON.parse(request.rawBody)
          return body.clientSecret === "nora-secret"
            ? { status: 200, body: { token: mint("nora"), expires_in: 3600, token_type: "Bearer" } }
            : { status: 401, body: { statusCode: 401, message: "Invalid credentials" } }
        }
        case "POST /identity/1.0/connect/token": {
          const form = new URLSearchParams(request.rawBody)
          return form.get("client_secret") === "norce-secret" && form.get("scope") === "stage"
            ? {
              status: 200,
              body: { access_token: mint("norce"), expires_in: 600, token_type: "Bearer", scope: "stage" }
            }
            : { status: 400, body: { error: "invalid_client" } }
        }
        case "POST /v1/auth/token/issue": {
          const body = JSON.parse(request.rawBody)
          return body.client_secret === "nomba-secret" && request.headers.accountid === "nomba-account"
            ? {
              status: 200,
              body: {
                code: "00",
                description: "Success",
                data: {
                  access_token: mint("nomba"),
                  refresh_token: "r",
                  expiresAt: new Date(Date.now() + 1_800_000).toISOString()
                }
              }
            }
            : { status: 200, body: { code: "01", description: "Invalid client credentials" } }
        }
        case "POST /v1/auth/token/revoke":
          return { status: 200, body: { code: "00", description: "Token revoked successfully" } }
        case "POST /auth/token":
          return request.query.get("secret") === "tp-secret"
            ? { status: 200, body: { token_type: "bearer", access_token: mint("token-project") } }
            : { status: 401, body: {} }
        case "GET /api/forms":
          return bearer(request) === "nora" ? { status: 200, body: { api: "nora" } } : { status: 401 }
        case "GET /commerce/metadata/1.1/GetApplication":
          return bearer(request) === "norce" && request.headers.applicationid === "1042"
            ? { status: 200, body: { api: "norce" } }
            : { status: 401 }
        case "GET /v1/accounts":
          return bearer(request) === "nomba" && request.headers.accountid === "nomba-account"
            ? { status: 200, body: { code: "00", data: { api: "nomba" } } }
            : { status: 401 }
        case "GET /notarizations/stamps":
          return bearer(request) === "token-project" ? { status: 200, body: { api: "token-project" } } : { status: 401 }
      }
      return { status: 404 }
    }),
    (info) => info
  )
}

/** One program, four APIs: each client is found by its own Tag. */
const program = Effect.gen(function*() {
  const nora = yield* Nora.NoraClient
  const norce = yield* Norce.NorceClient
  const nomba = yield* Nomba.NombaClient
  const tokenProject = yield* TokenProject.TokenProjectClient
  return yield* Effect.all([
    Effect.flatMap(nora.get("/api/forms"), (r) => r.json),
    Effect.flatMap(norce.get("/commerce/metadata/1.1/GetApplication"), (r) => r.json),
    Effect.flatMap(nomba.get("/v1/accounts"), (r) => r.json),
    Effect.flatMap(tokenProject.get("/notarizations/stamps"), (r) => r.json)
  ], { concurrency: "unbounded" })
})

const AllProviders = Layer.mergeAll(
  Nora.layerConfig(),
  Norce.layerConfig(),
  Nomba.layerConfig(),
  TokenProject.layerConfig()
)

describe("all four providers in one Layer graph", () => {
  it.live("one program talks to Nora, Norce, Nomba and the Token project at once", () =>
    Effect.gen(function*() {
      const info = yield* server()
      const results = yield* program.pipe(
        Effect.provide(AllProviders.pipe(Layer.provide(NodeHttpClient.layerUndici))),
        Effect.withConfigProvider(ConfigProvider.fromMap(env(info.url)))
      )
      expect(results).toEqual([
        { api: "nora" },
        { api: "norce" },
        { code: "00", data: { api: "nomba" } },
        { api: "token-project" }
      ])
      const seen = info.requests.map((r) => `${r.method} ${r.path}`)
      expect([...seen].sort()).toEqual([
        "GET /api/forms",
        "GET /commerce/metadata/1.1/GetApplication",
        "GET /notarizations/stamps",
        "GET /v1/accounts",
        "POST /api/token",
        "POST /auth/token",
        "POST /identity/1.0/connect/token",
        "POST /v1/auth/token/issue",
        // Releasing the Layer revokes Nomba's token.
        "POST /v1/auth/token/revoke"
      ])
      expect(seen.at(-1)).toBe("POST /v1/auth/token/revoke")
    }).pipe(Effect.scoped))

  // Issue 17: the four APIs are outside the user's trust boundary, so a traced program sends them no trace
  // context (token requests included) unless a provider is told to.
  it.live("a traced program sends no traceparent or b3 to any of the four providers by default", () =>
    Effect.gen(function*() {
      const info = yield* server()
      yield* program.pipe(
        Effect.withSpan("parent"),
        Effect.provide(AllProviders.pipe(Layer.provide(NodeHttpClient.layerUndici))),
        Effect.withConfigProvider(ConfigProvider.fromMap(env(info.url)))
      )
      expect(info.requests.length).toBeGreaterThanOrEqual(8)
      const traced = info.requests.flatMap((r) =>
        Object.keys(r.headers).filter((name) => name === "traceparent" || name.startsWith("b3"))
          .map((name) => `${r.method} ${r.path} ${name}`)
      )
      expect(traced).toEqual([])
    }).pipe(Effect.scoped))

  it.live("a test replaces any one provider with a fake Layer, the others stay real", () =>
    Effect.gen(function*() {
      const info = yield* server()
      const fakeNora = Layer.succeed(
        Nora.NoraClient,
        HttpClient.make((request) =>
          Effect.succeed(HttpClientResponse.fromWeb(request, Response.json({ api: "fake nora" })))
        ).pipe(HttpClient.mapRequest(HttpClientRequest.prependUrl("https://nora.fake")))
      )
      const results = yield* program.pipe(
        Effect.provide(
          Layer.mergeAll(fakeNora, Norce.layerConfig(), Nomba.layerConfig(), TokenProject.layerConfig()).pipe(
            Layer.provide(NodeHttpClient.layerUndici)
          )
        ),
        Effect.withConfigProvider(ConfigProvider.fromMap(env(info.url)))
      )
      expect(results[0]).toEqual({ api: "fake nora" })
      expect(results[1]).toEqual({ api: "norce" })
      expect(info.requests.some((r) => r.path.startsWith("/api/"))).toBe(false)
    }).pipe(Effect.scoped))
})
