/**
 * An emulator of Norce Commerce (and Norce Storm) OAuth2, to the letter of its docs and of RFC 6749.
 *
 * Token endpoint: `POST /identity/1.0/connect/token` (Commerce; the real host is
 * `[clientname].api-[region].[environment].norce.tech`, the sandbox serves the path on its base URL) and
 * `POST /1.0/connect/token` (Storm's `identity.storm.io`). It takes `application/x-www-form-urlencoded`
 * `grant_type=client_credentials`, `client_id`, `client_secret` in the body (as the docs say) or the
 * client in HTTP Basic (RFC 6749 §2.3.1: id and secret form-urlencoded, then base64), and `scope`, a
 * space-delimited subset of `playground`, `stage`, `prod` that the client is allowed. It answers
 * `{ access_token, expires_in: 600, token_type: "Bearer", scope }`, or an RFC 6749 §5.2 error
 * `{ error, error_description }`: `invalid_request`, `invalid_client` (400 when the credentials came in the
 * body, 401 with `WWW-Authenticate: Basic` when Basic was used), `unsupported_grant_type`, `invalid_scope`.
 * The token endpoint is limited to "3 requests per minute per IP address, with a possibility to burst 20
 * more": a token bucket of 23 refilled continuously at 3 per minute, per client IP; beyond it, 429.
 *
 * API: `GET /commerce/metadata/1.1/GetApplication?format=json`, `GET /commerce/products/1.1/GetProduct?id=…`
 * and `GET /commerce/products/1.1/ListProducts`, each requiring the Bearer token and the `ApplicationId`
 * header (missing: 400, not one of the client's applications: 403). The API has no documented limit.
 *
 * @since 0.1.0
 */
import { HttpRouter, HttpServerRequest } from "@effect/platform"
import { Clock, Effect, Option } from "effect"
import type * as Emulator from "./Emulator.js"
import * as Http from "./internal/http.js"
import type { Handled } from "./internal/kernel.js"
import { Kernel } from "./internal/kernel.js"
import { TokenBucket } from "./internal/limiters.js"

/**
 * A Norce OAuth2 integration user.
 *
 * @since 0.1.0
 * @category models
 */
export interface Credentials {
  readonly clientId: string
  readonly clientSecret: string
  /** The environments (scopes) the client is valid in. */
  readonly scopes: ReadonlyArray<string>
  /** The application the client may call, sent as the `ApplicationId` header. */
  readonly applicationId: string
}

/**
 * The test credentials the emulator accepts by default (not secret).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultCredentials: Credentials = {
  clientId: "norce-sandbox-client",
  clientSecret: "norce-sandbox-secret",
  scopes: ["playground", "stage", "prod"],
  applicationId: "1000"
}

/**
 * The documented values, before the time scale.
 *
 * @since 0.1.0
 * @category constants
 */
export const documented = {
  tokenLifetimeSeconds: 600,
  tokenRequestsPerMinute: 3,
  tokenBurst: 20
} as const

/**
 * The token endpoint paths.
 *
 * @since 0.1.0
 * @category constants
 */
export const tokenPaths = {
  commerce: "/identity/1.0/connect/token",
  storm: "/1.0/connect/token"
} as const

/**
 * @since 0.1.0
 * @category models
 */
export interface Options extends Emulator.Options {
  readonly credentials?: Credentials | undefined
  readonly clients?: ReadonlyArray<Credentials> | undefined
  /** `expires_in` before the time scale (default 600 s, the docs' example; "Norce might change this value"). */
  readonly tokenLifetimeSeconds?: number | undefined
  /** The token endpoint bucket before the time scale (default 3 per minute plus a burst of 20). */
  readonly tokenRateLimit?: { readonly perMinute: number; readonly burst: number } | undefined
  /**
   * The key of the per-IP bucket. Default: the request's remote address (`127.0.0.1` on loopback; the
   * in-memory client sets one too), without an IPv4-mapped IPv6 prefix.
   */
  readonly clientIp?: ((request: HttpServerRequest.HttpServerRequest) => string) | undefined
  /** Refuse requests without `scope` (`invalid_scope`). Default false: all the client's scopes are granted. */
  readonly requireScope?: boolean | undefined
  /** Send `Retry-After` with token endpoint 429s. Default false: the docs give none. */
  readonly retryAfter?: boolean | undefined
}

/**
 * A running Norce emulator.
 *
 * @since 0.1.0
 * @category models
 */
export interface NorceSandbox extends Emulator.Emulator<Credentials> {
  readonly provider: "norce"
  /** `expires_in` as answered, after the time scale. */
  readonly tokenLifetimeSeconds: number
  /** The token endpoint bucket: capacity, and milliseconds per refilled token after the time scale. */
  readonly tokenRateLimit: { readonly capacity: number; readonly refillIntervalMillis: number }
}

const products = [
  { ProductId: 1001, PartNo: "SB-TSHIRT-01", Name: "Sandbox T-shirt", Price: 199, Currency: "SEK", OnHand: 42 },
  { ProductId: 1002, PartNo: "SB-MUG-01", Name: "Sandbox mug", Price: 129, Currency: "SEK", OnHand: 7 },
  { ProductId: 1003, PartNo: "SB-CAP-01", Name: "Sandbox cap", Price: 249, Currency: "SEK", OnHand: 0 }
]

const oauthError = (
  status: number,
  error: string,
  description: string,
  headers: Record<string, string> = {}
): Handled => ({
  response: Http.json(status, { error, error_description: description }, {
    "cache-control": "no-store",
    pragma: "no-cache",
    ...headers
  }),
  reason: error
})

const formDecode = (value: string): string | undefined => {
  try {
    return decodeURIComponent(value.replace(/\+/g, " "))
  } catch {
    return undefined
  }
}

type ClientAuth =
  | { readonly _tag: "Basic"; readonly id: string; readonly secret: string }
  | { readonly _tag: "Malformed" }
  | { readonly _tag: "None" }

const basicAuth = (request: HttpServerRequest.HttpServerRequest): ClientAuth => {
  const header = request.headers["authorization"]
  if (header === undefined) return { _tag: "None" }
  const match = /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(header)
  if (match === null) return { _tag: "Malformed" }
  const decoded = Buffer.from(match[1]!, "base64").toString("utf8")
  const colon = decoded.indexOf(":")
  if (colon === -1) return { _tag: "Malformed" }
  const id = formDecode(decoded.slice(0, colon))
  const secret = formDecode(decoded.slice(colon + 1))
  return id === undefined || secret === undefined ? { _tag: "Malformed" } : { _tag: "Basic", id, secret }
}

const defaultClientIp = (request: HttpServerRequest.HttpServerRequest): string =>
  Option.getOrElse(request.remoteAddress, () => "unknown").replace(/^::ffff:/, "")

/**
 * Builds a Norce emulator. Its time comes from `Clock` and its randomness from `Random`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<NorceSandbox> =>
  Effect.gen(function*() {
    const kernel = yield* Kernel.make("norce", options)
    const credentials = options?.credentials ?? defaultCredentials
    const clients = [credentials, ...(options?.clients ?? [])]
    const tokenLifetimeSeconds = Http.shownSeconds(
      (options?.tokenLifetimeSeconds ?? documented.tokenLifetimeSeconds) / kernel.timeScale
    )
    const perMinute = options?.tokenRateLimit?.perMinute ?? documented.tokenRequestsPerMinute
    const tokenRateLimit = {
      capacity: perMinute + (options?.tokenRateLimit?.burst ?? documented.tokenBurst),
      refillIntervalMillis: kernel.scaled(60_000 / perMinute)
    }
    const bucket = new TokenBucket(tokenRateLimit.capacity, tokenRateLimit.refillIntervalMillis)
    const clientIp = options?.clientIp ?? defaultClientIp
    const requireScope = options?.requireScope ?? false
    const retryAfter = options?.retryAfter ?? false

    const issueToken = (path: string): Effect.Effect<Handled, never, HttpServerRequest.HttpServerRequest> =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const now = yield* Clock.currentTimeMillis
        const decision = bucket.take(clientIp(request), now)
        if (!decision.admitted) {
          const headers: Record<string, string> = retryAfter
            ? { "retry-after": String(Math.max(1, Math.ceil(decision.retryAfterMillis / 1000))) }
            : {}
          return {
            ...oauthError(
              429,
              "too_many_requests",
              `Max ${perMinute} token requests per minute per IP address, with a possibility to burst ${
                tokenRateLimit.capacity - perMinute
              } more`,
              headers
            ),
            reason: "rate limited"
          }
        }
        if (Http.mediaType(request) !== "application/x-www-form-urlencoded") {
          return oauthError(400, "invalid_request", "The request must be application/x-www-form-urlencoded")
        }
        const params = new URLSearchParams((yield* Http.bodyText(request)) ?? "")
        for (const name of ["grant_type", "client_id", "client_secret", "scope"]) {
          if (params.getAll(name).length > 1) {
            return oauthError(400, "invalid_request", `The ${name} parameter must not be repeated`)
          }
        }
        const grantType = params.get("grant_type")
        if (grantType === null || grantType === "") {
          return oauthError(400, "invalid_request", "The grant_type parameter is missing")
        }
        const basic = basicAuth(request)
        if (basic._tag === "Malformed") {
          return oauthError(400, "invalid_request", "The Authorization header is not valid HTTP Basic")
        }
        const bodyId = params.get("client_id")
        const bodySecret = params.get("client_secret")
        if (basic._tag === "Basic" && bodySecret !== null) {
          return oauthError(400, "invalid_request", "Use only one client authentication method")
        }
        if (basic._tag === "Basic" && bodyId !== null && bodyId !== basic.id) {
          return oauthError(400, "invalid_request", "client_id does not match the authenticated client")
        }
        const id = basic._tag === "Basic" ? basic.id : bodyId
        const secret = basic._tag === "Basic" ? basic.secret : bodySecret
        const client = id === null || secret === null
          ? undefined
          : clients.find((c) => Http.safeEqual(c.clientId, id) && Http.safeEqual(c.clientSecret, secret))
        if (client === undefined) {
          return basic._tag === "Basic"
            ? oauthError(401, "invalid_client", "Client authentication failed", {
              "www-authenticate": "Basic realm=\"norce-identity\", charset=\"UTF-8\""
            })
            : oauthError(400, "invalid_client", "Client authentication failed")
        }
        if (grantType !== "client_credentials") {
          return oauthError(400, "unsupported_grant_type", "Only the client_credentials grant is supported")
        }
        const scopeParam = params.get("scope")
        const requested = scopeParam === null ? [] : scopeParam.split(" ").filter((s) => s !== "")
        if (requested.length === 0 && (requireScope || scopeParam !== null)) {
          return oauthError(400, "invalid_scope", "A scope is required: playground, stage or prod")
        }
        const denied = requested.filter((s) => !client.scopes.includes(s))
        if (denied.length > 0) {
          return oauthError(400, "invalid_scope", `The client is not allowed the scope ${denied.join(" ")}`)
        }
        const granted = requested.length > 0 ? [...new Set(requested)] : [...client.scopes]
        const { token } = yield* kernel.issue({
          subject: client.clientId,
          lifetimeMillis: tokenLifetimeSeconds * 1000,
          exp: true,
          claims: {
            iss: path === tokenPaths.storm
              ? "https://identity.storm.io/1.0/"
              : "https://sandbox.norce.tech/identity/1.0/",
            aud: "norce-commerce",
            client_id: client.clientId,
            scope: granted,
            nbf: Math.floor((now + kernel.skewMillis) / 1000)
          },
          data: { applicationId: client.applicationId }
        })
        return {
          response: Http.json(200, {
            access_token: token,
            expires_in: tokenLifetimeSeconds,
            token_type: "Bearer",
            scope: granted.join(" ")
          }, { "cache-control": "no-store", pragma: "no-cache" })
        }
      })

    const apiError = (status: number, error: string, description: string, headers?: Record<string, string>) =>
      Http.json(status, { error, error_description: description }, headers)

    /** Authentication, then the ApplicationId header, then the route. */
    const guarded = <R>(
      handler: (query: URLSearchParams, applicationId: string) => Effect.Effect<Handled, never, R>
    ): Effect.Effect<Handled, never, R | HttpServerRequest.HttpServerRequest> =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const now = yield* Clock.currentTimeMillis
        const check = kernel.checkBearer(request, now)
        if (check._tag !== "Valid") {
          return {
            response: check._tag === "Missing"
              ? apiError(401, "unauthorized", "A Bearer token is required", { "www-authenticate": "Bearer" })
              : apiError(401, "invalid_token", "The access token is invalid, expired or revoked", {
                "www-authenticate": "Bearer error=\"invalid_token\""
              }),
            client: check._tag === "Invalid" ? check.subject : undefined,
            reason: check._tag === "Missing" ? "missing token" : check.reason
          }
        }
        const client = check.record.subject
        const applicationId = request.headers["applicationid"]?.trim()
        if (applicationId === undefined || applicationId === "") {
          return {
            response: apiError(400, "missing_application_id", "The ApplicationId header is required"),
            client
          }
        }
        if (applicationId !== check.record.data.applicationId) {
          return {
            response: apiError(403, "forbidden_application", `The client may not access application ${applicationId}`),
            client
          }
        }
        const query = Http.queryOf(request.url)
        const format = query.get("format")
        if (format !== null && format.toLowerCase() !== "json") {
          return { response: apiError(400, "unsupported_format", "The sandbox only answers format=json"), client }
        }
        const handled = yield* handler(query, applicationId)
        return { ...handled, client, admitted: true }
      })

    const router = HttpRouter.empty.pipe(
      HttpRouter.post(
        tokenPaths.commerce,
        kernel.token("issue", `POST ${tokenPaths.commerce}`, issueToken(tokenPaths.commerce))
      ),
      HttpRouter.post(
        tokenPaths.storm,
        kernel.token("issue", `POST ${tokenPaths.storm}`, issueToken(tokenPaths.storm))
      ),
      HttpRouter.get(
        "/commerce/metadata/1.1/GetApplication",
        kernel.api(
          "GET /commerce/metadata/1.1/GetApplication",
          guarded((_, applicationId) =>
            Effect.succeed({
              response: Http.json(200, {
                ApplicationId: Number(applicationId),
                Name: "Norce Sandbox Store",
                UniqueName: "norce-sandbox",
                DefaultCultureCode: "sv-SE",
                DefaultCurrencyCode: "SEK",
                IsActive: true
              })
            })
          )
        )
      ),
      HttpRouter.get(
        "/commerce/products/1.1/GetProduct",
        kernel.api(
          "GET /commerce/products/1.1/GetProduct",
          guarded((query) => {
            const id = query.get("id")
            if (id === null || !/^\d+$/.test(id)) {
              return Effect.succeed({ response: apiError(400, "invalid_request", "The id parameter must be a number") })
            }
            const product = products.find((p) => p.ProductId === Number(id))
            return Effect.succeed({
              response: product === undefined
                ? apiError(404, "not_found", `Product ${id} not found`)
                : Http.json(200, product)
            })
          })
        )
      ),
      HttpRouter.get(
        "/commerce/products/1.1/ListProducts",
        kernel.api(
          "GET /commerce/products/1.1/ListProducts",
          guarded(() => Effect.succeed({ response: Http.json(200, { Items: products, ItemCount: products.length }) }))
        )
      )
    )

    const app = kernel.app(
      router,
      (request) => Http.json(404, { error: "not_found", error_description: `No route ${Http.pathOf(request.url)}` })
    )

    return {
      provider: "norce",
      app,
      credentials,
      timeScale: kernel.timeScale,
      tokenLifetimeSeconds,
      tokenRateLimit,
      recording: Effect.sync(() => kernel.snapshot()),
      resetRecording: Effect.sync(() => kernel.resetRecording()),
      observeArrivals: (observer, options) => kernel.observe(observer, options),
      faults: kernel.controls(),
      revokeAll: Effect.flatMap(
        Clock.currentTimeMillis,
        (now) => Effect.sync(() => kernel.revokeWhere(now, () => true))
      )
    } satisfies NorceSandbox
  })
