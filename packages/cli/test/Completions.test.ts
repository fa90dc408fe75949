import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { runCli } from "./utils.js"

const providers = ["nora", "norce", "nomba", "token-project", "oauth2"]

/** What Bash offers for the words typed so far (the last one being completed), with `script` loaded. */
const bashComplete = (script: string, words: ReadonlyArray<string>): ReadonlyArray<string> => {
  const result = spawnSync("bash", [
    "--norc",
    "-c",
    `eval "$SCRIPT"; COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; ` +
    `_tollgate_bash_completions tollgate; printf '%s\\n' "\${COMPREPLY[@]}"`
  ], { encoding: "utf8", env: { PATH: process.env["PATH"] ?? "", SCRIPT: script } })
  expect(result.stderr).toBe("")
  return result.stdout.split("\n").filter((line) => line.length > 0)
}

describe("shell completions offer the providers", () => {
  it.live("bash: the providers are among each command's words, and bash completes them", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["--completions", "bash"])
      expect(result.exitCode).toBe(0)
      expect(result.stderr).toBe("")
      const script = result.stdout
      for (const command of ["token", "call", "load"]) {
        const opts = script.split("\n").find((line, i, all) => all[i - 1]?.trim() === `tollgate__${command})`)
        expect(opts, command).toMatch(/^\s*opts="-/)
        expect(opts!.trim().replace(/^opts="|"$/g, "").split(" ")).toEqual(expect.arrayContaining(providers))
      }
      // The root completes commands, not providers.
      expect(bashComplete(script, ["tollgate", ""])).not.toContain("nora")
      expect(bashComplete(script, ["tollgate", "to"])).toEqual(["token"])
      expect(bashComplete(script, ["tollgate", "token", "n"])).toEqual(["nora", "norce", "nomba"])
      expect(bashComplete(script, ["tollgate", "load", "to"])).toEqual(["token-project"])
      expect(bashComplete(script, ["tollgate", "call", "o"])).toEqual(["oauth2"])
      expect(bashComplete(script, ["tollgate", "token", "--au"])).toEqual(["--auth", "--audience"])
      expect(bashComplete(script, ["tollgate", "token", "oauth2", "--auth", ""])).toEqual(["basic", "post"])

      // `sh` is @effect/cli's other name for the Bash script.
      expect((yield* runCli(["--completions", "sh"])).stdout).toBe(script)
    }))

  it.live("fish and zsh: the provider argument is a choice", () =>
    Effect.gen(function*() {
      const fish = yield* runCli(["--completions", "fish"])
      expect(fish.exitCode).toBe(0)
      for (const command of ["token", "call", "load"]) {
        // The argument's line: no -l (a flag's long name), a list of values (-a).
        const line = fish.stdout.split("\n").find((l) =>
          l.includes(`__fish_seen_subcommand_from ${command}`) && !l.includes(" -l ") && l.includes(" -a ")
        )
        for (const provider of providers) expect(line, command).toContain(`${provider}''`)
      }
      const zsh = yield* runCli(["--completions", "zsh"])
      expect(zsh.exitCode).toBe(0)
      expect(zsh.stdout.split("CHOICE:(nora norce nomba token-project oauth2)").length - 1).toBe(3)
    }))
})
