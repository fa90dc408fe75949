/**
 * The registry: every provider module is its definition's surface, and `Providers.all` is the one list
 * the CLI, the chaos suite and the demo loop over.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Sandbox } from "@tollgate/testing"
import { Cause, ConfigError, ConfigProvider, Effect, Exit, Layer, Option, Redacted } from "effect"
import * as Nomba from "../src/Nomba.js"
import * as Nora from "../src/Nora.js"
import * as Norce from "../src/Norce.js"
import * as Providers from "../src/Providers.js"
import * as TokenProject from "../src/TokenProject.js"
import * as Memory from "./utils/Memory.js"

const modules = [Nora, Norce, Nomba, TokenProject] as const

describe("Providers", () => {
  it("all lists each provider module's definition once, in order, by name", () => {
    expect(Providers.all.map((definition) => definition.name)).toEqual(["nora", "norce", "nomba", "token-project"])
    for (const [i, module] of modules.entries()) {
      const definition = Providers.all[i]!
      expect(module.definition).toBe(definition)
      expect(Providers.byName[definition.name]).toBe(definition)
      expect(Providers.isName(definition.name)).toBe(true)
      // The module's surface is its definition's, not a copy that could drift.
      expect([module.provider, module.make, module.layer, module.layerConfig, module.config, module.tokenSource])
        .toEqual([
          definition.name,
          definition.make,
          definition.layer,
          definition.layerConfig,
          definition.config,
          definition.tokenSource
        ])
      expect(module.defaultLimits).toBe(definition.defaultLimits)
    }
    expect(Providers.isName("oauth2")).toBe(false)
  })

  it("every variable is named by exactly one definition, and Tags keys are the ones 0.1 used", () => {
    const variables = Providers.all.flatMap((definition) => Object.values(definition.variables))
    expect(new Set(variables).size).toBe(variables.length)
    expect(Norce.variables.applicationId).toBe("NORCE_APPLICATION_ID")
    expect([Nora.NoraClient.key, Norce.NorceTokens.key, Nomba.NombaLimiter.key, TokenProject.TokenProjectClient.key])
      .toEqual([
        "@tollgate/providers/Nora/NoraClient",
        "@tollgate/providers/Norce/NorceTokens",
        "@tollgate/providers/Nomba/NombaLimiter",
        "@tollgate/providers/TokenProject/TokenProjectClient"
      ])
  })

  // The sandbox (in @tollgate/testing, below this package) pairs its emulators with definitions by name,
  // as the CLI's `--sandbox` and the demo do.
  it.effect("the sandbox has an emulator for every definition, under the definition's name", () =>
    Effect.map(Sandbox.makeMemory(), (sandbox) => {
      const emulators = [sandbox.nora, sandbox.norce, sandbox.nomba, sandbox.tokenProject].map((served) =>
        served.provider
      )
      expect(Providers.all.map((definition) => definition.name)).toEqual(emulators)
    }))

  it("the documented limits, as data", () => {
    expect(Providers.all.map((definition) => definition.limit)).toEqual([
      { limit: 60, windowMillis: 60_000, keyed: false },
      undefined,
      undefined,
      { limit: 10, windowMillis: 120_000, keyed: true }
    ])
    expect(Norce.definition.tokenLimits).toBe(Norce.tokenEndpointLimits)
  })

  // Issue 18 item 6: a header value that cannot be sent is refused where it enters, naming where it came from.
  it.effect("ApplicationId and accountId must be sendable header values, from the environment or from code", () =>
    Effect.gen(function*() {
      const memory = Memory.make(() => ({ status: 500 }))
      const build = (layer: Layer.Layer<any, ConfigError.ConfigError, HttpClient.HttpClient>) =>
        Effect.exit(
          Effect.scoped(Layer.build(layer.pipe(Layer.provide(Layer.succeed(HttpClient.HttpClient, memory.client)))))
        )
      const failure = (exit: Exit.Exit<unknown, ConfigError.ConfigError>) =>
        Option.getOrThrow(Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none())
      const env = (vars: Record<string, string>) =>
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(vars))))
      const norce = yield* build(Norce.layerConfig()).pipe(env({
        NORCE_CLIENT_ID: "c",
        NORCE_CLIENT_SECRET: "s3cret",
        NORCE_APPLICATION_ID: "1042\r\nX-Injected: 1",
        NORCE_CLIENT_NAME: "acme"
      }))
      expect(failure(norce)).toMatchObject({ _op: "InvalidData", path: ["NORCE_APPLICATION_ID"] })
      expect(String(failure(norce))).toContain("CR or LF")
      const nomba = yield* build(Nomba.layer({
        clientId: "c",
        clientSecret: Redacted.make("s3cret"),
        accountId: "acc\u0000ount"
      }))
      expect(failure(nomba)).toMatchObject({ _op: "InvalidData", path: ["accountId"] })
      expect(String(failure(nomba))).toContain("NUL")
      expect(memory.seen).toHaveLength(0)
    }))
})
