/**
 * The Token project through Tollgate: key and secret as query parameters for a JWT without `exp`
 * (renewed on 401, or after a configurable lifetime), and a limit of 10 requests per any 2 minutes for
 * each endpoint, kept in step with its `X-RateLimit-*` headers.
 *
 *   pnpm tsx examples/token-project.ts
 *
 * With TOKEN_PROJECT_KEY and TOKEN_PROJECT_SECRET set it talks to the real API (TOKEN_PROJECT_BASE_URL
 * overrides the host); otherwise to the sandbox.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as TokenProject from "@tollgate/providers/token-project"
import { TokenProjectSandbox } from "@tollgate/testing"
import { Console, Effect, Redacted } from "effect"
import { realOrSandbox } from "./support.js"

const TokenProjectLive = realOrSandbox({
  variable: "TOKEN_PROJECT_KEY",
  real: TokenProject.layerConfig(),
  emulator: TokenProjectSandbox.make(),
  sandboxed: (sandbox) =>
    TokenProject.layer({
      key: sandbox.credentials.key,
      secret: Redacted.make(sandbox.credentials.secret),
      baseUrl: sandbox.baseUrl,
      allowInsecureLoopback: true
    })
})

const program = Effect.gen(function*() {
  const api = yield* TokenProject.TokenProjectClient
  // Each endpoint has its own budget of 10 per 2 minutes: five calls to each fit at once.
  for (const path of ["/notarizations/stamps", "/storage/files"]) {
    for (let i = 0; i < 5; i++) {
      const response = yield* api.get(path)
      yield* Console.log(
        `GET ${path} -> ${response.status}, remaining ${response.headers["x-ratelimit-remaining"] ?? "?"} of ${
          response.headers["x-ratelimit-limit"] ?? "?"
        }`
      )
    }
  }
})

program.pipe(Effect.provide(TokenProjectLive), Effect.provide(NodeHttpClient.layerUndici), NodeRuntime.runMain)
