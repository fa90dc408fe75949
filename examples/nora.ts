/**
 * Nora (Formflow) through Tollgate: one cached Bearer token for the whole program and Nora's
 * 60-requests-per-minute budget, on an ordinary HttpClient.
 *
 *   pnpm tsx examples/nora.ts
 *
 * With NORA_CLIENT_ID, NORA_CLIENT_SECRET and NORA_ORGANIZATION_ID set it talks to the real API
 * (NORA_BASE_URL overrides the host); otherwise to the Nora sandbox on loopback.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Nora from "@tollgate/providers/nora"
import { NoraSandbox } from "@tollgate/testing"
import { Console, Effect, Option, Redacted } from "effect"
import { realOrSandbox } from "./support.js"

const NoraLive = realOrSandbox({
  variable: "NORA_CLIENT_ID",
  real: Nora.layerConfig(),
  emulator: NoraSandbox.make(),
  sandboxed: (sandbox) =>
    Nora.layer({
      clientId: sandbox.credentials.clientId,
      clientSecret: Redacted.make(sandbox.credentials.clientSecret),
      organizationId: sandbox.credentials.organizationId,
      baseUrl: sandbox.baseUrl,
      allowInsecureLoopback: true
    })
})

const program = Effect.gen(function*() {
  const nora = yield* Nora.NoraClient
  // Ten requests at once: one token request is made for all of them, and each takes a permit from
  // the 60-per-minute budget before it is sent.
  const statuses = yield* Effect.forEach(
    Array.from({ length: 10 }),
    () => Effect.map(nora.get("/api/forms"), (response) => response.status),
    { concurrency: "unbounded" }
  )
  yield* Console.log(`10 requests: ${statuses.join(" ")}`)

  const token = yield* (yield* Nora.NoraTokens).current
  yield* Console.log(
    Option.match(token, {
      onNone: () => "no token held",
      // The token prints as <redacted>; only its metadata is shown.
      onSome: (t) =>
        `token ${String(t.value)}, expires ${Option.map(t.expiresAt, String).pipe(Option.getOrElse(() => "never"))}`
    })
  )
  const stats = yield* (yield* Nora.NoraLimiter).stats
  yield* Console.log(`permits granted: ${stats.granted}, queued now: ${stats.queued}`)
})

program.pipe(Effect.provide(NoraLive), Effect.provide(NodeHttpClient.layerUndici), NodeRuntime.runMain)
