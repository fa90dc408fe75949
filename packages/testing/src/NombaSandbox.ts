/**
 * An emulator of Nomba's API authentication, to the letter of its docs: issue, refresh and revoke in
 * Nomba's `{ code, description, data }` envelope (failures with HTTP 200 by default), and a few API
 * routes that need the `accountId` header.
 *
 * The design: `docs/testing.md` in the repository.
 *
 * @since 0.1.0
 */
import type { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Clock, Effect } from "effect"
import type * as Emulator from "./Emulator.js"
import * as Http from "./internal/http.js"
import type { Handled, Handler } from "./internal/kernel.js"
import { Kernel } from "./internal/kernel.js"
import { SlidingLog } from "./internal/limiters.js"
import { randomString } from "./internal/tokens.js"

/**
 * Nomba API client credentials and the account they belong to.
 *
 * @since 0.1.0
 * @category models
 */
export interface Credentials {
  readonly clientId: string
  readonly clientSecret: string
  /** Sent as the `accountId` header. */
  readonly accountId: string
  /** Answered as `data.businessId`. */
  readonly businessId: string
}

/**
 * The test credentials the emulator accepts by default (not secret).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultCredentials: Credentials = {
  clientId: "nomba-sandbox-client",
  clientSecret: "nomba-sandbox-secret",
  accountId: "nomba-sandbox-account",
  businessId: "01a10aeb-d989-460a-bbde-9842f2b4320f"
}

/**
 * The documented values, before the time scale.
 *
 * @since 0.1.0
 * @category constants
 */
export const documented = {
  tokenLifetimeSeconds: 1800
} as const

/**
 * The envelope codes the emulator answers. Only `"00"` is documented; the others are the sandbox's own.
 *
 * @since 0.1.0
 * @category constants
 */
export const codes = {
  success: "00",
  invalidCredentials: "01",
  badRequest: "02",
  invalidRefreshToken: "03",
  invalidAccount: "04",
  unauthorized: "05",
  notFound: "06",
  rateLimited: "29"
} as const

/**
 * HTTP statuses of envelope failures, by kind.
 *
 * @since 0.1.0
 * @category models
 */
export interface ErrorStatus {
  /** Wrong client id, secret or accountId at issue or revoke (default 200). */
  readonly credentials: number
  /** Malformed request: missing header or field, wrong grant_type, bad JSON (default 400). */
  readonly request: number
  /** Unknown, used or revoked refresh token (default 200). */
  readonly refresh: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options extends Emulator.Options {
  readonly credentials?: Credentials | undefined
  readonly clients?: ReadonlyArray<Credentials> | undefined
  /** Access token lifetime before the time scale (default 1800 s, as documented). */
  readonly tokenLifetimeSeconds?: number | undefined
  readonly errorStatus?: Partial<ErrorStatus> | undefined
  /** An API limit per account, before the time scale (default none: the docs document none). */
  readonly rateLimit?: { readonly limit: number; readonly windowMillis: number } | undefined
  /**
   * What a refresh does to the refresh token it was sent. `reuse` (default): the answer carries the same
   * refresh token, which stays valid, as the docs' refresh example shows. `rotate`: a new refresh token,
   * the one sent being used up (single use, OAuth 2.0 Security BCP §4.14) (NOMBA-1).
   */
  readonly refreshTokens?: "reuse" | "rotate" | undefined
}

/**
 * A running Nomba emulator.
 *
 * @since 0.1.0
 * @category models
 */
export interface NombaSandbox extends Emulator.Emulator<Credentials> {
  readonly provider: "nomba"
  /** Access token lifetime in milliseconds, after the time scale. */
  readonly tokenLifetimeMillis: number
  readonly errorStatus: ErrorStatus
  /** The API limit after the time scale, if any. */
  readonly rateLimit: { readonly limit: number; readonly windowMillis: number } | undefined
  readonly refreshTokens: "reuse" | "rotate"
}

interface RefreshRecord {
  readonly clientId: string
  readonly accountId: string
  /** The access token last issued with it: revoking that one revokes the refresh token too. */
  accessJti: string
  used: boolean
}

const envelope = (
  status: number,
  code: string,
  description: string,
  headers?: Record<string, string>
): HttpServerResponse.HttpServerResponse => Http.json(status, { code, description }, headers)

// Interpretation NOMBA-7: expiresAt to the second, without milliseconds, as in the docs' example.
const isoSeconds = (millis: number): string =>
  new Date(Math.floor(millis / 1000) * 1000).toISOString().replace(".000Z", "Z")

/**
 * Builds a Nomba emulator. Its time comes from `Clock` and its randomness from `Random`.
 *
 * @example
 * ```ts
 * import { HttpClientRequest } from "@effect/platform"
 * import { NombaSandbox, Sandbox } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * Effect.gen(function*() {
 *   // Nomba's emulator, reached in memory; its answers are Nomba's `{ code, description, data }` envelope.
 *   const emulator = yield* NombaSandbox.make()
 *   const { accountId, clientId, clientSecret } = emulator.credentials
 *   const response = yield* Sandbox.makeClient(() => emulator.app).execute(
 *     HttpClientRequest.post("https://nomba.sandbox.test/v1/auth/token/issue").pipe(
 *       HttpClientRequest.setHeader("accountId", accountId),
 *       HttpClientRequest.bodyUnsafeJson({
 *         grant_type: "client_credentials",
 *         client_id: clientId,
 *         client_secret: clientSecret
 *       })
 *     )
 *   )
 *   const body = (yield* response.json) as { readonly code: string }
 *   console.log(response.status, body.code) // 200 "00"
 * }).pipe(Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<NombaSandbox> =>
  Effect.gen(function*() {
    const kernel = yield* Kernel.make("nomba", options)
    const credentials = options?.credentials ?? defaultCredentials
    const clients = [credentials, ...(options?.clients ?? [])]
    const tokenLifetimeMillis = kernel.scaled((options?.tokenLifetimeSeconds ?? documented.tokenLifetimeSeconds) * 1000)
    // Interpretation NOMBA-4: only "00" is documented; the other codes and the HTTP statuses are ours.
    const errorStatus: ErrorStatus = {
      credentials: options?.errorStatus?.credentials ?? 200,
      request: options?.errorStatus?.request ?? 400,
      refresh: options?.errorStatus?.refresh ?? 200
    }
    // Interpretation NOMBA-8: no limit is documented, so none by default.
    const rateLimit = options?.rateLimit === undefined
      ? undefined
      : { limit: options.rateLimit.limit, windowMillis: kernel.scaled(options.rateLimit.windowMillis) }
    const log = rateLimit === undefined ? undefined : new SlidingLog(rateLimit.limit, rateLimit.windowMillis)
    const refreshTokens = new Map<string, RefreshRecord>()
    const refreshMode = options?.refreshTokens ?? "reuse"

    const refused = (status: number, code: string, description: string, reason: string): Handled => ({
      response: envelope(status, code, description),
      outcome: "refused",
      reason
    })
    const badRequest = (description: string) => refused(errorStatus.request, codes.badRequest, description, description)

    const jsonBody = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        if (Http.mediaType(request) !== "application/json") return undefined
        const parsed = Http.parseJson(yield* Http.bodyText(request))
        return parsed !== undefined && Http.isRecord(parsed.value) ? parsed.value : undefined
      })

    /** Issues an access token, with a new refresh token or, on a refresh in `reuse` mode, the one sent. */
    const grant = (client: Credentials, reused?: { readonly token: string; readonly record: RefreshRecord }) =>
      Effect.gen(function*() {
        const { record, token } = yield* kernel.issue({
          subject: client.clientId,
          lifetimeMillis: tokenLifetimeMillis,
          exp: true,
          claims: { sub: client.clientId, accountId: client.accountId, businessId: client.businessId },
          data: { accountId: client.accountId }
        })
        let refreshToken: string
        if (reused !== undefined) {
          refreshToken = reused.token
          reused.record.accessJti = record.jti
        } else {
          refreshToken = `01${yield* randomString(24)}${record.issuedAt + kernel.skewMillis}`
          refreshTokens.set(refreshToken, {
            clientId: client.clientId,
            accountId: client.accountId,
            accessJti: record.jti,
            used: false
          })
        }
        return {
          response: Http.json(200, {
            code: codes.success,
            description: "Success",
            data: {
              businessId: client.businessId,
              access_token: token,
              refresh_token: refreshToken,
              expiresAt: isoSeconds(record.expiresAt! + kernel.skewMillis)
            }
          }, { "cache-control": "no-store" }),
          outcome: "granted" as const
        }
      })

    const issueToken: Handler = (request) =>
      Effect.gen(function*() {
        const accountId = request.headers["accountid"]
        // Interpretation NOMBA-5: every documented request sends accountId, so every token request needs it.
        if (accountId === undefined || accountId === "") return badRequest("The accountId header is required")
        const body = yield* jsonBody(request)
        if (body === undefined) return badRequest("The request body must be a JSON object")
        if (body.grant_type !== "client_credentials") return badRequest("grant_type must be client_credentials")
        if (typeof body.client_id !== "string" || typeof body.client_secret !== "string") {
          return badRequest("client_id and client_secret are required")
        }
        const client = clients.find((c) =>
          Http.safeEqual(c.clientId, body.client_id as string) &&
          Http.safeEqual(c.clientSecret, body.client_secret as string)
        )
        if (client === undefined) {
          return refused(
            errorStatus.credentials,
            codes.invalidCredentials,
            "Invalid client credentials",
            "invalid credentials"
          )
        }
        if (client.accountId !== accountId) {
          return refused(errorStatus.credentials, codes.invalidAccount, "Invalid accountId", "invalid accountId")
        }
        return yield* grant(client)
      })

    const refreshToken: Handler = (request) =>
      Effect.gen(function*() {
        const accountId = request.headers["accountid"]
        if (accountId === undefined || accountId === "") return badRequest("The accountId header is required")
        // Interpretation NOMBA-3: the Bearer access token may have expired ("refresh the token when it expires"),
        // not been revoked.
        const bearer = /^Bearer +(\S+) *$/i.exec(request.headers["authorization"] ?? "")?.[1]
        const access = bearer === undefined ? undefined : kernel.recordOf(bearer)
        if (access === undefined || access.revoked) {
          return {
            response: envelope(401, codes.unauthorized, "A valid Bearer access token is required", {
              "www-authenticate": bearer === undefined ? "Bearer" : "Bearer error=\"invalid_token\""
            }),
            outcome: "refused",
            reason: bearer === undefined ? "missing token" : "invalid token"
          }
        }
        const body = yield* jsonBody(request)
        if (body === undefined) return badRequest("The request body must be a JSON object")
        if (body.grant_type !== "refresh_token") return badRequest("grant_type must be refresh_token")
        if (typeof body.refresh_token !== "string" || body.refresh_token === "") {
          return badRequest("refresh_token is required")
        }
        // Interpretation NOMBA-2: a refresh token does not expire; it ends with its access token's revocation or,
        // rotated, with its use. Interpretation NOMBA-9: the previous access token stays valid until it expires.
        const stored = refreshTokens.get(body.refresh_token)
        if (stored === undefined || stored.used || stored.clientId !== access.subject) {
          return refused(
            errorStatus.refresh,
            codes.invalidRefreshToken,
            "Invalid or expired refresh token",
            stored?.used === true ? "refresh token already used" : "unknown refresh token"
          )
        }
        if (stored.accountId !== accountId) {
          return refused(errorStatus.credentials, codes.invalidAccount, "Invalid accountId", "invalid accountId")
        }
        const client = clients.find((c) => c.clientId === stored.clientId)!
        // Interpretation NOMBA-1: the docs' example answers a refresh with the refresh token it was sent.
        if (refreshMode === "reuse") return yield* grant(client, { token: body.refresh_token, record: stored })
        stored.used = true
        return yield* grant(client)
      })

    const revokeToken: Handler = (request) =>
      Effect.gen(function*() {
        const accountId = request.headers["accountid"]
        if (accountId === undefined || accountId === "") return badRequest("The accountId header is required")
        const body = yield* jsonBody(request)
        if (body === undefined) return badRequest("The request body must be a JSON object")
        if (typeof body.clientId !== "string" || typeof body.access_token !== "string") {
          return badRequest("clientId and access_token are required")
        }
        const client = clients.find((c) => c.clientId === body.clientId)
        if (client === undefined) {
          return refused(errorStatus.credentials, codes.invalidCredentials, "Unknown clientId", "unknown client")
        }
        if (client.accountId !== accountId) {
          return refused(errorStatus.credentials, codes.invalidAccount, "Invalid accountId", "invalid accountId")
        }
        // Interpretation NOMBA-6: revoking an unknown or dead token succeeds (RFC 7009 §2.2), and revokes the
        // refresh token issued with it; a token of another client is refused.
        const record = kernel.recordOf(body.access_token)
        if (record !== undefined && record.subject !== client.clientId) {
          return refused(
            errorStatus.credentials,
            codes.invalidCredentials,
            "The token was not issued to this client",
            "token of another client"
          )
        }
        const now = yield* Clock.currentTimeMillis
        if (record !== undefined) {
          kernel.revokeWhere(now, (r) => r === record)
          for (const stored of refreshTokens.values()) {
            if (stored.accessJti === record.jti) stored.used = true
          }
        }
        return {
          response: Http.json(200, { code: codes.success, description: "Token revoked successfully" }),
          outcome: "granted"
        }
      })

    /** Authentication, then the accountId header, then the optional limit, then the route. */
    const guarded = (
      handler: (accountId: string, request: HttpServerRequest.HttpServerRequest) => Effect.Effect<Handled>
    ): Handler =>
    (request) =>
      Effect.clockWith((clock): Effect.Effect<Handled> => {
        const now = clock.unsafeCurrentTimeMillis()
        const check = kernel.checkBearer(request, now)
        if (check._tag !== "Valid") {
          return Effect.succeed({
            response: envelope(401, codes.unauthorized, "Unauthorized", {
              "www-authenticate": check._tag === "Missing" ? "Bearer" : "Bearer error=\"invalid_token\""
            }),
            client: check._tag === "Invalid" ? check.subject : undefined,
            reason: check._tag === "Missing" ? "missing token" : check.reason
          })
        }
        const client = check.record.subject
        const accountId = request.headers["accountid"]
        if (accountId === undefined || accountId === "") {
          return Effect.succeed({
            response: envelope(400, codes.badRequest, "The accountId header is required"),
            client
          })
        }
        // Interpretation NOMBA-10: the API routes and this 403 are the sandbox's own.
        if (accountId !== check.record.data.accountId) {
          return Effect.succeed({
            response: envelope(403, codes.invalidAccount, "The token does not belong to this accountId"),
            client
          })
        }
        if (log !== undefined && !log.take(accountId, now).admitted) {
          return Effect.succeed({ response: envelope(429, codes.rateLimited, "Too many requests"), client })
        }
        return Effect.map(handler(accountId, request), (handled) => ({ ...handled, client, admitted: true }))
      })

    const success = (data: unknown, status = 200): Handled => ({
      response: Http.json(status, { code: codes.success, description: "Success", data })
    })

    const transfer = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        const body = yield* jsonBody(request)
        if (body === undefined) {
          return { response: envelope(400, codes.badRequest, "The request body must be a JSON object") }
        }
        const amount = body.amount
        if (typeof amount !== "number" || !(amount > 0)) {
          return { response: envelope(400, codes.badRequest, "amount must be a positive number") }
        }
        if (typeof body.accountNumber !== "string" || !/^\d{10}$/.test(body.accountNumber)) {
          return { response: envelope(400, codes.badRequest, "accountNumber must be 10 digits") }
        }
        for (const field of ["bankCode", "merchantTxRef"] as const) {
          if (typeof body[field] !== "string" || body[field] === "") {
            return { response: envelope(400, codes.badRequest, `${field} is required`) }
          }
        }
        const now = yield* Clock.currentTimeMillis
        return success({
          id: `API-TRANSFER-${(yield* randomString(10)).toUpperCase()}`,
          status: "SUCCESS",
          amount,
          fee: 10.75,
          merchantTxRef: body.merchantTxRef,
          timeCreated: new Date(now).toISOString()
        })
      })

    // An account's answer never changes: encoded once per account (the kernel adds the Date header to a copy).
    const accounts = new Map<string, Handled>()
    const account = (accountId: string): Handled => {
      let handled = accounts.get(accountId)
      if (handled === undefined) {
        handled = success({
          results: [{
            accountId,
            accountName: "Sandbox Business",
            accountType: "PRIMARY",
            currency: "NGN",
            status: "ACTIVE"
          }],
          cursor: ""
        })
        accounts.set(accountId, handled)
      }
      return handled
    }
    const balance = Effect.succeed(success({ amount: "1500000.00", currency: "NGN" }))

    const routes = [
      kernel.token("issue", "POST /v1/auth/token/issue", issueToken),
      kernel.token("refresh", "POST /v1/auth/token/refresh", refreshToken),
      kernel.token("revoke", "POST /v1/auth/token/revoke", revokeToken),
      kernel.api("GET /v1/accounts", guarded((accountId) => Effect.succeed(account(accountId)))),
      kernel.api("GET /v1/accounts/balance", guarded(() => balance)),
      kernel.api("POST /v1/transfers/bank", guarded((_, request) => transfer(request)))
    ]

    // Interpretation ALL-2: unknown routes answer 404 in the provider's own error shape.
    const app = kernel.app(routes, () => envelope(404, codes.notFound, "Resource not found"))

    return {
      provider: "nomba",
      app,
      credentials,
      timeScale: kernel.timeScale,
      tokenLifetimeMillis,
      errorStatus,
      rateLimit,
      refreshTokens: refreshMode,
      recording: Effect.sync(() => kernel.snapshot()),
      resetRecording: Effect.sync(() => kernel.resetRecording()),
      observeArrivals: (observer, options) => kernel.observe(observer, options),
      faults: kernel.controls(),
      revokeAll: Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          for (const stored of refreshTokens.values()) stored.used = true
          return kernel.revokeWhere(now, () => true)
        }))
    } satisfies NombaSandbox
  })
