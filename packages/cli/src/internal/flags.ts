/**
 * The arguments and flags the commands share, each validated where @effect/cli parses it: a bad value or
 * a pair of flags that do not fit together is a parse error naming the flag, before anything runs. What
 * depends on the provider (an oauth2 flag given to nora) is checked when the session opens.
 */
import * as Args from "@effect/cli/Args"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { Effect, Option } from "effect"
import * as Providers from "../Providers.js"

/** The variable holding the generic provider's client secret unless `--secret-env` names another. */
export const defaultSecretVariable = "TOLLGATE_CLIENT_SECRET"

/** Fails parsing with `message`, which @effect/cli reports as the value's error. */
export const invalid = (message: string): Effect.Effect<never, ValidationError.ValidationError> =>
  Effect.fail(ValidationError.invalidValue(HelpDoc.p(message)))

/**
 * The provider: a choice, so help lists the names and shell completions offer them.
 */
export const provider: Args.Args<Providers.Name> = Args.choice(
  Providers.names.map((name): [string, Providers.Name] => [name, name]),
  { name: "provider" }
).pipe(
  Args.withDescription(
    `${Providers.presets.map((entry) => entry.name).join(", ")} (each configured by its environment variables, ` +
      "e.g. NORA_CLIENT_ID), or oauth2 (any client-credentials server, configured by --token-url, --client-id " +
      "and a secret from the environment or stdin)."
  )
)

/** A path on the provider's base URL; absolute URLs are refused, so a token never goes to another host. */
export const path = (description: string): Args.Args<string> =>
  Args.text({ name: "path" }).pipe(
    Args.withDescription(description),
    Args.mapEffect((value) =>
      value.startsWith("/") && !value.startsWith("//")
        ? Effect.succeed(value)
        : Effect.fail(HelpDoc.p(
          "<path> must start with / and is relative to the provider's base URL (absolute URLs are refused, " +
            "so a token is never sent to another host)"
        ))
    )
  )

/** A whole number within bounds, named by its flag when it is not. */
export const wholeNumber = (
  name: string,
  alias: string,
  bounds: { readonly min: number; readonly max: number; readonly default: number },
  description: string
): Options.Options<number> =>
  Options.integer(name).pipe(
    Options.withAlias(alias),
    Options.mapEffect((n) =>
      n >= bounds.min && n <= bounds.max
        ? Effect.succeed(n)
        : invalid(`--${name} must be a whole number from ${bounds.min} to ${bounds.max}, got ${n}`)
    ),
    Options.withDefault(bounds.default),
    Options.withDescription(`${description} Default: ${bounds.default}.`)
  )

// ---------------------------------------------------------------------------------------------------
// Where the provider is: the sandbox, or the real one
// ---------------------------------------------------------------------------------------------------

/** `--sandbox`, `--time-scale` and `--allow-insecure-loopback`. */
export interface Target {
  readonly sandbox: boolean
  /** Only with `--sandbox`. */
  readonly timeScale: Option.Option<number>
  readonly allowInsecureLoopback: boolean
}

const maxTimeScale = 100_000

/** The target flags, with `--time-scale` refused without `--sandbox`. */
export const target = (defaultTimeScale: number): Options.Options<Target> =>
  Options.all({
    sandbox: Options.boolean("sandbox").pipe(
      Options.withDescription(
        "Start the four provider emulators in this process on loopback and point the provider at them with " +
          "their public test credentials: no environment variables, no network, nothing to sign up for. " +
          "oauth2 uses the Norce emulator, which speaks standard OAuth2."
      )
    ),
    timeScale: Options.float("time-scale").pipe(
      Options.mapEffect((scale) =>
        Number.isFinite(scale) && scale > 0 && scale <= maxTimeScale
          ? Effect.succeed(scale)
          : invalid(`--time-scale must be a positive number, at most ${maxTimeScale}`)
      ),
      Options.optional,
      Options.withDescription(
        "With --sandbox: divide every sandbox duration (token lifetimes, rate-limit windows) by this factor, " +
          `so that, at 60, Nora's 60 requests per minute become 60 per second. Default: ${defaultTimeScale}.`
      )
    ),
    allowInsecureLoopback: Options.boolean("allow-insecure-loopback").pipe(
      Options.withDescription(
        "Accept plain http:// URLs for loopback hosts (127.0.0.1, ::1, localhost), e.g. an emulator started " +
          "with `pnpm sandbox`. Same as TOLLGATE_ALLOW_INSECURE_LOOPBACK=true. Remote hosts always need https://."
      )
    )
  }).pipe(
    Options.mapEffect((flags) =>
      Option.isSome(flags.timeScale) && !flags.sandbox
        ? invalid("--time-scale only applies with --sandbox")
        : Effect.succeed(flags)
    )
  )

// ---------------------------------------------------------------------------------------------------
// The generic oauth2 provider
// ---------------------------------------------------------------------------------------------------

/** The flags of the generic provider, and which of them were given (the others refuse them). */
export interface OAuth2Flags {
  readonly tokenUrl: Option.Option<string>
  readonly clientId: Option.Option<string>
  readonly scope: Option.Option<string>
  readonly auth: "basic" | "post"
  readonly audience: Option.Option<string>
  readonly secretEnv: Option.Option<string>
  readonly secretStdin: boolean
  /** Always none for `token`, which has no `--base-url`. */
  readonly baseUrl: Option.Option<string>
  /** The oauth2-only flags on the command line, as typed there. */
  readonly given: ReadonlyArray<string>
}

const optionalText = (name: string, description: string): Options.Options<Option.Option<string>> =>
  Options.text(name).pipe(Options.optional, Options.withDescription(description))

const variableName = /^[A-Za-z_][A-Za-z0-9_]*$/

const oauth2Options = {
  tokenUrl: optionalText("token-url", "oauth2: the token endpoint, https:// (required unless --sandbox)."),
  clientId: optionalText("client-id", "oauth2: the client id (required unless --sandbox)."),
  scope: optionalText("scope", "oauth2: the scope to request, space-delimited. Default: none (the server's default)."),
  auth: Options.choice("auth", ["basic", "post"]).pipe(
    Options.optional,
    Options.withDescription(
      "oauth2: how the client authenticates to the token endpoint: basic (HTTP Basic, client_secret_basic, " +
        "which every server supports) or post (client_id and client_secret in the form body). Default: basic."
    )
  ),
  audience: optionalText("audience", "oauth2: an audience parameter for servers that want one (Auth0 and others)."),
  secretEnv: Options.text("secret-env").pipe(
    Options.mapEffect((name) =>
      variableName.test(name)
        ? Effect.succeed(name)
        : invalid("--secret-env expects the name of an environment variable, like MY_CLIENT_SECRET")
    ),
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

const baseUrl = optionalText(
  "base-url",
  "oauth2: the API's base URL that paths are relative to (required unless --sandbox)."
)

/** The oauth2 flags; `call` and `load` add `--base-url`. */
export const oauth2 = (options: { readonly baseUrl: boolean }): Options.Options<OAuth2Flags> =>
  Options.all({
    ...oauth2Options,
    baseUrl: options.baseUrl ? baseUrl : Options.none.pipe(Options.map(() => Option.none<string>()))
  }).pipe(
    Options.mapEffect((flags) => {
      if (flags.secretStdin && Option.isSome(flags.secretEnv)) {
        return invalid("choose one of --secret-env and --secret-stdin")
      }
      const given = ([
        ["--token-url", Option.isSome(flags.tokenUrl)],
        ["--client-id", Option.isSome(flags.clientId)],
        ["--scope", Option.isSome(flags.scope)],
        ["--auth", Option.isSome(flags.auth)],
        ["--audience", Option.isSome(flags.audience)],
        ["--secret-env", Option.isSome(flags.secretEnv)],
        ["--secret-stdin", flags.secretStdin],
        ["--base-url", Option.isSome(flags.baseUrl)]
      ] as const).flatMap(([flag, set]) => (set ? [flag] : []))
      return Effect.succeed({ ...flags, auth: Option.getOrElse(flags.auth, () => "basic" as const), given })
    })
  )
