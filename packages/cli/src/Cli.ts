/**
 * The `tollgate` command line: `token` obtains a token and shows what it is, `call` sends one
 * authenticated, rate-limited request, `load` drives many through the limiter and summarises what
 * happened. Every command works against a real provider (configured by its environment variables, or by
 * flags for the generic `oauth2` provider) or, with `--sandbox`, against the loopback emulators of
 * `@tollgate/testing`, with no credentials at all.
 *
 * `run` takes the arguments (without `node` and the script) and returns the exit code; it never fails and
 * never prints a stack trace. Output goes through `Console` (stdout for results, stderr for everything
 * else) and the `Stdio` service, so tests run it in-process and capture both.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Span from "@effect/cli/HelpDoc/Span"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type { Effect } from "effect"
import { Layer } from "effect"
import * as Call from "./internal/commands/call.js"
import * as Load from "./internal/commands/load.js"
import * as Token from "./internal/commands/token.js"
import * as Errors from "./internal/errors.js"
import * as Flags from "./internal/flags.js"
import * as Runner from "./internal/runner.js"
import type * as Session from "./internal/session.js"
import * as Stdio from "./internal/stdio.js"

export {
  /**
   * Standard input and the terminal-ness of standard error, as a service: `layerStdio` is the real
   * process; tests provide a scripted one.
   *
   * @since 0.1.0
   * @category services
   */
  Stdio
} from "./internal/stdio.js"

/**
 * What `Stdio` provides.
 *
 * @since 0.1.0
 * @category services
 */
export type StdioService = Stdio.Service

/**
 * The real process's stdin and stderr.
 *
 * @example
 * ```ts
 * import { NodeContext, NodeHttpClient } from "@effect/platform-node"
 * import { Cli } from "@tollgate/cli"
 * import { Effect, Layer } from "effect"
 *
 * // The process's stdin and stderr, with the platform and a transport of your choice (here undici).
 * const Environment = Layer.mergeAll(NodeContext.layer, NodeHttpClient.layerUndici, Cli.layerStdio)
 *
 * Cli.run(["token", "--help"]).pipe(Effect.provide(Environment), Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerStdio: Layer.Layer<Stdio.Stdio> = Stdio.layerNode

/**
 * What the commands need: the platform (`FileSystem`, `Path`, `Terminal` for @effect/cli), an
 * `HttpClient` for the providers, and `Stdio`.
 *
 * @since 0.1.0
 * @category models
 */
export type Environment = Session.Environment

/**
 * The environment of the real process: Node's platform services, `node:http` as the transport, and the
 * process's stdin and stderr.
 *
 * @example
 * ```ts
 * import { Cli } from "@tollgate/cli"
 * import { Effect } from "effect"
 *
 * // The `tollgate` executable in a program of your own: the arguments, then the exit code.
 * Cli.run(["--version"]).pipe(
 *   Effect.provide(Cli.layerNode),
 *   Effect.runPromise
 * ).then((code) => console.log("exit code", code))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNode: Layer.Layer<Environment> = Layer.mergeAll(
  NodeContext.layer,
  NodeHttpClient.layer,
  Stdio.layerNode
)

/**
 * @since 0.1.0
 * @category constants
 */
export const version = "0.1.0"

/**
 * The variable holding the generic provider's client secret unless `--secret-env` names another.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultSecretVariable: string = Flags.defaultSecretVariable

/**
 * `tollgate token <provider>`: obtains a token and prints its metadata, the value masked.
 *
 * @since 0.1.0
 * @category commands
 */
export const token = Token.command

/**
 * `tollgate call <provider> <METHOD> <path>`: one authenticated, rate-limited request.
 *
 * @since 0.1.0
 * @category commands
 */
export const call = Call.command

/**
 * `tollgate load <provider> <path>`: many requests through the limiter, a progress bar, a summary.
 *
 * @since 0.1.0
 * @category commands
 */
export const load = Load.command

/**
 * The root command, `tollgate`, with `token`, `call` and `load`.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make(
  "tollgate",
  {},
  () => new Errors.UsageError({ message: "missing command: use token, call or load (tollgate --help explains each)" })
).pipe(
  Command.withDescription(HelpDoc.blocks([
    HelpDoc.p(
      "Obtain tokens from, call and load-test client-credentials APIs through Tollgate: nora, norce, nomba, " +
        "token-project, or any OAuth2 server (oauth2). Add --sandbox to any command to try it against local " +
        "emulators, without credentials."
    ),
    HelpDoc.descriptionList([
      [Span.text("token <provider>"), HelpDoc.p("obtain a token and show its metadata, the value masked")],
      [Span.text("call <provider> <METHOD> <path>"), HelpDoc.p("send one authenticated, rate-limited request")],
      [Span.text("load <provider> <path>"), HelpDoc.p("drive many requests through the limiter, then summarise")]
    ]),
    HelpDoc.p(
      "tollgate <command> --help describes each command, its flags and the providers' variables. " +
        "--log-level (all, trace, debug, info, warning, error, fatal, none) turns logs on, to stderr, anywhere " +
        "on the command line."
    )
  ])),
  Command.withSubcommands([token, call, load])
)

const runner = Runner.make(command, {
  version,
  summary: Span.text("tokens, calls and load tests for client-credentials APIs")
})

/**
 * Runs the CLI on `args` (the arguments after the script name) and returns the exit code: 0 on success,
 * 1 when the operation failed (a non-2xx response, failed load requests, rejected credentials, an
 * unreachable host), 2 for bad input (unknown provider, bad flags, missing or invalid configuration). A
 * failure is reported as one line on stderr starting `tollgate:`, never with a stack trace or a secret.
 * Logs are off unless `--log-level` (anywhere on the command line) turns them on; they go to stderr.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (args: ReadonlyArray<string>): Effect.Effect<number, never, Environment> => runner(args)
