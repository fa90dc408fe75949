import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import type { Result } from "./utils.js"
import { leaks, lines } from "./utils.js"

const root = fileURLToPath(new URL("../../..", import.meta.url))

/** `node --import tsx packages/cli/src/bin.ts …` from the repository root, with only `env` set. */
const tollgate = (
  args: ReadonlyArray<string>,
  options?: { readonly env?: Record<string, string>; readonly stdin?: string }
): Effect.Effect<Result> =>
  Effect.async<Result>((resume) => {
    const child = spawn(process.execPath, ["--import", "tsx", "packages/cli/src/bin.ts", ...args], {
      cwd: root,
      env: { PATH: process.env["PATH"] ?? "", ...options?.env },
      stdio: ["pipe", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.stdin.end(options?.stdin ?? "")
    child.on("close", (code) => resume(Effect.succeed({ exitCode: code ?? -1, stdout, stderr })))
    return Effect.sync(() => child.kill())
  })

describe("tollgate as a real process", () => {
  it.live("token, call, load, bad input, help: exit codes and streams", () =>
    Effect.gen(function*() {
      const [token, notFound, stdinSecret, unknown, unconfigured, load, help, json, badCount, completions] =
        yield* Effect
          .all([
            tollgate(["token", "--sandbox", "nora"]),
            tollgate(["call", "--sandbox", "nora", "GET", "/api/forms/frm_missing"]),
            tollgate(["token", "--sandbox", "oauth2", "--secret-stdin", "--header"], {
              stdin: "norce-sandbox-secret\n"
            }),
            tollgate(["token", "stripe"]),
            tollgate(["call", "nora", "GET", "/api/forms"], { env: { NORA_CLIENT_SECRET: "a-real-looking-secret" } }),
            tollgate(["load", "--sandbox", "nora", "/api/forms", "--requests", "70", "--concurrency", "10"]),
            tollgate(["--help"]),
            tollgate(["call", "--sandbox", "nomba", "GET", "/v1/accounts", "--json", "--log-level", "error"]),
            tollgate(["load", "--sandbox", "nora", "/api/forms", "-n", "many"]),
            tollgate(["--completions", "bash"])
          ], { concurrency: "unbounded" })

      expect(token.exitCode).toBe(0)
      expect(token.stderr).toBe("")
      expect(token.stdout).toMatch(/^provider +nora \(sandbox\)\ntoken +•+ \(hidden: JWT/)
      expect(leaks(token)).toEqual([])

      expect(notFound.exitCode).toBe(1)
      expect(JSON.parse(notFound.stdout)).toMatchObject({ statusCode: 404 })
      expect(lines(notFound.stderr)).toHaveLength(1)
      expect(notFound.stderr).toMatch(/^404 Not Found {2}GET \/api\/forms\/frm_missing /)

      expect(stdinSecret.exitCode).toBe(0)
      expect(stdinSecret.stdout).toMatch(/^Authorization: Bearer eyJ[\w-]+\.[\w-]+\.[\w-]+\n$/)
      expect(stdinSecret.stderr).toBe("")

      expect(unknown.exitCode).toBe(2)
      expect(unknown.stdout).toBe("")
      expect(lines(unknown.stderr)).toEqual([
        "tollgate: unknown provider \"stripe\": expected one of nora, norce, nomba, token-project, oauth2"
      ])

      expect(unconfigured.exitCode).toBe(2)
      expect(lines(unconfigured.stderr)).toEqual([
        "tollgate: nora is not configured: NORA_CLIENT_ID and NORA_ORGANIZATION_ID are not set " +
        "(tollgate call --help lists the variables), or try --sandbox"
      ])
      expect(leaks(unconfigured, ["a-real-looking-secret"])).toEqual([])

      expect(load.exitCode).toBe(0)
      expect(load.stdout).toMatch(/│ 429s seen +│ +0 │/)
      expect(load.stdout).toMatch(/│ succeeded +│ +70 \(100%\) │/)
      expect(lines(load.stderr).at(-1)).toMatch(/^nora: 70\/70 requests \(100%\), ok 70, failed 0, /)

      expect(help.exitCode).toBe(0)
      expect(lines(help.stdout).join("\n")).toContain("token <provider>")

      expect(json.exitCode).toBe(0)
      expect(json.stderr).toBe("")
      expect(JSON.parse(json.stdout)).toMatchObject({ provider: "nomba", status: 200, body: { code: "00" } })

      expect(badCount.exitCode).toBe(2)
      expect(badCount.stdout).toBe("")
      expect(lines(badCount.stderr)).toEqual(["tollgate: -n expects a whole number, got \"many\""])

      expect(completions.exitCode).toBe(0)
      expect(completions.stdout).toMatch(/^complete -F _tollgate_bash_completions .* tollgate$/m)
      expect(completions.stdout).toMatch(/opts="[^"]* nora norce nomba token-project oauth2"/)
    }), 90_000)
})
