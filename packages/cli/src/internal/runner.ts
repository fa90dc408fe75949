/**
 * Runs the root command on an argument list and turns every outcome into an exit code, with failures
 * as one `tollgate:` line on stderr. @effect/cli prints its parse errors itself, unprefixed and without
 * the flag they are about: the parser runs with a console that drops them, the commands with the real
 * one, and the error is reported here in the CLI's words.
 */
import type * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import * as Descriptor from "@effect/cli/CommandDescriptor"
import type * as Span from "@effect/cli/HelpDoc/Span"
import * as ValidationError from "@effect/cli/ValidationError"
import { Console, Effect, FiberRef, identity, Logger, LogLevel, Option } from "effect"
import * as Builtins from "./builtins.js"
import * as Errors from "./errors.js"
import * as Validation from "./validation.js"

const realConsole = FiberRef.unsafeMake<Option.Option<Console.Console>>(Option.none())

const quiet = (console: Console.Console): Console.Console =>
  Object.assign(Object.create(console) as Console.Console, { error: () => Effect.void })

const withQuietParser = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.consoleWith((console) =>
    effect.pipe(Effect.withConsole(quiet(console)), Effect.locally(realConsole, Option.some(console)))
  )

const withRealConsole = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(
    FiberRef.get(realConsole),
    Option.match({ onNone: () => effect, onSome: (console) => Effect.withConsole(effect, console) })
  )

/** The runner of `command`: arguments (after the script name) in, exit code out; it never fails. */
export const make = <Name extends string, R, E, A>(
  command: Command.Command<Name, R, E, A>,
  config: { readonly version: string; readonly summary: Span.Span }
): (args: ReadonlyArray<string>) => Effect.Effect<number, never, R | CliApp.CliApp.Environment> => {
  const name = [...Command.getNames(command)][0] ?? "tollgate"
  const cli = Command.run(Command.transformHandler(command, withRealConsole), { name, ...config })
  // The usage of every command: the flags and arguments the parser's errors are about.
  const usages = [
    Command.getUsage(command),
    ...[...Command.getSubcommands(command)].map(([, sub]) => Descriptor.getUsage(sub))
  ]
  const report = (args: ReadonlyArray<string>, error: unknown): Effect.Effect<number> => {
    const { exitCode, message } = ValidationError.isValidationError(error)
      ? { message: Validation.describe(error.error, args, usages), exitCode: Errors.exitCodes.usage }
      : Errors.describe(error)
    return message === undefined ? Effect.succeed(exitCode) : Effect.as(Console.error(`${name}: ${message}`), exitCode)
  }
  return (args) =>
    Builtins.invocation(args).pipe(
      Effect.flatMap((invocation) =>
        invocation.bashCompletions
          ? Effect.flatMap(Builtins.bashCompletions(command), Console.log)
          : withQuietParser(cli(["node", name, ...invocation.args])).pipe(
            Option.isSome(invocation.logLevel) ? Logger.withMinimumLogLevel(invocation.logLevel.value) : identity
          )
      ),
      Effect.as(0),
      Effect.catchAllCause((cause) => {
        const squashed = Errors.squash(cause)
        switch (squashed._tag) {
          case "Failure":
            return report(args, squashed.error)
          case "Die":
            return Effect.as(
              Console.error(`${name}: internal error: ${Errors.safeMessage(squashed.defect)}`),
              Errors.exitCodes.internal
            )
          case "Interrupt":
            return Effect.succeed(Errors.exitCodes.interrupted)
        }
      }),
      // Logs are off unless --log-level turns them on; they go to stderr, plain.
      Logger.withMinimumLogLevel(LogLevel.None),
      Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true, colors: false })))
    )
}
