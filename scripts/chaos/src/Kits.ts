/**
 * One kit per provider definition (`Providers.all`): its emulator (with credentials whose secret holds
 * every character that needs encoding), the definition's client over a given transport, a mix of API
 * requests (reads and non-idempotent writes), how a caller reads an answer, the documented limit to check
 * the server's arrivals against (the definition's), and the provider's own malformed token answers. What
 * a kit knows of its provider comes from the definition; what is left here is test material.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import type * as TokenSource from "@tollgate/core/TokenSource"
import * as Nomba from "@tollgate/providers/nomba"
import type * as Provider from "@tollgate/providers/Provider"
import * as Providers from "@tollgate/providers/Providers"
import type { Emulator, Recording } from "@tollgate/testing"
import { Faults, NombaSandbox, NoraSandbox, NorceSandbox, TokenProjectSandbox } from "@tollgate/testing"
import type { ConfigError, Scope } from "effect"
import { Effect } from "effect"

export type Name = Providers.Name

/** The settings a test passes to any provider's `make`. */
export interface Tuning extends Provider.Tuning {}

export interface EmulatorOptions {
  readonly timeScale?: number | undefined
  readonly tokenLifetimeSeconds?: number | undefined
  /** The server's real API limit, before the time scale, when it differs from the documented one. */
  readonly rateLimit?: { readonly limit: number; readonly windowMillis: number } | undefined
}

export interface Kit {
  readonly name: Name
  readonly definition: Provider.Any
  /** The host of the in-memory base URL (`https://<host>`). */
  readonly host: string
  /** The client secrets the kit's credentials carry. */
  readonly secrets: ReadonlyArray<string>
  /** The client id (the Token project's key) the secret goes with. */
  readonly clientId: string
  readonly emulator: (options?: EmulatorOptions) => Effect.Effect<Emulator.Emulator>
  readonly make: (
    baseUrl: string,
    tuning?: Tuning
  ) => Effect.Effect<Provider.Services, ConfigError.ConfigError, HttpClient.HttpClient | Scope.Scope>
  /** The definition's token source alone, against `baseUrl`. */
  readonly source: (
    baseUrl: string
  ) => Effect.Effect<TokenSource.Service, ConfigError.ConfigError, HttpClient.HttpClient>
  /** The n-th request of a workload: mostly reads, every fifth a non-idempotent write. */
  readonly request: (n: number) => HttpClientRequest.HttpClientRequest
  /** How a caller reads a 2xx answer (Nomba's envelope, JSON otherwise). */
  readonly read: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<unknown, unknown>
  /** The documented API limit, before any time scale: per key of `per`. */
  readonly limit:
    | { readonly limit: number; readonly windowMillis: number; readonly per: (arrival: Recording.Arrival) => string }
    | undefined
  /** A successful API body, for scripted answers that carry rate-limit headers. */
  readonly okBody: unknown
  /** A successful token answer carrying `token` (a string the emulator did not issue). */
  readonly tokenBody: (token: string) => unknown
  /** The provider's malformed token answers, by matrix row. */
  readonly badTokens: (token: () => string) => Readonly<Record<string, ReadonlyArray<Faults.Step>>>
  /** The answer of a token endpoint that rejects the credentials. */
  readonly rejected: Faults.Step
}

/** What a kit holds of its own: test material for one provider. */
export interface Fixture
  extends Omit<Kit, "name" | "definition" | "host" | "secrets" | "clientId" | "make" | "source" | "limit">
{
  /** The emulator's credentials, which the definition's options are read from (`parse`). */
  readonly credentials: Readonly<Record<string, unknown>>
  readonly secret: string
}

const suffix = () => Math.random().toString(36).slice(2, 10)

/** A secret with every character that needs encoding in a query, a form or JSON. */
const secretFor = (name: string) => `${name}-S3cr3t/+&=%€ "q"\\${suffix()}${suffix()}`

/** A JWT-shaped token (unsigned) with these claims. */
export const jwt = (claims: Record<string, unknown>): string => {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.${
    Buffer.from(suffix() + suffix()).toString("base64url")
  }`
}

const readJson = (response: HttpClientResponse.HttpClientResponse) =>
  Effect.flatMap(HttpClientResponse.filterStatusOk(response), (ok) => ok.json)

/** Answers every token endpoint can give, whatever its format. */
const common = (): Readonly<Record<string, ReadonlyArray<Faults.Step>>> => ({
  "token 5xx (HTML error page)": [
    Faults.html(502, "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"),
    Faults.html(503, "<html><body>Service Unavailable</body></html>"),
    Faults.html(504, "<html><body>Gateway Timeout</body></html>")
  ],
  "token 5xx (JSON body)": [
    Faults.json(500, { statusCode: 500, message: "Internal server error" }),
    Faults.json(503, { error: "temporarily_unavailable" })
  ],
  "token timeout (never answers)": [Faults.timeout(), Faults.timeout(), Faults.timeout()],
  "token connection reset": [Faults.drop(), Faults.drop(), Faults.drop()],
  "token body cut mid-way": [Faults.drop({ mode: "partial" }), Faults.drop({ mode: "partial" })],
  "token HTML page with HTTP 200": [
    Faults.html(200, "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Portal</body></html>")
  ],
  "token 429 on the token endpoint": [
    Faults.json(429, { error: "too_many_requests" }, { headers: { "retry-after": "3" } }),
    Faults.json(429, { errors: [{ code: 88, message: "Rate limit exceeded" }] }),
    Faults.respond({ status: 429 }),
    Faults.json(429, { message: "slow down" }, { headers: { "retry-after": "120" } })
  ]
})

const truncated = (body: unknown): Faults.Step => {
  const text = JSON.stringify(body)
  return Faults.respond({
    status: 200,
    headers: { "content-type": "application/json" },
    body: text.slice(0, Math.floor(text.length * 0.6))
  })
}

const json200 = (body: unknown) => Faults.json(200, body)

const noraFixture = (): Fixture => {
  const credentials = {
    clientId: `nora-client-${suffix()}`,
    clientSecret: secretFor("nora"),
    organizationId: `nora-org-${suffix()}`
  }
  const tokenBody = (token: string) => ({ token, expires_in: 3600, token_type: "Bearer" })
  return {
    credentials,
    secret: credentials.clientSecret,
    emulator: (options) => NoraSandbox.make({ ...options, credentials }),
    request: (n) =>
      n % 5 === 4
        ? HttpClientRequest.post("/api/forms/frm_motor_quote/submissions").pipe(
          HttpClientRequest.bodyUnsafeJson({ registrationNumber: `AB${n}`, driverAge: 40 })
        )
        : HttpClientRequest.get(n % 2 === 0 ? "/api/forms" : "/api/forms/frm_home_claim"),
    read: readJson,
    okBody: { data: [], total: 0 },
    tokenBody,
    badTokens: (token) => ({
      ...common(),
      "token truncated JSON": [truncated(tokenBody(token()))],
      "token wrong types": [
        json200({ token: 12345, expires_in: 3600, token_type: "Bearer" }),
        json200({ token: token(), expires_in: { seconds: 3600 }, token_type: "Bearer" }),
        json200({ token: [token()], expires_in: 3600 }),
        json200({ token: token(), expires_in: 3600, token_type: "MAC" }),
        json200([token()])
      ],
      "token missing fields": [
        json200({ expires_in: 3600, token_type: "Bearer" }),
        json200({ token: token(), token_type: "Bearer" }),
        json200({}),
        json200(null)
      ],
      "token lifetime 0 / negative / huge / string": [
        json200({ token: token(), expires_in: 0 }),
        json200({ token: token(), expires_in: -3600 }),
        json200({ token: token(), expires_in: 1e300 }),
        json200({ token: token(), expires_in: "3600" }),
        json200({ token: token(), expires_in: "an hour" }),
        json200({ token: token(), expires_in: 0.0000001 })
      ]
    }),
    rejected: Faults.json(401, { statusCode: 401, message: "Invalid credentials", error: "Unauthorized" })
  }
}

const norceFixture = (): Fixture => {
  const credentials = {
    clientId: `norce-client-${suffix()}`,
    clientSecret: secretFor("norce"),
    scopes: ["playground", "stage", "prod"],
    applicationId: "1000"
  }
  const tokenBody = (token: string) => ({ access_token: token, expires_in: 600, token_type: "Bearer", scope: "prod" })
  return {
    credentials,
    secret: credentials.clientSecret,
    emulator: (options) => NorceSandbox.make({ ...options, credentials }),
    request: (n) =>
      HttpClientRequest.get(
        n % 3 === 0
          ? "/commerce/metadata/1.1/GetApplication?format=json"
          : n % 3 === 1
          ? "/commerce/products/1.1/ListProducts"
          : "/commerce/products/1.1/GetProduct?id=1001"
      ),
    read: readJson,
    okBody: { Items: [], ItemCount: 0 },
    tokenBody,
    badTokens: (token) => ({
      ...common(),
      "token truncated JSON": [truncated(tokenBody(token()))],
      "token wrong types": [
        json200({ access_token: 42, expires_in: 600, token_type: "Bearer" }),
        json200({ access_token: token(), expires_in: [600], token_type: "Bearer" }),
        json200({ access_token: token(), expires_in: 600, token_type: "mac" }),
        json200({ access_token: { value: token() }, expires_in: 600 }),
        json200({ access_token: token(), expires_in: 600, scope: 7 })
      ],
      "token missing fields": [
        json200({ expires_in: 600, token_type: "Bearer" }),
        json200({ token_type: "Bearer" }),
        json200({ error: "invalid_scope", error_description: "The client is not allowed the scope prod" })
      ],
      "token lifetime 0 / negative / huge / string": [
        json200({ access_token: token(), expires_in: 0 }),
        json200({ access_token: token(), expires_in: -1 }),
        json200({ access_token: token(), expires_in: 9e15 }),
        json200({ access_token: token(), expires_in: "600" }),
        json200({ access_token: token(), expires_in: "ten minutes" }),
        json200({ access_token: token(), expires_in: "Infinity" })
      ]
    }),
    rejected: Faults.json(400, { error: "invalid_client", error_description: "Client authentication failed" })
  }
}

const nombaFixture = (): Fixture => {
  const credentials = {
    clientId: `nomba-client-${suffix()}`,
    clientSecret: secretFor("nomba"),
    accountId: `nomba-account-${suffix()}`,
    businessId: "01a10aeb-d989-460a-bbde-9842f2b4320f"
  }
  const inMinutes = (minutes: number) => new Date(Date.UTC(2026, 0, 1) + minutes * 60_000).toISOString()
  const data = (token: string, expiresAt: unknown) => ({
    businessId: credentials.businessId,
    access_token: token,
    refresh_token: `01${suffix()}${suffix()}${suffix()}`,
    expiresAt
  })
  const tokenBody = (token: string) => ({ code: "00", description: "Success", data: data(token, inMinutes(30)) })
  return {
    credentials,
    secret: credentials.clientSecret,
    emulator: (options) => NombaSandbox.make({ ...options, credentials }),
    request: (n) =>
      n % 5 === 4
        ? HttpClientRequest.post("/v1/transfers/bank").pipe(
          HttpClientRequest.bodyUnsafeJson({
            amount: 100,
            accountNumber: "0123456789",
            bankCode: "058",
            merchantTxRef: `tx-${n}`
          })
        )
        : HttpClientRequest.get(n % 2 === 0 ? "/v1/accounts" : "/v1/accounts/balance"),
    read: (response) => Effect.flatMap(HttpClientResponse.filterStatusOk(response), Nomba.envelope),
    okBody: { code: "00", description: "Success", data: { results: [] } },
    tokenBody,
    badTokens: (token) => ({
      ...common(),
      "token truncated JSON": [truncated(tokenBody(token()))],
      "token wrong types": [
        json200({ code: "00", description: "Success", data: data(token(), 1893456000) }),
        json200({ code: "00", description: "Success", data: { ...data(token(), inMinutes(30)), access_token: 7 } }),
        json200({ code: 0, description: "Success", data: data(token(), inMinutes(30)) }),
        json200({ code: "00", description: "Success", data: [token()] }),
        json200({ code: "00", description: "Success", data: { ...data(token(), inMinutes(30)), refresh_token: 5 } })
      ],
      "token missing fields": [
        json200({ code: "00", description: "Success" }),
        json200({ code: "00", data: { expiresAt: inMinutes(30) } }),
        json200({ description: "Success", data: data(token(), inMinutes(30)) }),
        json200({ code: "00", data: { access_token: token() } })
      ],
      "token expiresAt in the past / far future / not a date": [
        json200({ code: "00", description: "Success", data: data(token(), "2022-07-08T14:33:00Z") }),
        json200({ code: "00", description: "Success", data: data(token(), "2999-01-01T00:00:00Z") }),
        json200({ code: "00", description: "Success", data: data(token(), "tomorrow") }),
        json200({ code: "00", description: "Success", data: data(token(), "+275760-09-13T00:00:00.000Z") })
      ],
      "token code other than \"00\" with HTTP 200": [
        json200({ code: "01", description: "Invalid client credentials" }),
        json200({ code: "99", description: "System busy, try again" }),
        json200({ code: 500, description: "Internal error" }),
        json200({ code: null, description: "?" })
      ]
    }),
    rejected: Faults.json(200, { code: "01", description: "Invalid client credentials" })
  }
}

const tokenProjectFixture = (): Fixture => {
  const credentials = { key: `tpkey${suffix()}${suffix()}`, secret: secretFor("token-project"), appName: "Chaos" }
  const tokenBody = (token: string) => ({ token_type: "bearer", access_token: token })
  return {
    credentials,
    secret: credentials.secret,
    emulator: (options) =>
      TokenProjectSandbox.make({ timeScale: options?.timeScale, rateLimit: options?.rateLimit, credentials }),
    request: (n) =>
      n % 5 === 4
        ? HttpClientRequest.post("/notarizations/stamps").pipe(
          HttpClientRequest.bodyUnsafeJson({ hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" })
        )
        : HttpClientRequest.get(n % 2 === 0 ? "/notarizations/stamps" : "/storage/files"),
    read: readJson,
    okBody: { data: [] },
    tokenBody,
    badTokens: (token) => ({
      ...common(),
      "token truncated JSON": [truncated(tokenBody(token()))],
      "token wrong types": [
        json200({ token_type: "bearer", access_token: 1 }),
        json200({ token_type: ["bearer"], access_token: token() }),
        json200({ token_type: "mac", access_token: token() }),
        json200("eyJhbGciOiJIUzI1NiJ9")
      ],
      "token missing fields": [
        json200({ token_type: "bearer" }),
        json200({ errors: [{ code: 32, message: "Could not authenticate you" }] }),
        json200({ token_type: "bearer", access_token: "" })
      ],
      "token JWT exp in the past / far future / not a number": [
        json200(tokenBody(jwt({ sub: credentials.key, iat: 1577836800, exp: 1577840400 }))),
        json200(tokenBody(jwt({ sub: credentials.key, iat: 1, exp: 1e300 }))),
        json200(tokenBody(jwt({ sub: credentials.key, exp: "soon" }))),
        json200(tokenBody(`not-a-jwt-${token()}`))
      ]
    }),
    rejected: Faults.json(401, { errors: [{ code: 32, message: "Could not authenticate you" }] })
  }
}

const fixtures: { readonly [N in Name]: () => Fixture } = {
  nora: noraFixture,
  norce: norceFixture,
  nomba: nombaFixture,
  "token-project": tokenProjectFixture
}

/** A provider's kit: the definition's client, name and documented limit, and the fixture's material. */
export const kit = (definition: Provider.Any, fixture: Fixture): Kit => {
  const { credentials, secret, ...material } = fixture
  const limit = definition.limit
  return {
    ...material,
    name: definition.name as Name,
    definition,
    host: `${definition.name}.sandbox.test`,
    secrets: [secret],
    clientId: String(credentials["clientId"] ?? credentials["key"]),
    make: (baseUrl, tuning) =>
      Effect.flatMap(
        definition.parse({ ...credentials, baseUrl, allowInsecureLoopback: true }),
        (options) => definition.make({ ...options, ...tuning })
      ),
    source: (baseUrl) =>
      Effect.flatMap(
        definition.parse({ ...credentials, baseUrl, allowInsecureLoopback: true }),
        (options) => definition.tokenSource(options)
      ),
    // Per key: the server's route, which is what the definition's key function names (the Token project's).
    limit: limit === undefined ? undefined : {
      limit: limit.limit,
      windowMillis: limit.windowMillis,
      per: limit.keyed ? (arrival) => arrival.route : () => ""
    }
  }
}

export const nora = (): Kit => kit(Providers.byName.nora, noraFixture())
export const norce = (): Kit => kit(Providers.byName.norce, norceFixture())
export const nomba = (): Kit => kit(Providers.byName.nomba, nombaFixture())
export const tokenProject = (): Kit => kit(Providers.byName["token-project"], tokenProjectFixture())

/** Every provider's kit, in the order of `Providers.all`. */
export const all = (): ReadonlyArray<Kit> =>
  Providers.all.map((definition) => kit(definition, fixtures[definition.name]()))
