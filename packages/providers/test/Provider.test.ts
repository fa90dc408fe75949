/**
 * `Provider.define` is general: a fifth provider, made up here in a few dozen lines, gets everything the
 * four real ones get (Tags, `make`, Layers, `config` with errors naming each variable once, header checks,
 * its failure bodies as typed errors, its documented limit per key) against a loopback server and, for the
 * limit, an in-memory one on `TestClock`.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as TollgateError from "@tollgate/core/TollgateError"
import {
  Cause,
  ConfigError,
  ConfigProvider,
  Effect,
  Either,
  Exit,
  Fiber,
  Layer,
  Option,
  Redacted,
  Schema,
  TestClock
} from "effect"
import * as Field from "../src/Field.js"
import * as Provider from "../src/Provider.js"
import * as TokenEndpoint from "../src/TokenEndpoint.js"
import * as Loopback from "./utils/Loopback.js"
import * as Memory from "./utils/Memory.js"

// The made-up provider: form-encoded client credentials, a tenant header on API requests, a region that
// must be one of two, an error body of its own, and 5 requests per second for each endpoint.
const Refused = Schema.Struct({ refused: Schema.Struct({ reason: Schema.String, ticket: Schema.Number }) })

const Quarry = Provider.define({
  clientId: Field.Text,
  clientSecret: Field.Secret,
  tenant: Field.Text,
  region: Field.optional(Field.oneOf("eu", "us"), "eu")
}, {
  name: "quarry",
  title: "Quarry",
  key: "@test/Quarry",
  variables: {
    clientId: "QUARRY_CLIENT_ID",
    clientSecret: "QUARRY_CLIENT_SECRET",
    tenant: "QUARRY_TENANT",
    region: "QUARRY_REGION",
    baseUrl: "QUARRY_BASE_URL"
  },
  baseUrl: "https://api.quarry.example",
  rules: {
    token: (o) =>
      o.region === "us" && o.tenant === "eu-only" ? { path: ["tenant"], message: "an EU-only tenant" } : undefined
  },
  headers: { "X-Tenant": "tenant" },
  token: TokenEndpoint.exchange({
    path: "/oauth/token",
    encoding: "form",
    params: (o) => ({
      grant_type: "client_credentials",
      client_id: o.clientId,
      client_secret: o.clientSecret,
      region: o.region
    }),
    success: Schema.Struct({ access_token: Schema.String, expires_in: Schema.Number }),
    token: (body) => ({ value: body.access_token, expiresIn: body.expires_in }),
    failure: {
      schema: Refused,
      read: (body) => ({ code: `ticket ${body.refused.ticket}`, description: body.refused.reason })
    },
    identity: (o) => ({ clientId: o.clientId, extra: { region: o.region } })
  }),
  limit: { limit: 5, window: "1 second", per: (subject) => subject.key ?? "" }
})

const secret = "qu4rry/S3cret+&=%"
const env = { QUARRY_CLIENT_ID: "qc-1", QUARRY_CLIENT_SECRET: secret, QUARRY_TENANT: "acme" }
const withEnv = (vars: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(vars))))

/** The token endpoint and two API routes, as Quarry's docs would say; refuses a tenant named "banned". */
const quarryServer = () => {
  let issued = 0
  return Loopback.serve((request) => {
    if (request.path === "/oauth/token") {
      const form = new URLSearchParams(request.rawBody)
      if (form.get("client_secret") !== secret) {
        return { status: 400, body: { refused: { reason: `bad secret ${form.get("client_secret")}`, ticket: 7 } } }
      }
      return { status: 200, body: { access_token: `quarry-token-${++issued}`, expires_in: 3600 } }
    }
    return request.headers["x-tenant"] === "acme" && request.headers.authorization?.startsWith("Bearer quarry-token-")
      ? { status: 200, body: { path: request.path } }
      : { status: 401, body: { refused: { reason: "who are you", ticket: 0 } } }
  })
}

const configError = <A, E>(exit: Exit.Exit<A, E>): ConfigError.ConfigError => {
  const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
  if (Option.isNone(failure) || !ConfigError.isConfigError(failure.value)) throw new Error("expected a ConfigError")
  return failure.value
}

describe("Provider.define", () => {
  it.scopedLive("a made-up provider: layerConfig from its variables, its token endpoint, its header, its Tags", () =>
    Effect.gen(function*() {
      const server = yield* quarryServer()
      const Live = Quarry.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
      const program = Effect.gen(function*() {
        const client = yield* Quarry.tags.client
        const first = yield* Effect.flatMap(client.get("/v1/rocks"), (response) => response.json)
        yield* client.get("/v1/rocks/42")
        return { first, stats: yield* Effect.flatMap(Quarry.tags.tokens, (tokens) => tokens.stats) }
      })
      const { first, stats } = yield* Effect.provide(program, Live).pipe(
        withEnv({ ...env, QUARRY_BASE_URL: server.url, TOLLGATE_ALLOW_INSECURE_LOOPBACK: "true" })
      )
      expect(first).toEqual({ path: "/v1/rocks" })
      expect(stats.fetches).toBe(1)
      const token = server.requests[0]!
      expect(token.method).toBe("POST")
      expect(Object.fromEntries(new URLSearchParams(token.rawBody))).toEqual({
        grant_type: "client_credentials",
        client_id: "qc-1",
        client_secret: secret,
        region: "eu"
      })
      // The tenant is an API header only: the token endpoint never sees it.
      expect(token.headers["x-tenant"]).toBeUndefined()
      expect(server.requests.slice(1).map((r) => [r.path, r.headers["x-tenant"]])).toEqual([
        ["/v1/rocks", "acme"],
        ["/v1/rocks/42", "acme"]
      ])
    }))

  it.scopedLive("its failure Schema: a refusal is a ProviderError with its code, scrubbed of the secret, not retried", () =>
    Effect.gen(function*() {
      const server = yield* quarryServer()
      const { client } = yield* Quarry.make({
        clientId: "qc-1",
        clientSecret: Redacted.make(`${secret}-wrong`),
        tenant: "acme",
        baseUrl: server.url,
        allowInsecureLoopback: true
      })
      const error = yield* Effect.flip(client.get("/v1/rocks"))
      expect(error).toBeInstanceOf(TollgateError.ProviderError)
      expect(error).toMatchObject({ provider: "quarry", code: "ticket 7", status: 400 })
      expect(error.message).toContain("bad secret")
      expect(error.message).not.toContain(secret)
      expect(server.requests.map((r) => r.path)).toEqual(["/oauth/token"])
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

  it.effect("every bad option is a ConfigError naming it: the option from code, the variable from the environment", () =>
    Effect.gen(function*() {
      const memory = Memory.make(() => ({ status: 500 }))
      const build = (
        layer: Layer.Layer<Provider.Provided<"@test/Quarry">, ConfigError.ConfigError, HttpClient.HttpClient>
      ) =>
        Effect.exit(
          Effect.scoped(Layer.build(layer.pipe(Layer.provide(Layer.succeed(HttpClient.HttpClient, memory.client)))))
        )
      const cases: ReadonlyArray<readonly [Record<string, string>, string, RegExp]> = [
        [{ QUARRY_CLIENT_ID: "" }, "QUARRY_CLIENT_ID", /set but empty/],
        [{ QUARRY_REGION: "mars" }, "QUARRY_REGION", /expected eu or us/],
        [{ QUARRY_TENANT: "ac\nme" }, "QUARRY_TENANT", /HTTP header.*CR or LF/],
        [{ QUARRY_TENANT: "eu-only", QUARRY_REGION: "us" }, "QUARRY_TENANT", /EU-only/],
        [{ QUARRY_BASE_URL: "http://api.quarry.example" }, "QUARRY_BASE_URL", /plain http is refused/]
      ]
      for (const [vars, variable, why] of cases) {
        const error = configError(yield* build(Quarry.layerConfig()).pipe(withEnv({ ...env, ...vars })))
        expect(error).toMatchObject({ path: [variable] })
        expect(String(error)).toMatch(why)
        expect(String(error).split(variable)).toHaveLength(2)
      }
      const { QUARRY_TENANT: _, ...withoutTenant } = env
      expect(configError(yield* build(Quarry.layerConfig()).pipe(withEnv(withoutTenant)))).toMatchObject({
        _op: "MissingData",
        path: ["QUARRY_TENANT"]
      })
      const direct = configError(
        yield* build(Quarry.layer({ ...env, clientId: "qc", clientSecret: Redacted.make(secret), tenant: "a\r\nb" }))
      )
      expect(direct).toMatchObject({ path: ["tenant"] })
      expect(String(direct)).not.toContain(secret)
      expect(memory.seen).toHaveLength(0)
    }))

  it.effect("its documented limit holds per key (endpoint), as a sliding window on the client's clock", () =>
    Effect.gen(function*() {
      const memory = Memory.make((request) =>
        request.url.pathname === "/oauth/token" ? { body: { access_token: "t", expires_in: 3600 } } : { body: {} }
      )
      const { client } = yield* Quarry.make({
        clientId: "qc-1",
        clientSecret: Redacted.make(secret),
        tenant: "acme"
      }).pipe(Effect.provideService(HttpClient.HttpClient, memory.client))
      const calls = Effect.all([
        ...Array.from({ length: 7 }, () => client.get("/v1/rocks")),
        client.get("/v1/pebbles")
      ], { concurrency: "unbounded" })
      const fiber = yield* Effect.fork(calls)
      yield* TestClock.adjust("10 millis")
      const arrived = (path: string) => memory.seen.filter((r) => r.url.pathname === path).length
      expect([arrived("/v1/rocks"), arrived("/v1/pebbles")]).toEqual([5, 1])
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      expect(arrived("/v1/rocks")).toBe(7)
      expect(Quarry.limit).toEqual({ limit: 5, windowMillis: 1000, keyed: true })
    }).pipe(Effect.scoped))

  it("parse reads plain values (secrets as strings), and every surface of the definition says the same", () => {
    const parsed = Either.getOrThrow(Quarry.parse({ clientId: "qc", clientSecret: secret, tenant: "acme", extra: 1 }))
    expect(Redacted.isRedacted(parsed.clientSecret)).toBe(true)
    expect(parsed).toMatchObject({
      clientId: "qc",
      tenant: "acme",
      region: "eu",
      baseUrl: "https://api.quarry.example"
    })
    expect(JSON.stringify(parsed)).not.toContain(secret)
    expect(Either.isLeft(Quarry.parse({ clientId: "qc", clientSecret: secret }))).toBe(true)
    expect(Quarry.tags.client.key).toBe("@test/QuarryClient")
    expect(Object.values(Quarry.variables)).toEqual([
      "QUARRY_CLIENT_ID",
      "QUARRY_CLIENT_SECRET",
      "QUARRY_TENANT",
      "QUARRY_REGION",
      "QUARRY_BASE_URL"
    ])
  })

  it.effect("the token source alone needs no API header, and dies on options it refuses", () =>
    Effect.gen(function*() {
      const memory = Memory.make(() => ({ body: { access_token: "t", expires_in: 60 } }))
      const provide = Effect.provideService(HttpClient.HttpClient, memory.client)
      const source = yield* provide(Quarry.tokenSource({ clientId: "qc", clientSecret: Redacted.make(secret) }))
      expect(Redacted.value((yield* source.fetch).value)).toBe("t")
      expect(source.identity).toMatchObject({ provider: "quarry", endpoint: "https://api.quarry.example/oauth/token" })
      const bad = yield* Effect.exit(provide(Quarry.tokenSource({ clientId: "", clientSecret: Redacted.make(secret) })))
      // Refused options are a ConfigError naming the option, never a defect.
      const refused = Exit.isFailure(bad) && Cause.isFailType(bad.cause) ? bad.cause.error : undefined
      expect(refused).toMatchObject({ _op: "InvalidData", path: ["clientId"] })
      expect(memory.seen).toHaveLength(1)
    }))
})
