/**
 * The CLI's registry is a loop over the definitions of `@tollgate/providers`: each entry reads the
 * definition's variables, builds from its `config`, and points it at its emulator with the emulator's own
 * credentials and limits. A made-up definition gets an entry the same way.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import * as Field from "@tollgate/providers/Field"
import * as Provider from "@tollgate/providers/Provider"
import * as Definitions from "@tollgate/providers/Providers"
import * as TokenEndpoint from "@tollgate/providers/TokenEndpoint"
import * as Sandbox from "@tollgate/testing/Sandbox"
import { ConfigProvider, Effect, Redacted } from "effect"
import * as Providers from "../src/Providers.js"

describe("the CLI registry", () => {
  it("has one entry per definition, with its title and variables, and oauth2 besides", () => {
    expect(Providers.presets.map((entry) => entry.name)).toEqual(Definitions.all.map((definition) => definition.name))
    expect(Providers.names).toEqual(["nora", "norce", "nomba", "token-project", "oauth2"])
    for (const definition of Definitions.all) {
      const entry = Providers.registry[definition.name]
      expect(entry.title).toBe(definition.title)
      expect(entry.variables).toEqual(Object.values(definition.variables))
    }
    expect(Providers.nora.documentedLimit).toEqual({ limit: 60, windowMillis: 60_000 })
    expect(Providers.tokenProject.documentedLimit).toEqual({ limit: 10, windowMillis: 120_000, perEndpoint: true })
    expect([Providers.norce.documentedLimit, Providers.nomba.documentedLimit]).toEqual([undefined, undefined])
  })

  it.scopedLive("fromSandbox: each provider against its emulator (on loopback, 60x), with the emulator's limits", () =>
    Effect.gen(function*() {
      const sandbox = yield* Sandbox.make({ timeScale: 60 })
      for (const entry of Providers.presets) {
        const built = yield* entry.fromSandbox(sandbox)
        const token = yield* built.tokens.get
        expect(Redacted.value(token.value).length).toBeGreaterThan(0)
        expect(built.limit).toEqual(
          entry.name === "nora"
            ? { limit: 60, windowMillis: 1000 }
            : entry.name === "token-project"
            ? { limit: 10, windowMillis: 2000, perEndpoint: true }
            : undefined
        )
      }
      for (const served of [sandbox.nora, sandbox.norce, sandbox.nomba, sandbox.tokenProject]) {
        expect((yield* served.recording).tokenCounts.issue).toBe(1)
      }
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

  it.scoped("a definition of your own gets an entry that builds from its variables", () =>
    Effect.gen(function*() {
      const Pit = Provider.define({ clientId: Field.Text, clientSecret: Field.Secret }, {
        name: "pit",
        title: "Pit",
        key: "@test/Pit",
        variables: { clientId: "PIT_ID", clientSecret: "PIT_SECRET", baseUrl: "PIT_URL" },
        baseUrl: "https://pit.example",
        token: TokenEndpoint.oauth2((o) => ({ ...o, tokenUrl: "https://pit.example/token" }))
      })
      const entry = Providers.entry(Pit)
      expect(entry.variables).toEqual(["PIT_ID", "PIT_SECRET", "PIT_URL"])
      const seen: Array<string> = []
      const http = HttpClient.make((request) =>
        Effect.sync(() => {
          seen.push(request.url)
          return new Response(JSON.stringify({ access_token: "pit-token", expires_in: 60 }), {
            headers: { "content-type": "application/json" }
          })
        }).pipe(Effect.map((response) => HttpClientResponse.fromWeb(request, response)))
      )
      const built = yield* entry.fromEnv().pipe(
        Effect.provideService(HttpClient.HttpClient, http),
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["PIT_ID", "me"], ["PIT_SECRET", "s3cret"]])))
      )
      expect(Redacted.value((yield* built.tokens.get).value)).toBe("pit-token")
      expect(seen).toEqual(["https://pit.example/token"])
      expect(built.name).toBe("pit")
    }))
})
