import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import { NorceSandbox, Sandbox } from "@tollgate/testing"
import { Clock, ConfigError, Effect, Either, Fiber, Option, Redacted, TestClock } from "effect"
import * as Norce from "../src/Norce.js"
import * as Loopback from "./utils/Loopback.js"
import * as Memory from "./utils/Memory.js"

const secret = "norce+secret/with=form&chars"
const credentials = { clientId: "bef42e54-d69f", clientSecret: Redacted.make(secret), applicationId: "1042" }

const oauthError = (status: number, error: string, description: string, headers?: Record<string, string>) => ({
  status,
  ...(headers === undefined ? {} : { headers }),
  body: { error, error_description: description }
})

/** Norce's identity server and one API route, as the docs describe them. */
const norceServer = (options: {
  readonly allowedScopes?: ReadonlyArray<string>
  readonly throttle?: (n: number) => Record<string, string> | undefined
} = {}) => {
  const issued = new Set<string>()
  let tokenRequests = 0
  return Loopback.serve((request) => {
    if (request.path === Norce.tokenPaths.commerce || request.path === Norce.tokenPaths.storm) {
      const throttled = options.throttle?.(tokenRequests++)
      if (throttled !== undefined) return { status: 429, headers: throttled }
      if (request.method !== "POST") return { status: 405 }
      if (request.headers["content-type"] !== "application/x-www-form-urlencoded") {
        return oauthError(400, "invalid_request", "The request must be application/x-www-form-urlencoded")
      }
      const form = new URLSearchParams(request.rawBody)
      if (form.get("grant_type") !== "client_credentials") return oauthError(400, "unsupported_grant_type", "no")
      if (request.headers.authorization !== undefined) return oauthError(400, "invalid_request", "use the body")
      if (form.get("client_id") !== credentials.clientId || form.get("client_secret") !== secret) {
        return oauthError(400, "invalid_client", "Client authentication failed")
      }
      const scopes = (form.get("scope") ?? "").split(" ")
      const denied = scopes.filter((s) => !(options.allowedScopes ?? ["playground", "stage", "prod"]).includes(s))
      if (denied.length > 0) return oauthError(400, "invalid_scope", `The client is not allowed ${denied.join(" ")}`)
      const token = Loopback.jwt({ client_id: credentials.clientId, n: issued.size })
      issued.add(token)
      return {
        status: 200,
        body: { access_token: token, expires_in: 600, token_type: "Bearer", scope: form.get("scope") }
      }
    }
    if (request.path === "/commerce/metadata/1.1/GetApplication") {
      if (!issued.has((request.headers.authorization ?? "").replace(/^Bearer /, ""))) {
        return oauthError(401, "invalid_token", "no", { "www-authenticate": "Bearer error=\"invalid_token\"" })
      }
      if (request.headers.applicationid !== credentials.applicationId) {
        return oauthError(400, "missing_application_id", "The ApplicationId header is required")
      }
      return { status: 200, body: { ApplicationId: 1042 } }
    }
    return { status: 404 }
  })
}

describe("Norce", () => {
  describe("URLs", () => {
    it("builds the Commerce token URL, without an environment segment for prod", () => {
      expect(Norce.commerceTokenUrl({ clientName: "norce-open-demo", region: "se", environment: "playground" })).toBe(
        "https://norce-open-demo.api-se.playground.norce.tech/identity/1.0/connect/token"
      )
      expect(Norce.commerceTokenUrl({ clientName: "acme", environment: "stage" })).toBe(
        "https://acme.api-se.stage.norce.tech/identity/1.0/connect/token"
      )
      expect(Norce.commerceTokenUrl({ clientName: "acme", region: "no", environment: "prod" })).toBe(
        "https://acme.api-no.norce.tech/identity/1.0/connect/token"
      )
      expect(Norce.stormTokenUrl).toBe("https://identity.storm.io/1.0/connect/token")
    })

    it.scoped("Commerce sends tokens and API requests to the client's host; Storm to identity.storm.io", () =>
      Effect.gen(function*() {
        const memory = Memory.make((request) =>
          request.url.pathname.endsWith("/connect/token")
            ? { body: { access_token: "t", expires_in: 600, token_type: "Bearer" } }
            : { body: {} }
        )
        const provide = Effect.provideService(HttpClient.HttpClient, memory.client)
        const commerce = yield* provide(
          Norce.make({ ...credentials, clientName: "acme", environment: "stage", scope: ["stage", "prod"] })
        )
        yield* commerce.client.get("/commerce/metadata/1.1/GetApplication")
        const storm = yield* provide(
          Norce.make({ ...credentials, platform: "storm", baseUrl: "https://acme.storm.test" })
        )
        yield* storm.client.get("/api/1.1/products")
        expect(memory.seen.map((r) => r.url.href)).toEqual([
          "https://acme.api-se.stage.norce.tech/identity/1.0/connect/token",
          "https://acme.api-se.stage.norce.tech/commerce/metadata/1.1/GetApplication",
          "https://identity.storm.io/1.0/connect/token",
          "https://acme.storm.test/api/1.1/products"
        ])
        expect(new URLSearchParams(memory.seen[0]!.body).get("scope")).toBe("stage prod")
        // Without a scope, the scope is the environment (prod by default).
        expect(new URLSearchParams(memory.seen[2]!.body).get("scope")).toBe("prod")
      }))
  })

  describe("validation", () => {
    const failure = (options: Norce.Options) =>
      Effect.gen(function*() {
        const memory = Memory.make(() => ({ status: 500 }))
        const result = yield* Effect.either(
          Norce.make(options).pipe(Effect.provideService(HttpClient.HttpClient, memory.client))
        )
        expect(memory.seen).toHaveLength(0)
        return Either.flip(result).pipe(Either.getOrThrow)
      })

    it.scoped("any RFC 6749 scope is accepted (the docs use lab and production too); empty or malformed is a ConfigError", () =>
      Effect.gen(function*() {
        for (const scope of ["", "   ", "lab \"quoted\"", "back\\slash", "ünïcode", "tab\u0007bell"]) {
          const error = yield* failure({ ...credentials, clientName: "acme", scope })
          expect(ConfigError.isConfigError(error)).toBe(true)
          expect(String(error)).toContain("scope")
          expect(String(error)).not.toContain(secret)
        }
        expect(Norce.validateScope("NORCE_SCOPE", " stage  prod ")).toEqual(Either.right("stage prod"))
        expect(Norce.validateScope("NORCE_SCOPE", "lab")).toEqual(Either.right("lab"))
        expect(Norce.validateScope("NORCE_SCOPE", ["production", "lab", "lab"])).toEqual(Either.right("production lab"))
        expect(Norce.validateScope("NORCE_SCOPE", "api:read my-scope")).toEqual(Either.right("api:read my-scope"))
        expect(Norce.resolve({ clientName: "acme", environment: "stage" })).toMatchObject({ right: { scope: "stage" } })
      }))

    it.scoped("an unknown environment, a missing client name, a bad host label, Storm without an API URL", () =>
      Effect.gen(function*() {
        expect(String(yield* failure({ ...credentials, clientName: "acme", environment: "dev" as "prod" }))).toContain(
          "environment"
        )
        expect(String(yield* failure(credentials))).toContain("clientName")
        expect(String(yield* failure({ ...credentials, clientName: "evil.com/x?" }))).toContain("clientName")
        expect(String(yield* failure({ ...credentials, platform: "storm" }))).toContain("baseUrl")
        expect(String(yield* failure({ ...credentials, baseUrl: "http://norce.example" }))).toContain("plain http")
      }))
  })

  describe("against a loopback server", () => {
    for (const platform of ["commerce", "storm"] as const) {
      it.scopedLive(`${platform}: form-encoded client_secret_post with the scope; API requests carry ApplicationId`, () =>
        Effect.gen(function*() {
          const server = yield* norceServer()
          const { client, tokens } = yield* Norce.make({
            ...credentials,
            platform,
            scope: "playground",
            baseUrl: server.url,
            ...(platform === "storm" ? { tokenUrl: `${server.url}/1.0/connect/token` } : {}),
            allowInsecureLoopback: true
          })
          const response = yield* client.get("/commerce/metadata/1.1/GetApplication", { urlParams: { format: "json" } })
          expect(response.status).toBe(200)
          const [token, api] = server.requests
          expect(token).toMatchObject({ method: "POST", path: Norce.tokenPaths[platform] })
          expect(token!.headers["content-type"]).toBe("application/x-www-form-urlencoded")
          expect(token!.headers.authorization).toBeUndefined()
          expect(token!.headers.applicationid).toBeUndefined()
          const form = new URLSearchParams(token!.rawBody)
          expect([...form.keys()].sort()).toEqual(["client_id", "client_secret", "grant_type", "scope"])
          expect(Object.fromEntries(form)).toEqual({
            grant_type: "client_credentials",
            client_id: credentials.clientId,
            client_secret: secret,
            scope: "playground"
          })
          expect(api).toMatchObject({ method: "GET", path: "/commerce/metadata/1.1/GetApplication" })
          expect(api!.query.get("format")).toBe("json")
          expect(api!.headers.applicationid).toBe("1042")
          const held = Option.getOrThrow(yield* tokens.current)
          expect(api!.headers.authorization).toBe(`Bearer ${Redacted.value(held.value)}`)
          expect(Option.getOrUndefined(held.scope)).toBe("playground")
        }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
    }

    it.scopedLive("invalid_client is InvalidCredentials; invalid_scope is a ProviderError; neither is retried", () =>
      Effect.gen(function*() {
        const server = yield* norceServer({ allowedScopes: ["playground"] })
        const wrong = yield* Norce.make({
          ...credentials,
          clientSecret: Redacted.make("not-the-secret"),
          scope: "playground",
          baseUrl: server.url,
          allowInsecureLoopback: true
        })
        const rejected = yield* Effect.flip(wrong.tokens.get)
        expect(rejected).toMatchObject({ _tag: "InvalidCredentials", provider: "norce", code: "invalid_client" })
        expect(rejected.message).toContain("Client authentication failed")
        expect(rejected.message).not.toContain("not-the-secret")

        const scoped = yield* Norce.make({
          ...credentials,
          scope: "stage prod",
          baseUrl: server.url,
          allowInsecureLoopback: true
        })
        const refused = yield* Effect.flip(scoped.client.get("/commerce/metadata/1.1/GetApplication"))
        expect(refused).toMatchObject({ _tag: "ProviderError", code: "invalid_scope", status: 400 })
        expect(refused.message).toContain("not allowed stage prod")
        expect(server.requests.map((r) => r.path)).toEqual([Norce.tokenPaths.commerce, Norce.tokenPaths.commerce])
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("a 429 from the token endpoint: a short Retry-After is waited out, a long one fails typed", () =>
      Effect.gen(function*() {
        const server = yield* norceServer({
          throttle: (n) => (n === 0 ? { "retry-after": "1" } : n === 2 ? { "retry-after": "120" } : undefined)
        })
        const { tokens } = yield* Norce.make({
          ...credentials,
          scope: "playground",
          baseUrl: server.url,
          allowInsecureLoopback: true
        })
        const first = yield* tokens.get
        const [throttled, granted] = server.requests
        expect(granted!.at - throttled!.at).toBeGreaterThanOrEqual(900)
        yield* tokens.invalidate(first)
        const before = Date.now()
        const error = yield* Effect.flip(tokens.get)
        expect(error).toMatchObject({ _tag: "TokenEndpointUnavailable", status: 429 })
        const retryAt = (error as { retryAt?: { epochMillis: number } }).retryAt!.epochMillis
        expect(retryAt).toBeGreaterThanOrEqual(before + 119_000)
        expect(server.requests).toHaveLength(3)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })

  describe("token endpoint limit, in virtual time", () => {
    const fetches = (options: Partial<Norce.Options>) =>
      Effect.gen(function*() {
        const memory = Memory.make(() => ({
          body: { access_token: `t${Math.random()}`, expires_in: 600, token_type: "Bearer" }
        }))
        const { tokens } = yield* Norce.make({ ...credentials, clientName: "acme", ...options }).pipe(
          Effect.provideService(HttpClient.HttpClient, memory.client)
        )
        // A crash loop: every token is thrown away at once and a new one asked for.
        const loop = yield* Effect.fork(
          Effect.forEach(Array.from({ length: 30 }), () => Effect.flatMap(tokens.get, tokens.invalidate), {
            discard: true
          })
        )
        yield* TestClock.adjust("10 minutes")
        yield* Fiber.join(loop)
        return memory.seen.map((r) => r.at)
      })

    it.scoped("by default never more than 20 + 3 per minute token requests (tokenBucket 3/min, burst 20)", () =>
      Effect.gen(function*() {
        const arrivals = yield* fetches({})
        expect(arrivals).toHaveLength(30)
        for (const start of arrivals) {
          for (const t of [1_000, 60_000, 120_000, 300_000]) {
            const inWindow = arrivals.filter((at) => at >= start && at < start + t).length
            expect(inWindow).toBeLessThanOrEqual(20 + Math.ceil((3 * t) / 60_000))
          }
        }
        expect(arrivals.filter((at) => at === 0)).toHaveLength(20)
      }))

    it.scoped("the token limit is overridable", () =>
      Effect.gen(function*() {
        const arrivals = yield* fetches({ tokenLimits: RateLimiter.unlimited })
        expect(arrivals.filter((at) => at === 0)).toHaveLength(30)
      }))
  })

  describe("against the emulator, in virtual time", () => {
    const against = (emulator: NorceSandbox.NorceSandbox, options: Partial<Norce.Options> = {}) =>
      Norce.make({
        clientId: emulator.credentials.clientId,
        clientSecret: Redacted.make(emulator.credentials.clientSecret),
        applicationId: emulator.credentials.applicationId,
        baseUrl: "https://norce.sandbox.test",
        ...options
      }).pipe(Effect.provideService(HttpClient.HttpClient, Sandbox.makeClient(() => emulator.app)))

    it.scoped("a client configured with scope lab or production gets a token from an emulator that grants them", () =>
      Effect.gen(function*() {
        const emulator = yield* NorceSandbox.make({
          credentials: { ...NorceSandbox.defaultCredentials, scopes: ["lab", "production"] }
        })
        for (const scope of ["lab", "production", "lab production"]) {
          const { client, tokens } = yield* against(emulator, { scope })
          expect((yield* client.get("/commerce/metadata/1.1/GetApplication?format=json")).status).toBe(200)
          expect(Option.getOrThrow(yield* tokens.current).scope).toEqual(Option.some(scope))
        }
        // The emulator's default client has the docs' table values: `lab` is refused there, typed.
        const strict = yield* NorceSandbox.make()
        const { tokens } = yield* against(strict, { scope: "lab" })
        expect(yield* Effect.flip(tokens.get)).toMatchObject({ _tag: "ProviderError", code: "invalid_scope" })
      }))

    it.scoped("21 token requests at once: the guard keeps to the strict burst of 20; without it the 21st draws a 429", () =>
      Effect.gen(function*() {
        const burst = (options: Partial<Norce.Options>) =>
          Effect.gen(function*() {
            const emulator = yield* NorceSandbox.make()
            const { tokens } = yield* against(emulator, options)
            const start = yield* Clock.currentTimeMillis
            // A crash loop: each token thrown away at once and a new one asked for.
            const fiber = yield* Effect.fork(
              Effect.forEach(Array.from({ length: 21 }), () => Effect.flatMap(tokens.get, tokens.invalidate), {
                discard: true
              }).pipe(Effect.either)
            )
            yield* TestClock.adjust("1 minute")
            return { result: yield* Fiber.join(fiber), recording: yield* emulator.recording, start }
          })
        const guarded = yield* burst({})
        expect(guarded.result._tag).toBe("Right")
        expect(guarded.recording.rateLimited.token).toBe(0)
        expect(guarded.recording.tokenRequests.filter((r) => r.at === guarded.start)).toHaveLength(20)
        expect(guarded.recording.tokenCounts.granted).toBe(21)

        const unguarded = yield* burst({ tokenLimits: RateLimiter.unlimited, tokenCache: { retry: { attempts: 1 } } })
        expect(unguarded.recording.rateLimited.token).toBe(1)
        expect(unguarded.recording.tokenRequests[20]).toMatchObject({ at: unguarded.start, status: 429 })
        expect(unguarded.result).toMatchObject({ _tag: "Left", left: { _tag: "TokenEndpointUnavailable" } })
      }))
  })
})
