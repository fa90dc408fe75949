/**
 * Whether a string can travel as an HTTP header value, checked once where the value enters Tollgate
 * (configuration, a token response) rather than where it is sent: Node's client throws a `TypeError`
 * for a CR, LF or other control character, undici fails the request (and a retry would fail again), and
 * a value the transport silently trims is not the value the server issued. The rule is RFC 9110 §5.5
 * as Node applies it: tab, visible ASCII, space inside the value and Latin-1 (obs-text).
 *
 * @since 0.2.0
 */
import { Either } from "effect"
import * as TollgateError from "./TollgateError.js"

/**
 * Why `value` cannot be sent as a header value, by kind of character (never quoting it, since a
 * header value may be a secret), or `undefined` when it can.
 *
 * @since 0.2.0
 * @category validation
 */
export const problem = (value: string): string | undefined => {
  if (/[\r\n]/.test(value)) return "a value containing CR or LF"
  if (/\0/.test(value)) return "a value containing a NUL character"

  if (/[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(value)) return "a value containing a control character"
  if (/[^\t\x20-\x7e\x80-\xff]/.test(value)) return "a value containing a character outside Latin-1"
  if (/^[\t ]|[\t ]$/.test(value)) return "a value with leading or trailing whitespace"
  return undefined
}

/**
 * Whether `value` can be sent as a header value as it is.
 *
 * @since 0.2.0
 * @category validation
 */
export const isValid = (value: string): boolean => problem(value) === undefined

/**
 * `value` when it can be sent as a header value, otherwise an `InvalidArgument` naming `module` and
 * `argument` (e.g. `"ApiClient.make"`, `"headers.ApplicationId"`).
 *
 * @since 0.2.0
 * @category validation
 */
export const validate = (
  module: string,
  argument: string,
  value: string
): Either.Either<string, TollgateError.InvalidArgument> => {
  const found = problem(value)
  return found === undefined ? Either.right(value) : Either.left(
    new TollgateError.InvalidArgument({
      module,
      argument,
      expected: "a valid HTTP header value (no CR, LF or control characters, Latin-1 only)",
      received: found
    })
  )
}
