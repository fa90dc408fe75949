import { describe, expect, it } from "@effect/vitest"
import * as NoraSandbox from "@tollgate/testing/NoraSandbox"
import * as NorceSandbox from "@tollgate/testing/NorceSandbox"
import * as Sandbox from "@tollgate/testing/Sandbox"
import { Effect } from "effect"
import type { RunOptions } from "./utils.js"
import { jwtPattern, leaks, runCli, sandboxSecrets } from "./utils.js"

describe("no secret in any output", () => {
  it.scopedLive("client secrets never, tokens only with --reveal or --header, logs included", () =>
    Effect.gen(function*() {
      // The generic oauth2 provider meets the Norce emulator as a plain RFC 6749 server (HTTP Basic, default scope).
      const sandbox = yield* Sandbox.make({ norce: { acceptBasicAuth: true, requireScope: false } })
      const tokenUrl = `${sandbox.norce.baseUrl}${NorceSandbox.tokenPaths.commerce}`
      const userSecret = "user-secret-value-7d1e"
      const noraEnv = {
        NORA_CLIENT_ID: NoraSandbox.defaultCredentials.clientId,
        NORA_CLIENT_SECRET: NoraSandbox.defaultCredentials.clientSecret,
        NORA_ORGANIZATION_ID: NoraSandbox.defaultCredentials.organizationId,
        NORA_BASE_URL: sandbox.nora.baseUrl,
        TOLLGATE_ALLOW_INSECURE_LOOPBACK: "true"
      }
      const norceSecret = { TOLLGATE_CLIENT_SECRET: NorceSandbox.defaultCredentials.clientSecret }
      const runs: ReadonlyArray<readonly [ReadonlyArray<string>, RunOptions, number]> = [
        [["token", "nora"], { env: noraEnv }, 0],
        [["token", "nora", "--json"], { env: noraEnv }, 0],
        [["call", "nora", "GET", "/api/forms"], { env: noraEnv }, 0],
        [["load", "nora", "/api/forms", "-n", "5"], { env: noraEnv }, 0],
        [["load", "--sandbox", "nomba", "/v1/accounts", "-n", "5", "--json"], {}, 0],
        [["token", "--sandbox", "token-project", "--json"], {}, 0],
        [["token", "--sandbox", "norce"], {}, 0],
        [[
          "token",
          "oauth2",
          "--token-url",
          tokenUrl,
          "--client-id",
          "norce-sandbox-client",
          "--allow-insecure-loopback"
        ], {
          env: norceSecret
        }, 0],
        // Refused before anything is sent: plain http to loopback was not allowed.
        [["token", "oauth2", "--token-url", tokenUrl, "--client-id", "norce-sandbox-client"], { env: norceSecret }, 2],
        // Sent, and rejected: the wrong secret is not echoed.
        [
          ["token", "oauth2", "--token-url", tokenUrl, "--client-id", "norce-sandbox-client", "--secret-stdin"],
          { env: { TOLLGATE_ALLOW_INSECURE_LOOPBACK: "true" }, stdin: userSecret },
          1
        ],
        [["--log-level", "trace", "load", "--sandbox", "nomba", "/v1/accounts", "-n", "3"], {}, 0]
      ]
      for (const [args, options, exitCode] of runs) {
        const result = yield* runCli(args, options)
        expect(result.exitCode, args.join(" ")).toBe(exitCode)
        expect(leaks(result, [...sandboxSecrets, userSecret]), args.join(" ")).toEqual([])
      }

      // Logs on (before the subcommand, where @effect/cli reads --log-level): the token cache's warnings.
      const logged = yield* runCli([
        "--log-level",
        "debug",
        "token",
        "oauth2",
        "--token-url",
        "https://127.0.0.1:9/token",
        "--client-id",
        "x",
        "--secret-env",
        "S"
      ], { env: { S: userSecret } })
      expect(logged.exitCode).toBe(1)
      expect(logged.stderr).toContain("WARN")
      expect(logged.stderr).toContain("Tollgate could not obtain a token")
      expect(leaks(logged, [userSecret])).toEqual([])

      // Asked for: the token is shown, and still no client secret.
      for (const args of [["--reveal"], ["--header"], ["--json", "--reveal"]]) {
        const result = yield* runCli(["token", "nora", ...args], { env: noraEnv })
        expect(result.exitCode).toBe(0)
        expect(result.stdout).toMatch(jwtPattern)
        expect(sandboxSecrets.some((secret) => result.stdout.includes(secret))).toBe(false)
      }
    }))
})
