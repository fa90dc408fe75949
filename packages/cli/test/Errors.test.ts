import { describe, expect, it } from "@effect/vitest"
import * as NoraSandbox from "@tollgate/testing/NoraSandbox"
import * as Sandbox from "@tollgate/testing/Sandbox"
import { Effect } from "effect"
import type { Result } from "./utils.js"
import { leaks, lines, runCli, sandboxSecrets } from "./utils.js"

const wrongSecret = "wrong-secret-4f9a2c"
const secrets = [...sandboxSecrets, wrongSecret]

const noraEnv = (overrides: Record<string, string>): Record<string, string> => ({
  NORA_CLIENT_ID: NoraSandbox.defaultCredentials.clientId,
  NORA_CLIENT_SECRET: wrongSecret,
  NORA_ORGANIZATION_ID: NoraSandbox.defaultCredentials.organizationId,
  ...overrides
})

/** One clear line on stderr, nothing on stdout, a non-zero exit, no stack trace, no secret. */
const expectOneLine = (result: Result, exitCode: number, message: string | RegExp) => {
  expect(result.exitCode).toBe(exitCode)
  expect(result.stdout).toBe("")
  const errors = lines(result.stderr)
  expect(errors).toHaveLength(1)
  if (typeof message === "string") expect(errors[0]).toBe(message)
  else expect(errors[0]).toMatch(message)
  expect(leaks(result, secrets)).toEqual([])
}

describe("bad input: one line on stderr, a non-zero exit", () => {
  it.live("unknown provider, unknown command, missing argument", () =>
    Effect.gen(function*() {
      expectOneLine(
        yield* runCli(["token", "--sandbox", "stripe"]),
        2,
        "tollgate: unknown provider \"stripe\": expected one of nora, norce, nomba, token-project, oauth2"
      )
      expectOneLine(
        yield* runCli(["call", "github", "GET", "/"]),
        2,
        /^tollgate: unknown provider "github"/
      )
      expectOneLine(yield* runCli(["mint", "nora"]), 2, "tollgate: unknown command: use token, call, load")
      expectOneLine(
        yield* runCli(["token"]),
        2,
        "tollgate: missing argument <provider>: one of nora, norce, nomba, token-project, oauth2"
      )
      expectOneLine(
        yield* runCli([]),
        2,
        "tollgate: missing command: use token, call or load (tollgate --help explains each)"
      )
    }))

  it.live("missing variables name every one that is missing", () =>
    Effect.gen(function*() {
      expectOneLine(
        yield* runCli(["token", "nora"], { env: {} }),
        2,
        "tollgate: nora is not configured: NORA_CLIENT_ID, NORA_CLIENT_SECRET and NORA_ORGANIZATION_ID are not set " +
          "(tollgate token --help lists the variables), or try --sandbox"
      )
      expectOneLine(
        yield* runCli(["call", "nomba", "GET", "/v1/accounts"], { env: { NOMBA_CLIENT_ID: "id" } }),
        2,
        /^tollgate: nomba is not configured: NOMBA_CLIENT_SECRET and NOMBA_ACCOUNT_ID are not set/
      )
      expectOneLine(
        yield* runCli(["load", "token-project", "/x"], { env: { TOKEN_PROJECT_KEY: "k", TOKEN_PROJECT_SECRET: " " } }),
        2,
        /^tollgate: .*TOKEN_PROJECT_SECRET: set but empty/
      )
      expectOneLine(
        yield* runCli(["token", "norce"], {
          env: { NORCE_CLIENT_ID: "c", NORCE_CLIENT_SECRET: wrongSecret, NORCE_APPLICATION_ID: "1" }
        }),
        2,
        /^tollgate: .*NORCE_CLIENT_NAME/
      )
      expectOneLine(
        yield* runCli(["token", "oauth2", "--token-url", "https://auth.example.com/token", "--client-id", "me"]),
        2,
        "tollgate: the client secret is not set: put it in TOLLGATE_CLIENT_SECRET, or pipe it with --secret-stdin"
      )
      expectOneLine(
        yield* runCli(["token", "oauth2", "--token-url", "https://auth.example.com/token", "--client-id", "me"], {
          env: { TOLLGATE_CLIENT_SECRET: "" }
        }),
        2,
        /^tollgate: the client secret is not set/
      )
      expectOneLine(
        yield* runCli(["token", "oauth2", "--client-id", "me"]),
        2,
        "tollgate: the oauth2 provider needs --token-url (or --sandbox to try it on the emulator)"
      )
      expectOneLine(
        yield* runCli(["token", "oauth2", "--token-url", "https://a.example/t", "--secret-stdin"], { stdin: "\n" }),
        2,
        "tollgate: the oauth2 provider needs --client-id"
      )
      expectOneLine(
        yield* runCli(["token", "oauth2", "--token-url", "https://a.example/t", "--client-id", "x", "--secret-stdin"], {
          stdin: "\n"
        }),
        2,
        "tollgate: --secret-stdin: standard input was empty"
      )
    }))

  it.live("malformed URLs: no scheme, remote http, loopback http without permission", () =>
    Effect.gen(function*() {
      expectOneLine(
        yield* runCli(["token", "nora"], { env: noraEnv({ NORA_BASE_URL: "main.formflow-dev.net" }) }),
        2,
        "tollgate: invalid nora configuration: NORA_BASE_URL: expected an absolute URL with a scheme, like https:// " +
          "(got \"main.formflow-dev.net\")"
      )
      expectOneLine(
        yield* runCli(["token", "nora"], { env: noraEnv({ NORA_BASE_URL: "http://main.formflow-dev.net" }) }),
        2,
        /^tollgate: invalid nora configuration: NORA_BASE_URL: plain http is refused for a remote host; use https:\/\//
      )
      expectOneLine(
        yield* runCli(["token", "nora"], { env: noraEnv({ NORA_BASE_URL: "http://127.0.0.1:9" }) }),
        2,
        /^tollgate: invalid nora configuration: NORA_BASE_URL: plain http to loopback must be allowed explicitly/
      )
      expectOneLine(
        yield* runCli(["token", "oauth2", "--token-url", "auth.example.com/token", "--client-id", "me"], {
          env: { TOLLGATE_CLIENT_SECRET: wrongSecret }
        }),
        2,
        "tollgate: invalid configuration: --token-url: expected an absolute URL with a scheme, like https:// " +
          "(got \"auth.example.com/token\")"
      )
      expectOneLine(
        yield* runCli(["token", "oauth2", "--token-url", "http://auth.example.com/token", "--client-id", "me"], {
          env: { TOLLGATE_CLIENT_SECRET: wrongSecret }
        }),
        2,
        "tollgate: invalid configuration: --token-url: plain http is refused for a remote host; use https:// " +
          "(got http://auth.example.com/token)"
      )
      expectOneLine(
        yield* runCli([
          "call",
          "--sandbox",
          "oauth2",
          "GET",
          "/x",
          "--base-url",
          "http://api.example.com"
        ]),
        2,
        /^tollgate: invalid configuration: --base-url: plain http is refused for a remote host/
      )
    }))

  it.live("unreachable hosts", () =>
    Effect.gen(function*() {
      expectOneLine(
        yield* runCli(["token", "nora"], { env: noraEnv({ NORA_BASE_URL: "https://127.0.0.1:9" }) }),
        1,
        /^tollgate: The nora token endpoint is unavailable: the connection failed \(ECONNREFUSED\)/
      )
      expectOneLine(
        yield* runCli(["token", "oauth2", "--token-url", "https://127.0.0.1:9/oauth/token", "--client-id", "me"], {
          env: { TOLLGATE_CLIENT_SECRET: wrongSecret }
        }),
        1,
        /^tollgate: The oauth2 token endpoint is unavailable: the connection failed \(ECONNREFUSED\)/
      )
      // The token comes from the emulator, the API is unreachable.
      expectOneLine(
        yield* runCli(["call", "--sandbox", "oauth2", "GET", "/v1/things?q=1", "--base-url", "https://127.0.0.1:9"]),
        1,
        "tollgate: could not reach GET https://127.0.0.1:9/v1/things (ECONNREFUSED)"
      )
    }))

  it.scopedLive("invalid credentials", () =>
    Effect.gen(function*() {
      const sandbox = yield* Sandbox.make()
      expectOneLine(
        yield* runCli(["token", "nora", "--allow-insecure-loopback"], {
          env: noraEnv({ NORA_BASE_URL: sandbox.nora.baseUrl })
        }),
        1,
        "tollgate: nora rejected the client credentials (HTTP 401, Unauthorized, Invalid credentials). " +
          "Check the configured client id and secret; this is not retried."
      )
      expectOneLine(
        yield* runCli(["call", "nora", "GET", "/api/forms"], {
          env: noraEnv({ NORA_BASE_URL: sandbox.nora.baseUrl, TOLLGATE_ALLOW_INSECURE_LOOPBACK: "true" })
        }),
        1,
        /^tollgate: nora rejected the client credentials/
      )
      expectOneLine(
        yield* runCli([
          "token",
          "oauth2",
          "--token-url",
          `${sandbox.norce.baseUrl}/identity/1.0/connect/token`,
          "--client-id",
          "norce-sandbox-client",
          "--auth",
          "post",
          "--allow-insecure-loopback"
        ], { env: { TOLLGATE_CLIENT_SECRET: wrongSecret } }),
        1,
        /^tollgate: oauth2 rejected the client credentials \(HTTP 400, invalid_client/
      )
    }))

  it.live("flags that do not apply, or conflict", () =>
    Effect.gen(function*() {
      expectOneLine(
        yield* runCli(["token", "--sandbox", "nora", "--token-url", "https://auth.example.com/token"]),
        2,
        "tollgate: --token-url only applies to the oauth2 provider; nora is configured by its environment variables " +
          "(tollgate token --help lists them)"
      )
      expectOneLine(
        yield* runCli(["call", "--sandbox", "nomba", "GET", "/", "--base-url", "https://x.example"]),
        2,
        /^tollgate: --base-url only applies to the oauth2 provider/
      )
      expectOneLine(
        yield* runCli(["token", "nora", "--time-scale", "60"]),
        2,
        "tollgate: --time-scale only applies with --sandbox"
      )
      expectOneLine(
        yield* runCli(["token", "--sandbox", "oauth2", "--secret-env", "A", "--secret-stdin"]),
        2,
        "tollgate: choose one of --secret-env and --secret-stdin"
      )
      expectOneLine(
        yield* runCli(["call", "--sandbox", "oauth2", "POST", "/x", "--secret-stdin", "--data", "-"], {
          stdin: "secret\n"
        }),
        2,
        "tollgate: --data - and --secret-stdin cannot both read standard input"
      )
      expectOneLine(
        yield* runCli(["token", "--sandbox", "oauth2", "--secret-env", "not a name"]),
        2,
        "tollgate: --secret-env expects the name of an environment variable, like MY_CLIENT_SECRET"
      )
    }))

  it.live("no flag takes the secret itself", () =>
    Effect.gen(function*() {
      for (const flag of ["--client-secret", "--secret", "--password"]) {
        const result = yield* runCli(["token", "oauth2", flag, wrongSecret, "--token-url", "https://a.example/t"])
        expectOneLine(result, 2, `tollgate: unknown flag ${flag} (--help lists the flags)`)
        // The message names the flag, not what follows its `=`.
        const inline = yield* runCli([
          "token",
          "oauth2",
          `${flag}=${wrongSecret}`,
          "--token-url",
          "https://a.example/t"
        ])
        expectOneLine(inline, 2, `tollgate: unknown flag ${flag} (--help lists the flags)`)
      }
      const help = yield* runCli(["token", "--help"])
      expect(help.stdout).not.toMatch(/--client-secret|--secret\s/)
    }))
})
