import { Either, Encoding, Option, Predicate } from "effect"

/** The registered time claims Tollgate reads from a JWT payload, in seconds since the epoch. */
export interface TimeClaims {
  readonly iat: Option.Option<number>
  readonly exp: Option.Option<number>
}

const numericClaim = (payload: Record<string, unknown>, name: string): Option.Option<number> => {
  const value = payload[name]
  return typeof value === "number" && Number.isFinite(value) ? Option.some(value) : Option.none()
}

/**
 * Reads `iat` and `exp` from a compact JWS without verifying it: the token is the provider's to check,
 * Tollgate only wants to know when it stops being useful. Anything that is not a three-part token with
 * a JSON object payload yields `none`.
 */
export const timeClaims = (token: string): Option.Option<TimeClaims> => {
  const parts = token.split(".")
  if (parts.length !== 3 || parts[1] === undefined || parts[1].length === 0) return Option.none()
  const decoded = Encoding.decodeBase64UrlString(parts[1])
  if (Either.isLeft(decoded)) return Option.none()
  let payload: unknown
  try {
    payload = JSON.parse(decoded.right)
  } catch {
    return Option.none()
  }
  if (!Predicate.isRecord(payload)) return Option.none()
  return Option.some({ iat: numericClaim(payload, "iat"), exp: numericClaim(payload, "exp") })
}
