/**
 * An emulator of the Token project ("Token APIs"), to the letter of its docs: credentials in the query,
 * JWTs without `exp`, per-endpoint sliding-log limits with `X-RateLimit-*` headers and the code-88 429.
 *
 * The design: `docs/testing.md` in the repository.
 *
 * @since 0.1.0
 */
import type { HttpServerRequest } from "@effect/platform"
import { HttpServerResponse } from "@effect/platform"
import { Clock, Effect } from "effect"
import type * as Emulator from "./Emulator.js"
import * as Http from "./internal/http.js"
import type { Handled, Handler } from "./internal/kernel.js"
import { Kernel } from "./internal/kernel.js"
import { SlidingLog } from "./internal/limiters.js"
import { randomString } from "./internal/tokens.js"

/**
 * The credentials of one developer App.
 *
 * @since 0.1.0
 * @category models
 */
export interface Credentials {
  readonly key: string
  readonly secret: string
  readonly appName: string
}

/**
 * The test credentials the emulator accepts by default (not secret).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultCredentials: Credentials = {
  key: "token-project-sandbox-key",
  secret: "token-project-sandbox-secret",
  appName: "Sandbox App"
}

/**
 * The documented values, before the time scale.
 *
 * @since 0.1.0
 * @category constants
 */
export const documented = {
  limit: 10,
  windowMillis: 120_000
} as const

/**
 * The body of a 429, as documented.
 *
 * @since 0.1.0
 * @category constants
 */
export const rateLimitedBody = { errors: [{ code: 88, message: "Rate limit exceeded" }] } as const

/**
 * The API routes the sandbox serves, each an endpoint with its own limit.
 *
 * @since 0.1.0
 * @category constants
 */
export const routes = ["GET /notarizations/stamps", "POST /notarizations/stamps", "GET /storage/files"] as const

/**
 * @since 0.1.0
 * @category models
 */
export type Route = (typeof routes)[number]

/**
 * A rate limit: `limit` requests over any interval of `windowMillis` (before the time scale).
 *
 * @since 0.1.0
 * @category models
 */
export interface Limit {
  readonly limit: number
  readonly windowMillis: number
}

/**
 * How `X-RateLimit-Reset` is written: the docs call it both "the remaining window" and "UTC epoch
 * seconds" (TP-1).
 *
 * @since 0.1.0
 * @category models
 */
export type ResetFormat = "epoch-seconds" | "delta-seconds"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options extends Emulator.Options {
  readonly credentials?: Credentials | undefined
  /** More apps, each with its own limits. */
  readonly clients?: ReadonlyArray<Credentials> | undefined
  /** A server-side token lifetime before the time scale (default none: tokens never expire). */
  readonly tokenLifetimeSeconds?: number | undefined
  /**
   * The limit of every endpoint without one in `endpointLimits`, before the time scale (default 10 per
   * 120 000 ms, "the most common request limit"). Set it to make the real limit differ from the
   * documented one.
   */
  readonly rateLimit?: Limit | undefined
  /**
   * Endpoints with a limit of their own, by route, e.g. `{ "POST /notarizations/stamps": { limit: 5,
   * windowMillis: 60_000 } }` (TP-3). `X-RateLimit-Limit` announces each endpoint's own.
   */
  readonly endpointLimits?: Readonly<Partial<Record<Route, Limit>>> | undefined
  /** Default `epoch-seconds`, the unit the docs name (TP-1). */
  readonly resetFormat?: ResetFormat | undefined
}

/**
 * A running Token project emulator.
 *
 * @since 0.1.0
 * @category models
 */
export interface TokenProjectSandbox extends Emulator.Emulator<Credentials> {
  readonly provider: "token-project"
  /** The limit of endpoints without their own, after the time scale. */
  readonly rateLimit: Limit
  /** The limit each route enforces, after the time scale. */
  readonly endpointLimits: Readonly<Record<Route, Limit>>
  readonly resetFormat: ResetFormat
  /** The server-side token lifetime in milliseconds after the time scale, if any. */
  readonly tokenLifetimeMillis: number | undefined
  /**
   * Deletes an app (default: the primary one): all its tokens get 401 and its credentials are refused
   * until `restoreApp`. Returns how many live tokens were revoked.
   */
  readonly deleteApp: (key?: string) => Effect.Effect<number>
  /** Accepts a deleted app's credentials again (its old tokens stay revoked). */
  readonly restoreApp: (key?: string) => Effect.Effect<void>
}

// Interpretation TP-8: only code 88 is documented; the other codes keep its `errors` shape.
const errors = (code: number, message: string) => ({ errors: [{ code, message }] })

/**
 * Builds a Token project emulator. Its time comes from `Clock` and its randomness from `Random`.
 *
 * @example
 * ```ts
 * import { HttpClientRequest } from "@effect/platform"
 * import { Sandbox, TokenProjectSandbox } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * Effect.gen(function*() {
 *   // The token project's emulator, reached in memory: credentials in the query, JWTs in the answer.
 *   const emulator = yield* TokenProjectSandbox.make()
 *   const { key, secret } = emulator.credentials
 *   const response = yield* Sandbox.makeClient(() => emulator.app).execute(
 *     HttpClientRequest.post("https://token-project.sandbox.test/auth/token").pipe(
 *       HttpClientRequest.setUrlParams({ key, secret })
 *     )
 *   )
 *   console.log(response.status) // 200
 * }).pipe(Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<TokenProjectSandbox> =>
  Effect.gen(function*() {
    const kernel = yield* Kernel.make("token-project", options)
    const credentials = options?.credentials ?? defaultCredentials
    const apps = [credentials, ...(options?.clients ?? [])]
    const deleted = new Set<string>()
    const tokenLifetimeMillis = options?.tokenLifetimeSeconds === undefined
      ? undefined
      : kernel.scaled(options.tokenLifetimeSeconds * 1000)
    // Interpretation TP-2: Remaining counts the endpoint's own window (2 minutes), not the "15-minute window".
    const scaledLimit = (limit: Limit): Limit => ({
      limit: limit.limit,
      windowMillis: kernel.scaled(limit.windowMillis)
    })
    const rateLimit = scaledLimit(options?.rateLimit ?? documented)
    const unknownRoutes = Object.keys(options?.endpointLimits ?? {}).filter((r) =>
      !(routes as ReadonlyArray<string>).includes(r)
    )
    if (unknownRoutes.length > 0) {
      throw new RangeError(`endpointLimits names routes the sandbox does not serve: ${unknownRoutes.join(", ")}`)
    }
    // Interpretation TP-3: limits are per endpoint (method and path template) per app; by default all
    // share "the most common" value, and an endpoint can be given its own.
    const endpointLimits = Object.fromEntries(
      routes.map((route) => {
        const own = options?.endpointLimits?.[route]
        return [route, own === undefined ? rateLimit : scaledLimit(own)]
      })
    ) as Record<Route, Limit>
    const logs = new Map(
      routes.map((route) => [route, new SlidingLog(endpointLimits[route].limit, endpointLimits[route].windowMillis)])
    )
    const resetFormat = options?.resetFormat ?? "epoch-seconds"
    const stamps: Array<{ id: string; hash: string; status: string; createdAt: string }> = [
      {
        id: "stamp_0001",
        hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        status: "confirmed",
        createdAt: "2024-01-01T00:00:00.000Z"
      }
    ]

    // Interpretation TP-9: the token request carries no Bearer token, so it is not rate limited.
    const issueToken: Handler = (request) =>
      Effect.gen(function*() {
        // Interpretation TP-10: key and secret in the query string, as the curl example sends them; a body is ignored.
        const query = Http.queryOf(request.url)
        const key = query.get("key")
        const secret = query.get("secret")
        if (key === null || secret === null || key === "" || secret === "") {
          return {
            response: Http.json(400, errors(215, "Bad Authentication data: key and secret are required")),
            reason: "missing key or secret"
          }
        }
        const app = apps.find((a) => Http.safeEqual(a.key, key) && Http.safeEqual(a.secret, secret))
        if (app === undefined || deleted.has(app.key)) {
          return {
            response: Http.json(401, errors(32, "Could not authenticate you")),
            reason: app === undefined ? "invalid credentials" : "app deleted"
          }
        }
        const { token } = yield* kernel.issue({
          subject: app.key,
          lifetimeMillis: tokenLifetimeMillis,
          // Interpretation TP-7: no exp; a token lives until its app is deleted (or a server-side lifetime).
          exp: false,
          claims: {
            sub: app.key,
            owner: {
              uid: `uid_${app.key.slice(0, 12)}`,
              uname: "sandbox",
              uavatar: "//www.gravatar.com/avatar/00000000000000000000000000000000?d=identicon"
            },
            app_name: app.appName,
            scope: ["notarization:*", "storage:*", "ipfs:*", "streams:*", "connect:*", "infura:*", "cluster:*", "sso"],
            aud: "https://developers.token-project.eu",
            grant_type: "client_credentials"
          }
        })
        return {
          response: Http.json(200, { token_type: "bearer", access_token: token }, { "cache-control": "no-store" })
        }
      })

    // Interpretation TP-1: the docs call the reset both "the remaining window" and "UTC epoch seconds";
    // epoch seconds by default, seconds until the reset with `resetFormat: "delta-seconds"`.
    // Interpretation TP-5: the reset is when the oldest request in the window leaves it (a slot frees).
    const rateHeaders = (route: Route, remaining: number, resetAt: number, now: number): Record<string, string> => ({
      "x-ratelimit-limit": String(endpointLimits[route].limit),
      "x-ratelimit-remaining": String(remaining),
      "x-ratelimit-reset": resetFormat === "epoch-seconds"
        ? String(Math.ceil(resetAt / 1000))
        : String(Math.ceil(Math.max(0, resetAt - now) / 1000))
    })

    /** Authentication, then the per-app per-endpoint sliding log, then the route; X-RateLimit-* always. */
    const guarded = (
      route: Route,
      handler: (app: string, request: HttpServerRequest.HttpServerRequest) => Effect.Effect<Handled>
    ): Handler => {
      const log = logs.get(route)!
      return (request) =>
        Effect.clockWith((clock): Effect.Effect<Handled> => {
          const now = clock.unsafeCurrentTimeMillis()
          const check = kernel.checkBearer(request, now)
          if (check._tag !== "Valid") {
            const subject = check._tag === "Invalid" ? check.subject : undefined
            // Interpretation TP-6: the headers on every answer, refusals included; a refusal takes no slot.
            const state = subject === undefined
              ? { remaining: endpointLimits[route].limit, resetAt: now }
              : log.peek(subject, now)
            return Effect.succeed({
              response: Http.json(
                401,
                check._tag === "Missing"
                  ? errors(215, "Bad Authentication data")
                  : errors(89, "Invalid or expired token"),
                {
                  ...rateHeaders(route, state.remaining, state.resetAt, now),
                  "www-authenticate": check._tag === "Missing" ? "Bearer" : "Bearer error=\"invalid_token\""
                }
              ),
              client: subject,
              reason: check._tag === "Missing" ? "missing token" : check.reason
            })
          }
          const app = check.record.subject
          // Interpretation TP-4: "up to 10 requests over any 2-minute interval": a sliding log per app.
          const decision = log.take(app, now)
          const headers = rateHeaders(route, decision.remaining, decision.resetAt, now)
          if (!decision.admitted) {
            return Effect.succeed({ response: Http.json(429, rateLimitedBody, headers), client: app })
          }
          return Effect.map(handler(app, request), (handled) => ({
            ...handled,
            response: HttpServerResponse.setHeaders(handled.response, headers),
            client: app,
            admitted: true
          }))
        })
    }

    const api = (
      route: Route,
      handler: (app: string, request: HttpServerRequest.HttpServerRequest) => Effect.Effect<Handled>
    ) => kernel.api(route, guarded(route, handler))

    // The list is encoded once per change (the kernel adds the Date header to a copy).
    let stampList: Handled | undefined
    const storageFiles = Effect.succeed<Handled>({
      response: Http.json(200, {
        data: [{ cid: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", name: "hello.txt", size: 12 }]
      })
    })

    const served = [
      kernel.token("issue", "POST /auth/token", issueToken),
      api("GET /notarizations/stamps", () =>
        Effect.succeed(stampList ??= { response: Http.json(200, { data: stamps }) })),
      api("POST /notarizations/stamps", (_, request) =>
        Effect.gen(function*() {
          const parsed = Http.mediaType(request) === "application/json"
            ? Http.parseJson(yield* Http.bodyText(request))
            : undefined
          const hash = parsed !== undefined && Http.isRecord(parsed.value) ? parsed.value.hash : undefined
          if (typeof hash !== "string" || !/^[0-9a-f]{64}$/i.test(hash)) {
            return { response: Http.json(400, errors(38, "hash parameter is missing or not a SHA-256 hex digest")) }
          }
          const now = yield* Clock.currentTimeMillis
          const stamp = {
            id: `stamp_${yield* randomString(12)}`,
            hash,
            status: "pending",
            createdAt: new Date(now).toISOString()
          }
          stamps.push(stamp)
          if (stamps.length > 100) {
            stamps.splice(1, 1)
          }
          stampList = undefined
          return { response: Http.json(201, stamp) }
        })),
      api("GET /storage/files", () =>
        storageFiles)
    ]

    // Interpretation ALL-2: unknown routes answer 404 in the provider's own error shape.
    const app = kernel.app(served, () => Http.json(404, errors(34, "Sorry, that page does not exist")))

    return {
      provider: "token-project",
      app,
      credentials,
      timeScale: kernel.timeScale,
      rateLimit,
      endpointLimits,
      resetFormat,
      tokenLifetimeMillis,
      recording: Effect.sync(() => kernel.snapshot()),
      resetRecording: Effect.sync(() => kernel.resetRecording()),
      observeArrivals: (observer, options) => kernel.observe(observer, options),
      faults: kernel.controls(),
      revokeAll: Effect.flatMap(
        Clock.currentTimeMillis,
        (now) => Effect.sync(() => kernel.revokeWhere(now, () => true))
      ),
      deleteApp: (key = credentials.key) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.sync(() => {
            deleted.add(key)
            return kernel.revokeWhere(now, (record) => record.subject === key)
          })),
      restoreApp: (key = credentials.key) =>
        Effect.sync(() => {
          deleted.delete(key)
        })
    } satisfies TokenProjectSandbox
  })
