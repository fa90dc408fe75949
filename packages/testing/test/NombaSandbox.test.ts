import { HttpClientRequest } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import * as NombaSandbox from "../src/NombaSandbox.js"
import { base, clientFor, getWith, jwtPayload, postJson, send } from "./utils/http.js"

const creds = NombaSandbox.defaultCredentials
const issueBody = { grant_type: "client_credentials", client_id: creds.clientId, client_secret: creds.clientSecret }
const account = { accountId: creds.accountId }

const setup = (options?: NombaSandbox.Options) =>
  Effect.gen(function*() {
    const nomba = yield* NombaSandbox.make(options)
    const client = clientFor(nomba)
    const issue = (body: unknown = issueBody, headers: Record<string, string> = account) =>
      send(client, postJson(`${base}/v1/auth/token/issue`, body, headers))
    const refresh = (
      accessToken: string | undefined,
      refreshToken: string,
      headers: Record<string, string> = account
    ) =>
      send(
        client,
        postJson(`${base}/v1/auth/token/refresh`, { grant_type: "refresh_token", refresh_token: refreshToken }, headers)
          .pipe(accessToken === undefined ? (r) => r : HttpClientRequest.bearerToken(accessToken))
      )
    const revoke = (accessToken: string, clientId = creds.clientId, headers: Record<string, string> = account) =>
      send(client, postJson(`${base}/v1/auth/token/revoke`, { clientId, access_token: accessToken }, headers))
    const accounts = (token: string | undefined, headers: Record<string, string> = account) =>
      send(client, getWith(`${base}/v1/accounts`, token, headers))
    return { nomba, client, issue, refresh, revoke, accounts }
  })

describe("NombaSandbox", () => {
  it.effect("issues access and refresh tokens with an absolute expiresAt 30 minutes later", () =>
    Effect.gen(function*() {
      const { issue } = yield* setup()
      yield* TestClock.adjust("90 seconds")
      const answer = yield* issue()
      expect(answer.status).toBe(200)
      expect(answer.body.code).toBe("00")
      expect(answer.body.description).toBe("Success")
      expect(Object.keys(answer.body.data).sort()).toEqual(["access_token", "businessId", "expiresAt", "refresh_token"])
      expect(answer.body.data.businessId).toBe(creds.businessId)
      expect(answer.body.data.expiresAt).toBe("1970-01-01T00:31:30Z")
      expect(typeof answer.body.data.refresh_token).toBe("string")
      expect(jwtPayload(answer.body.data.access_token)).toMatchObject({ iat: 90, exp: 1890 })
    }))

  it.effect("answers credential failures in the envelope with HTTP 200, so clients must read code", () =>
    Effect.gen(function*() {
      const { issue, nomba } = yield* setup()
      const wrong = yield* issue({ ...issueBody, client_secret: "nope" })
      expect(wrong.status).toBe(200)
      expect(wrong.body).toEqual({ code: NombaSandbox.codes.invalidCredentials, description: expect.any(String) })
      expect(wrong.body.code).not.toBe("00")
      const wrongAccount = yield* issue(issueBody, { accountId: "someone-else" })
      expect(wrongAccount.status).toBe(200)
      expect(wrongAccount.body.code).toBe(NombaSandbox.codes.invalidAccount)
      const noAccount = yield* issue(issueBody, {})
      expect(noAccount.status).toBe(400)
      expect(noAccount.body.code).toBe(NombaSandbox.codes.badRequest)
      const wrongGrant = yield* issue({ ...issueBody, grant_type: "password" })
      expect(wrongGrant.body.code).toBe(NombaSandbox.codes.badRequest)
      const missing = yield* issue({ grant_type: "client_credentials", client_id: creds.clientId })
      expect(missing.body.code).toBe(NombaSandbox.codes.badRequest)
      const recording = yield* nomba.recording
      expect(recording.tokenCounts).toMatchObject({ issue: 5, refused: 5, granted: 0 })
    }))

  it.effect("makes the HTTP status of envelope errors configurable", () =>
    Effect.gen(function*() {
      const { issue } = yield* setup({ errorStatus: { credentials: 401, request: 422 } })
      expect((yield* issue({ ...issueBody, client_secret: "nope" })).status).toBe(401)
      expect((yield* issue(issueBody, {})).status).toBe(422)
    }))

  describe("refresh", () => {
    it.effect("answers with a new access token and the same refresh token, which stays valid (the docs' example)", () =>
      Effect.gen(function*() {
        const { accounts, issue, nomba, refresh, revoke } = yield* setup()
        expect(nomba.refreshTokens).toBe("reuse")
        const first = (yield* issue()).body.data
        yield* TestClock.adjust("25 minutes")
        const renewed = yield* refresh(first.access_token, first.refresh_token)
        expect(renewed.status).toBe(200)
        expect(renewed.body.code).toBe("00")
        expect(Object.keys(renewed.body.data).sort()).toEqual([
          "access_token",
          "businessId",
          "expiresAt",
          "refresh_token"
        ])
        expect(renewed.body.data.businessId).toBe(creds.businessId)
        expect(renewed.body.data.access_token).not.toBe(first.access_token)
        expect(renewed.body.data.refresh_token).toBe(first.refresh_token)
        expect(renewed.body.data.expiresAt).toBe("1970-01-01T00:55:00Z")
        expect((yield* accounts(renewed.body.data.access_token)).status).toBe(200)
        // Used again, with the newer access token: still good.
        yield* TestClock.adjust("25 minutes")
        const again = yield* refresh(renewed.body.data.access_token, first.refresh_token)
        expect(again.body.code).toBe("00")
        expect(again.body.data.refresh_token).toBe(first.refresh_token)
        // Revoking the access token it was last issued with revokes it too.
        expect((yield* revoke(again.body.data.access_token)).body.code).toBe("00")
        const after = yield* refresh(renewed.body.data.access_token, first.refresh_token)
        expect(after.body.code).toBe(NombaSandbox.codes.invalidRefreshToken)
        const recording = yield* nomba.recording
        expect(recording.tokenCounts).toMatchObject({ issue: 1, refresh: 3, granted: 4, refused: 1 })
        expect(recording.tokensIssued).toBe(3)
      }))

    it.effect("refreshTokens: \"rotate\" answers with a new refresh token and the one sent is used up", () =>
      Effect.gen(function*() {
        const { accounts, issue, nomba, refresh } = yield* setup({ refreshTokens: "rotate" })
        expect(nomba.refreshTokens).toBe("rotate")
        const first = (yield* issue()).body.data
        yield* TestClock.adjust("25 minutes")
        const renewed = yield* refresh(first.access_token, first.refresh_token)
        expect(renewed.body.code).toBe("00")
        expect(renewed.body.data.refresh_token).not.toBe(first.refresh_token)
        expect((yield* accounts(renewed.body.data.access_token)).status).toBe(200)
        const again = yield* refresh(renewed.body.data.access_token, first.refresh_token)
        expect(again.status).toBe(200)
        expect(again.body.code).toBe(NombaSandbox.codes.invalidRefreshToken)
        expect((yield* refresh(renewed.body.data.access_token, renewed.body.data.refresh_token)).body.code).toBe("00")
        const recording = yield* nomba.recording
        expect(recording.tokenCounts).toMatchObject({ issue: 1, refresh: 3, granted: 3, refused: 1 })
        expect(recording.tokenRequests.map((r) => r.reason)).toContain("refresh token already used")
      }))

    it.effect("requires the Bearer access token (an expired one will do) and the accountId header", () =>
      Effect.gen(function*() {
        const { issue, refresh } = yield* setup()
        const first = (yield* issue()).body.data
        const noBearer = yield* refresh(undefined, first.refresh_token)
        expect(noBearer.status).toBe(401)
        expect(noBearer.body.code).toBe(NombaSandbox.codes.unauthorized)
        const noAccount = yield* refresh(first.access_token, first.refresh_token, {})
        expect(noAccount.body.code).toBe(NombaSandbox.codes.badRequest)
        yield* TestClock.adjust("2 hours")
        const late = yield* refresh(first.access_token, first.refresh_token)
        expect(late.body.code).toBe("00")
        expect(late.body.data.expiresAt).toBe("1970-01-01T02:30:00Z")
      }))
  })

  describe("revoke", () => {
    it.effect("revokes an access token (and its refresh token): it then gets 401", () =>
      Effect.gen(function*() {
        const { accounts, issue, nomba, refresh, revoke } = yield* setup()
        const data = (yield* issue()).body.data
        expect((yield* accounts(data.access_token)).status).toBe(200)
        const answer = yield* revoke(data.access_token)
        expect(answer.status).toBe(200)
        expect(answer.body).toEqual({ code: "00", description: "Token revoked successfully" })
        const after = yield* accounts(data.access_token)
        expect(after.status).toBe(401)
        expect(after.headers["www-authenticate"]).toBe("Bearer error=\"invalid_token\"")
        expect(after.body.code).toBe(NombaSandbox.codes.unauthorized)
        expect((yield* refresh(data.access_token, data.refresh_token)).status).toBe(401)
        // Revoking again, or an unknown token, succeeds (RFC 7009).
        expect((yield* revoke(data.access_token)).body.code).toBe("00")
        expect((yield* revoke("not-a-token")).body.code).toBe("00")
        expect((yield* revoke(data.access_token, "unknown-client")).body.code).toBe(
          NombaSandbox.codes.invalidCredentials
        )
        expect((yield* revoke(data.access_token, creds.clientId, {})).body.code).toBe(NombaSandbox.codes.badRequest)
        const recording = yield* nomba.recording
        expect(recording.tokensRevoked).toBe(1)
        expect(recording.tokenCounts.revoke).toBe(5)
      }))
  })

  describe("API", () => {
    it.effect("takes the Bearer token and the accountId header", () =>
      Effect.gen(function*() {
        const { accounts, client, issue } = yield* setup()
        const t = (yield* issue()).body.data.access_token
        const ok = yield* accounts(t)
        expect(ok.status).toBe(200)
        expect(ok.body.code).toBe("00")
        expect(ok.body.data.results[0].accountId).toBe(creds.accountId)
        expect((yield* accounts(t, {})).status).toBe(400)
        expect((yield* accounts(t, { accountId: "other" })).status).toBe(403)
        expect((yield* accounts(undefined)).status).toBe(401)
        const balance = yield* send(client, getWith(`${base}/v1/accounts/balance`, t, account))
        expect(balance.body.data.currency).toBe("NGN")
        const transfer = (body: unknown) =>
          send(client, postJson(`${base}/v1/transfers/bank`, body, account).pipe(HttpClientRequest.bearerToken(t)))
        const done = yield* transfer({
          amount: 5000,
          accountNumber: "0123456789",
          bankCode: "058",
          merchantTxRef: "ref-1"
        })
        expect(done.status).toBe(200)
        expect(done.body.data).toMatchObject({ status: "SUCCESS", amount: 5000, merchantTxRef: "ref-1" })
        const invalid = yield* transfer({
          amount: -1,
          accountNumber: "0123456789",
          bankCode: "058",
          merchantTxRef: "r"
        })
        expect(invalid.status).toBe(400)
        expect(invalid.body.code).toBe(NombaSandbox.codes.badRequest)
      }))

    it.effect("refuses an access token 30 minutes after issue", () =>
      Effect.gen(function*() {
        const { accounts, issue } = yield* setup()
        const t = (yield* issue()).body.data.access_token
        yield* TestClock.adjust(30 * 60_000 - 1)
        expect((yield* accounts(t)).status).toBe(200)
        yield* TestClock.adjust(1)
        expect((yield* accounts(t)).status).toBe(401)
      }))

    it.effect("has no limit by default, and an optional sliding window", () =>
      Effect.gen(function*() {
        const free = yield* setup()
        const t = (yield* free.issue()).body.data.access_token
        for (let i = 0; i < 300; i++) expect((yield* free.accounts(t)).status).toBe(200)
        const limited = yield* setup({ rateLimit: { limit: 5, windowMillis: 10_000 } })
        const u = (yield* limited.issue()).body.data.access_token
        for (let i = 0; i < 5; i++) expect((yield* limited.accounts(u)).status).toBe(200)
        const refused = yield* limited.accounts(u)
        expect(refused.status).toBe(429)
        expect(refused.body.code).toBe(NombaSandbox.codes.rateLimited)
        yield* TestClock.adjust("10 seconds")
        expect((yield* limited.accounts(u)).status).toBe(200)
      }))
  })

  it.effect("timeScale 60 makes the 30-minute token last 30 seconds", () =>
    Effect.gen(function*() {
      const { accounts, issue, nomba } = yield* setup({ timeScale: 60 })
      expect(nomba.tokenLifetimeMillis).toBe(30_000)
      const data = (yield* issue()).body.data
      expect(data.expiresAt).toBe("1970-01-01T00:00:30Z")
      yield* TestClock.adjust("30 seconds")
      expect((yield* accounts(data.access_token)).status).toBe(401)
    }))

  it.effect("clock skew shifts expiresAt and the JWT timestamps, not validity", () =>
    Effect.gen(function*() {
      const { accounts, issue, nomba } = yield* setup({ clockSkewMillis: -3_600_000 })
      yield* TestClock.adjust("2 hours")
      const answer = yield* issue()
      // The provider's clock runs an hour behind: expiresAt is 30 minutes after *its* now.
      expect(answer.body.data.expiresAt).toBe("1970-01-01T01:30:00Z")
      expect(jwtPayload(answer.body.data.access_token).iat).toBe(3600)
      expect(answer.headers["date"]).toBe(new Date(7_200_000).toUTCString())
      yield* TestClock.adjust("29 minutes")
      expect((yield* accounts(answer.body.data.access_token)).status).toBe(200)
      yield* nomba.faults.setClockSkew(3_600_000)
      const ahead = yield* issue()
      expect(ahead.body.data.expiresAt).toBe("1970-01-01T03:59:00Z")
    }))
})
