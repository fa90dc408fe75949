import { describe, expect, it } from "@effect/vitest"
import * as NorceSandbox from "@tollgate/testing/NorceSandbox"
import * as Sandbox from "@tollgate/testing/Sandbox"
import { Effect } from "effect"
import { jwtPattern, leaks, lines, runCli } from "./utils.js"

const { clientId, clientSecret } = NorceSandbox.defaultCredentials

// The Norce emulator on loopback, as any standards-compliant authorization server would be.
// The generic provider meets the Norce emulator as a plain RFC 6749 server: HTTP Basic and a default scope.
const norceServer = Effect.map(Sandbox.make({ norce: { acceptBasicAuth: true, requireScope: false } }), (sandbox) => ({
  tokenUrl: `${sandbox.norce.baseUrl}${NorceSandbox.tokenPaths.commerce}`,
  baseUrl: sandbox.norce.baseUrl
}))

describe("tollgate … oauth2 against the Norce emulator", () => {
  it.scopedLive("the secret from TOLLGATE_CLIENT_SECRET, HTTP Basic by default", () =>
    Effect.gen(function*() {
      const server = yield* norceServer
      const result = yield* runCli(
        ["token", "oauth2", "--token-url", server.tokenUrl, "--client-id", clientId, "--allow-insecure-loopback"],
        { env: { TOLLGATE_CLIENT_SECRET: clientSecret } }
      )
      expect(result.exitCode).toBe(0)
      expect(result.stderr).toBe("")
      expect(result.stdout).toMatch(/^provider +oauth2$/m)
      expect(result.stdout).toMatch(/^scope +playground stage prod$/m)
      expect(result.stdout).toMatch(/lifetime 10 min\)$/m)
      expect(leaks(result)).toEqual([])
    }))

  it.scopedLive("the secret from another variable (--secret-env), client_secret_post, a scope", () =>
    Effect.gen(function*() {
      const server = yield* norceServer
      const result = yield* runCli(
        [
          "token",
          "oauth2",
          "--token-url",
          server.tokenUrl,
          "--client-id",
          clientId,
          "--secret-env",
          "NORCE_SECRET",
          "--auth",
          "post",
          "--scope",
          "stage",
          "--json"
        ],
        { env: { NORCE_SECRET: clientSecret, TOLLGATE_ALLOW_INSECURE_LOOPBACK: "true" } }
      )
      expect(result.exitCode).toBe(0)
      expect(JSON.parse(result.stdout)).toMatchObject({ provider: "oauth2", sandbox: false, scope: "stage" })
      expect(leaks(result)).toEqual([])
    }))

  it.scopedLive("the secret from stdin (--secret-stdin), then an API call with --base-url", () =>
    Effect.gen(function*() {
      const server = yield* norceServer
      const token = yield* runCli(
        [
          "token",
          "oauth2",
          "--token-url",
          server.tokenUrl,
          "--client-id",
          clientId,
          "--secret-stdin",
          "--allow-insecure-loopback",
          "--header"
        ],
        { stdin: `${clientSecret}\n` }
      )
      expect(token.exitCode).toBe(0)
      expect(token.stdout).toMatch(new RegExp(`^Authorization: Bearer ${jwtPattern.source}\\n$`))
      expect(token.stdout).not.toContain(clientSecret)

      const call = yield* runCli(
        [
          "call",
          "oauth2",
          "GET",
          "/commerce/products/1.1/ListProducts",
          "--token-url",
          server.tokenUrl,
          "--client-id",
          clientId,
          "--secret-stdin",
          "--base-url",
          server.baseUrl,
          "--header",
          "ApplicationId: 1000",
          "--allow-insecure-loopback"
        ],
        { stdin: clientSecret }
      )
      expect(call.exitCode).toBe(0)
      expect(JSON.parse(call.stdout)).toMatchObject({ ItemCount: 3 })
      expect(leaks(call)).toEqual([])
    }))

  it.scopedLive("load through the generic provider", () =>
    Effect.gen(function*() {
      const server = yield* norceServer
      const result = yield* runCli(
        [
          "load",
          "oauth2",
          "/commerce/products/1.1/ListProducts",
          "-n",
          "12",
          "--token-url",
          server.tokenUrl,
          "--client-id",
          clientId,
          "--base-url",
          server.baseUrl,
          "--allow-insecure-loopback",
          "--json"
        ],
        { env: { TOLLGATE_CLIENT_SECRET: clientSecret } }
      )
      // Without the emulator's ApplicationId header every request is a 400: the run says so.
      expect(result.exitCode).toBe(1)
      const stats = JSON.parse(result.stdout)
      expect(stats).toMatchObject({
        requests: 12,
        succeeded: 0,
        failed: 12,
        tokenFetches: 1,
        failures: { "HTTP 400": 12 }
      })
      expect(lines(result.stderr).at(-1)).toBe("tollgate: 12 of 12 requests failed: 12× HTTP 400")
    }))

  it.live("--sandbox needs no settings, and flags still override it", () =>
    Effect.gen(function*() {
      const plain = yield* runCli(["token", "--sandbox", "oauth2", "--auth", "post", "--scope", "playground", "--json"])
      expect(plain.exitCode).toBe(0)
      expect(JSON.parse(plain.stdout)).toMatchObject({ scope: "playground" })

      const wrong = yield* runCli(["token", "--sandbox", "oauth2", "--secret-env", "WRONG"], {
        env: { WRONG: "not-the-sandbox-secret" }
      })
      expect(wrong.exitCode).toBe(1)
      expect(lines(wrong.stderr)).toEqual([
        "tollgate: oauth2 rejected the client credentials (HTTP 401, invalid_client, Client authentication failed). " +
        "Check the configured client id and secret; this is not retried."
      ])
      expect(leaks(wrong, ["not-the-sandbox-secret", clientSecret])).toEqual([])
    }))
})
