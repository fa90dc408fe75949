#!/usr/bin/env node
/**
 * The `tollgate` executable: runs the CLI on the process's arguments with Node's platform services and
 * exits with its code.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit } from "effect"
import * as Cli from "./Cli.js"

Cli.run(process.argv.slice(2)).pipe(
  Effect.provide(Cli.layerNode),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown: (exit, onExit) => {
      const code = Exit.isSuccess(exit)
        ? (typeof exit.value === "number" ? exit.value : 0)
        : Cause.isInterruptedOnly(exit.cause)
        ? 130
        : 1
      onExit(code)
      // Nothing is left to do: exit now rather than wait for idle keep-alive sockets to close.
      process.exit(code)
    }
  })
)
