#!/usr/bin/env node
/**
 * Starts the four provider emulators on loopback and prints their base URLs and test credentials (public
 * test values, not secrets). Runs until SIGINT.
 *
 *     pnpm sandbox [--time-scale N] [--port BASE] [--host HOST] [--limit PROVIDER=LIMIT ...]
 *
 * `--limit` makes a provider's real limit differ from its documented one, as when a plan changes:
 * `nora=30/1m`, `token-project=5/2m`, `nomba=40/1m`, `norce=100/1m` (Norce's API, undocumented) as a count
 * per window (`ms`, `s`, `m`, `h`), or `norce-token=3+20` (token requests per minute + burst).
 *
 * @since 0.1.0
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import * as NombaSandbox from "../NombaSandbox.js"
import * as NoraSandbox from "../NoraSandbox.js"
import * as NorceSandbox from "../NorceSandbox.js"
import * as Sandbox from "../Sandbox.js"
import * as TokenProjectSandbox from "../TokenProjectSandbox.js"

const usage = "usage: sandbox [--time-scale N] [--port BASE] [--host HOST] [--limit PROVIDER=LIMIT ...]\n" +
  "  LIMIT: COUNT/WINDOW for nora, token-project, nomba, norce (e.g. nora=30/1m), PER_MINUTE+BURST for norce-token"

const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }

const parseWindow = (flag: string, value: string): { readonly limit: number; readonly windowMillis: number } => {
  const match = /^(\d+)\/(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(value)
  const limit = match === null ? 0 : Number(match[1])
  const windowMillis = match === null ? 0 : Number(match[2]) * units[match[3]!]!
  if (!(limit > 0 && windowMillis > 0)) {
    throw new Error(`${flag} expects COUNT/WINDOW, such as 30/1m or 5/120s, got ${JSON.stringify(value)}\n${usage}`)
  }
  return { limit, windowMillis }
}

const parseLimit = (options: Mutable, value: string): void => {
  const equals = value.indexOf("=")
  const provider = equals === -1 ? value : value.slice(0, equals)
  const limit = equals === -1 ? undefined : value.slice(equals + 1)
  if (limit === undefined) throw new Error(`--limit expects PROVIDER=LIMIT, got ${JSON.stringify(value)}\n${usage}`)
  const flag = `--limit ${provider}`
  switch (provider) {
    case "nora":
      options.nora = { ...options.nora, rateLimit: parseWindow(flag, limit) }
      break
    case "token-project":
      options.tokenProject = { ...options.tokenProject, rateLimit: parseWindow(flag, limit) }
      break
    case "nomba":
      options.nomba = { ...options.nomba, rateLimit: parseWindow(flag, limit) }
      break
    case "norce":
      options.norce = { ...options.norce, rateLimit: parseWindow(flag, limit) }
      break
    case "norce-token": {
      const match = /^(\d+(?:\.\d+)?)\+(\d+)$/.exec(limit)
      const perMinute = match === null ? 0 : Number(match[1])
      const burst = match === null ? 0 : Number(match[2])
      if (!(perMinute > 0 && burst > 0)) {
        throw new Error(`${flag} expects PER_MINUTE+BURST, such as 3+20, got ${JSON.stringify(limit)}\n${usage}`)
      }
      options.norce = { ...options.norce, tokenRateLimit: { perMinute, burst } }
      break
    }
    default:
      throw new Error(`--limit: unknown provider ${JSON.stringify(provider)}\n${usage}`)
  }
}

type Mutable = {
  timeScale?: number
  port?: number
  host?: string
  nora?: NoraSandbox.Options
  norce?: NorceSandbox.Options
  nomba?: NombaSandbox.Options
  tokenProject?: TokenProjectSandbox.Options
}

const parseArgs = (argv: ReadonlyArray<string>): Sandbox.Options => {
  const options: Mutable = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const equals = arg.indexOf("=")
    const [flag, inline] = equals === -1 ? [arg, undefined] : [arg.slice(0, equals), arg.slice(equals + 1)]
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
      case "--limit":
        parseLimit(options, value())
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

const window = (limit: { readonly limit: number; readonly windowMillis: number }) =>
  `${limit.limit} per ${Math.round(limit.windowMillis)} ms`

const differs = (
  limit: { readonly limit: number; readonly windowMillis: number },
  documented: { readonly limit: number; readonly windowMillis: number },
  timeScale: number
) =>
  limit.limit === documented.limit && Math.abs(limit.windowMillis * timeScale - documented.windowMillis) < 1e-6
    ? ""
    : ` (documented: ${documented.limit} per ${documented.windowMillis} ms)`

const program = (options: Sandbox.Options) =>
  Effect.gen(function*() {
    const { nomba, nora, norce, tokenProject } = yield* Sandbox.Sandbox
    const lines = [
      `Tollgate sandbox (time scale ${nora.timeScale}) — Ctrl-C to stop`,
      "",
      `Nora (Formflow)   ${nora.baseUrl}`,
      `  POST /api/token  clientId=${nora.credentials.clientId} clientSecret=${nora.credentials.clientSecret} organizationId=${nora.credentials.organizationId}`,
      `  limit ${window(nora.rateLimit)}${differs(nora.rateLimit, NoraSandbox.documented, nora.timeScale)}${
        nora.countTokenRequests ? ", token requests included" : ""
      }; token lifetime ${nora.tokenLifetimeSeconds} s`,
      `Norce Commerce    ${norce.baseUrl}`,
      `  POST /identity/1.0/connect/token (Storm: /1.0/connect/token)  client_id=${norce.credentials.clientId} client_secret=${norce.credentials.clientSecret} scope=${
        norce.credentials.scopes.join("|")
      } ApplicationId=${norce.credentials.applicationId}`,
      `  token endpoint bucket ${norce.tokenRateLimit.capacity}, one token per ${
        Math.round(norce.tokenRateLimit.refillIntervalMillis * 1000) / 1000
      } ms${
        norce.tokenRateLimit.capacity === NorceSandbox.documented.tokenBurst &&
          Math.abs(norce.tokenRateLimit.refillIntervalMillis * norce.timeScale - 20_000) < 1e-6
          ? ""
          : " (documented: 3 per minute, burst 20)"
      }; token lifetime ${norce.tokenLifetimeSeconds} s${
        norce.rateLimit === undefined ? "" : `; API limit ${window(norce.rateLimit)} (undocumented)`
      }`,
      `Nomba             ${nomba.baseUrl}`,
      `  POST /v1/auth/token/issue  client_id=${nomba.credentials.clientId} client_secret=${nomba.credentials.clientSecret} accountId=${nomba.credentials.accountId}`,
      `  token lifetime ${Math.round(nomba.tokenLifetimeMillis)} ms${
        nomba.rateLimit === undefined ? "" : `; limit ${window(nomba.rateLimit)} (undocumented)`
      }`,
      `Token project     ${tokenProject.baseUrl}`,
      `  POST /auth/token?key=${tokenProject.credentials.key}&secret=${tokenProject.credentials.secret}`,
      `  limit ${window(tokenProject.rateLimit)} per endpoint${
        differs(tokenProject.rateLimit, TokenProjectSandbox.documented, tokenProject.timeScale)
      }`
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
