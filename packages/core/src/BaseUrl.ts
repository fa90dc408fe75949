/**
 * Validates the URLs Tollgate sends credentials and tokens to. A base URL must be absolute and HTTPS;
 * plain HTTP is refused unless the host is loopback *and* the caller allowed it (sandboxes and tests).
 * Credentials embedded in a URL are refused too: they belong in secrets, not in a string that gets
 * logged.
 *
 * @since 0.1.0
 */
import { Config, ConfigError, Either } from "effect"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Accept `http:` for 127.0.0.0/8, `::1` and `localhost`. Default: false. */
  readonly allowInsecureLoopback?: boolean | undefined
}

const isLoopback = (hostname: string): boolean =>
  hostname === "localhost" || hostname === "[::1]" || hostname === "::1" || /^127(\.\d{1,3}){3}$/.test(hostname)

/**
 * Checks `url` and returns it without a trailing slash, or a `ConfigError` naming `name` (the
 * environment variable or option the URL came from) and what is wrong with it.
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = (
  name: string,
  url: string,
  options?: Options
): Either.Either<string, ConfigError.ConfigError> => {
  const invalid = (why: string) => Either.left(ConfigError.InvalidData([name], `${why} (got ${describe(url)})`))
  const trimmed = url.trim()
  if (trimmed.length === 0) return invalid("expected an https:// URL")
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) return invalid("expected an absolute URL with a scheme, like https://")
  let parsed: URL
  try {
    parsed = new URL(trimmed)
  } catch {
    return invalid("expected a valid URL")
  }
  if (parsed.username !== "" || parsed.password !== "") {
    return Either.left(
      ConfigError.InvalidData([name], "credentials must not be embedded in the URL; configure them as secrets")
    )
  }
  if (parsed.protocol === "http:") {
    if (!isLoopback(parsed.hostname)) return invalid("plain http is refused for a remote host; use https://")
    if (options?.allowInsecureLoopback !== true) {
      return invalid("plain http to loopback must be allowed explicitly (allowInsecureLoopback)")
    }
  } else if (parsed.protocol !== "https:") {
    return invalid("expected an https:// URL")
  }
  if (parsed.search !== "" || parsed.hash !== "") return invalid("a base URL takes no query or fragment")
  return Either.right(`${parsed.origin}${parsed.pathname}`.replace(/\/+$/, ""))
}

// Describes a bad URL by its shape, never echoing a query string or credentials it might contain.
const describe = (url: string): string => {
  const trimmed = url.trim()
  if (trimmed.length === 0) return "an empty value"
  try {
    const parsed = new URL(trimmed)
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`
  } catch {
    return trimmed.length > 60
      ? `a ${trimmed.length}-character value`
      : JSON.stringify(trimmed.replace(/[?#@].*$/, "…"))
  }
}

/**
 * A `Config` for a base URL read from `name`, with a default when the variable is absent. An empty or
 * malformed value is a `ConfigError` naming the variable.
 *
 * @since 0.1.0
 * @category config
 */
export const config = (
  name: string,
  options?: Options & { readonly default?: string | undefined }
): Config.Config<string> => {
  const raw = options?.default === undefined
    ? Config.string(name)
    : Config.withDefault(Config.string(name), options.default)
  return Config.mapOrFail(raw, (url) => validate(name, url, options))
}

/**
 * A required, non-empty string from the environment: a missing or empty variable is a `ConfigError`
 * that names it.
 *
 * @since 0.1.0
 * @category config
 */
export const nonEmpty = (name: string): Config.Config<string> =>
  Config.mapOrFail(Config.string(name), (value) =>
    value.trim().length === 0
      // Invalid, not missing: `Config.withDefault` and `Config.option` must not mistake it for absent.
      ? Either.left(ConfigError.InvalidData([name], `${name} is set but empty`))
      : Either.right(value.trim()))
