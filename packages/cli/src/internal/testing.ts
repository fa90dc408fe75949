/**
 * `@tollgate/testing`, loaded only for `--sandbox`, by dynamic import. For the CLI as a library it is an
 * optional peer: `Cli.run` works without it and says how to install it when `--sandbox` needs it. The
 * `tollgate` executable is bundled, and this import becomes a chunk of the bundle that only `--sandbox`
 * loads, so the emulators cost nothing at startup.
 */
import type * as NorceSandbox from "@tollgate/testing/NorceSandbox"
import type * as Sandbox from "@tollgate/testing/Sandbox"
import { Effect } from "effect"
import * as Errors from "./errors.js"

/** The modules of `@tollgate/testing` the CLI uses. */
export interface Modules {
  readonly Sandbox: typeof Sandbox
  readonly NorceSandbox: typeof NorceSandbox
}

const isMissing = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "code" in error && error.code === "ERR_MODULE_NOT_FOUND" &&
  "message" in error && typeof error.message === "string" && error.message.includes("'@tollgate/testing'")

/** Imports the modules, or fails with a message that says how to install them. */
export const load: Effect.Effect<Modules, Errors.SandboxUnavailable> = Effect.tryPromise({
  try: async () => {
    const [sandbox, norceSandbox] = await Promise.all([
      import("@tollgate/testing/Sandbox"),
      import("@tollgate/testing/NorceSandbox")
    ])
    return { Sandbox: sandbox, NorceSandbox: norceSandbox }
  },
  catch: (error) =>
    new Errors.SandboxUnavailable({
      message: isMissing(error)
        ? "--sandbox needs @tollgate/testing, which is not installed (npm install @tollgate/testing)"
        : `--sandbox could not load @tollgate/testing: ${Errors.safeMessage(error)}`
    })
})

/** The modules, once a sandbox is running (so they are installed, and already loaded). */
export const loaded: Effect.Effect<Modules> = Effect.orDie(load)
