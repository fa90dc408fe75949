/**
 * An emulator of the Nora (Formflow) API, to the letter of its docs: the JSON token endpoint, and API
 * routes limited to 60 requests per minute per client (token requests included).
 *
 * The design: `docs/testing.md` in the repository.
 *
 * @since 0.1.0
 */
import type { HttpServerRequest } from "@effect/platform"
import { Clock, Effect } from "effect"
import type * as Emulator from "./Emulator.js"
import * as Http from "./internal/http.js"
import type { Handled, Handler, Params } from "./internal/kernel.js"
import { Kernel } from "./internal/kernel.js"
import { SlidingLog } from "./internal/limiters.js"
import { randomString } from "./internal/tokens.js"

/**
 * Nora API client credentials.
 *
 * @since 0.1.0
 * @category models
 */
export interface Credentials {
  readonly clientId: string
  readonly clientSecret: string
  readonly organizationId: string
}

/**
 * The test credentials the emulator accepts by default (not secret).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultCredentials: Credentials = {
  clientId: "nora-sandbox-client",
  clientSecret: "nora-sandbox-secret",
  organizationId: "nora-sandbox-organization"
}

/**
 * The documented values, before the time scale.
 *
 * @since 0.1.0
 * @category constants
 */
export const documented = {
  tokenLifetimeSeconds: 3600,
  limit: 60,
  windowMillis: 60_000
} as const

/**
 * @since 0.1.0
 * @category models
 */
export interface Options extends Emulator.Options {
  /** The client the emulator accepts (default `defaultCredentials`). */
  readonly credentials?: Credentials | undefined
  /** More accepted clients, each with its own rate limit. */
  readonly clients?: ReadonlyArray<Credentials> | undefined
  /** Token lifetime before the time scale (default 3600 s, as documented). */
  readonly tokenLifetimeSeconds?: number | undefined
  /** The API limit before the time scale (default 60 per 60 000 ms, as documented). */
  readonly rateLimit?: { readonly limit: number; readonly windowMillis: number } | undefined
  /** Send `Retry-After` (whole seconds until a slot frees) with 429s. Default false: the docs give none. */
  readonly retryAfter?: boolean | undefined
  /**
   * Count token requests against the client's limit. Default true: "the API enforces a rate limit of 60
   * requests per minute", and `POST /api/token` is part of the API (NORA-1). A token request is counted
   * when its `clientId` names a client, whatever the outcome.
   */
  readonly countTokenRequests?: boolean | undefined
}

/**
 * A running Nora emulator.
 *
 * @since 0.1.0
 * @category models
 */
export interface NoraSandbox extends Emulator.Emulator<Credentials> {
  readonly provider: "nora"
  /** `expires_in` as answered, after the time scale. */
  readonly tokenLifetimeSeconds: number
  /** The enforced limit, after the time scale. */
  readonly rateLimit: { readonly limit: number; readonly windowMillis: number }
  /** Whether token requests count against `rateLimit`. */
  readonly countTokenRequests: boolean
}

interface Form {
  readonly id: string
  readonly name: string
  readonly fields: ReadonlyArray<{ readonly name: string; readonly type: string; readonly required: boolean }>
}

const forms: ReadonlyArray<Form> = [
  {
    id: "frm_motor_quote",
    name: "Motor insurance quote",
    fields: [
      { name: "registrationNumber", type: "string", required: true },
      { name: "driverAge", type: "number", required: true }
    ]
  },
  {
    id: "frm_home_claim",
    name: "Home insurance claim",
    fields: [
      { name: "policyNumber", type: "string", required: true },
      { name: "description", type: "string", required: false }
    ]
  }
]

// Interpretation NORA-4: 400 and 401 in the NestJS shape the OpenAPI operation id suggests.
const badRequest = (message: string | ReadonlyArray<string>, reason: string): Handled => ({
  response: Http.json(400, { statusCode: 400, message, error: "Bad Request" }),
  reason
})

/**
 * Builds a Nora emulator. Its time comes from `Clock` and its randomness from `Random`.
 *
 * @example
 * ```ts
 * import { HttpClientRequest } from "@effect/platform"
 * import { NoraSandbox, Sandbox } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * Effect.gen(function*() {
 *   // Nora's emulator, reached in memory (serve it on loopback with `Sandbox.serve`).
 *   const emulator = yield* NoraSandbox.make({ tokenLifetimeSeconds: 600 })
 *   const http = Sandbox.makeClient(() => emulator.app)
 *   const response = yield* http.execute(
 *     HttpClientRequest.post("https://nora.sandbox.test/api/token").pipe(
 *       HttpClientRequest.bodyUnsafeJson(NoraSandbox.defaultCredentials)
 *     )
 *   )
 *   console.log(response.status, (yield* emulator.recording).tokenCounts.issue) // 200 1
 * }).pipe(Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<NoraSandbox> =>
  Effect.gen(function*() {
    const kernel = yield* Kernel.make("nora", options)
    const credentials = options?.credentials ?? defaultCredentials
    const clients = [credentials, ...(options?.clients ?? [])]
    // Interpretation NORA-7: 3600 s, in `expires_in` and as the JWT's exp.
    const tokenLifetimeSeconds = Http.shownSeconds(
      (options?.tokenLifetimeSeconds ?? documented.tokenLifetimeSeconds) / kernel.timeScale
    )
    const rateLimit = {
      limit: options?.rateLimit?.limit ?? documented.limit,
      windowMillis: kernel.scaled(options?.rateLimit?.windowMillis ?? documented.windowMillis)
    }
    const log = new SlidingLog(rateLimit.limit, rateLimit.windowMillis)
    const retryAfter = options?.retryAfter ?? false
    const countTokenRequests = options?.countTokenRequests ?? true

    // Interpretation NORA-3: the docs give the status only; the NestJS body and Retry-After are ours.
    const tooManyRequests = (decision: { readonly resetAt: number }, now: number) =>
      Http.json(
        429,
        { statusCode: 429, message: "Too Many Requests" },
        retryAfter ? { "retry-after": String(Math.max(1, Math.ceil((decision.resetAt - now) / 1000))) } : {}
      )

    const issueToken: Handler = (request) =>
      Effect.gen(function*() {
        // Interpretation NORA-5: Content-Type must be JSON; Accept is not checked (absent, it means any type).
        if (Http.mediaType(request) !== "application/json") {
          return badRequest("Content-Type must be application/json", "wrong content type")
        }
        const parsed = Http.parseJson(yield* Http.bodyText(request))
        if (parsed === undefined) return badRequest("Request body must be valid JSON", "malformed JSON")
        if (!Http.isRecord(parsed.value)) return badRequest("Request body must be a JSON object", "not an object")
        const body = parsed.value
        const problems = (["clientId", "clientSecret", "organizationId"] as const).flatMap((name) =>
          typeof body[name] !== "string"
            ? [`${name} must be a string`]
            : body[name] === ""
            ? [`${name} should not be empty`]
            : []
        )
        if (problems.length > 0) return badRequest(problems, "missing or invalid parameters")
        // Interpretation NORA-1: a token request counts against the limit of the client it names.
        const named = clients.find((c) => Http.safeEqual(c.clientId, body.clientId as string))
        if (countTokenRequests && named !== undefined) {
          const now = yield* Clock.currentTimeMillis
          const decision = log.take(named.clientId, now)
          if (!decision.admitted) {
            return { response: tooManyRequests(decision, now), outcome: "refused", reason: "rate limited" }
          }
        }
        const client = clients.find((c) =>
          Http.safeEqual(c.clientId, body.clientId as string) &&
          Http.safeEqual(c.clientSecret, body.clientSecret as string) &&
          Http.safeEqual(c.organizationId, body.organizationId as string)
        )
        if (client === undefined) {
          return {
            response: Http.json(401, { statusCode: 401, message: "Invalid credentials", error: "Unauthorized" }),
            reason: "invalid credentials"
          }
        }
        const { token } = yield* kernel.issue({
          subject: client.clientId,
          lifetimeMillis: tokenLifetimeSeconds * 1000,
          exp: true,
          claims: {
            iss: "https://main.formflow-dev.net",
            sub: client.clientId,
            aud: "formflow-api",
            org: client.organizationId,
            token_use: "access"
          }
        })
        return {
          response: Http.json(200, { token, expires_in: tokenLifetimeSeconds, token_type: "Bearer" }, {
            "cache-control": "no-store"
          })
        }
      })

    /** Authentication, then the per-client sliding log, then the route. */
    const guarded = (
      handler: (
        client: string,
        request: HttpServerRequest.HttpServerRequest,
        params: Params
      ) => Effect.Effect<Handled>
    ): Handler =>
    (request, params) =>
      Effect.clockWith((clock): Effect.Effect<Handled> => {
        const now = clock.unsafeCurrentTimeMillis()
        // Interpretation NORA-6: any token but a valid one is a 401 with a Bearer challenge (RFC 6750).
        const check = kernel.checkBearer(request, now)
        if (check._tag !== "Valid") {
          return Effect.succeed({
            response: Http.json(401, { statusCode: 401, message: "Unauthorized" }, {
              "www-authenticate": check._tag === "Missing" ? "Bearer" : "Bearer error=\"invalid_token\""
            }),
            client: check._tag === "Invalid" ? check.subject : undefined,
            reason: check._tag === "Missing" ? "missing token" : check.reason
          })
        }
        const client = check.record.subject
        // Interpretation NORA-2: "60 requests per minute" per client, over any 60 s (a sliding log).
        const decision = log.take(client, now)
        if (!decision.admitted) {
          return Effect.succeed({ response: tooManyRequests(decision, now), client, admitted: false })
        }
        return Effect.map(handler(client, request, params), (handled) => ({ ...handled, client, admitted: true }))
      })

    const formNotFound = (formId: string | undefined): Handled => ({
      response: Http.json(404, { statusCode: 404, message: `Form ${formId ?? ""} not found`, error: "Not Found" })
    })

    // The same answer every time: encoded once (the kernel adds the Date header to a copy).
    const formList = Effect.succeed<Handled>({
      response: Http.json(200, { data: forms.map(({ id, name }) => ({ id, name })), total: forms.length })
    })

    // Interpretation NORA-8: the docs document no API routes; these forms are the sandbox's own.
    const routes = [
      kernel.token("issue", "POST /api/token", issueToken),
      kernel.api("GET /api/forms", guarded(() => formList)),
      kernel.api(
        "GET /api/forms/:formId",
        guarded((_client, _request, { formId }) => {
          const form = forms.find((f) => f.id === formId)
          return Effect.succeed(form === undefined ? formNotFound(formId) : { response: Http.json(200, form) })
        })
      ),
      kernel.api(
        "POST /api/forms/:formId/submissions",
        guarded((_client, request, { formId }) =>
          Effect.gen(function*() {
            const form = forms.find((f) => f.id === formId)
            if (form === undefined) return formNotFound(formId)
            const parsed = Http.mediaType(request) === "application/json"
              ? Http.parseJson(yield* Http.bodyText(request))
              : undefined
            if (parsed === undefined || !Http.isRecord(parsed.value)) {
              return badRequest("Request body must be a JSON object", "invalid submission")
            }
            const now = yield* Clock.currentTimeMillis
            return {
              response: Http.json(201, {
                id: `sub_${yield* randomString(16)}`,
                formId: form.id,
                status: "received",
                createdAt: new Date(now).toISOString()
              })
            }
          })
        )
      )
    ]

    // Interpretation ALL-2: unknown routes answer 404 in the provider's own error shape.
    const app = kernel.app(
      routes,
      (request) =>
        Http.json(404, {
          statusCode: 404,
          message: `Cannot ${request.method} ${Http.pathOf(request.url)}`,
          error: "Not Found"
        })
    )

    return {
      provider: "nora",
      app,
      credentials,
      timeScale: kernel.timeScale,
      tokenLifetimeSeconds,
      rateLimit,
      countTokenRequests,
      recording: Effect.sync(() => kernel.snapshot()),
      resetRecording: Effect.sync(() => kernel.resetRecording()),
      observeArrivals: (observer, options) => kernel.observe(observer, options),
      faults: kernel.controls(),
      revokeAll: Effect.flatMap(
        Clock.currentTimeMillis,
        (now) => Effect.sync(() => kernel.revokeWhere(now, () => true))
      )
    } satisfies NoraSandbox
  })
