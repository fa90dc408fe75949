/**
 * Every way a command can fail, reduced to one line for stderr and an exit code. Messages come from the
 * typed errors themselves (which never carry secrets); nothing here prints a stack trace, a cause chain or
 * a URL's query string.
 */
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as TollgateError from "@tollgate/core/TollgateError"
import { Cause, ConfigError, Data, Option, Predicate } from "effect"

/** Exit codes: 1 for a failed operation, 2 for bad input (arguments, flags, configuration). */
export const exitCodes = { failure: 1, usage: 2, internal: 70, interrupted: 130 } as const

/** A failure the command describes itself; printed as `tollgate: <message>`. */
export class CliError extends Data.TaggedError("CliError")<{
  readonly message: string
  readonly exitCode: number
}> {}

/** A usage error: bad arguments or flags. */
export const usage = (message: string): CliError => new CliError({ message, exitCode: exitCodes.usage })

/** A failed operation. */
export const failure = (message: string): CliError => new CliError({ message, exitCode: exitCodes.failure })

/** The command already told the user what went wrong (a non-2xx response, failed load requests). */
export class Exit extends Data.TaggedError("Exit")<{ readonly exitCode: number }> {}

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
        const name = e.path.join(".")
        // `Config.redacted` reports a missing variable with the message "<redacted>".
        if (missingDefault.test(e.message) || e.message.length === 0 || e.message === "<redacted>") {
          missing.push(name)
        } else invalid.push(withName(name, e.message))
        return
      }
      case "InvalidData":
      case "Unsupported":
        invalid.push(withName(e.path.join("."), e.message))
        return
      case "SourceUnavailable":
        invalid.push(withName(e.path.join("."), e.message))
        return
    }
  }
  visit(error)
  return { missing: [...new Set(missing)], invalid: [...new Set(invalid)] }
}

const withName = (name: string, message: string): string =>
  name.length === 0 || message.includes(name) ? message : `${name}: ${message}`

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

/** The line and exit code for any failure a command can end with. */
export const describe = (error: unknown): { readonly message: string; readonly exitCode: number } => {
  if (error instanceof CliError) return { message: error.message, exitCode: error.exitCode }
  if (ConfigError.isConfigError(error)) {
    return { message: `invalid configuration: ${describeConfigError(error)}`, exitCode: exitCodes.usage }
  }
  if (TollgateError.isTollgateError(error)) return { message: error.message, exitCode: exitCodes.failure }
  if (HttpClientError.isHttpClientError(error)) {
    return { message: describeHttpError(error), exitCode: exitCodes.failure }
  }
  if (Predicate.isTagged(error, "ServeError")) {
    return { message: "could not start the sandbox on loopback", exitCode: exitCodes.failure }
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
