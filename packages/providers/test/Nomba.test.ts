import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { NombaSandbox, Sandbox } from "@tollgate/testing"
import { Duration, Effect, Exit, Option, Redacted, Scope, TestClock } from "effect"
import * as Nomba from "../src/Nomba.js"
import * as Loopback from "./utils/Loopback.js"
import * as Memory from "./utils/Memory.js"

const secret = "nomba-client-secret-value"
const credentials = {
  clientId: "2242b79d-f2cf-4ccc-ada1-e890bd1a9f0d",
  clientSecret: Redacted.make(secret),
  accountId: "01a10aeb-d989-460a-bbde-9842f2b4320f"
}
const minutes = (n: number) => n * 60_000

interface Issued {
  readonly access: string
  readonly refresh: string
  readonly expiresAt: number
}

/**
 * Nomba's token endpoints and one API route, as the docs describe them: 30-minute tokens with an
 * absolute `expiresAt`, refresh with the Bearer token and the refresh token, revocation by client id
 * and access token, `{ code, description, data }` everywhere.
 */
const nombaLogic = () => {
  const issued: Array<Issued> = []
  const revoked = new Set<string>()
  const spent = new Set<string>()
  let n = 0
  const mint = (now: number) => {
    n++
    const token: Issued = {
      access: Loopback.jwt({ sub: credentials.clientId, n }),
      refresh: `01h4gdx2tctxfjgacbdwrcvs5d${n}`,
      expiresAt: now + minutes(30)
    }
    issued.push(token)
    return {
      code: "00",
      description: "Success",
      data: {
        businessId: credentials.accountId,
        access_token: token.access,
        refresh_token: token.refresh,
        expiresAt: new Date(token.expiresAt).toISOString()
      }
    }
  }
  const valid = (authorization: string | undefined, now: number) =>
    issued.find((t) => `Bearer ${t.access}` === authorization && t.expiresAt > now && !revoked.has(t.access))
  const handle = (request: {
    readonly method: string
    readonly path: string
    readonly headers: Readonly<Record<string, string | Array<string> | undefined>>
    readonly body: string
    readonly now: number
  }): { readonly status: number; readonly body: unknown } => {
    if (request.headers["accountid"] !== credentials.accountId) {
      return { status: 200, body: { code: "401", description: "Invalid accountId" } }
    }
    const body = request.body.length > 0 ? JSON.parse(request.body) as Record<string, unknown> : {}
    switch (`${request.method} ${request.path}`) {
      case "POST /v1/auth/token/issue": {
        if (body["grant_type"] !== "client_credentials") {
          return { status: 400, body: { code: "400", description: "grant" } }
        }
        if (body["client_id"] !== credentials.clientId || body["client_secret"] !== secret) {
          // Nomba answers a refusal inside the envelope, with HTTP 200.
          return { status: 200, body: { code: "01", description: "Invalid client credentials" } }
        }
        return { status: 200, body: mint(request.now) }
      }
      case "POST /v1/auth/token/refresh": {
        const current = valid(request.headers["authorization"] as string | undefined, request.now)
        if (current === undefined) return { status: 401, body: { code: "401", description: "Unauthorized" } }
        if (
          body["grant_type"] !== "refresh_token" || body["refresh_token"] !== current.refresh ||
          spent.has(current.refresh)
        ) {
          return { status: 200, body: { code: "02", description: "Invalid refresh token" } }
        }
        spent.add(current.refresh)
        return { status: 200, body: mint(request.now) }
      }
      case "POST /v1/auth/token/revoke": {
        if (body["clientId"] !== credentials.clientId || typeof body["access_token"] !== "string") {
          return { status: 200, body: { code: "03", description: "Invalid revocation" } }
        }
        revoked.add(body["access_token"])
        return { status: 200, body: { code: "00", description: "Token revoked successfully" } }
      }
      case "GET /v1/accounts": {
        return valid(request.headers["authorization"] as string | undefined, request.now) === undefined
          ? { status: 401, body: { code: "401", description: "Unauthorized" } }
          : { status: 200, body: { code: "00", description: "Success", data: { accountId: credentials.accountId } } }
      }
    }
    return { status: 404, body: { code: "404", description: "Not found" } }
  }
  return { issued, revoked, handle }
}

const nombaServer = (override?: (path: string) => Loopback.Answer | undefined) => {
  const logic = nombaLogic()
  return Effect.map(
    Loopback.serve((request) =>
      override?.(request.path) ??
        logic.handle({
          method: request.method,
          path: request.path,
          headers: request.headers,
          body: request.rawBody,
          now: Date.now()
        })
    ),
    (server) => ({ ...server, logic })
  )
}

const loopbackOptions = (url: string) => ({ ...credentials, baseUrl: url, allowInsecureLoopback: true })

describe("Nomba", () => {
  describe("against a loopback server", () => {
    it.scopedLive("issues with accountId and the documented JSON body; API requests carry accountId", () =>
      Effect.gen(function*() {
        const server = yield* nombaServer()
        const { client, tokens } = yield* Nomba.make(loopbackOptions(server.url))
        expect(yield* Effect.flatMap(client.get("/v1/accounts"), Nomba.envelope)).toEqual({
          accountId: credentials.accountId
        })
        const [issue, api] = server.requests
        expect(issue).toMatchObject({ method: "POST", path: "/v1/auth/token/issue" })
        expect(issue!.headers.accountid).toBe(credentials.accountId)
        expect(issue!.headers["content-type"]).toBe("application/json")
        expect(issue!.headers.authorization).toBeUndefined()
        expect(JSON.parse(issue!.rawBody)).toEqual({
          grant_type: "client_credentials",
          client_id: credentials.clientId,
          client_secret: secret
        })
        expect(api).toMatchObject({ method: "GET", path: "/v1/accounts" })
        expect(api!.headers.accountid).toBe(credentials.accountId)
        expect(api!.headers.authorization).toBe(`Bearer ${server.logic.issued[0]!.access}`)
        const held = Option.getOrThrow(yield* tokens.current)
        expect(Redacted.value(Option.getOrThrow(held.refreshToken))).toBe(server.logic.issued[0]!.refresh)
        expect(Duration.toMinutes(Option.getOrThrow(held.lifetime))).toBeLessThanOrEqual(30)
        expect(Duration.toMinutes(Option.getOrThrow(held.lifetime))).toBeGreaterThan(29)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("a code other than \"00\" is a ProviderError even with HTTP 200, and is not retried", () =>
      Effect.gen(function*() {
        const server = yield* nombaServer()
        const { client } = yield* Nomba.make({ ...loopbackOptions(server.url), clientSecret: Redacted.make("nope") })
        const error = yield* Effect.flip(client.get("/v1/accounts"))
        expect(error).toMatchObject({
          _tag: "ProviderError",
          provider: "nomba",
          code: "01",
          description: "Invalid client credentials",
          status: 200
        })
        expect(server.requests.map((r) => r.path)).toEqual(["/v1/auth/token/issue"])
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("refresh: Bearer access token, accountId, { grant_type: refresh_token, refresh_token }", () =>
      Effect.gen(function*() {
        const server = yield* nombaServer()
        const source = yield* Nomba.tokenSource(loopbackOptions(server.url))
        const first = yield* source.fetch
        const refresh = Option.getOrThrow(source.refresh)
        const second = yield* refresh(first)
        const request = server.requests[1]!
        expect(request).toMatchObject({ method: "POST", path: "/v1/auth/token/refresh" })
        expect(request.headers.authorization).toBe(`Bearer ${server.logic.issued[0]!.access}`)
        expect(request.headers.accountid).toBe(credentials.accountId)
        expect(request.headers["content-type"]).toBe("application/json")
        expect(JSON.parse(request.rawBody)).toEqual({
          grant_type: "refresh_token",
          refresh_token: server.logic.issued[0]!.refresh
        })
        expect(Redacted.value(second.value)).toBe(server.logic.issued[1]!.access)

        // A refused refresh token is a typed ProviderError (the cache then falls back to the credentials).
        const stale = yield* Effect.flip(refresh(first))
        expect(stale).toMatchObject({ _tag: "ProviderError", code: "02", description: "Invalid refresh token" })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("revokes the current token with accountId and { clientId, access_token } when the scope closes", () =>
      Effect.gen(function*() {
        const server = yield* nombaServer()
        yield* Effect.scoped(
          Effect.flatMap(Nomba.make(loopbackOptions(server.url)), ({ client }) => client.get("/v1/accounts"))
        )
        const revoke = server.requests.at(-1)!
        expect(server.requests.map((r) => r.path)).toEqual([
          "/v1/auth/token/issue",
          "/v1/accounts",
          "/v1/auth/token/revoke"
        ])
        expect(revoke.headers.accountid).toBe(credentials.accountId)
        expect(revoke.headers["content-type"]).toBe("application/json")
        expect(JSON.parse(revoke.rawBody)).toEqual({
          clientId: credentials.clientId,
          access_token: server.logic.issued[0]!.access
        })
        expect(server.logic.revoked.has(server.logic.issued[0]!.access)).toBe(true)
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

    it.scopedLive("a revocation refused with a non-\"00\" code is logged, and closing still succeeds", () =>
      Effect.gen(function*() {
        const server = yield* nombaServer((path) =>
          path === "/v1/auth/token/revoke" ? { status: 200, body: { code: "99", description: "busy" } } : undefined
        )
        const exit = yield* Effect.exit(
          Effect.scoped(Effect.flatMap(Nomba.make(loopbackOptions(server.url)), ({ tokens }) => tokens.get))
        )
        expect(Exit.isSuccess(exit)).toBe(true)
        expect(server.requests.at(-1)!.path).toBe("/v1/auth/token/revoke")
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  })

  it.effect("envelope: the data of code \"00\", a ProviderError for any other code whatever the status", () =>
    Effect.gen(function*() {
      const memory = Memory.make((request) =>
        request.url.pathname === "/ok"
          ? { body: { code: "00", description: "Success", data: { n: 1 } } }
          : request.url.pathname === "/refused"
          ? { status: 200, body: { code: "05", description: "Insufficient balance" } }
          : { status: 502, body: "<html>bad gateway</html>", headers: { "content-type": "text/html" } }
      )
      const get = (path: string) =>
        Effect.flatMap(HttpClient.get(`https://api.nomba.com${path}`), Nomba.envelope).pipe(
          Effect.provideService(HttpClient.HttpClient, memory.client)
        )
      expect(yield* get("/ok")).toEqual({ n: 1 })
      expect(yield* Effect.flip(get("/refused"))).toMatchObject({
        _tag: "ProviderError",
        code: "05",
        description: "Insufficient balance",
        status: 200
      })
      expect((yield* Effect.flip(get("/broken")))._tag).toBe("ResponseError")
    }))

  describe("in virtual time, against an in-memory Nomba", () => {
    it.effect("refreshes 5 minutes before expiry with the refresh token, and revokes the latest token on close", () =>
      Effect.gen(function*() {
        const logic = nombaLogic()
        const memory = Memory.make((request) =>
          logic.handle({
            method: request.method,
            path: request.url.pathname,
            headers: request.headers,
            body: request.body,
            now: request.at
          })
        )
        const scope = yield* Scope.make()
        const { client, tokens } = yield* Nomba.make(credentials).pipe(
          Effect.provideService(HttpClient.HttpClient, memory.client),
          Scope.extend(scope)
        )
        yield* client.get("/v1/accounts")
        expect(memory.seen.map((r) => r.url.href)).toEqual([
          "https://api.nomba.com/v1/auth/token/issue",
          "https://api.nomba.com/v1/accounts"
        ])

        // In use shortly before the refresh window opens, so the token is renewed ahead of expiry.
        yield* TestClock.adjust(minutes(21))
        yield* tokens.get
        yield* TestClock.adjust(minutes(4) - 1)
        expect(memory.seen).toHaveLength(2)
        yield* TestClock.adjust(1)
        const refresh = memory.seen[2]!
        expect(refresh.url.pathname).toBe("/v1/auth/token/refresh")
        expect(refresh.at).toBe(minutes(25))
        expect(refresh.headers["authorization"]).toBe(`Bearer ${logic.issued[0]!.access}`)
        expect(refresh.headers["accountid"]).toBe(credentials.accountId)
        expect(JSON.parse(refresh.body)).toEqual({
          grant_type: "refresh_token",
          refresh_token: logic.issued[0]!.refresh
        })

        yield* client.get("/v1/accounts")
        expect(memory.seen[3]!.headers["authorization"]).toBe(`Bearer ${logic.issued[1]!.access}`)
        // The next refresh follows the new token's own schedule.
        yield* TestClock.adjust(minutes(21))
        yield* tokens.get
        yield* TestClock.adjust(minutes(4))
        expect(memory.seen.filter((r) => r.url.pathname === "/v1/auth/token/refresh").map((r) => r.at)).toEqual([
          minutes(25),
          minutes(50)
        ])
        expect(yield* tokens.stats).toMatchObject({ fetches: 1, refreshes: 2 })

        yield* Scope.close(scope, Exit.void)
        const revoke = memory.seen.at(-1)!
        expect(revoke.url.pathname).toBe("/v1/auth/token/revoke")
        expect(JSON.parse(revoke.body)).toEqual({
          clientId: credentials.clientId,
          access_token: logic.issued[2]!.access
        })
        expect(revoke.headers["accountid"]).toBe(credentials.accountId)
        expect(logic.revoked.has(logic.issued[2]!.access)).toBe(true)
      }))

    it.effect("a refresh answer without a new refresh token keeps the old one in force", () =>
      Effect.gen(function*() {
        const memory = Memory.make((request) => ({
          body: {
            code: "00",
            description: "Success",
            data: request.url.pathname === "/v1/auth/token/refresh"
              ? { access_token: "second", expiresAt: "1970-01-01T00:30:00Z" }
              : { access_token: "first", refresh_token: "the-refresh-token", expiresAt: "1970-01-01T00:30:00Z" }
          }
        }))
        const source = yield* Nomba.tokenSource(credentials).pipe(
          Effect.provideService(HttpClient.HttpClient, memory.client)
        )
        const renewed = yield* Option.getOrThrow(source.refresh)(yield* source.fetch)
        expect(Redacted.value(renewed.value)).toBe("second")
        expect(Redacted.value(Option.getOrThrow(renewed.refreshToken))).toBe("the-refresh-token")
      }))

    it.effect("an expiresAt beyond 30 minutes is clamped to 30 minutes", () =>
      Effect.gen(function*() {
        const memory = Memory.make(() => ({
          body: {
            code: "00",
            description: "Success",
            data: { access_token: "a", refresh_token: "r", expiresAt: "2100-01-01T00:00:00Z" }
          }
        }))
        const source = yield* Nomba.tokenSource(credentials).pipe(
          Effect.provideService(HttpClient.HttpClient, memory.client)
        )
        const token = yield* source.fetch
        expect(Duration.toMinutes(Option.getOrThrow(token.lifetime))).toBe(30)
      }))
  })

  describe("against the emulator, in virtual time", () => {
    for (const refreshTokens of ["reuse", "rotate"] as const) {
      it.effect(
        `two hours of refreshes when the emulator ${
          refreshTokens === "reuse"
            ? "answers with the same refresh token (the docs' example)"
            : "rotates refresh tokens"
        }`,
        () =>
          Effect.gen(function*() {
            const emulator = yield* NombaSandbox.make({ refreshTokens })
            const scope = yield* Scope.make()
            const { client, tokens } = yield* Nomba.make({
              clientId: emulator.credentials.clientId,
              clientSecret: Redacted.make(emulator.credentials.clientSecret),
              accountId: emulator.credentials.accountId,
              baseUrl: "https://nomba.sandbox.test"
            }).pipe(
              Effect.provideService(HttpClient.HttpClient, Sandbox.makeClient(() => emulator.app)),
              Scope.extend(scope)
            )
            const refreshTokensSeen = new Set<string>()
            for (let minute = 0; minute < 120; minute++) {
              expect((yield* client.get("/v1/accounts")).status).toBe(200)
              const held = Option.getOrThrow(yield* tokens.current)
              refreshTokensSeen.add(Redacted.value(Option.getOrThrow(held.refreshToken)))
              yield* TestClock.adjust("1 minute")
            }
            const recording = yield* emulator.recording
            // One issue, then only refreshes, every one accepted: the client took whichever refresh token came back.
            expect(recording.tokenCounts).toMatchObject({ issue: 1, refused: 0 })
            expect(recording.tokenCounts.refresh).toBeGreaterThanOrEqual(4)
            expect(recording.unauthorized.api).toBe(0)
            expect(refreshTokensSeen.size).toBe(refreshTokens === "reuse" ? 1 : recording.tokenCounts.refresh + 1)
            yield* Scope.close(scope, Exit.void)
            expect((yield* emulator.recording).tokenCounts.revoke).toBe(1)
          })
      )
    }
  })
})
