/**
 * A worker that talks to four APIs at once. Each provider is a Layer; the program names the clients
 * it needs, and the wiring is one `Layer.mergeAll`. Every provider has its own token cache, its own
 * budget and its own Tag, so nothing is shared by accident.
 *
 *   pnpm tsx examples/worker.ts
 *
 * Each provider uses the real API when its variables are set, and its sandbox otherwise.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpBody from "@effect/platform/HttpBody"
import * as Nomba from "@tollgate/providers/nomba"
import * as Nora from "@tollgate/providers/nora"
import * as Norce from "@tollgate/providers/norce"
import * as TokenProject from "@tollgate/providers/token-project"
import { NombaSandbox, NoraSandbox, NorceSandbox, TokenProjectSandbox } from "@tollgate/testing"
import { Console, Effect, Layer, Redacted } from "effect"
import { createHash } from "node:crypto"
import { realOrSandbox } from "./support.js"

const Providers = Layer.mergeAll(
  realOrSandbox({
    variable: "NORA_CLIENT_ID",
    real: Nora.layerConfig(),
    emulator: NoraSandbox.make(),
    sandboxed: (s) =>
      Nora.layer({
        clientId: s.credentials.clientId,
        clientSecret: Redacted.make(s.credentials.clientSecret),
        organizationId: s.credentials.organizationId,
        baseUrl: s.baseUrl,
        allowInsecureLoopback: true
      })
  }),
  realOrSandbox({
    variable: "NORCE_CLIENT_ID",
    real: Norce.layerConfig(),
    emulator: NorceSandbox.make(),
    sandboxed: (s) =>
      Norce.layer({
        clientId: s.credentials.clientId,
        clientSecret: Redacted.make(s.credentials.clientSecret),
        applicationId: s.credentials.applicationId,
        baseUrl: s.baseUrl,
        allowInsecureLoopback: true
      })
  }),
  realOrSandbox({
    variable: "NOMBA_CLIENT_ID",
    real: Nomba.layerConfig(),
    emulator: NombaSandbox.make(),
    sandboxed: (s) =>
      Nomba.layer({
        clientId: s.credentials.clientId,
        clientSecret: Redacted.make(s.credentials.clientSecret),
        accountId: s.credentials.accountId,
        baseUrl: s.baseUrl,
        allowInsecureLoopback: true
      })
  }),
  realOrSandbox({
    variable: "TOKEN_PROJECT_KEY",
    real: TokenProject.layerConfig(),
    emulator: TokenProjectSandbox.make(),
    sandboxed: (s) =>
      TokenProject.layer({
        key: s.credentials.key,
        secret: Redacted.make(s.credentials.secret),
        baseUrl: s.baseUrl,
        allowInsecureLoopback: true
      })
  })
)

// One job of the worker: read from three APIs and record the result in the fourth.
const job = (n: number) =>
  Effect.gen(function*() {
    const nora = yield* Nora.NoraClient
    const norce = yield* Norce.NorceClient
    const nomba = yield* Nomba.NombaClient
    const stamps = yield* TokenProject.TokenProjectClient
    const [forms, application, balance] = yield* Effect.all([
      Effect.flatMap(nora.get("/api/forms"), (r) => r.json),
      Effect.flatMap(norce.get("/commerce/metadata/1.1/GetApplication?format=json"), (r) => r.json),
      Effect.flatMap(nomba.get("/v1/accounts/balance"), Nomba.envelope)
    ], { concurrency: "unbounded" })
    // A notarization stamps the SHA-256 of what was read.
    const hash = createHash("sha256").update(JSON.stringify([forms, application, balance])).digest("hex")
    const stamp = yield* stamps.post("/notarizations/stamps", { body: HttpBody.unsafeJson({ hash }) })
    return { n, forms: (forms as { readonly total: number }).total, application, balance, stamped: stamp.status }
  })

const program = Effect.gen(function*() {
  const results = yield* Effect.forEach([1, 2, 3], job, { concurrency: "unbounded" })
  for (const result of results) yield* Console.log(JSON.stringify(result))
})

program.pipe(Effect.provide(Providers), Effect.provide(NodeHttpClient.layerUndici), NodeRuntime.runMain)
