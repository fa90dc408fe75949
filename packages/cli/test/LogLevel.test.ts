import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { leaks, lines, runCli } from "./utils.js"

// A token endpoint nobody listens on: the token cache logs a warning, then the command fails.
const unreachable = ["--token-url", "https://127.0.0.1:9/token", "--client-id", "me"]
const env = { TOLLGATE_CLIENT_SECRET: "log-level-secret-9c1f" }
const failure = "tollgate: The oauth2 token endpoint is unavailable: the connection failed (ECONNREFUSED)."

describe("--log-level works wherever it is placed", () => {
  const placements: ReadonlyArray<ReadonlyArray<string>> = [
    ["--log-level", "warning", "token", "oauth2", ...unreachable],
    ["token", "--log-level", "warning", "oauth2", ...unreachable],
    ["token", "oauth2", "--log-level", "warning", ...unreachable],
    ["token", "oauth2", ...unreachable, "--log-level", "warning"],
    ["token", "oauth2", "--log-level=debug", ...unreachable],
    // After the positional arguments and before more flags, where @effect/cli itself does not find it.
    ["call", "oauth2", "GET", "/x", "--log-level", "info", ...unreachable, "--base-url", "https://127.0.0.1:9"],
    ["load", "oauth2", "/x", "-n", "1", "--log-level", "trace", "--base-url", "https://127.0.0.1:9", ...unreachable]
  ]

  for (const args of placements) {
    it.live(args.join(" "), () =>
      Effect.gen(function*() {
        const result = yield* runCli(args, { env })
        expect(result.exitCode).toBe(1)
        expect(result.stderr).toMatch(/^\[[\d:.]+\] WARN \(#\d+\): Tollgate could not obtain a token$/m)
        expect(lines(result.stderr).at(-1)).toMatch(/^tollgate: /)
        expect(leaks(result, [env.TOLLGATE_CLIENT_SECRET])).toEqual([])
      }))
  }

  it.live("without it, or at none or error, only the failure line", () =>
    Effect.gen(function*() {
      for (
        const args of [
          ["token", "oauth2", ...unreachable],
          ["token", "oauth2", ...unreachable, "--log-level", "none"],
          ["--log-level", "error", "token", "oauth2", ...unreachable]
        ]
      ) {
        const result = yield* runCli(args, { env })
        expect(result.exitCode, args.join(" ")).toBe(1)
        expect(lines(result.stderr), args.join(" ")).toEqual([failure])
      }
    }))

  it.live("it changes nothing else: the command's output is the same", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["token", "--sandbox", "nomba", "--json", "--log-level", "info"])
      expect(result.exitCode).toBe(0)
      expect(JSON.parse(result.stdout)).toMatchObject({ provider: "nomba", sandbox: true })
    }))

  it.live("after --, it is an argument like any other", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["call", "--sandbox", "nora", "GET", "--", "--log-level"])
      expect(result.exitCode).toBe(2)
      expect(lines(result.stderr)).toHaveLength(1)
      expect(result.stderr).toMatch(/^tollgate: <path> must start with \//)
    }))
})
