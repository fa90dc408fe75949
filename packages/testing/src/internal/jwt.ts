import { createHmac, timingSafeEqual } from "node:crypto"

const encodeJson = (value: unknown): string => Buffer.from(JSON.stringify(value), "utf8").toString("base64url")

/** Signs `payload` as a compact HS256 JWT. */
export const sign = (payload: Record<string, unknown>, key: string, kid: string): string => {
  const header = encodeJson({ alg: "HS256", typ: "JWT", kid })
  const body = encodeJson(payload)
  const signature = createHmac("sha256", key).update(`${header}.${body}`).digest("base64url")
  return `${header}.${body}.${signature}`
}

/** Decodes the payload of a compact JWT without checking its signature. */
export const decodeUnverified = (token: string): Record<string, unknown> | undefined => {
  const parts = token.split(".")
  if (parts.length !== 3 || parts[1] === undefined) return undefined
  try {
    const value: unknown = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"))
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? value as Record<string, unknown>
      : undefined
  } catch {
    return undefined
  }
}

/** Checks the HS256 signature of a compact JWT and returns its payload when it holds. */
export const verify = (token: string, key: string): Record<string, unknown> | undefined => {
  const parts = token.split(".")
  if (parts.length !== 3) return undefined
  const [header, body, signature] = parts as [string, string, string]
  const expected = createHmac("sha256", key).update(`${header}.${body}`).digest()
  const given = Buffer.from(signature, "base64url")
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined
  return decodeUnverified(token)
}
