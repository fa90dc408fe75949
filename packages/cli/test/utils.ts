import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NombaSandbox from "@tollgate/testing/NombaSandbox"
import * as NoraSandbox from "@tollgate/testing/NoraSandbox"
import * as NorceSandbox from "@tollgate/testing/NorceSandbox"
import * as TokenProjectSandbox from "@tollgate/testing/TokenProjectSandbox"
import { ConfigProvider, Console, Effect, Layer } from "effect"
import { format } from "node:util"
import * as Cli from "../src/Cli.js"

export interface Result {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

export interface RunOptions {
  /** The environment the commands see (nothing else from the real process). */
  readonly env?: Readonly<Record<string, string>> | undefined
  /** Standard input; reading it when undefined yields "". */
  readonly stdin?: string | undefined
  /** Pretend stderr is a terminal (the progress bar redraws in place). */
  readonly tty?: boolean | undefined
}

const captureConsole = (stdout: Array<string>, stderr: Array<string>): Console.Console => {
  const to = (sink: Array<string>) => (...args: ReadonlyArray<unknown>) => {
    sink.push(`${format(...args)}\n`)
  }
  const unsafe: Console.UnsafeConsole = {
    assert: () => {},
    clear: () => {},
    count: () => {},
    countReset: () => {},
    debug: to(stderr),
    dir: to(stdout),
    dirxml: to(stdout),
    error: to(stderr),
    group: () => {},
    groupCollapsed: () => {},
    groupEnd: () => {},
    info: to(stdout),
    log: to(stdout),
    table: to(stdout),
    time: () => {},
    timeEnd: () => {},
    timeLog: () => {},
    trace: to(stderr),
    warn: to(stderr)
  }
  const lift = (f: (...args: ReadonlyArray<unknown>) => void) => (...args: ReadonlyArray<unknown>) =>
    Effect.sync(() => f(...args))
  return {
    [Console.TypeId]: Console.TypeId,
    assert: () => Effect.void,
    clear: Effect.void,
    count: () => Effect.void,
    countReset: () => Effect.void,
    debug: lift(unsafe.debug),
    dir: lift(unsafe.dir),
    dirxml: lift(unsafe.dirxml),
    error: lift(unsafe.error),
    group: () => Effect.void,
    groupEnd: Effect.void,
    info: lift(unsafe.info),
    log: lift(unsafe.log),
    table: lift(to(stdout)),
    time: () => Effect.void,
    timeEnd: () => Effect.void,
    timeLog: () => Effect.void,
    trace: lift(unsafe.trace),
    warn: lift(unsafe.warn),
    unsafe
  }
}

/** Runs the CLI in this process with a captured Console, a scripted stdin and only `env` as environment. */
export const runCli = (args: ReadonlyArray<string>, options?: RunOptions): Effect.Effect<Result> =>
  Effect.gen(function*() {
    const stdout: Array<string> = []
    const stderr: Array<string> = []
    const stdio = Layer.succeed(Cli.Stdio, {
      readStdin: Effect.succeed(options?.stdin ?? ""),
      stdinIsTTY: false,
      stderrIsTTY: options?.tty === true,
      stderrColumns: 100,
      writeStderr: (text) => Effect.sync(() => void stderr.push(text))
    })
    const exitCode = yield* Cli.run(args).pipe(
      Effect.provide(Layer.mergeAll(NodeContext.layer, NodeHttpClient.layer, stdio)),
      Effect.withConsole(captureConsole(stdout, stderr)),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(options?.env ?? {}))))
    )
    return { exitCode, stdout: stdout.join(""), stderr: stderr.join("") }
  })

// Removes the ANSI styling @effect/cli puts on help and validation messages.

export const plain = (text: string): string => text.replace(/\x1b\[[0-9;]*m/g, "")

/** The non-empty lines of a text, styling removed. */
export const lines = (text: string): ReadonlyArray<string> =>
  plain(text).split("\n").map((line) => line.trimEnd()).filter((line) => line.trim().length > 0)

/** A JWT anywhere in a text: every sandbox token is one. */
export const jwtPattern = /eyJ[\w-]+\.[\w-]+\.[\w-]+/

/** The client secrets of the four emulators. */
export const sandboxSecrets: ReadonlyArray<string> = [
  NoraSandbox.defaultCredentials.clientSecret,
  NorceSandbox.defaultCredentials.clientSecret,
  NombaSandbox.defaultCredentials.clientSecret,
  TokenProjectSandbox.defaultCredentials.secret
]

/** Asserts helpers: no secret of `secrets`, no token, no stack trace. */
export const leaks = (result: Result, secrets: ReadonlyArray<string> = sandboxSecrets): ReadonlyArray<string> => {
  const all = result.stdout + result.stderr
  return [
    ...secrets.filter((secret) => all.includes(secret)).map((secret) => `secret ${secret.slice(0, 4)}…`),
    ...(jwtPattern.test(all) ? ["a token"] : []),
    ...(/\n\s+at /.test(all) ? ["a stack trace"] : [])
  ]
}
