/**
 * What the examples share: run against the real API when its credentials are in the environment,
 * otherwise against the provider's sandbox on loopback with its test credentials.
 */
import type { HttpServerError } from "@effect/platform"
import type { Emulator } from "@tollgate/testing"
import { Sandbox } from "@tollgate/testing"
import { Console, Effect, Layer } from "effect"

/**
 * `real` when `variable` is set; otherwise `sandboxed` over an emulator served on loopback for the
 * program's lifetime.
 */
export const realOrSandbox = <A, E, R, Em extends Emulator.Emulator>(options: {
  readonly variable: string
  readonly real: Layer.Layer<A, E, R>
  readonly emulator: Effect.Effect<Em>
  readonly sandboxed: (served: Sandbox.Served<Em>) => Layer.Layer<A, E, R>
}): Layer.Layer<A, E | HttpServerError.ServeError, R> =>
  process.env[options.variable] !== undefined
    ? Layer.tap(options.real, () => Console.log(`Using the real API (${options.variable} is set).`))
    : Layer.unwrapScoped(
      options.emulator.pipe(
        Effect.flatMap((emulator) => Sandbox.serve(emulator)),
        Effect.tap((served) =>
          Console.log(`No ${options.variable}: using the sandbox at ${served.baseUrl} with its test credentials.`)
        ),
        Effect.map((served) => options.sandboxed(served))
      )
    )
