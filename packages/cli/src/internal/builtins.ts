/**
 * Where @effect/cli's built-in behaviour falls short of the CLI's promises, the gaps filled in one place:
 *
 * - Its built-in flags `--log-level` and `--completions` are parsed on whichever command they follow;
 *   given a value they do not accept (or none), the parser reports an unknown argument or subcommand.
 *   Their values are checked here first, so the message names the flag and what it accepts.
 * - Its Bash completion script completes flags and subcommands but not positional arguments (the Fish
 *   and Zsh scripts do); the provider, a choice, is added to each command's words, as clap does. It also
 *   hands a flag's choices to `compgen -W` joined by commas, one word; they are split here.
 */
import * as Command from "@effect/cli/Command"
import * as Descriptor from "@effect/cli/CommandDescriptor"
import { Effect, LogLevel, Option } from "effect"
import * as Errors from "./errors.js"
import * as Validation from "./validation.js"

/** The values `--log-level` accepts, as @effect/cli spells them. */
export const logLevels: ReadonlyArray<string> = LogLevel.allLevels.map((level) => level._tag.toLowerCase())

const shells: Readonly<Record<string, "bash" | "fish" | "zsh">> = { sh: "bash", bash: "bash", fish: "fish", zsh: "zsh" }

/** The arguments as the parser gets them, and what the built-in flags asked for. */
export interface Invocation {
  /** Without `--log-level` and its value, which the CLI applies itself. */
  readonly args: ReadonlyArray<string>
  readonly logLevel: Option.Option<LogLevel.LogLevel>
  /** `--completions bash` (or `sh`): the CLI prints its own script. */
  readonly bashCompletions: boolean
}

const choiceError = (flag: string, accepted: ReadonlyArray<string>, got: string | undefined) =>
  new Errors.UsageError({
    message: `${flag} must be one of ${accepted.join(", ")}${
      got === undefined || got.startsWith("-") ? "" : `, got ${JSON.stringify(got.slice(0, 20))}`
    }`
  })

/**
 * Takes `--log-level` out of `args` wherever it is (before a `--`), checks its value and `--completions`'s.
 * @effect/cli reads its own `--log-level` only in some positions (not after a command's positional
 * arguments followed by another flag), so the CLI reads it everywhere instead.
 */
export const invocation = (args: ReadonlyArray<string>): Effect.Effect<Invocation, Errors.UsageError> =>
  Effect.suspend(() => {
    const rest: Array<string> = []
    let logLevel = Option.none<LogLevel.LogLevel>()
    let shell: string | undefined
    for (let i = 0; i < args.length; i++) {
      const arg = args[i]!
      if (arg === "--") {
        rest.push(...args.slice(i))
        break
      }
      const [flag, inline] = arg.startsWith("--") && arg.includes("=")
        ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
        : [arg, undefined]
      if (flag !== "--log-level" && flag !== "--completions") {
        rest.push(arg)
        continue
      }
      const value = inline ?? args[i + 1]
      if (flag === "--completions") {
        if (value === undefined || shells[value] === undefined) {
          return Effect.fail(choiceError(flag, Object.keys(shells), value))
        }
        shell = shells[value]
        rest.push(arg)
        continue
      }
      const level = LogLevel.allLevels.find((candidate) => candidate._tag.toLowerCase() === value)
      if (level === undefined) return Effect.fail(choiceError(flag, logLevels, value))
      logLevel = Option.some(level)
      if (inline === undefined) i++
    }
    return Effect.succeed({ args: rest, logLevel, bashCompletions: shell === "bash" })
  })

/**
 * @effect/cli's Bash script for `command`, with each subcommand's positional choices (the providers)
 * among the words it completes.
 */
export const bashCompletions = <Name extends string, R, E, A>(
  command: Command.Command<Name, R, E, A>
): Effect.Effect<string> => {
  const root = [...Command.getNames(command)][0] ?? "tollgate"
  const choices = new Map(
    [...Command.getSubcommands(command)].map(([name, descriptor]) => [
      `${root}__${name.replaceAll("-", "__")})`,
      Validation.parameters(Descriptor.getUsage(descriptor)).flatMap((parameter) =>
        parameter.names.some((n) => n.startsWith("<")) && parameter.accepts?.includes(" | ") === true
          ? parameter.accepts.split(" | ")
          : []
      )
    ])
  )
  return Effect.map(Command.getBashCompletions(command, root), (lines) =>
    lines.map((line, i) => {
      const words = choices.get(lines[i - 1]?.trim() ?? "")
      if (words !== undefined && words.length > 0 && /^\s*opts=".*"$/.test(line)) {
        return line.replace(/"$/, ` ${words.join(" ")}"`)
      }
      // A flag's choices come joined by commas, which `compgen -W` takes for one word.
      return line.replace(/compgen -W "([^"$]*)"/, (_, list: string) => `compgen -W "${list.replaceAll(",", " ")}"`)
    }).join("\n"))
}
