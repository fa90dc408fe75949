import { describe, expect, it } from "@effect/vitest"
import * as TollgateError from "@tollgate/core/TollgateError"
import { ConfigError, DateTime, Effect } from "effect"
import * as Errors from "../src/internal/errors.js"
import type { RunOptions } from "./utils.js"
import { leaks, lines, runCli } from "./utils.js"

// Library option names (camelCase words) must never reach the user; quoted values are the user's own.
const libraryName = /\b[a-z]+(?:[A-Z][a-z0-9]*)+\b/

const expectLine = (result: { exitCode: number; stdout: string; stderr: string }, exitCode: number, line: string) => {
  expect(result.exitCode).toBe(exitCode)
  expect(result.stdout).toBe("")
  expect(lines(result.stderr)).toEqual([line])
  expect(line.replace(/"[^"]*"/g, "\"\"")).not.toMatch(libraryName)
  expect(leaks(result)).toEqual([])
}

describe("every error line: the tollgate: prefix, the flag it is about", () => {
  // Every kind of mistake the parser, the flags' own checks and the session catch, with its exact line.
  const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string, RunOptions?]> = [
    [
      ["token", "stripe"],
      "tollgate: unknown provider \"stripe\": expected one of nora, norce, nomba, token-project, oauth2"
    ],
    [
      ["token", "--sandbox", "--time-scale", "5", "Nora"],
      "tollgate: unknown provider \"Nora\": expected one of nora, norce, nomba, token-project, oauth2"
    ],
    [["token"], "tollgate: missing argument <provider>: one of nora, norce, nomba, token-project, oauth2"],
    [["call", "--sandbox", "nora", "GET"], "tollgate: missing argument <path>"],
    [["mint", "nora"], "tollgate: unknown command: use token, call, load"],
    [["token", "nora", "extra"], "tollgate: unexpected argument \"extra\""],
    [["token", "nora", "--nope"], "tollgate: unknown flag --nope (--help lists the flags)"],
    [["token", "oauth2", "--auth", "digest"], "tollgate: --auth must be one of basic, post, got \"digest\""],
    [["token", "oauth2", "--auth=digest"], "tollgate: --auth must be one of basic, post, got \"digest\""],
    [["token", "oauth2", "--auth"], "tollgate: --auth needs a value: one of basic, post"],
    [["load", "--sandbox", "nora", "/x", "-n", "abc"], "tollgate: -n expects a whole number, got \"abc\""],
    [
      ["load", "--sandbox", "nora", "/x", "--concurrency=many"],
      "tollgate: --concurrency expects a whole number, got \"many\""
    ],
    [
      ["load", "--sandbox", "nora", "/x", "-c", "0"],
      "tollgate: --concurrency must be a whole number from 1 to 10000, got 0"
    ],
    [["load", "--sandbox", "nora", "/x", "-n"], "tollgate: -n needs a value: a whole number"],
    [["token", "--sandbox", "nora", "--time-scale"], "tollgate: --time-scale needs a value: a number"],
    [["token", "--sandbox", "nora", "--time-scale", "fast"], "tollgate: --time-scale expects a number, got \"fast\""],
    [
      ["token", "--sandbox", "nora", "--time-scale", "0"],
      "tollgate: --time-scale must be a positive number, at most 100000"
    ],
    [["token", "nora", "--time-scale", "2"], "tollgate: --time-scale only applies with --sandbox"],
    [["token", "--sandbox", "nora", "--header", "--json"], "tollgate: choose one of --header and --json"],
    [
      ["call", "--sandbox", "nora", "FETCH", "/x"],
      "tollgate: <METHOD> must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, got \"FETCH\""
    ],
    [
      ["call", "--sandbox", "nora", "GET", "https://elsewhere.example/x"],
      "tollgate: <path> must start with / and is relative to the provider's base URL (absolute URLs are refused, " +
      "so a token is never sent to another host)"
    ],
    [
      ["call", "--sandbox", "nora", "GET", "/x", "-H", "no-colon"],
      "tollgate: --header expects name:value, like --header 'Accept: application/json'"
    ],
    [
      ["--log-level", "loud", "token", "nora"],
      "tollgate: --log-level must be one of all, trace, debug, info, warning, error, fatal, none, got \"loud\""
    ],
    [
      ["token", "nora", "--log-level"],
      "tollgate: --log-level must be one of all, trace, debug, info, warning, error, fatal, none"
    ],
    [["--completions", "powershell"], "tollgate: --completions must be one of sh, bash, fish, zsh, got \"powershell\""],
    [
      ["token", "--sandbox", "nora", "--scope", "read"],
      "tollgate: --scope only applies to the oauth2 provider; nora is configured by its environment variables " +
      "(tollgate token --help lists them)"
    ],
    [
      ["load", "--sandbox", "oauth2", "/x", "--secret-env", "A", "--secret-stdin"],
      "tollgate: choose one of --secret-env and --secret-stdin"
    ],
    [
      ["call", "oauth2", "GET", "/x", "--token-url", "https://auth.example/token", "--client-id", "me"],
      "tollgate: call with the oauth2 provider needs --base-url, the API's address",
      { env: { TOLLGATE_CLIENT_SECRET: "s" } }
    ]
  ]

  for (const [args, line, options] of cases) {
    it.live(
      args.join(" ") || "(no arguments)",
      () => Effect.map(runCli(args, options), (result) => expectLine(result, 2, line))
    )
  }

  it.live("URLs refused for plain http to loopback name the flag and the variable, never the library option", () =>
    Effect.gen(function*() {
      const allow = "(--allow-insecure-loopback or TOLLGATE_ALLOW_INSECURE_LOOPBACK=true)"
      expectLine(
        yield* runCli(["token", "oauth2", "--token-url", "http://127.0.0.1:9/token", "--client-id", "me"], {
          env: { TOLLGATE_CLIENT_SECRET: "s" }
        }),
        2,
        `tollgate: invalid configuration: --token-url: plain http to loopback must be allowed explicitly ${allow} ` +
          "(got http://127.0.0.1:9/token)"
      )
      expectLine(
        yield* runCli(["token", "nomba"], {
          env: {
            NOMBA_CLIENT_ID: "id",
            NOMBA_CLIENT_SECRET: "s",
            NOMBA_ACCOUNT_ID: "acc",
            NOMBA_BASE_URL: "http://localhost:9"
          }
        }),
        2,
        `tollgate: invalid nomba configuration: NOMBA_BASE_URL: plain http to loopback must be allowed explicitly ${allow} ` +
          "(got http://localhost:9/)"
      )
    }))

  it.live("a one-shot command that cannot get a token says so, and promises no retry it will not make", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["token", "oauth2", "--token-url", "https://127.0.0.1:9/t", "--client-id", "me"], {
        env: { TOLLGATE_CLIENT_SECRET: "s" }
      })
      expect(result.exitCode).toBe(1)
      expect(lines(result.stderr)).toEqual([
        "tollgate: The oauth2 token endpoint is unavailable: the connection failed (ECONNREFUSED)."
      ])
    }))
})

describe("library errors in the command line's words", () => {
  it("the token endpoint's outage: what was tried and when to try again, no retry promised", () => {
    const outage = new TollgateError.TokenEndpointUnavailable({
      provider: "nora",
      reason: "server error",
      status: 503,
      attempts: 3,
      retryAt: DateTime.unsafeMake("2030-01-02T03:04:05Z")
    })
    const { exitCode, message } = Errors.describe(outage)
    expect(exitCode).toBe(1)
    expect(message).toBe(
      "The nora token endpoint is unavailable: server error (HTTP 503, 3 attempt(s)). Retry after " +
        "2030-01-02T03:04:05.000Z."
    )
    expect(message).not.toMatch(/later request|tries again|backoff/i)
  })

  it("a variable nested under its own name is named once", () => {
    const error = ConfigError.InvalidData(["NORA_CLIENT_SECRET", "NORA_CLIENT_SECRET"], "Expected a non-empty string")
    expect(Errors.describeConfigError(error)).toBe("NORA_CLIENT_SECRET: Expected a non-empty string")
    const missing = ConfigError.MissingData(
      ["NORA_CLIENT_ID", "NORA_CLIENT_ID"],
      "Expected NORA_CLIENT_ID to exist in the process context"
    )
    expect(Errors.describeConfigError(missing)).toBe("NORA_CLIENT_ID is not set")
  })

  it("a library option in a message becomes the flag and the variable", () => {
    expect(Errors.inCliTerms("must be allowed explicitly (allowInsecureLoopback)")).toBe(
      "must be allowed explicitly (--allow-insecure-loopback or TOLLGATE_ALLOW_INSECURE_LOOPBACK=true)"
    )
  })
})
