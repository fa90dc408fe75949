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
import * as Args from "@effect/cli/Args"
import type * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Span from "@effect/cli/HelpDoc/Span"
import * as Options from "@effect/cli/Options"
import * as Prompt from "@effect/cli/Prompt"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpMethod from "@effect/platform/HttpMethod"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as Sandbox from "@tollgate/testing/Sandbox"
import type { Scope } from "effect"
import {
  Config,
  ConfigError,
  ConfigProvider,
  Console,
  DateTime,
  Effect,
  Fiber,
  Layer,
  Logger,
  LogLevel,
  Option,
  Redacted,
  Schedule
} from "effect"
import { STATUS_CODES } from "node:http"
import * as Errors from "./internal/errors.js"
import * as Format from "./internal/format.js"
import * as Stdio from "./internal/stdio.js"
import * as Wire from "./internal/wire.js"
import * as Providers from "./Providers.js"
import * as Report from "./Report.js"

/**
 * Standard input and the terminal-ness of standard error, as a service: `layerStdio` is the real
 * process; tests provide a scripted one.
 *
 * @since 0.1.0
 * @category services
 */
export { Stdio } from "./internal/stdio.js"

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
export type Environment = CliApp.CliApp.Environment | HttpClient.HttpClient | Stdio.Stdio

/**
 * The environment of the real process: Node's platform services, `node:http` as the transport, and the
 * process's stdin and stderr.
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
export const defaultSecretVariable = "TOLLGATE_CLIENT_SECRET"

// ---------------------------------------------------------------------------------------------------
// Arguments and options
// ---------------------------------------------------------------------------------------------------

const providerArg = Args.text({ name: "provider" }).pipe(
  Args.withDescription(
    "nora, norce, nomba or token-project (each configured by its environment variables, e.g. NORA_CLIENT_ID), " +
      "or oauth2 (any client-credentials server, configured by --token-url, --client-id and a secret from the " +
      "environment or stdin)."
  ),
  Args.mapEffect((value) =>
    Providers.isName(value)
      ? Effect.succeed(value)
      : Effect.fail(
        HelpDoc.p(
          `Unknown provider ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}: ` +
            `expected one of ${Providers.names.join(", ")}`
        )
      )
  )
)

const common = {
  sandbox: Options.boolean("sandbox").pipe(
    Options.withDescription(
      "Start the four provider emulators in this process on loopback and point the provider at them with " +
        "their public test credentials: no environment variables, no network, nothing to sign up for. " +
        "oauth2 uses the Norce emulator, which speaks standard OAuth2."
    )
  ),
  timeScale: Options.float("time-scale").pipe(
    Options.optional,
    Options.withDescription(
      "With --sandbox: divide every sandbox duration (token lifetimes, rate-limit windows) by this factor, " +
        "so that, at 60, Nora's 60 requests per minute become 60 per second. Default: 1 (load: 60)."
    )
  ),
  allowInsecureLoopback: Options.boolean("allow-insecure-loopback").pipe(
    Options.withDescription(
      "Accept plain http:// URLs for loopback hosts (127.0.0.1, ::1, localhost), e.g. an emulator started " +
        "with `pnpm sandbox`. Same as TOLLGATE_ALLOW_INSECURE_LOOPBACK=true. Remote hosts always need https://."
    )
  )
}

const oauth2Options = {
  tokenUrl: Options.text("token-url").pipe(
    Options.optional,
    Options.withDescription("oauth2: the token endpoint, https:// (required unless --sandbox).")
  ),
  clientId: Options.text("client-id").pipe(
    Options.optional,
    Options.withDescription("oauth2: the client id (required unless --sandbox).")
  ),
  scope: Options.text("scope").pipe(
    Options.optional,
    Options.withDescription("oauth2: the scope to request, space-delimited. Default: none (the server's default).")
  ),
  auth: Options.choice("auth", ["basic", "post"]).pipe(
    Options.withDefault("basic" as const),
    Options.withDescription(
      "oauth2: how the client authenticates to the token endpoint: basic (HTTP Basic, client_secret_basic, " +
        "which every server supports) or post (client_id and client_secret in the form body)."
    )
  ),
  audience: Options.text("audience").pipe(
    Options.optional,
    Options.withDescription("oauth2: an audience parameter for servers that want one (Auth0 and others).")
  ),
  secretEnv: Options.text("secret-env").pipe(
    Options.optional,
    Options.withDescription(
      `oauth2: the environment variable that holds the client secret. Default: ${defaultSecretVariable}. ` +
        "The secret itself is never accepted as an argument, where it would land in shell history and ps."
    )
  ),
  secretStdin: Options.boolean("secret-stdin").pipe(
    Options.withDescription(
      "oauth2: read the client secret from standard input instead (one line; prompted without echo on a terminal)."
    )
  )
}

const baseUrlOption = Options.text("base-url").pipe(
  Options.optional,
  Options.withDescription("oauth2: the API's base URL that paths are relative to (required unless --sandbox).")
)

const presetHelp = (entry: Providers.Entry): [Span.Span, HelpDoc.HelpDoc] => [
  Span.text(entry.name),
  HelpDoc.p(`${entry.title}: ${entry.variables.join(", ")}`)
]

const providersHelp: HelpDoc.HelpDoc = HelpDoc.blocks([
  HelpDoc.p("Providers, and where their settings come from:"),
  HelpDoc.descriptionList([
    presetHelp(Providers.nora),
    presetHelp(Providers.norce),
    presetHelp(Providers.nomba),
    presetHelp(Providers.tokenProject),
    [
      Span.text("oauth2"),
      HelpDoc.p(
        "Any RFC 6749 client-credentials server: --token-url, --client-id, --scope, --auth, --audience; the " +
          `secret from ${defaultSecretVariable} (or the variable --secret-env names, or --secret-stdin), never ` +
          "from an argument."
      )
    ]
  ]),
  HelpDoc.p(
    "With --sandbox none of these are needed: the provider talks to its emulator with the emulator's test " +
      "credentials."
  )
])

const describe = (lines: ReadonlyArray<string>, examples: ReadonlyArray<string>): HelpDoc.HelpDoc =>
  HelpDoc.blocks([
    ...lines.map((line) => HelpDoc.p(line)),
    providersHelp,
    HelpDoc.p("Examples:"),
    ...examples.map((example) => HelpDoc.p(Span.code(`  ${example}`)))
  ])

type Common = {
  readonly sandbox: boolean
  readonly timeScale: Option.Option<number>
  readonly allowInsecureLoopback: boolean
}

type OAuth2Flags = {
  readonly tokenUrl: Option.Option<string>
  readonly clientId: Option.Option<string>
  readonly scope: Option.Option<string>
  readonly auth: "basic" | "post"
  readonly audience: Option.Option<string>
  readonly secretEnv: Option.Option<string>
  readonly secretStdin: boolean
  readonly baseUrl: Option.Option<string>
}

type Env = Environment | Scope.Scope

// ---------------------------------------------------------------------------------------------------
// Building a provider
// ---------------------------------------------------------------------------------------------------

interface Session {
  readonly built: Providers.Built
  readonly wire: Wire.Wire
  readonly waits: Wire.PermitWaits
  readonly sandbox: boolean
  readonly timeScale: number
}

type Purpose = "token" | "api"

const allowLoopbackFromEnv = Config.withDefault(Config.boolean("TOLLGATE_ALLOW_INSECURE_LOOPBACK"), false)

const checkFlags = (
  provider: Providers.Name,
  common: Common,
  flags: OAuth2Flags,
  command: string
): Effect.Effect<void, Errors.CliError> =>
  Effect.gen(function*() {
    if (Option.isSome(common.timeScale)) {
      if (!common.sandbox) return yield* Errors.usage("--time-scale only applies with --sandbox")
      const scale = common.timeScale.value
      if (!(Number.isFinite(scale) && scale > 0 && scale <= 100_000)) {
        return yield* Errors.usage("--time-scale must be a positive number (at most 100000)")
      }
    }
    if (provider === "oauth2") {
      if (flags.secretStdin && Option.isSome(flags.secretEnv)) {
        return yield* Errors.usage("choose one of --secret-env and --secret-stdin")
      }
      return
    }
    const given: ReadonlyArray<readonly [string, boolean]> = [
      ["--token-url", Option.isSome(flags.tokenUrl)],
      ["--client-id", Option.isSome(flags.clientId)],
      ["--scope", Option.isSome(flags.scope)],
      ["--audience", Option.isSome(flags.audience)],
      ["--secret-env", Option.isSome(flags.secretEnv)],
      ["--secret-stdin", flags.secretStdin],
      ["--auth", flags.auth !== "basic"],
      ["--base-url", Option.isSome(flags.baseUrl)]
    ]
    const stray = given.find(([, set]) => set)
    if (stray !== undefined) {
      return yield* Errors.usage(
        `${stray[0]} only applies to the oauth2 provider; ${provider} is configured by its environment ` +
          `variables (tollgate ${command} --help lists them)`
      )
    }
  })

const readSecretFromStdin: Effect.Effect<
  Redacted.Redacted<string>,
  Errors.CliError,
  Stdio.Stdio | CliApp.CliApp.Environment
> = Effect.gen(function*() {
  const stdio = yield* Stdio.Stdio
  if (stdio.stdinIsTTY) {
    const secret = yield* Prompt.hidden({ message: "Client secret" }).pipe(
      Effect.mapError(() => Errors.usage("no client secret was entered"))
    )
    if (Redacted.value(secret).length === 0) return yield* Errors.usage("no client secret was entered")
    return secret
  }
  const text = yield* stdio.readStdin.pipe(
    Effect.mapError((error) => Errors.usage(`--secret-stdin: could not read standard input (${error.reason})`))
  )
  const secret = text.replace(/\r?\n$/, "")
  if (secret.trim().length === 0) return yield* Errors.usage("--secret-stdin: standard input was empty")
  if (secret.includes("\n")) {
    return yield* Errors.usage("--secret-stdin: expected one line on standard input, got several")
  }
  return Redacted.make(secret)
})

const readSecretFromEnv = (name: string): Effect.Effect<Redacted.Redacted<string>, Errors.CliError> =>
  Effect.gen(function*() {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      return yield* Errors.usage("--secret-env expects the name of an environment variable, like MY_CLIENT_SECRET")
    }
    const value = yield* Config.option(Config.redacted(name)).pipe(
      Effect.mapError(() => Errors.usage(`${name} could not be read`))
    )
    if (Option.isNone(value) || Redacted.value(value.value).trim().length === 0) {
      return yield* Errors.usage(
        `the client secret is not set: put it in ${name}${
          name === defaultSecretVariable ? "" : ` (named by --secret-env)`
        }, or pipe it with --secret-stdin`
      )
    }
    return value.value
  })

const oauth2Settings = (
  flags: OAuth2Flags,
  common: Common,
  sandbox: Sandbox.Service | undefined,
  purpose: Purpose
): Effect.Effect<Providers.OAuth2Settings, Errors.CliError | ConfigError.ConfigError, Environment> =>
  Effect.gen(function*() {
    const defaults = sandbox === undefined ? undefined : Providers.oauth2Sandbox(sandbox)
    const tokenUrl = Option.getOrUndefined(flags.tokenUrl) ?? defaults?.tokenUrl
    if (tokenUrl === undefined) {
      return yield* Errors.usage("the oauth2 provider needs --token-url (or --sandbox to try it on the emulator)")
    }
    const clientId = Option.getOrUndefined(flags.clientId) ?? defaults?.clientId
    if (clientId === undefined) return yield* Errors.usage("the oauth2 provider needs --client-id")
    const explicitBase = Option.getOrUndefined(flags.baseUrl)
    const baseUrl = purpose === "token" ? undefined : explicitBase ?? defaults?.baseUrl
    if (purpose === "api" && baseUrl === undefined) {
      return yield* Errors.usage("call and load with the oauth2 provider need --base-url, the API's address")
    }
    const clientSecret = flags.secretStdin
      ? yield* readSecretFromStdin
      : Option.isSome(flags.secretEnv) || defaults === undefined
      ? yield* readSecretFromEnv(Option.getOrElse(flags.secretEnv, () => defaultSecretVariable))
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
      allowInsecureLoopback: defaults !== undefined || common.allowInsecureLoopback || allowFromEnv
    } satisfies Providers.OAuth2Settings
  })

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

const explainConfig = (
  entry: Providers.Entry,
  command: string,
  error: ConfigError.ConfigError
): Errors.CliError => {
  const { invalid, missing } = Errors.configProblems(error)
  if (missing.length > 0) {
    return Errors.usage(
      `${entry.name} is not configured: ${Errors.describeConfigError(error)} ` +
        `(tollgate ${command} --help lists the variables), or try --sandbox`
    )
  }
  return Errors.usage(`invalid ${entry.name} configuration: ${invalid.join("; ")}`)
}

const open = (
  provider: Providers.Name,
  common: Common,
  flags: OAuth2Flags,
  purpose: Purpose,
  command: string,
  defaultTimeScale: number
): Effect.Effect<Session, unknown, Env> =>
  Effect.gen(function*() {
    yield* checkFlags(provider, common, flags, command)
    const http = yield* HttpClient.HttpClient
    const wire = Wire.record(http)
    const waits = Wire.permitWaits()
    const timeScale = common.sandbox ? Option.getOrElse(common.timeScale, () => defaultTimeScale) : 1
    const sandbox = common.sandbox
      ? yield* Sandbox.make({
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
      })
      : undefined
    // `token` hands the token to the user: it must stay valid after the command exits.
    const tuning: Providers.Tuning = purpose === "token" ? { tokenCache: { revokeOnClose: false } } : {}
    const build: Effect.Effect<Providers.Built, unknown, Environment | Scope.Scope> = provider === "oauth2"
      ? Effect.flatMap(
        oauth2Settings(flags, common, sandbox, purpose),
        (settings) => Providers.oauth2(settings, tuning)
      )
      : sandbox !== undefined
      ? Providers.registry[provider].fromSandbox(sandbox, tuning)
      : withInsecureLoopback(common.allowInsecureLoopback, Providers.registry[provider].fromEnv(tuning)).pipe(
        Effect.mapError((error) => explainConfig(Providers.registry[provider], command, error))
      )
    const built = yield* build.pipe(
      Effect.provideService(HttpClient.HttpClient, wire.client),
      Effect.provideService(RateLimiter.RateLimiterBackend, waits.backend)
    )
    return { built, wire, waits, sandbox: sandbox !== undefined, timeScale } satisfies Session
  })

// ---------------------------------------------------------------------------------------------------
// token
// ---------------------------------------------------------------------------------------------------

const noBaseUrl = { baseUrl: Option.none<string>() }

/**
 * `tollgate token <provider>`: obtains a token and prints its metadata, the value masked.
 *
 * @since 0.1.0
 * @category commands
 */
export const token = Command.make(
  "token",
  {
    provider: providerArg,
    reveal: Options.boolean("reveal").pipe(
      Options.withDescription("Show the token itself instead of a masked fingerprint.")
    ),
    header: Options.boolean("header").pipe(
      Options.withDescription(
        "Print only a ready `Authorization: Bearer <token>` line, to paste or pipe into another tool. " +
          "This SHOWS THE TOKEN, like --reveal."
      )
    ),
    json: Options.boolean("json").pipe(
      Options.withDescription("Print the metadata as JSON (the token itself only with --reveal).")
    ),
    ...common,
    ...oauth2Options
  },
  (input) =>
    Effect.gen(function*() {
      if (input.header && input.json) return yield* Errors.usage("choose one of --header and --json")
      const session = yield* open(input.provider, input, { ...input, ...noBaseUrl }, "token", "token", 1)
      const accessToken = yield* session.built.tokens.get
      const now = yield* DateTime.now
      if (input.header) {
        return yield* Console.log(`Authorization: ${Redacted.value(accessToken.authorization)}`)
      }
      const view: Format.TokenView = {
        provider: input.provider,
        sandbox: session.sandbox,
        token: accessToken,
        reveal: input.reveal,
        now
      }
      yield* Console.log(input.json ? JSON.stringify(Format.tokenJson(view), null, 2) : Format.tokenLines(view))
    }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(describe([
    "Obtain a token from the provider's token endpoint and print what it is: its type, when it was obtained, " +
    "when it expires and its lifetime, its scope, and whether a refresh token came with it.",
    "The token itself is masked (its length and a SHA-256 fingerprint, to tell tokens apart) unless you pass " +
    "--reveal or --header. The token is not revoked when the command exits, so it stays usable."
  ], [
    "tollgate token --sandbox nora",
    "tollgate token nomba --json",
    "tollgate token oauth2 --token-url https://auth.example.com/oauth/token --client-id my-client --header"
  ]))
)

// ---------------------------------------------------------------------------------------------------
// call
// ---------------------------------------------------------------------------------------------------

const methods: ReadonlyArray<HttpMethod.HttpMethod> = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

const checkPath = (path: string): Effect.Effect<string, Errors.CliError> =>
  path.startsWith("/") && !path.startsWith("//")
    ? Effect.succeed(path)
    : Effect.fail(
      Errors.usage(
        "the path must start with / and is relative to the provider's base URL (absolute URLs are refused, " +
          "so a token is never sent to another host)"
      )
    )

const headerName = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

const parseHeaders = (
  values: ReadonlyArray<string>
): Effect.Effect<ReadonlyArray<readonly [string, string]>, Errors.CliError> =>
  Effect.forEach(values, (value) => {
    const colon = value.indexOf(":")
    const name = colon === -1 ? "" : value.slice(0, colon).trim()
    if (colon === -1 || !headerName.test(name)) {
      return Effect.fail(Errors.usage("--header expects name:value, like --header 'Accept: application/json'"))
    }
    return Effect.succeed([name, value.slice(colon + 1).trim()] as const)
  })

const readBody = (
  data: string,
  secretStdin: boolean
): Effect.Effect<Uint8Array, Errors.CliError, Environment> =>
  Effect.gen(function*() {
    if (data === "-") {
      if (secretStdin) return yield* Errors.usage("--data - and --secret-stdin cannot both read standard input")
      const stdio = yield* Stdio.Stdio
      const text = yield* stdio.readStdin.pipe(
        Effect.mapError((error) => Errors.usage(`--data -: could not read standard input (${error.reason})`))
      )
      return new TextEncoder().encode(text)
    }
    if (data.startsWith("@")) {
      const path = data.slice(1)
      const fs = yield* FileSystem.FileSystem
      return yield* fs.readFile(path).pipe(
        Effect.mapError((error) =>
          Errors.usage(
            `--data @${path}: cannot read the file (${
              error._tag === "SystemError" ? error.reason : error.message.split("\n")[0]
            })`
          )
        )
      )
    }
    return new TextEncoder().encode(data)
  })

const guessContentType = (body: Uint8Array): string => {
  try {
    JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body))
    return "application/json"
  } catch {
    return "text/plain; charset=utf-8"
  }
}

const millisSince = (start: number): number => performance.now() - start

/**
 * `tollgate call <provider> <METHOD> <path>`: one authenticated, rate-limited request.
 *
 * @since 0.1.0
 * @category commands
 */
export const call = Command.make(
  "call",
  {
    provider: providerArg,
    method: Args.text({ name: "METHOD" }).pipe(
      Args.withDescription(`The HTTP method: ${methods.join(", ")}.`)
    ),
    path: Args.text({ name: "path" }).pipe(
      Args.withDescription("The path on the provider's base URL, with any query string, e.g. /api/forms.")
    ),
    headers: Options.text("header").pipe(
      Options.withAlias("H"),
      Options.repeated,
      Options.withDescription("A request header, name:value. Repeat it for several.")
    ),
    data: Options.text("data").pipe(
      Options.withAlias("d"),
      Options.optional,
      Options.withDescription(
        "A request body: the text itself, @file to send a file's bytes, or - to read standard input. " +
          "Content-Type defaults to application/json when the body parses as JSON, text/plain otherwise."
      )
    ),
    ...common,
    ...oauth2Options,
    baseUrl: baseUrlOption
  },
  (input) =>
    Effect.gen(function*() {
      const method = input.method.toUpperCase() as HttpMethod.HttpMethod
      if (!methods.includes(method)) {
        return yield* Errors.usage(
          `unknown method ${JSON.stringify(input.method.slice(0, 20))}: use ${methods.join(", ")}`
        )
      }
      const path = yield* checkPath(input.path)
      const headers = yield* parseHeaders(input.headers)
      const body = Option.isSome(input.data) ? yield* readBody(input.data.value, input.secretStdin) : undefined
      const session = yield* open(input.provider, input, input, "api", "call", 1)

      const tokenStart = performance.now()
      yield* session.built.tokens.get
      const tokenMillis = millisSince(tokenStart)

      let request = HttpClientRequest.make(method)(path)
      for (const [name, value] of headers) request = HttpClientRequest.setHeader(request, name, value)
      if (body !== undefined) {
        const contentType = headers.find(([name]) => name.toLowerCase() === "content-type")?.[1] ??
          guessContentType(body)
        request = HttpClientRequest.bodyUint8Array(request, body, contentType)
      }
      const wireBefore = session.wire.events.length
      const requestStart = performance.now()
      const response = yield* session.built.client.execute(request)
      const bytes = new Uint8Array(yield* response.arrayBuffer)
      const requestMillis = millisSince(requestStart)

      if (bytes.length > 0) {
        const text = new TextDecoder().decode(bytes)
        yield* Console.log(text.endsWith("\n") ? text.slice(0, -1) : text)
      }
      const retried = session.wire.events.slice(wireBefore).filter((event) =>
        event.status === 401 || event.status === 429
      )
      const notes = [
        `token ${Report.formatDuration(tokenMillis)}`,
        ...(retried.length > 0 ? [`retried after ${retried.map((event) => event.status).join(", ")}`] : [])
      ]
      yield* Console.error(
        `${response.status} ${STATUS_CODES[response.status] ?? ""}`.trim() +
          `  ${method} ${path}  ${Report.formatDuration(requestMillis)} (${notes.join(", ")})`
      )
      if (response.status < 200 || response.status >= 300) {
        return yield* new Errors.Exit({ exitCode: Errors.exitCodes.failure })
      }
    }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(describe([
    "Send one request through the provider's client: base URL and fixed headers, a rate-limit permit, a " +
    "bearer token (renewed and retried once on 401), 429 handling.",
    "The response body goes to stdout; the status and timing to stderr. The exit code is 1 unless the " +
    "status is 2xx."
  ], [
    "tollgate call --sandbox nora GET /api/forms",
    "tollgate call --sandbox nora POST /api/forms/frm_motor_quote/submissions --data '{\"driverAge\": 42}'",
    "tollgate call oauth2 --token-url https://auth.example.com/token --client-id me --base-url https://api.example.com GET /v1/me"
  ]))
)

// ---------------------------------------------------------------------------------------------------
// load
// ---------------------------------------------------------------------------------------------------

interface LoadCounters {
  done: number
  succeeded: number
  failed: number
  readonly failures: Map<string, number>
}

const progressLoop = (
  label: string,
  total: number,
  counters: LoadCounters,
  startedAt: number
): Effect.Effect<Effect.Effect<void>, never, Stdio.Stdio | Scope.Scope> =>
  Effect.gen(function*() {
    const stdio = yield* Stdio.Stdio
    const snapshot = (): Report.Progress => ({
      label,
      done: counters.done,
      total,
      succeeded: counters.succeeded,
      failed: counters.failed,
      elapsedMillis: millisSince(startedAt)
    })
    if (stdio.stderrIsTTY) {
      const draw = Effect.suspend(() =>
        stdio.writeStderr(
          `\r${Report.renderProgress(snapshot(), { bar: true, columns: stdio.stderrColumns })}\x1b[K`
        )
      )
      const fiber = yield* Effect.forkScoped(Effect.repeat(draw, Schedule.spaced("100 millis")))
      return Effect.zipRight(Fiber.interrupt(fiber), Effect.zipRight(draw, stdio.writeStderr("\n")))
    }
    // Not a terminal (a pipe, a CI log): a plain line at most every second, and a last one at the end.
    let printed = -1
    const line = Effect.suspend(() => {
      const now = snapshot()
      if (now.done === printed) return Effect.void
      printed = now.done
      return Console.error(Report.renderProgress(now, { bar: false }))
    })
    const fiber = yield* Effect.forkScoped(
      Effect.repeat(Effect.delay(line, "1 second"), Schedule.forever)
    )
    return Effect.zipRight(Fiber.interrupt(fiber), line)
  })

const describeFailures = (failures: ReadonlyMap<string, number>): string =>
  [...failures.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([reason, count]) => `${count}× ${reason}`)
    .join("; ")

/**
 * `tollgate load <provider> <path>`: many requests through the limiter, a progress bar, a summary.
 *
 * @since 0.1.0
 * @category commands
 */
export const load = Command.make(
  "load",
  {
    provider: providerArg,
    path: Args.text({ name: "path" }).pipe(
      Args.withDescription("The path every request GETs, relative to the provider's base URL.")
    ),
    requests: Options.integer("requests").pipe(
      Options.withAlias("n"),
      Options.withDefault(100),
      Options.withDescription("How many requests to send in all.")
    ),
    concurrency: Options.integer("concurrency").pipe(
      Options.withAlias("c"),
      Options.withDefault(10),
      Options.withDescription("How many requests may be in flight (or waiting for a permit) at once.")
    ),
    json: Options.boolean("json").pipe(
      Options.withDescription("Print the summary as JSON instead of a table.")
    ),
    ...common,
    ...oauth2Options,
    baseUrl: baseUrlOption
  },
  (input) =>
    Effect.gen(function*() {
      if (!(Number.isInteger(input.requests) && input.requests >= 1 && input.requests <= 1_000_000)) {
        return yield* Errors.usage("--requests must be a whole number from 1 to 1000000")
      }
      if (!(Number.isInteger(input.concurrency) && input.concurrency >= 1 && input.concurrency <= 10_000)) {
        return yield* Errors.usage("--concurrency must be a whole number from 1 to 10000")
      }
      const path = yield* checkPath(input.path)
      const pathname = new URL(path, "http://placeholder").pathname
      const counters: LoadCounters = { done: 0, succeeded: 0, failed: 0, failures: new Map() }
      const fail = (reason: string) =>
        Effect.sync(() => {
          counters.failed++
          counters.done++
          counters.failures.set(reason, (counters.failures.get(reason) ?? 0) + 1)
        })

      const run = yield* Effect.scoped(Effect.gen(function*() {
        const session = yield* open(input.provider, input, input, "api", "load", 60)
        const { built } = session
        yield* Console.error(
          `load: ${input.requests} × GET ${path} on ${input.provider}${
            session.sandbox ? ` (sandbox, time scale ${session.timeScale})` : ""
          }, concurrency ${input.concurrency}, limit ${
            built.limit === undefined ? "none" : Report.formatLimit(built.limit)
          }`
        )
        const startedAt = performance.now()
        const startedEpoch = Date.now()
        const stopProgress = yield* progressLoop(input.provider, input.requests, counters, startedAt)
        const one = built.client.get(path).pipe(
          Effect.flatMap((response) => Effect.as(Effect.ignore(response.arrayBuffer), response.status)),
          Effect.matchEffect({
            onFailure: (error) => fail(Errors.describe(error).message),
            onSuccess: (status) =>
              status >= 200 && status < 300
                ? Effect.sync(() => {
                  counters.succeeded++
                  counters.done++
                })
                : fail(`HTTP ${status}`)
          })
        )
        yield* Effect.forEach(Array.from({ length: input.requests }), () => one, {
          concurrency: input.concurrency,
          discard: true
        })
        const elapsedMillis = millisSince(startedAt)
        yield* stopProgress
        return { session, elapsedMillis, startedEpoch }
      }))
      // The scope is closed: the token was revoked where the provider supports it, and counted.
      const { elapsedMillis, session, startedEpoch } = run
      const tokenStats = yield* session.built.tokens.stats
      const events = session.wire.events
      const limit = session.built.limit
      // API requests to the load's path (the base URL may add a prefix); token requests go elsewhere.
      const arrivals = events.filter((event) => event.at >= startedEpoch && event.path.endsWith(pathname))
      const stats: Report.ProviderStats = {
        provider: input.provider,
        requests: input.requests,
        succeeded: counters.succeeded,
        failed: counters.failed,
        tokenFetches: tokenStats.fetches,
        refreshes: tokenStats.refreshes,
        revocations: tokenStats.revocations,
        unauthorized: events.filter((event) => event.status === 401).length,
        rateLimited: events.filter((event) => event.status === 429).length,
        limit,
        peakPerWindow: limit === undefined
          ? undefined
          : Report.peakPerWindow(arrivals.map((event) => event.at), limit.windowMillis),
        elapsedMillis,
        wait: Report.waitStats(session.waits.samples.get(session.built.limiter.provider) ?? [])
      }
      yield* Console.log(
        input.json
          ? JSON.stringify(
            { ...stats, sandbox: session.sandbox, failures: Object.fromEntries(counters.failures) },
            null,
            2
          )
          : Report.renderTable([stats])
      )
      if (counters.failed > 0) {
        return yield* Errors.failure(
          `${counters.failed} of ${input.requests} requests failed: ${describeFailures(counters.failures)}`
        )
      }
    })
).pipe(
  Command.withDescription(describe([
    "Drive many GET requests through the provider's client and its rate limiter, with a live progress bar " +
    "on stderr (plain lines when stderr is not a terminal), then print a summary table on stdout: requests " +
    "sent and succeeded, token fetches, refreshes and revocations, 401s and 429s seen, the busiest window " +
    "against the limit, throughput and permit waiting time (mean, p50, p95, p99, max).",
    "The exit code is 1 if any request failed. With --sandbox the time scale defaults to 60, so limits " +
    "bind within seconds."
  ], [
    "tollgate load --sandbox nora /api/forms --requests 150 --concurrency 20",
    "tollgate load --sandbox token-project /notarizations/stamps -n 25 -c 5 --time-scale 120"
  ]))
)

// ---------------------------------------------------------------------------------------------------
// The application
// ---------------------------------------------------------------------------------------------------

/**
 * The root command, `tollgate`, with `token`, `call` and `load`.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("tollgate", {}, () =>
  Effect.zipRight(
    Console.error("usage: tollgate <token|call|load> <provider> … (tollgate --help explains each)"),
    new Errors.Exit({ exitCode: Errors.exitCodes.usage })
  )).pipe(
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
      HelpDoc.p("tollgate <command> --help describes each command, its flags and the providers' variables.")
    ])),
    Command.withSubcommands([token, call, load])
  )

const cli = Command.run(command, {
  name: "tollgate",
  version,
  summary: Span.text("tokens, calls and load tests for client-credentials APIs")
})

const report = (error: unknown): Effect.Effect<number> => {
  if (ValidationError.isValidationError(error)) return Effect.succeed(Errors.exitCodes.usage)
  if (error instanceof Errors.Exit) return Effect.succeed(error.exitCode)
  const { exitCode, message } = Errors.describe(error)
  return Effect.as(Console.error(`tollgate: ${message}`), exitCode)
}

/**
 * Runs the CLI on `args` (the arguments after the script name) and returns the exit code: 0 on success,
 * 1 when the operation failed (a non-2xx response, failed load requests, rejected credentials, an
 * unreachable host), 2 for bad input (unknown provider, bad flags, missing or invalid configuration). A
 * failure is reported as one line on stderr, never with a stack trace or a secret. Logs are off unless
 * `--log-level` turns them on; they go to stderr.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (args: ReadonlyArray<string>): Effect.Effect<number, never, Environment> =>
  cli(["node", "tollgate", ...args]).pipe(
    Effect.as(0),
    Effect.catchAllCause((cause) => {
      const squashed = Errors.squash(cause)
      switch (squashed._tag) {
        case "Failure":
          return report(squashed.error)
        case "Die":
          return Effect.as(
            Console.error(`tollgate: internal error: ${Errors.safeMessage(squashed.defect)}`),
            Errors.exitCodes.internal
          )
        case "Interrupt":
          return Effect.succeed(Errors.exitCodes.interrupted)
      }
    }),
    Logger.withMinimumLogLevel(LogLevel.None),
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true, colors: false })))
  )
