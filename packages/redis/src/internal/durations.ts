/**
 * The check every duration option of this package goes through before anything is built: decodable,
 * not NaN, not negative, finite and at most 10 years (each one becomes a Redis TTL or a timer). A bad one
 * is reported by name, never thrown by `Duration.decode` as a defect.
 */
import * as TollgateError from "@tollgate/core/TollgateError"
import { Duration, Option } from "effect"

const MAX_MILLIS = 10 * 366 * 24 * 60 * 60 * 1000

const shown = (value: unknown): string =>
  typeof value === "number" ? String(value) : typeof value === "string" ? "a string" : typeof value

/** The first of `durations` (name → value; `undefined` is the default) that cannot work, or `undefined`. */
export const firstInvalid = (
  module: string,
  durations: Readonly<Record<string, unknown>>
): TollgateError.InvalidArgument | undefined => {
  for (const [argument, value] of Object.entries(durations)) {
    if (value === undefined) continue
    const decoded = typeof value === "number" && Number.isNaN(value) ? Option.none() : Duration.decodeUnknown(value)
    const millis = Option.isSome(decoded) ? Duration.toMillis(decoded.value) : Number.NaN
    if (!(millis >= 0 && millis <= MAX_MILLIS)) {
      return new TollgateError.InvalidArgument({
        module,
        argument,
        expected: `a non-negative duration of at most ${MAX_MILLIS} ms`,
        received: shown(value)
      })
    }
  }
  return undefined
}
