/**
 * How a token is written to Redis: sealed with AES-256-GCM when a key is configured (the identity is
 * the additional authenticated data, so a sealed token cannot be moved to another identity's key), as
 * plain JSON otherwise. Tokens are compared by fingerprint: an HMAC of the value under a key derived
 * from the sealing key, or a SHA-256 digest without one. Neither reveals the token.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from "node:crypto"

/** What is sealed: the token's secret parts and descriptive fields (its times travel in the clear). */
export interface Payload {
  readonly value: string
  readonly type: string
  readonly refreshToken?: string | undefined
  readonly scope?: string | undefined
}

export interface Sealer {
  readonly encrypted: boolean
  /**
   * Names the key, safe to log: a short HMAC of a fixed label under a key derived from the secret, or
   * "none" without encryption. Processes that must share tokens have the same one.
   */
  readonly keyId: string
  readonly seal: (payload: Payload, aad: string) => string
  /** `undefined` when the envelope is unreadable: another key, another format, tampered. */
  readonly open: (envelope: string, aad: string) => Payload | undefined
  readonly fingerprint: (value: string) => string
}

/**
 * The key an envelope was sealed with, read from its header without opening it: "none" for a plain
 * one, the key id for a sealed one, `undefined` for anything else.
 */
export const keyIdOf = (envelope: string): string | undefined => {
  if (envelope.startsWith("p1.")) return "none"
  const parts = envelope.split(".")
  return parts.length === 5 && parts[0] === "v1" ? parts[1] : undefined
}

const toPayload = (text: string): Payload | undefined => {
  try {
    const parsed: unknown = JSON.parse(text)
    if (typeof parsed !== "object" || parsed === null) return undefined
    const { r, s, t, v } = parsed as Record<string, unknown>
    if (typeof v !== "string" || typeof t !== "string") return undefined
    return {
      value: v,
      type: t,
      refreshToken: typeof r === "string" ? r : undefined,
      scope: typeof s === "string" ? s : undefined
    }
  } catch {
    return undefined
  }
}

const fromPayload = (payload: Payload): string =>
  JSON.stringify({ v: payload.value, t: payload.type, r: payload.refreshToken, s: payload.scope })

const derive = (secret: Uint8Array, info: string): Buffer =>
  Buffer.from(hkdfSync("sha256", secret, "tollgate-redis", info, 32))

/** A sealer; `secret` is any high-entropy string (32 random bytes, base64, is the intended form). */
export const make = (secret: string | undefined): Sealer => {
  if (secret === undefined || secret.length === 0) {
    return {
      encrypted: false,
      keyId: "none",
      seal: (payload) => `p1.${fromPayload(payload)}`,
      open: (envelope) => envelope.startsWith("p1.") ? toPayload(envelope.slice(3)) : undefined,
      fingerprint: (value) => createHash("sha256").update(value).digest("base64url").slice(0, 32)
    }
  }
  const material = Buffer.from(secret, "utf8")
  const encryptionKey = derive(material, "token encryption")
  const fingerprintKey = derive(material, "token fingerprint")
  const keyId = createHmac("sha256", fingerprintKey).update("key id").digest("base64url").slice(0, 8)
  return {
    encrypted: true,
    keyId,
    seal: (payload, aad) => {
      const iv = randomBytes(12)
      const cipher = createCipheriv("aes-256-gcm", encryptionKey, iv)
      cipher.setAAD(Buffer.from(aad, "utf8"))
      const body = Buffer.concat([cipher.update(fromPayload(payload), "utf8"), cipher.final()])
      return `v1.${keyId}.${iv.toString("base64url")}.${body.toString("base64url")}.${
        cipher.getAuthTag().toString("base64url")
      }`
    },
    open: (envelope, aad) => {
      const parts = envelope.split(".")
      if (parts.length !== 5 || parts[0] !== "v1" || parts[1] !== keyId) return undefined
      try {
        const decipher = createDecipheriv("aes-256-gcm", encryptionKey, Buffer.from(parts[2]!, "base64url"))
        decipher.setAAD(Buffer.from(aad, "utf8"))
        decipher.setAuthTag(Buffer.from(parts[4]!, "base64url"))
        const text = Buffer.concat([decipher.update(Buffer.from(parts[3]!, "base64url")), decipher.final()])
        return toPayload(text.toString("utf8"))
      } catch {
        return undefined
      }
    },
    fingerprint: (value) => createHmac("sha256", fingerprintKey).update(value).digest("base64url").slice(0, 32)
  }
}
