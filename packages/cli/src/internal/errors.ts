/**
 * Every way a command can fail, as typed errors, and every failure reduced to one line for stderr and an
 * exit code. Messages come from the typed errors themselves (which never carry secrets); nothing here
 * prints a stack trace, a cause chain or a URL's query string. Where a library message names a library
 * option, the line names the command-line flag instead.
 */
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as TollgateError from "@tollgate/core/TollgateError"
import { Cause, ConfigError, Option, Predicate, Schema } from "effect"

/** Exit codes: 1 for a failed operation, 2 for bad input (arguments, flags, configuration). */
export const exitCodes = { failure: 1, usage: 2, internal: 70, interrupted: 130 } as const

/** Bad arguments or flags, or flags that do not fit together. Exit code 2. */
export class UsageError extends Schema.TaggedError<UsageError>("@tollgate/cli/UsageError")("UsageError", {
  message: Schema.String
}) {}

/** A provider's configuration (its environment variables, or the oauth2 flags) is missing or invalid. Exit 2. */
export class ConfigurationError
  extends Schema.TaggedError<ConfigurationError>("@tollgate/cli/ConfigurationError")("ConfigurationError", {
    message: Schema.String
  })
{}

/** `--sandbox` could not start: `@tollgate/testing` is not installed, or loopback refused to serve. Exit 1. */
export class SandboxUnavailable
  extends Schema.TaggedError<SandboxUnavailable>("@tollgate/cli/SandboxUnavailable")("SandboxUnavailable", {
    message: Schema.String
  })
{}

/** The operation ran and failed (failed load requests). Exit 1. */
export class OperationFailed
  extends Schema.TaggedError<OperationFailed>("@tollgate/cli/OperationFailed")("OperationFailed", {
    message: Schema.String
  })
{}

/** The command already told the user what went wrong (a non-2xx response's status line). */
export class Reported extends Schema.TaggedError<Reported>("@tollgate/cli/Reported")("Reported", {
  exitCode: Schema.Number
}) {}

/** The errors the CLI defines. */
export type CliError = UsageError | ConfigurationError | SandboxUnavailable | OperationFailed | Reported

const missingDefault = /^Expected (.+) to exist in /

interface ConfigProblems {
  readonly missing: ReadonlyArray<string>
  readonly invalid: ReadonlyArray<string>
}

/** The leaves of a `ConfigError`: the variables that are missing, and what is wrong with the others. */
export const configProblems = (error: ConfigError.ConfigError): ConfigProblems => {
  const missing: Array<string> = []
  const invalid: Array<string> = []
  const visit = (e: ConfigError.ConfigError): void => {
    switch (e._op) {
      case "And":
      case "Or":
        visit(e.left)
        visit(e.right)
        return
      case "MissingData": {
        const name = pathName(e.path)
        // `Config.redacted` reports a missing variable with the message "<redacted>".
        if (missingDefault.test(e.message) || e.message.length === 0 || e.message === "<redacted>") {
          missing.push(name)
        } else invalid.push(withName(name, e.message))
        return
      }
      case "InvalidData":
      case "Unsupported":
      case "SourceUnavailable":
        invalid.push(withName(pathName(e.path), e.message))
        return
    }
  }
  visit(error)
  return { missing: [...new Set(missing)], invalid: [...new Set(invalid)] }
}

// A variable nested under a path that repeats it (`Config.nested(name)(Config.string(name))`) is named once.
const pathName = (path: ReadonlyArray<string>): string =>
  path.filter((segment, i) => segment.length > 0 && segment !== path[i - 1]).join(".")

// A message that already names its variable (`X is set but empty`) is not prefixed with it again.
const withName = (name: string, message: string): string =>
  name.length === 0 || message.includes(name) ? inCliTerms(message) : `${name}: ${inCliTerms(message)}`

const list = (items: ReadonlyArray<string>): string =>
  items.length <= 1 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`

/** One sentence for a `ConfigError`: what is not set, what is invalid. */
export const describeConfigError = (error: ConfigError.ConfigError): string => {
  const { invalid, missing } = configProblems(error)
  const parts: Array<string> = []
  if (missing.length > 0) parts.push(`${list(missing)} ${missing.length === 1 ? "is" : "are"} not set`)
  parts.push(...invalid)
  return parts.length === 0 ? "invalid configuration" : parts.join("; ")
}

// Library options the CLI sets from a flag (or an environment variable) of its own: a message naming the
// option names the flag instead, since that is what the user can change.
const vocabulary: ReadonlyArray<readonly [RegExp, string]> = [
  [/\ballowInsecureLoopback\b/g, "--allow-insecure-loopback or TOLLGATE_ALLOW_INSECURE_LOOPBACK=true"]
]

/** A library message in the command line's terms. */
export const inCliTerms = (message: string): string =>
  vocabulary.reduce((text, [option, flag]) => text.replace(option, flag), message)

const errorCode = (cause: unknown): string | undefined => {
  let current: unknown = cause
  for (let depth = 0; depth < 4 && Predicate.isRecord(current); depth++) {
    if (typeof current["code"] === "string") return current["code"]
    current = current["cause"]
  }
  return undefined
}

const where = (url: string): string => {
  try {
    const parsed = new URL(url)
    return `${parsed.origin}${parsed.pathname}`
  } catch {
    return "the server"
  }
}

/** One line for an `HttpClientError`: where, and the error code, never the query string. */
export const describeHttpError = (error: HttpClientError.HttpClientError): string => {
  const target = `${error.request.method} ${where(error.request.url)}`
  if (error._tag === "RequestError") {
    switch (error.reason) {
      case "Transport": {
        const code = errorCode(error.cause)
        return `could not reach ${target}${code === undefined ? "" : ` (${code})`}`
      }
      case "InvalidUrl":
        return `invalid URL for ${error.request.method} request`
      case "Encode":
        return `could not encode the request body for ${target}`
    }
  }
  return error.reason === "StatusCode" && error.description !== undefined
    ? error.description
    : `could not read the response of ${target} (${error.reason})`
}

/**
 * One line for a Tollgate error: its own message (context-free: it states what happened and, for an
 * outage, when the endpoint accepts requests again, never that something retries later), in the command
 * line's terms.
 */
export const describeTollgateError = (error: TollgateError.TollgateError): string => inCliTerms(error.message)

/** The exit code of a CLI error. */
export const exitCodeOf = (error: CliError): number => {
  switch (error._tag) {
    case "UsageError":
    case "ConfigurationError":
      return exitCodes.usage
    case "SandboxUnavailable":
    case "OperationFailed":
      return exitCodes.failure
    case "Reported":
      return error.exitCode
  }
}

const isCliError = (u: unknown): u is CliError =>
  Predicate.isTagged(u, "UsageError") || Predicate.isTagged(u, "ConfigurationError") ||
  Predicate.isTagged(u, "SandboxUnavailable") || Predicate.isTagged(u, "OperationFailed") ||
  Predicate.isTagged(u, "Reported")

/**
 * The line (without the `tollgate:` prefix) and exit code for any failure a command can end with; no line
 * for `Reported`, whose command already printed one.
 */
export const describe = (error: unknown): { readonly message: string | undefined; readonly exitCode: number } => {
  if (isCliError(error)) {
    return { message: error._tag === "Reported" ? undefined : error.message, exitCode: exitCodeOf(error) }
  }
  if (ConfigError.isConfigError(error)) {
    return { message: `invalid configuration: ${describeConfigError(error)}`, exitCode: exitCodes.usage }
  }
  if (TollgateError.isTollgateError(error)) {
    return { message: describeTollgateError(error), exitCode: exitCodes.failure }
  }
  if (HttpClientError.isHttpClientError(error)) {
    return { message: describeHttpError(error), exitCode: exitCodes.failure }
  }
  return { message: `unexpected error: ${safeMessage(error)}`, exitCode: exitCodes.internal }
}

/** The first line of an unknown value's message, bounded; never its stack. */
export const safeMessage = (u: unknown): string => {
  const message = Predicate.hasProperty(u, "message") && typeof u.message === "string"
    ? u.message
    : Predicate.hasProperty(u, "_tag") && typeof u._tag === "string"
    ? u._tag
    : typeof u === "string"
    ? u
    : "unknown error"
  const line = message.split("\n")[0] ?? ""
  return line.length > 200 ? `${line.slice(0, 200)}…` : line
}

/** The failure or defect a cause ends with, for reporting. */
export const squash = (
  cause: Cause.Cause<unknown>
): { readonly _tag: "Failure"; readonly error: unknown } | { readonly _tag: "Die"; readonly defect: unknown } | {
  readonly _tag: "Interrupt"
} =>
  Option.match(Cause.failureOption(cause), {
    onSome: (error) => ({ _tag: "Failure", error }),
    onNone: () =>
      Option.match(Cause.dieOption(cause), {
        onSome: (defect) => ({ _tag: "Die", defect }),
        onNone: () => ({ _tag: "Interrupt" })
      })
  })
