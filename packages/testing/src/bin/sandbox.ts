#!/usr/bin/env node
/**
 * Starts the four provider emulators on loopback and prints their base URLs and test credentials (public
 * test values, not secrets). Runs until SIGINT.
 *
 *     pnpm sandbox [--time-scale N] [--port BASE] [--host HOST]
 *
 * @since 0.1.0
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import * as Sandbox from "../Sandbox.js"

const usage = "usage: sandbox [--time-scale N] [--port BASE] [--host HOST]"

const parseArgs = (argv: ReadonlyArray<string>): Sandbox.Options => {
  const options: { timeScale?: number; port?: number; host?: string } = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const [flag, inline] = arg.includes("=") ? arg.split("=", 2) as [string, string] : [arg, undefined]
    const value = () => {
      const v = inline ?? argv[++i]
      if (v === undefined) throw new Error(`${flag} needs a value\n${usage}`)
      return v
    }
    switch (flag) {
      case "--time-scale": {
        const n = Number(value())
        if (!(n > 0)) throw new Error(`--time-scale must be a positive number\n${usage}`)
        options.timeScale = n
        break
      }
      case "--port": {
        const n = Number(value())
        if (!(Number.isInteger(n) && n >= 0 && n <= 65532)) throw new Error(`--port must be a port number\n${usage}`)
        options.port = n
        break
      }
      case "--host":
        options.host = value()
        break
      case "--help":
      case "-h":
        console.log(usage)
        process.exit(0)
        break
      default:
        throw new Error(`unknown argument ${arg}\n${usage}`)
    }
  }
  return options
}

const program = (options: Sandbox.Options) =>
  Effect.gen(function*() {
    const { nomba, nora, norce, tokenProject } = yield* Sandbox.Sandbox
    const lines = [
      `Tollgate sandbox (time scale ${nora.timeScale}) — Ctrl-C to stop`,
      "",
      `Nora (Formflow)   ${nora.baseUrl}`,
      `  POST /api/token  clientId=${nora.credentials.clientId} clientSecret=${nora.credentials.clientSecret} organizationId=${nora.credentials.organizationId}`,
      `  limit ${nora.rateLimit.limit} per ${
        Math.round(nora.rateLimit.windowMillis)
      } ms; token lifetime ${nora.tokenLifetimeSeconds} s`,
      `Norce Commerce    ${norce.baseUrl}`,
      `  POST /identity/1.0/connect/token (Storm: /1.0/connect/token)  client_id=${norce.credentials.clientId} client_secret=${norce.credentials.clientSecret} scope=${
        norce.credentials.scopes.join("|")
      } ApplicationId=${norce.credentials.applicationId}`,
      `  token endpoint bucket ${norce.tokenRateLimit.capacity}, one token per ${
        Math.round(norce.tokenRateLimit.refillIntervalMillis * 1000) / 1000
      } ms; token lifetime ${norce.tokenLifetimeSeconds} s`,
      `Nomba             ${nomba.baseUrl}`,
      `  POST /v1/auth/token/issue  client_id=${nomba.credentials.clientId} client_secret=${nomba.credentials.clientSecret} accountId=${nomba.credentials.accountId}`,
      `  token lifetime ${Math.round(nomba.tokenLifetimeMillis)} ms`,
      `Token project     ${tokenProject.baseUrl}`,
      `  POST /auth/token?key=${tokenProject.credentials.key}&secret=${tokenProject.credentials.secret}`,
      `  limit ${tokenProject.rateLimit.limit} per ${Math.round(tokenProject.rateLimit.windowMillis)} ms per endpoint`
    ]
    yield* Console.log(lines.join("\n"))
    return yield* Effect.never
  }).pipe(Effect.provide(Sandbox.layer(options)))

const options = (() => {
  try {
    return parseArgs(process.argv.slice(2))
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error))
    process.exit(2)
  }
})()

NodeRuntime.runMain(program(options))
