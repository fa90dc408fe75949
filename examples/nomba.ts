/**
 * Nomba through Tollgate: the JSON grant with the `accountId` header, the `{code, description, data}`
 * envelope (a code other than "00" is a typed error even with HTTP 200), a token refreshed with its
 * refresh token 5 minutes before its absolute `expiresAt`, and revoked when the program ends.
 *
 *   pnpm tsx examples/nomba.ts
 *
 * With NOMBA_CLIENT_ID, NOMBA_CLIENT_SECRET and NOMBA_ACCOUNT_ID set it talks to the real API
 * (NOMBA_BASE_URL overrides the host); otherwise to the sandbox.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Nomba from "@tollgate/providers/nomba"
import { NombaSandbox } from "@tollgate/testing"
import { Console, Effect, Option, Redacted } from "effect"
import { realOrSandbox } from "./support.js"

const NombaLive = realOrSandbox({
  variable: "NOMBA_CLIENT_ID",
  real: Nomba.layerConfig(),
  emulator: NombaSandbox.make(),
  sandboxed: (sandbox) =>
    Nomba.layer({
      clientId: sandbox.credentials.clientId,
      clientSecret: Redacted.make(sandbox.credentials.clientSecret),
      accountId: sandbox.credentials.accountId,
      baseUrl: sandbox.baseUrl,
      allowInsecureLoopback: true
    })
})

const program = Effect.gen(function*() {
  const nomba = yield* Nomba.NombaClient
  // `envelope` reads `data` from Nomba's envelope, or fails with a typed ProviderError naming the code.
  const accounts = yield* nomba.get("/v1/accounts").pipe(Effect.flatMap(Nomba.envelope))
  yield* Console.log("accounts:", JSON.stringify(accounts))

  const token = yield* (yield* Nomba.NombaTokens).current
  yield* Console.log(
    Option.match(token, {
      onNone: () => "no token",
      onSome: (t) =>
        `token ${String(t.value)} with a refresh token: ${
          Option.isSome(t.refreshToken)
        }; it is revoked when the program ends`
    })
  )
})

program.pipe(Effect.provide(NombaLive), Effect.provide(NodeHttpClient.layerUndici), NodeRuntime.runMain)
