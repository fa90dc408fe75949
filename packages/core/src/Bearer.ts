/**
 * Bearer token usage on the wire (RFC 6750): the `Authorization` value a token is sent as, and the
 * `error` of a `WWW-Authenticate: Bearer` challenge, which says whether a new token can help.
 *
 * @since 0.2.0
 */
import { Option, Redacted } from "effect"
import type * as AccessToken from "./AccessToken.js"

// Built once per token rather than once per request; a token dropped from the cache takes its value along.
const values = new WeakMap<AccessToken.AccessToken, string>()

/**
 * The `Authorization` header value for `token`: `Bearer <token>`. It holds the secret in clear: it goes
 * on the outgoing request only, never on anything handed back to the caller.
 *
 * @since 0.2.0
 * @category encoding
 */
export const authorization = (token: AccessToken.AccessToken): string => {
  let value = values.get(token)
  if (value === undefined) {
    value = `Bearer ${Redacted.value(token.value)}`
    values.set(token, value)
  }
  return value
}

/**
 * Reads the `error` parameter of a Bearer challenge (RFC 6750 §3), lower-cased: `invalid_token` means
 * renew the token, `insufficient_scope` means a new token will not help, `invalid_request` means the
 * request itself is wrong.
 *
 * @since 0.2.0
 * @category parsing
 */
export const challenge = (header: string | undefined): Option.Option<string> => {
  if (header === undefined) return Option.none()
  const match = /error\s*=\s*"?([a-z_]+)"?/i.exec(header)
  return match?.[1] === undefined ? Option.none() : Option.some(match[1].toLowerCase())
}

/**
 * Whether a 401 with this challenge can be fixed by renewing the token: every challenge but
 * `insufficient_scope` (a new token has the same scope).
 *
 * @since 0.2.0
 * @category predicates
 */
export const isRenewable = (error: Option.Option<string>): boolean =>
  Option.isNone(error) || error.value !== "insufficient_scope"
