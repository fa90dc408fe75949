/**
 * Norce Commerce through Tollgate: standard OAuth2 client credentials with the environment as scope,
 * the `ApplicationId` header on every request, and a guard on the token endpoint itself (3 requests
 * per minute plus a burst of 20), so even a crash loop cannot get the account throttled.
 *
 *   pnpm tsx examples/norce.ts
 *
 * With NORCE_CLIENT_ID, NORCE_CLIENT_SECRET, NORCE_APPLICATION_ID and NORCE_CLIENT_NAME set (and
 * NORCE_ENVIRONMENT, NORCE_REGION as needed) it talks to the real API; otherwise to the sandbox.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Norce from "@tollgate/providers/norce"
import { NorceSandbox } from "@tollgate/testing"
import { Console, Effect, Redacted } from "effect"
import { realOrSandbox } from "./support.js"

const NorceLive = realOrSandbox({
  variable: "NORCE_CLIENT_ID",
  real: Norce.layerConfig(),
  emulator: NorceSandbox.make(),
  sandboxed: (sandbox) =>
    Norce.layer({
      clientId: sandbox.credentials.clientId,
      clientSecret: Redacted.make(sandbox.credentials.clientSecret),
      applicationId: sandbox.credentials.applicationId,
      // The sandbox serves the Commerce paths (identity/1.0/connect/token, commerce/...) on one host.
      baseUrl: sandbox.baseUrl,
      allowInsecureLoopback: true
    })
})

const program = Effect.gen(function*() {
  const norce = yield* Norce.NorceClient
  const application = yield* norce.get("/commerce/metadata/1.1/GetApplication?format=json").pipe(
    Effect.flatMap((response) => response.json)
  )
  yield* Console.log("GetApplication:", JSON.stringify(application))

  // Invalidating the token forces renewals; the guard on the token endpoint spaces them out instead of
  // hammering it.
  const tokens = yield* Norce.NorceTokens
  for (let i = 0; i < 3; i++) {
    const token = yield* tokens.get
    yield* tokens.invalidate(token)
  }
  const stats = yield* tokens.stats
  yield* Console.log(`token requests so far: ${stats.fetches} (the endpoint allows 3 per minute plus a burst of 20)`)
})

program.pipe(Effect.provide(NorceLive), Effect.provide(NodeHttpClient.layerUndici), NodeRuntime.runMain)
