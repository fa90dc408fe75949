/**
 * An emulator of Norce Commerce (and Storm) OAuth2, to the letter of its docs and of RFC 6749: the
 * form-encoded token endpoint with its per-IP token bucket, and a few Commerce API routes that need the
 * `ApplicationId` header.
 *
 * The design: `docs/testing.md` in the repository.
 *
 * @since 0.1.0
 */
import type { HttpServerRequest } from "@effect/platform"
import { Clock, Effect, Option } from "effect"
import type * as Emulator from "./Emulator.js"
import * as Http from "./internal/http.js"
import type { Handled, Handler } from "./internal/kernel.js"
import { Kernel } from "./internal/kernel.js"
import { SlidingLog, TokenBucket } from "./internal/limiters.js"

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
 * The test credentials the emulator accepts by default (not secret). Their scopes are the values the
 * docs' parameter table lists (NORCE-7); give a client `["lab", "production"]` to accept the examples'.
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
  /**
   * The token endpoint bucket before the time scale: refilled at `perMinute`, holding `burst` (default 3
   * per minute, burst 20). Set it to make the real limit differ from the documented one.
   */
  readonly tokenRateLimit?: { readonly perMinute: number; readonly burst: number } | undefined
  /**
   * Read "3 requests per minute […] with a possibility to burst 20 more" as 20 on top of the 3 (a bucket
   * of 23) instead of a bucket of 20. Default false: the strictest reading (NORCE-1).
   */
  readonly burstOnTopOfRate?: boolean | undefined
  /**
   * The key of the per-IP bucket. Default: the request's remote address (`127.0.0.1` on loopback; the
   * in-memory client sets one too), without an IPv4-mapped IPv6 prefix.
   */
  readonly clientIp?: ((request: HttpServerRequest.HttpServerRequest) => string) | undefined
  /**
   * Refuse requests without `scope` (`invalid_scope`). Default true: the docs give `scope` no default.
   * With false, a request without one is granted all the client's scopes (NORCE-6).
   */
  readonly requireScope?: boolean | undefined
  /**
   * Accept the client in HTTP Basic (RFC 6749 §2.3.1: id and secret form-urlencoded, then base64) as well
   * as in the body. Default false: the docs say "send client credentials in the body" (NORCE-5).
   */
  readonly acceptBasicAuth?: boolean | undefined
  /** Send `Retry-After` with token endpoint 429s. Default false: the docs give none. */
  readonly retryAfter?: boolean | undefined
  /** An API limit per client, before the time scale (default none: the docs document none for the API). */
  readonly rateLimit?: { readonly limit: number; readonly windowMillis: number } | undefined
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
  /** The API limit after the time scale, if any. */
  readonly rateLimit: { readonly limit: number; readonly windowMillis: number } | undefined
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

// RFC 6749 §3.3: scope = scope-token *( SP scope-token ), scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
// Interpretation NORCE-7: scope values are RFC 6749 §3.3 scope-tokens separated by single spaces.
const scopeSyntax = /^[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*$/

const defaultClientIp = (request: HttpServerRequest.HttpServerRequest): string =>
  Option.getOrElse(request.remoteAddress, () => "unknown").replace(/^::ffff:/, "")

/**
 * Builds a Norce emulator. Its time comes from `Clock` and its randomness from `Random`.
 *
 * @example
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { OAuth2 } from "@tollgate/core"
 * import { NorceSandbox, Sandbox } from "@tollgate/testing"
 * import { Effect, Redacted } from "effect"
 *
 * Effect.gen(function*() {
 *   // Norce's emulator, reached in memory: a token endpoint limited to 3 a minute with a burst of 20.
 *   const emulator = yield* NorceSandbox.make()
 *   const source = yield* OAuth2.make({
 *     provider: "norce",
 *     tokenUrl: "https://norce.sandbox.test/identity/1.0/connect/token",
 *     clientId: emulator.credentials.clientId,
 *     clientSecret: Redacted.make(emulator.credentials.clientSecret),
 *     authMethod: "client_secret_post",
 *     scope: "playground"
 *   }).pipe(Effect.provideService(HttpClient.HttpClient, Sandbox.makeClient(() => emulator.app)))
 *   const token = yield* source.fetch
 *   console.log(token.type, (yield* emulator.recording).tokenCounts.granted) // "Bearer" 1
 * }).pipe(Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<NorceSandbox> =>
  Effect.gen(function*() {
    const kernel = yield* Kernel.make("norce", options)
    const credentials = options?.credentials ?? defaultCredentials
    const clients = [credentials, ...(options?.clients ?? [])]
    // Interpretation NORCE-9: 600 s, the example's `expires_in`, not the 3600 s of "Rate limitations".
    const tokenLifetimeSeconds = Http.shownSeconds(
      (options?.tokenLifetimeSeconds ?? documented.tokenLifetimeSeconds) / kernel.timeScale
    )
    const perMinute = options?.tokenRateLimit?.perMinute ?? documented.tokenRequestsPerMinute
    const burst = options?.tokenRateLimit?.burst ?? documented.tokenBurst
    // Interpretation NORCE-1: "a possibility to burst 20 more" is a bucket of 20 (strict), or of 3 + 20.
    // Interpretation NORCE-2: refilled continuously, one token every 20 s, rather than 3 at each minute.
    const tokenRateLimit = {
      capacity: burst + (options?.burstOnTopOfRate === true ? perMinute : 0),
      refillIntervalMillis: kernel.scaled(60_000 / perMinute)
    }
    const bucket = new TokenBucket(tokenRateLimit.capacity, tokenRateLimit.refillIntervalMillis)
    const clientIp = options?.clientIp ?? defaultClientIp
    const requireScope = options?.requireScope ?? true
    const acceptBasicAuth = options?.acceptBasicAuth ?? false
    const retryAfter = options?.retryAfter ?? false
    // Interpretation NORCE-11: the API documents no limit; one can be set, as a strict sliding window.
    const rateLimit = options?.rateLimit === undefined
      ? undefined
      : { limit: options.rateLimit.limit, windowMillis: kernel.scaled(options.rateLimit.windowMillis) }
    const log = rateLimit === undefined ? undefined : new SlidingLog(rateLimit.limit, rateLimit.windowMillis)

    const issueToken = (path: string): Handler => (request) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        // Interpretation NORCE-3: keyed on the client's address; every request counts, refused or not.
        const decision = bucket.take(clientIp(request), now)
        if (!decision.admitted) {
          // Interpretation NORCE-4: the docs give the status only; the body and Retry-After are ours.
          const headers: Record<string, string> = retryAfter
            ? { "retry-after": String(Math.max(1, Math.ceil(decision.retryAfterMillis / 1000))) }
            : {}
          return {
            ...oauthError(
              429,
              "too_many_requests",
              `Max ${perMinute} token requests per minute per IP address, with a possibility to burst ${burst}`,
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
        const bodyId = params.get("client_id")
        const bodySecret = params.get("client_secret")
        if (basic._tag !== "None" && bodySecret !== null) {
          return oauthError(400, "invalid_request", "Use only one client authentication method")
        }
        // Interpretation NORCE-5: the docs say "send client credentials in the body"; an Authorization
        // header is an unsupported authentication method (RFC 6749 §5.2: 401 for a header attempt).
        if (basic._tag !== "None" && !acceptBasicAuth) {
          return oauthError(
            401,
            "invalid_client",
            "Send client_id and client_secret in the body; HTTP Basic client authentication is not accepted",
            { "www-authenticate": "Basic realm=\"norce-identity\", charset=\"UTF-8\"" }
          )
        }
        if (basic._tag === "Malformed") {
          return oauthError(400, "invalid_request", "The Authorization header is not valid HTTP Basic")
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
          // Interpretation NORCE-8: RFC 6749 §5.2's default 400 for credentials in the body, 401 for a header.
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
        // Interpretation NORCE-6: the docs give `scope` no default, so it is required.
        if (scopeParam === null && requireScope) {
          return oauthError(400, "invalid_scope", `A scope is required: ${client.scopes.join(", ")}`)
        }
        if (scopeParam !== null && !scopeSyntax.test(scopeParam)) {
          return oauthError(
            400,
            "invalid_scope",
            "The scope must be space-delimited scope values (RFC 6749 §3.3), such as playground"
          )
        }
        const requested = scopeParam === null ? [] : scopeParam.split(" ")
        const denied = requested.filter((s) => !client.scopes.includes(s))
        if (denied.length > 0) {
          return oauthError(400, "invalid_scope", `The client is not allowed the scope ${denied.join(" ")}`)
        }
        // Interpretation NORCE-7: each client may request the scopes it was given (by default the docs' table).
        const granted = requested.length > 0 ? [...new Set(requested)] : [...client.scopes]
        const { token } = yield* kernel.issue({
          subject: client.clientId,
          lifetimeMillis: tokenLifetimeSeconds * 1000,
          exp: true,
          claims: {
            // Interpretation NORCE-12: Storm's endpoint on the same emulator; the claims are the sandbox's.
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

    /** Authentication, then the ApplicationId header, then the optional limit, then the route. */
    const guarded = (
      handler: (query: URLSearchParams, applicationId: string) => Effect.Effect<Handled>
    ): Handler =>
    (request) =>
      Effect.clockWith((clock): Effect.Effect<Handled> => {
        const now = clock.unsafeCurrentTimeMillis()
        const check = kernel.checkBearer(request, now)
        if (check._tag !== "Valid") {
          return Effect.succeed({
            response: check._tag === "Missing"
              ? apiError(401, "unauthorized", "A Bearer token is required", { "www-authenticate": "Bearer" })
              : apiError(401, "invalid_token", "The access token is invalid, expired or revoked", {
                "www-authenticate": "Bearer error=\"invalid_token\""
              }),
            client: check._tag === "Invalid" ? check.subject : undefined,
            reason: check._tag === "Missing" ? "missing token" : check.reason
          })
        }
        const client = check.record.subject
        // Interpretation NORCE-10: the docs require the header; what answers its absence is ours.
        const applicationId = request.headers["applicationid"]?.trim()
        if (applicationId === undefined || applicationId === "") {
          return Effect.succeed({
            response: apiError(400, "missing_application_id", "The ApplicationId header is required"),
            client
          })
        }
        if (applicationId !== check.record.data.applicationId) {
          return Effect.succeed({
            response: apiError(403, "forbidden_application", `The client may not access application ${applicationId}`),
            client
          })
        }
        const query = Http.queryOf(request.url)
        const format = query.get("format")
        if (format !== null && format.toLowerCase() !== "json") {
          return Effect.succeed({
            response: apiError(400, "unsupported_format", "The sandbox only answers format=json"),
            client
          })
        }
        if (log !== undefined && !log.take(client, now).admitted) {
          return Effect.succeed({
            response: apiError(429, "too_many_requests", "Too many requests"),
            client,
            admitted: false
          })
        }
        return Effect.map(handler(query, applicationId), (handled) => ({ ...handled, client, admitted: true }))
      })

    // An application's answer never changes: encoded once per application id (the kernel adds the Date
    // header to a copy).
    const applications = new Map<string, Handled>()
    const application = (applicationId: string): Handled => {
      let handled = applications.get(applicationId)
      if (handled === undefined) {
        handled = {
          response: Http.json(200, {
            ApplicationId: Number(applicationId),
            Name: "Norce Sandbox Store",
            UniqueName: "norce-sandbox",
            DefaultCultureCode: "sv-SE",
            DefaultCurrencyCode: "SEK",
            IsActive: true
          })
        }
        applications.set(applicationId, handled)
      }
      return handled
    }

    const routes = [
      kernel.token("issue", `POST ${tokenPaths.commerce}`, issueToken(tokenPaths.commerce)),
      kernel.token("issue", `POST ${tokenPaths.storm}`, issueToken(tokenPaths.storm)),
      kernel.api(
        "GET /commerce/metadata/1.1/GetApplication",
        guarded((_, applicationId) => Effect.succeed(application(applicationId)))
      ),
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
      ),
      kernel.api(
        "GET /commerce/products/1.1/ListProducts",
        guarded(() => Effect.succeed({ response: Http.json(200, { Items: products, ItemCount: products.length }) }))
      )
    ]

    // Interpretation ALL-2: unknown routes answer 404 in the provider's own error shape.
    const app = kernel.app(
      routes,
      (request) => Http.json(404, { error: "not_found", error_description: `No route ${Http.pathOf(request.url)}` })
    )

    return {
      provider: "norce",
      app,
      credentials,
      timeScale: kernel.timeScale,
      tokenLifetimeSeconds,
      tokenRateLimit,
      rateLimit,
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
