/**
 * The parts of the process the commands touch besides `Console`: standard input (for `--data -` and
 * `--secret-stdin`) and whether standard error is a terminal (for the progress bar). A Tag, so tests run
 * the commands in-process with a scripted stdin and a captured stderr.
 */
import { Context, Effect, Layer } from "effect"

export interface Service {
  /** All of standard input, as UTF-8. */
  readonly readStdin: Effect.Effect<string, StdinError>
  /** Standard input is a terminal (a person types, nothing is piped). */
  readonly stdinIsTTY: boolean
  /** Standard error is a terminal: the progress bar may redraw in place. */
  readonly stderrIsTTY: boolean
  readonly stderrColumns: number
  /** Writes to standard error as is, without a newline (progress redraws). */
  readonly writeStderr: (text: string) => Effect.Effect<void>
}

export class StdinError {
  readonly _tag = "StdinError"
  constructor(readonly reason: string) {}
}

export class Stdio extends Context.Tag("@tollgate/cli/Stdio")<Stdio, Service>() {}

const readAll = (stream: NodeJS.ReadableStream): Effect.Effect<string, StdinError> =>
  Effect.async<string, StdinError>((resume) => {
    const chunks: Array<Buffer> = []
    const onData = (chunk: Buffer | string) => {
      chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk)
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(Buffer.concat(chunks).toString("utf8")))
    }
    const onError = (error: Error) => {
      cleanup()
      resume(Effect.fail(new StdinError(error.message)))
    }
    const cleanup = () => {
      stream.off("data", onData)
      stream.off("end", onEnd)
      stream.off("error", onError)
    }
    stream.on("data", onData)
    stream.on("end", onEnd)
    stream.on("error", onError)
    stream.resume()
    return Effect.sync(() => {
      cleanup()
      stream.pause()
    })
  })

/** The real process: `process.stdin` and `process.stderr`. */
export const layerNode: Layer.Layer<Stdio> = Layer.sync(Stdio, () => ({
  readStdin: Effect.suspend(() => readAll(process.stdin)),
  stdinIsTTY: process.stdin.isTTY === true,
  stderrIsTTY: process.stderr.isTTY === true,
  stderrColumns: process.stderr.columns > 0 ? process.stderr.columns : 80,
  writeStderr: (text) =>
    Effect.sync(() => {
      process.stderr.write(text)
    })
}))
