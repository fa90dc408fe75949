/**
 * A session: the chosen provider built and instrumented for one command, against its real endpoints or
 * a sandbox started for the command. Opening one checks what the parser could not (flags that only apply
 * to oauth2, the settings oauth2 needs), reads the generic provider's secret, starts the sandbox when
 * asked, and builds the provider from its registry entry. Every way it can fail is a typed error.
 */
import type * as CliApp from "@effect/cli/CliApp"
import * as Prompt from "@effect/cli/Prompt"
import * as HttpClient from "@effect/platform/HttpClient"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import type * as Sandbox from "@tollgate/testing/Sandbox"
import type { Scope } from "effect"
import { Config, ConfigError, ConfigProvider, Effect, Option, Redacted } from "effect"
import * as Providers from "../Providers.js"
import * as Errors from "./errors.js"
import * as Flags from "./flags.js"
import * as Stdio from "./stdio.js"
import * as Testing from "./testing.js"
import * as Wire from "./wire.js"

/**
 * What the commands need: the platform (`FileSystem`, `Path`, `Terminal` for @effect/cli), an `HttpClient`
 * for the providers, and `Stdio`.
 */
export type Environment = CliApp.CliApp.Environment | HttpClient.HttpClient | Stdio.Stdio

/** A provider ready for one command, with a record of its wire and its permit waits. */
export interface Session {
  readonly built: Providers.Built
  readonly wire: Wire.Wire
  readonly waits: Wire.PermitWaits
  readonly sandbox: boolean
  readonly timeScale: number
}

/** How opening a session fails. */
export type SessionError = Errors.UsageError | Errors.ConfigurationError | Errors.SandboxUnavailable

/** What a command asks a session for. */
export interface Request {
  readonly command: "token" | "call" | "load"
  readonly provider: Providers.Name
  readonly target: Flags.Target
  readonly oauth2: Flags.OAuth2Flags
  /** Without a sandbox's `--time-scale`. */
  readonly defaultTimeScale: number
}

const usage = (message: string) => new Errors.UsageError({ message })

const allowLoopbackFromEnv = Config.withDefault(Config.boolean("TOLLGATE_ALLOW_INSECURE_LOOPBACK"), false)

const readSecretFromStdin: Effect.Effect<
  Redacted.Redacted<string>,
  Errors.UsageError,
  Stdio.Stdio | CliApp.CliApp.Environment
> = Effect.gen(function*() {
  const stdio = yield* Stdio.Stdio
  if (stdio.stdinIsTTY) {
    const secret = yield* Prompt.hidden({ message: "Client secret" }).pipe(
      Effect.mapError(() => usage("no client secret was entered"))
    )
    if (Redacted.value(secret).length === 0) return yield* usage("no client secret was entered")
    return secret
  }
  const text = yield* stdio.readStdin.pipe(
    Effect.mapError((error) => usage(`--secret-stdin: could not read standard input (${error.reason})`))
  )
  const secret = text.replace(/\r?\n$/, "")
  if (secret.trim().length === 0) return yield* usage("--secret-stdin: standard input was empty")
  if (secret.includes("\n")) return yield* usage("--secret-stdin: expected one line on standard input, got several")
  return Redacted.make(secret)
})

const readSecretFromEnv = (name: string): Effect.Effect<Redacted.Redacted<string>, Errors.UsageError> =>
  Config.option(Config.redacted(name)).pipe(
    Effect.mapError(() => usage(`${name} could not be read`)),
    Effect.flatMap((value) =>
      Option.isSome(value) && Redacted.value(value.value).trim().length > 0
        ? Effect.succeed(value.value)
        : usage(
          `the client secret is not set: put it in ${name}${
            name === Flags.defaultSecretVariable ? "" : " (named by --secret-env)"
          }, or pipe it with --secret-stdin`
        )
    )
  )

const oauth2Settings = (
  request: Request,
  sandbox: Sandbox.Service | undefined,
  purpose: "token" | "api"
): Effect.Effect<Providers.OAuth2Settings, Errors.UsageError | ConfigError.ConfigError, Environment> =>
  Effect.gen(function*() {
    const flags = request.oauth2
    const defaults = sandbox === undefined ? undefined : yield* Providers.oauth2Sandbox(sandbox)
    const tokenUrl = Option.getOrUndefined(flags.tokenUrl) ?? defaults?.tokenUrl
    if (tokenUrl === undefined) {
      return yield* usage("the oauth2 provider needs --token-url (or --sandbox to try it on the emulator)")
    }
    const clientId = Option.getOrUndefined(flags.clientId) ?? defaults?.clientId
    if (clientId === undefined) return yield* usage("the oauth2 provider needs --client-id")
    const explicitBase = Option.getOrUndefined(flags.baseUrl)
    const baseUrl = purpose === "token" ? undefined : explicitBase ?? defaults?.baseUrl
    if (purpose === "api" && baseUrl === undefined) {
      return yield* usage(`${request.command} with the oauth2 provider needs --base-url, the API's address`)
    }
    const clientSecret = flags.secretStdin
      ? yield* readSecretFromStdin
      : Option.isSome(flags.secretEnv) || defaults === undefined
      ? yield* readSecretFromEnv(Option.getOrElse(flags.secretEnv, () => Flags.defaultSecretVariable))
      : defaults.clientSecret
    const allowFromEnv = yield* allowLoopbackFromEnv
    return {
      tokenUrl,
      clientId,
      clientSecret,
      authMethod: flags.auth === "post" ? "client_secret_post" : "client_secret_basic",
      scope: Option.getOrUndefined(flags.scope),
      audience: Option.getOrUndefined(flags.audience),
      baseUrl,
      // The emulator's ApplicationId header, only when the API is the emulator's.
      headers: explicitBase === undefined ? defaults?.headers : undefined,
      allowInsecureLoopback: defaults !== undefined || request.target.allowInsecureLoopback || allowFromEnv
    } satisfies Providers.OAuth2Settings
  })

// `--allow-insecure-loopback` for a provider configured from the environment: the same as its variable.
const withInsecureLoopback = <A, E, R>(allow: boolean, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  allow
    ? Effect.configProviderWith((current) =>
      Effect.withConfigProvider(
        effect,
        ConfigProvider.orElse(
          ConfigProvider.fromMap(new Map([["TOLLGATE_ALLOW_INSECURE_LOOPBACK", "true"]])),
          () => current
        )
      )
    )
    : effect

const explainConfig = (request: Request, error: ConfigError.ConfigError): Errors.ConfigurationError => {
  const { invalid, missing } = Errors.configProblems(error)
  if (request.provider === "oauth2") {
    return new Errors.ConfigurationError({ message: `invalid configuration: ${Errors.describeConfigError(error)}` })
  }
  if (missing.length > 0) {
    return new Errors.ConfigurationError({
      message: `${request.provider} is not configured: ${Errors.describeConfigError(error)} ` +
        `(tollgate ${request.command} --help lists the variables), or try --sandbox`
    })
  }
  return new Errors.ConfigurationError({ message: `invalid ${request.provider} configuration: ${invalid.join("; ")}` })
}

const startSandbox = (
  timeScale: number,
  provider: Request["provider"]
): Effect.Effect<Sandbox.Service, Errors.SandboxUnavailable, Scope.Scope> =>
  Effect.flatMap(Testing.load, (testing) =>
    testing.Sandbox.make({
      timeScale,
      // The emulators need not keep every arrival: the CLI records its own side of the wire.
      nora: { recordArrivals: false },
      // The generic oauth2 provider meets the Norce emulator as a plain RFC 6749 server: HTTP Basic
      // (which §2.3.1 requires a server to support) and a default scope, which Norce's docs leave out.
      norce: provider === "oauth2"
        ? { recordArrivals: false, acceptBasicAuth: true, requireScope: false }
        : { recordArrivals: false },
      nomba: { recordArrivals: false },
      tokenProject: { recordArrivals: false }
    }).pipe(
      Effect.mapError(() => new Errors.SandboxUnavailable({ message: "could not start the sandbox on loopback" }))
    ))

/** Opens a session for `request`, closed with the scope (tokens revoked where the provider supports it). */
export const open = (
  request: Request,
  purpose: "token" | "api"
): Effect.Effect<Session, SessionError, Environment | Scope.Scope> =>
  Effect.gen(function*() {
    const { provider, target } = request
    if (provider !== "oauth2" && request.oauth2.given.length > 0) {
      return yield* usage(
        `${request.oauth2.given[0]} only applies to the oauth2 provider; ${provider} is configured by its ` +
          `environment variables (tollgate ${request.command} --help lists them)`
      )
    }
    const http = yield* HttpClient.HttpClient
    const wire = Wire.record(http)
    const waits = Wire.permitWaits()
    const timeScale = target.sandbox ? Option.getOrElse(target.timeScale, () => request.defaultTimeScale) : 1
    const sandbox = target.sandbox ? yield* startSandbox(timeScale, provider) : undefined
    // `token` hands the token to the user: it must stay valid after the command exits.
    const tuning: Providers.Tuning = purpose === "token" ? { tokenCache: { revokeOnClose: false } } : {}
    const build = provider === "oauth2"
      ? Effect.flatMap(oauth2Settings(request, sandbox, purpose), (settings) => Providers.oauth2(settings, tuning))
      : sandbox !== undefined
      ? Providers.registry[provider].fromSandbox(sandbox, tuning)
      : withInsecureLoopback(target.allowInsecureLoopback, Providers.registry[provider].fromEnv(tuning))
    const built = yield* build.pipe(
      Effect.catchIf(ConfigError.isConfigError, (error) => Effect.fail(explainConfig(request, error))),
      Effect.provideService(HttpClient.HttpClient, wire.client),
      Effect.provideService(RateLimiter.RateLimiterBackend, waits.backend)
    )
    return { built, wire, waits, sandbox: sandbox !== undefined, timeScale } satisfies Session
  })
