/**
 * Validates the URLs Tollgate sends credentials and tokens to. A base URL must be absolute and HTTPS;
 * plain HTTP is refused unless the host is loopback *and* the caller allowed it (sandboxes and tests).
 * Credentials embedded in a URL are refused too: they belong in secrets, not in a string that gets
 * logged.
 *
 * @since 0.1.0
 */
import { Config, ConfigError, Either } from "effect"
import * as Scrub from "./Scrub.js"
import * as TollgateError from "./TollgateError.js"

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

// What is wrong with `url` as a base URL, or the URL normalised (no trailing slash).
const check = (url: string, options?: Options): Either.Either<string, string> => {
  const trimmed = url.trim()
  if (trimmed.length === 0) return Either.left("expected an https:// URL")
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) {
    return Either.left("expected an absolute URL with a scheme, like https://")
  }
  let parsed: URL
  try {
    parsed = new URL(trimmed)
  } catch {
    return Either.left("expected a valid URL")
  }
  if (parsed.username !== "" || parsed.password !== "") {
    return Either.left("credentials must not be embedded in the URL; configure them as secrets")
  }
  if (parsed.protocol === "http:") {
    if (!isLoopback(parsed.hostname)) return Either.left("plain http is refused for a remote host; use https://")
    if (options?.allowInsecureLoopback !== true) {
      return Either.left("plain http to loopback must be allowed explicitly (allowInsecureLoopback)")
    }
  } else if (parsed.protocol !== "https:") {
    return Either.left("expected an https:// URL")
  }
  if (parsed.search !== "" || parsed.hash !== "") return Either.left("a base URL takes no query or fragment")
  return Either.right(`${parsed.origin}${parsed.pathname}`.replace(/\/+$/, ""))
}

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
): Either.Either<string, ConfigError.ConfigError> =>
  Either.mapLeft(check(url, options), (why) => ConfigError.InvalidData([name], `${why} (got ${describe(url)})`))

/**
 * The same check for a URL passed in code (`ApiClient.make`'s `baseUrl`, an issuer): the URL without a
 * trailing slash, or an `InvalidArgument` naming `module` and `argument`. A URL with `user:password@`
 * and plain http to anything but an allowed loopback host are refused.
 *
 * @since 0.2.0
 * @category validation
 */
export const decode = (
  url: string,
  options: Options & { readonly module: string; readonly argument: string }
): Either.Either<string, TollgateError.InvalidArgument> =>
  Either.mapLeft(check(url, options), (why) =>
    new TollgateError.InvalidArgument({
      module: options.module,
      argument: options.argument,
      expected: "an https:// URL without credentials, query or fragment",
      received: `${describe(url)} (${why})`
    }))

/**
 * Checks an endpoint URL taken from elsewhere (an authorization server's metadata): https, or plain
 * http to an allowed loopback host, no credentials, no fragment. Unlike a base URL it may carry a
 * query and keeps its exact path. Returns the URL, or why it is refused.
 *
 * @since 0.2.0
 * @category validation
 */
export const checkEndpoint = (url: string, options?: Options): Either.Either<string, string> => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return Either.left("not a valid absolute URL")
  }
  if (parsed.username !== "" || parsed.password !== "") return Either.left("a URL with embedded credentials")
  if (parsed.hash !== "") return Either.left("a URL with a fragment")
  if (parsed.protocol === "https:") return Either.right(url)
  if (parsed.protocol === "http:" && isLoopback(parsed.hostname) && options?.allowInsecureLoopback === true) {
    return Either.right(url)
  }
  return Either.left(parsed.protocol === "http:" ? "a plain http URL" : `a ${parsed.protocol} URL`)
}

/**
 * A URL described for an error message by its shape, through `Scrub.url`: never its user-info, query
 * or fragment, which may hold credentials, and only the length of a long unparseable value.
 *
 * @since 0.2.0
 * @category validation
 */
export const describe = (url: string): string => {
  const trimmed = url.trim()
  if (trimmed.length === 0) return "an empty value"
  const shown = Scrub.url(trimmed)
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) && URL.canParse(trimmed)) return shown
  return shown.length > 60 ? `a ${trimmed.length}-character value` : JSON.stringify(shown)
}

/**
 * Whether `url` is absolute (has a scheme) rather than relative to a base URL.
 *
 * @since 0.2.0
 * @category urls
 */
export const isAbsolute = (url: string): boolean => /^[a-z][a-z0-9+.-]*:/i.test(url)

/**
 * `url` resolved against `base` by joining paths (not by RFC 3986 resolution, which would drop the base
 * URL's last path segment): `join("https://api.test/v1", "/forms")` is `https://api.test/v1/forms`. An
 * absolute `url` is returned unchanged.
 *
 * @since 0.2.0
 * @category urls
 */
export const join = (base: string, url: string): string => {
  if (isAbsolute(url)) return url
  if (url.length === 0) return base
  if (base.endsWith("/") && url.startsWith("/")) return base + url.slice(1)
  if (!base.endsWith("/") && !url.startsWith("/") && !url.startsWith("?")) return `${base}/${url}`
  return base + url
}

/**
 * The path of an absolute or relative URL, without query or fragment, found without a URL parser (it
 * runs for every request: limiter keys, span attributes).
 *
 * @since 0.2.0
 * @category urls
 */
export const pathOf = (url: string): string => {
  const scheme = url.indexOf("://")
  let start = 0
  if (scheme !== -1) {
    // The authority ends at the first "/", "?" or "#": a "/" in the query is not the path.
    start = url.length
    for (let i = scheme + 3; i < url.length; i++) {
      const char = url.charCodeAt(i)
      if (char === 47 || char === 63 || char === 35) {
        start = i
        break
      }
    }
    if (url.charCodeAt(start) !== 47) return "/"
  }
  let end = url.length
  const query = url.indexOf("?", start)
  if (query !== -1) end = query
  const hash = url.indexOf("#", start)
  if (hash !== -1 && hash < end) end = hash
  return end === start ? "/" : url.slice(start, end)
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
