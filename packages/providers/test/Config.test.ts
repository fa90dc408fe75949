import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Cause, ConfigError, ConfigProvider, Effect, Exit, Layer, Option, Redacted } from "effect"
import * as Nomba from "../src/Nomba.js"
import * as Nora from "../src/Nora.js"
import * as Norce from "../src/Norce.js"
import * as TokenProject from "../src/TokenProject.js"
import * as Memory from "./utils/Memory.js"

const secrets = {
  nora: "nora-SECRET-3f9a1c",
  norce: "norce-SECRET-77b2e0",
  nomba: "nomba-SECRET-c0ffee",
  tokenProject: "tp-SECRET-vbQ6esJgef9k"
}

interface Case {
  readonly name: string
  readonly layer: Layer.Layer<any, ConfigError.ConfigError, HttpClient.HttpClient>
  readonly env: Readonly<Record<string, string>>
  readonly required: ReadonlyArray<string>
  readonly baseUrlVariable: string
  readonly secret: string
}

const cases: ReadonlyArray<Case> = [
  {
    name: "Nora",
    layer: Nora.layerConfig(),
    env: {
      NORA_CLIENT_ID: "2mvc4Ev4qpU8Y0FbADRq4xpZOhf",
      NORA_CLIENT_SECRET: secrets.nora,
      NORA_ORGANIZATION_ID: "2nHy8pbeoD5CM9WbjvyGj1VKoUu"
    },
    required: ["NORA_CLIENT_ID", "NORA_CLIENT_SECRET", "NORA_ORGANIZATION_ID"],
    baseUrlVariable: "NORA_BASE_URL",
    secret: secrets.nora
  },
  {
    name: "Norce",
    layer: Norce.layerConfig(),
    env: {
      NORCE_CLIENT_ID: "bef42e54",
      NORCE_CLIENT_SECRET: secrets.norce,
      NORCE_APPLICATION_ID: "1042",
      NORCE_CLIENT_NAME: "norce-open-demo",
      NORCE_ENVIRONMENT: "playground"
    },
    required: ["NORCE_CLIENT_ID", "NORCE_CLIENT_SECRET", "NORCE_APPLICATION_ID"],
    baseUrlVariable: "NORCE_BASE_URL",
    secret: secrets.norce
  },
  {
    name: "Nomba",
    layer: Nomba.layerConfig(),
    env: {
      NOMBA_CLIENT_ID: "2242b79d-f2cf-4ccc-ada1-e890bd1a9f0d",
      NOMBA_CLIENT_SECRET: secrets.nomba,
      NOMBA_ACCOUNT_ID: "01a10aeb-d989-460a-bbde-9842f2b4320f"
    },
    required: ["NOMBA_CLIENT_ID", "NOMBA_CLIENT_SECRET", "NOMBA_ACCOUNT_ID"],
    baseUrlVariable: "NOMBA_BASE_URL",
    secret: secrets.nomba
  },
  {
    name: "TokenProject",
    layer: TokenProject.layerConfig(),
    env: { TOKEN_PROJECT_KEY: "LJHyxcBqWKLhZdxZo9X5yBFvJQpWYfCT", TOKEN_PROJECT_SECRET: secrets.tokenProject },
    required: ["TOKEN_PROJECT_KEY", "TOKEN_PROJECT_SECRET"],
    baseUrlVariable: "TOKEN_PROJECT_BASE_URL",
    secret: secrets.tokenProject
  }
]

/**
 * Builds `layer` with `env` as the whole environment and an HttpClient that records every request: the
 * outcome of building the Layer, and how many requests building it sent (it must send none).
 */
const build = <A>(
  layer: Layer.Layer<A, ConfigError.ConfigError, HttpClient.HttpClient>,
  env: Readonly<Record<string, string>>
) =>
  Effect.gen(function*() {
    const memory = Memory.make(() => ({ status: 500 }))
    const exit = yield* Effect.exit(
      Effect.scoped(Layer.build(layer.pipe(Layer.provide(Layer.succeed(HttpClient.HttpClient, memory.client)))))
    ).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))
    return { exit, requests: memory.seen.length }
  })

const configError = <A>(exit: Exit.Exit<A, ConfigError.ConfigError>): ConfigError.ConfigError => {
  if (Exit.isSuccess(exit)) throw new Error("expected the Layer to fail")
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) throw new Error(`expected a ConfigError, got ${Cause.pretty(exit.cause)}`)
  return failure.value
}

/** Every way an error could be shown: none may contain a secret. */
const renderings = <A>(exit: Exit.Exit<A, ConfigError.ConfigError>): string =>
  Exit.isSuccess(exit)
    ? ""
    : [Cause.pretty(exit.cause), String(configError(exit)), JSON.stringify(configError(exit))].join("\n")

const allSecrets = Object.values(secrets)

describe("layerConfig", () => {
  for (const c of cases) {
    describe(c.name, () => {
      it.effect("builds from a complete environment without sending any request", () =>
        Effect.gen(function*() {
          const { exit, requests } = yield* build(c.layer, c.env)
          expect(Exit.isSuccess(exit)).toBe(true)
          expect(requests).toBe(0)
        }))

      for (const variable of c.required) {
        it.effect(`a missing ${variable} is a ConfigError naming it, when the Layer is built`, () =>
          Effect.gen(function*() {
            const { [variable]: _, ...env } = c.env
            const { exit, requests } = yield* build(c.layer, env)
            const error = configError(exit)
            expect(ConfigError.isConfigError(error)).toBe(true)
            expect(String(error)).toContain(variable)
            expect(requests).toBe(0)
            for (const secret of allSecrets) expect(renderings(exit)).not.toContain(secret)
          }))

        it.effect(`an empty ${variable} is a ConfigError naming it`, () =>
          Effect.gen(function*() {
            for (const empty of ["", "   "]) {
              const { exit } = yield* build(c.layer, { ...c.env, [variable]: empty })
              const error = configError(exit)
              expect(ConfigError.isConfigError(error)).toBe(true)
              expect(String(error)).toContain(variable)
              expect(String(error)).toContain("empty")
            }
          }))
      }

      it.effect(`${c.baseUrlVariable}: no scheme, plain http to a remote host, embedded credentials are refused`, () =>
        Effect.gen(function*() {
          for (
            const [url, why] of [
              ["api.example.com", /scheme/],
              ["http://api.example.com", /plain http/],
              ["ftp://api.example.com", /https/],
              [`https://user:${c.secret}@api.example.com`, /credentials must not be embedded/],
              ["", /https|empty/]
            ] as const
          ) {
            const { exit, requests } = yield* build(c.layer, { ...c.env, [c.baseUrlVariable]: url })
            const error = configError(exit)
            expect(String(error)).toContain(c.baseUrlVariable)
            expect(String(error)).toMatch(why)
            expect(requests).toBe(0)
            expect(renderings(exit)).not.toContain(c.secret)
          }
        }))

      it.effect("plain http to loopback only with TOLLGATE_ALLOW_INSECURE_LOOPBACK=true", () =>
        Effect.gen(function*() {
          const env = { ...c.env, [c.baseUrlVariable]: "http://127.0.0.1:4010" }
          const refused = yield* build(c.layer, env)
          expect(String(configError(refused.exit))).toContain("allowed explicitly")
          const allowed = yield* build(c.layer, { ...env, TOLLGATE_ALLOW_INSECURE_LOOPBACK: "true" })
          expect(Exit.isSuccess(allowed.exit)).toBe(true)
          const notBoolean = yield* build(c.layer, { ...env, TOLLGATE_ALLOW_INSECURE_LOOPBACK: "yes please" })
          expect(String(configError(notBoolean.exit))).toContain("TOLLGATE_ALLOW_INSECURE_LOOPBACK")
        }))
    })
  }

  describe("Norce specifics", () => {
    const env = cases[1]!.env
    it.effect("NORCE_SCOPE must be RFC 6749 scope values; NORCE_ENVIRONMENT playground, stage or prod", () =>
      Effect.gen(function*() {
        for (
          const [variable, value] of [
            ["NORCE_SCOPE", "lab \"x\""],
            ["NORCE_SCOPE", ""],
            ["NORCE_ENVIRONMENT", "dev"],
            ["NORCE_PLATFORM", "magento"],
            ["NORCE_REGION", "se/../x"]
          ] as const
        ) {
          const { exit } = yield* build(Norce.layerConfig(), { ...env, [variable]: value })
          expect(String(configError(exit))).toContain(variable)
          expect(renderings(exit)).not.toContain(secrets.norce)
        }
        for (const scope of ["stage prod", "lab", "production"]) {
          const ok = yield* build(Norce.layerConfig(), { ...env, NORCE_SCOPE: scope })
          expect(Exit.isSuccess(ok.exit)).toBe(true)
        }
      }))

    it.effect("Commerce needs NORCE_CLIENT_NAME unless NORCE_BASE_URL is set; Storm needs NORCE_BASE_URL", () =>
      Effect.gen(function*() {
        const { NORCE_CLIENT_NAME: _, ...withoutName } = env
        expect(String(configError((yield* build(Norce.layerConfig(), withoutName)).exit))).toContain(
          "NORCE_CLIENT_NAME"
        )
        const based = yield* build(Norce.layerConfig(), { ...withoutName, NORCE_BASE_URL: "https://acme.example" })
        expect(Exit.isSuccess(based.exit)).toBe(true)
        const storm = yield* build(Norce.layerConfig(), { ...withoutName, NORCE_PLATFORM: "storm" })
        expect(String(configError(storm.exit))).toContain("NORCE_BASE_URL")
        const badToken = yield* build(Norce.layerConfig(), { ...env, NORCE_TOKEN_URL: "identity.storm.io/1.0" })
        expect(String(configError(badToken.exit))).toContain("NORCE_TOKEN_URL")
      }))

    it.effect("the options read: Storm's token URL, the scope defaulting to the environment", () =>
      Effect.gen(function*() {
        const read = (vars: Record<string, string>) =>
          Effect.withConfigProvider(Norce.config, ConfigProvider.fromMap(new Map(Object.entries(vars))))
        const storm = yield* read({ ...env, NORCE_PLATFORM: "storm", NORCE_BASE_URL: "https://acme.storm.test" })
        expect(Norce.resolve(storm)).toMatchObject({
          right: { tokenUrl: Norce.stormTokenUrl, scope: "playground" }
        })
        const commerce = yield* read(env)
        expect(Norce.resolve(commerce)).toMatchObject({
          right: { tokenUrl: "https://norce-open-demo.api-se.playground.norce.tech/identity/1.0/connect/token" }
        })
      }))
  })

  describe("TokenProject specifics", () => {
    it.effect("TOKEN_PROJECT_TOKEN_LIFETIME is a duration", () =>
      Effect.gen(function*() {
        const env = cases[3]!.env
        const wrong = yield* build(TokenProject.layerConfig(), { ...env, TOKEN_PROJECT_TOKEN_LIFETIME: "soon" })
        expect(String(configError(wrong.exit))).toContain("TOKEN_PROJECT_TOKEN_LIFETIME")
        const options = yield* Effect.withConfigProvider(
          TokenProject.config,
          ConfigProvider.fromMap(new Map(Object.entries({ ...env, TOKEN_PROJECT_TOKEN_LIFETIME: "30 minutes" })))
        )
        expect(options.defaultLifetime).toBeDefined()
        // Overrides win over the environment, but an undefined override does not erase it.
        const merged = yield* build(TokenProject.layerConfig({ defaultLifetime: undefined }), env)
        expect(Exit.isSuccess(merged.exit)).toBe(true)
      }))

    // Regression (chaos suite): a zero or negative lifetime was accepted, and then every token request failed
    // as a malformed response from the provider instead of the Layer failing to build.
    it.effect("TOKEN_PROJECT_TOKEN_LIFETIME and defaultLifetime shorter than a millisecond are refused when built", () =>
      Effect.gen(function*() {
        const env = cases[3]!.env
        for (const lifetime of ["0 seconds", "-5 minutes", "0.0001 millis"]) {
          const { exit, requests } = yield* build(TokenProject.layerConfig(), {
            ...env,
            TOKEN_PROJECT_TOKEN_LIFETIME: lifetime
          })
          expect(String(configError(exit))).toContain("TOKEN_PROJECT_TOKEN_LIFETIME")
          expect(requests).toBe(0)
        }
        const direct = yield* build(
          TokenProject.layer({ key: "tp-key", secret: Redacted.make(secrets.tokenProject), defaultLifetime: 0 }),
          {}
        )
        expect(String(configError(direct.exit))).toContain("defaultLifetime")
        const fine = yield* build(TokenProject.layerConfig({ defaultLifetime: "1 millis" }), env)
        expect(Exit.isSuccess(fine.exit)).toBe(true)
      }))
  })

  describe("every error names its variable once", () => {
    // Each variable of each provider, with the values that make it fail: unset (where required), empty,
    // and malformed. The error's path is the variable, once; the messages Tollgate writes do not repeat it
    // (an unset variable keeps the config provider's own message, "Expected X to exist in …").
    const bad: ReadonlyArray<readonly [Case["name"], string, ReadonlyArray<string | undefined>]> = [
      ["Nora", "NORA_CLIENT_ID", [undefined, "", " "]],
      ["Nora", "NORA_CLIENT_SECRET", [undefined, "", " "]],
      ["Nora", "NORA_ORGANIZATION_ID", [undefined, ""]],
      ["Nora", "NORA_BASE_URL", ["", "nora.example", "http://nora.example", "http://127.0.0.1:1"]],
      ["Nora", "TOLLGATE_ALLOW_INSECURE_LOOPBACK", ["maybe"]],
      ["Norce", "NORCE_CLIENT_ID", [undefined, ""]],
      ["Norce", "NORCE_CLIENT_SECRET", [undefined, ""]],
      ["Norce", "NORCE_APPLICATION_ID", [undefined, ""]],
      ["Norce", "NORCE_PLATFORM", ["", "magento"]],
      ["Norce", "NORCE_SCOPE", ["", "a\\b"]],
      ["Norce", "NORCE_ENVIRONMENT", ["", "dev"]],
      ["Norce", "NORCE_CLIENT_NAME", [undefined, "", "a/b"]],
      ["Norce", "NORCE_REGION", ["", "se/.."]],
      ["Norce", "NORCE_BASE_URL", ["", "ftp://norce.example"]],
      ["Norce", "NORCE_TOKEN_URL", ["", "identity.storm.io"]],
      ["Norce", "TOLLGATE_ALLOW_INSECURE_LOOPBACK", ["maybe"]],
      ["Nomba", "NOMBA_CLIENT_ID", [undefined, ""]],
      ["Nomba", "NOMBA_CLIENT_SECRET", [undefined, ""]],
      ["Nomba", "NOMBA_ACCOUNT_ID", [undefined, ""]],
      ["Nomba", "NOMBA_BASE_URL", ["", "http://nomba.example"]],
      ["Nomba", "TOLLGATE_ALLOW_INSECURE_LOOPBACK", ["maybe"]],
      ["TokenProject", "TOKEN_PROJECT_KEY", [undefined, ""]],
      ["TokenProject", "TOKEN_PROJECT_SECRET", [undefined, ""]],
      ["TokenProject", "TOKEN_PROJECT_BASE_URL", ["", "ftp://tp.example"]],
      ["TokenProject", "TOKEN_PROJECT_TOKEN_LIFETIME", ["", "soon", "0 seconds"]],
      ["TokenProject", "TOLLGATE_ALLOW_INSECURE_LOOPBACK", ["maybe"]]
    ]
    const occurrences = (text: string, word: string) => text.split(new RegExp(`\\b${word}\\b`)).length - 1

    for (const [name, variable, values] of bad) {
      it.effect(`${name}: ${variable}`, () =>
        Effect.gen(function*() {
          const c = cases.find((c) => c.name === name)!
          for (const value of values) {
            const { [variable]: _, ...rest } = c.env
            const env = value === undefined ? rest : { ...rest, [variable]: value }
            const { exit } = yield* build(c.layer, env)
            const error = configError(exit)
            const shown = String(error)
            expect(error, shown).toMatchObject({ path: [variable] })
            const providers = `Expected ${variable} to exist in the provided map`
            if (value === undefined && (error as { readonly message?: string }).message === providers) {
              expect(error).toMatchObject({ _op: "MissingData" })
            } else {
              expect(occurrences(shown, variable), `${variable}=${JSON.stringify(value)}: ${shown}`).toBe(1)
            }
          }
        }))
    }
  })

  describe("secrets", () => {
    it.effect("never appear in the options read, their String() or JSON.stringify", () =>
      Effect.gen(function*() {
        const env = Object.assign({}, ...cases.map((c) => c.env)) as Record<string, string>
        const provider = ConfigProvider.fromMap(new Map(Object.entries(env)))
        const read = yield* Effect.withConfigProvider(
          Effect.all([Nora.config, Norce.config, Nomba.config, TokenProject.config]),
          provider
        )
        const shown = [JSON.stringify(read), String(read), ...read.map((options) => `${JSON.stringify(options)}`)]
          .join()
        for (const secret of allSecrets) expect(shown).not.toContain(secret)
        expect(shown).toContain("<redacted>")
      }))
  })
})
