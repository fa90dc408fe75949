/**
 * The token side of an emulator: tokens issued as HS256 JWTs signed by the emulator instance, remembered
 * (bounded) with their state, and the checks of a bearer token against them.
 */
import type { HttpServerRequest } from "@effect/platform"
import { Clock, Effect, Random } from "effect"
import * as Jwt from "./jwt.js"

/** An access token the emulator issued. */
export interface TokenRecord {
  readonly jti: string
  /** The client, app or account the token was issued to. */
  readonly subject: string
  readonly issuedAt: number
  /** Server-side expiry in ms from the Clock, undefined when the token never expires. */
  readonly expiresAt: number | undefined
  revoked: boolean
  /** Provider details, e.g. Nomba's account id. */
  readonly data: Readonly<Record<string, string>>
}

/** The result of checking the bearer token of a request. */
export type BearerCheck =
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Invalid"; readonly reason: string; readonly subject: string | undefined }
  | { readonly _tag: "Valid"; readonly record: TokenRecord; readonly token: string }

const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

/** A random string from Effect's `Random`. */
export const randomString = (length: number, chars: string = alphabet): Effect.Effect<string> =>
  Effect.map(
    Effect.all(Array.from({ length }, () => Random.nextIntBetween(0, chars.length))),
    (indexes) => indexes.map((i) => chars[i]).join("")
  )

const maxTokenRecords = 10_000

/**
 * Issued tokens and their checks. State is plain mutable data changed only in synchronous sections,
 * which JavaScript runs atomically.
 */
export class TokenStore {
  readonly tokens = new Map<string, TokenRecord>()
  /**
   * The `jti` of each token string whose signature already checked out. The key never changes, so a
   * token verified once verifies forever; a client sends the same token thousands of times, and an HMAC
   * per request was a large share of an emulator's time in long simulations.
   */
  private readonly verified = new Map<string, string>()
  private sequence = 0
  /** Tokens issued and revoked since the recording was last reset. */
  protected issuedCount = 0
  protected revokedCount = 0

  constructor(
    private readonly signingKey: string,
    private readonly kid: string,
    /** Added to the instants the tokens show (`iat`, `exp`), never to the expiry the store enforces. */
    public skewMillis: number
  ) {}

  /** A signing key and key id for a new store, from Effect's `Random`. */
  static keys(provider: string): Effect.Effect<{ readonly key: string; readonly kid: string }> {
    return Effect.zipWith(
      randomString(43, alphabet + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
      randomString(8),
      (key, kid) => ({ key, kid: `${provider}-${kid}` })
    )
  }

  /**
   * Issues a signed JWT and remembers it. Interpretation ALL-1: tokens are HS256 JWTs signed by this
   * emulator instance; no other string verifies.
   */
  issue(options: {
    readonly subject: string
    readonly lifetimeMillis: number | undefined
    readonly claims: Record<string, unknown>
    readonly exp: boolean
    readonly data?: Readonly<Record<string, string>> | undefined
  }): Effect.Effect<{ readonly token: string; readonly record: TokenRecord }> {
    return Effect.gen(this, function*() {
      const now = yield* Clock.currentTimeMillis
      const jti = `${yield* randomString(20)}${(this.sequence++).toString(36)}`
      const expiresAt = options.lifetimeMillis === undefined ? undefined : now + options.lifetimeMillis
      const payload: Record<string, unknown> = {
        ...options.claims,
        iat: Math.floor((now + this.skewMillis) / 1000)
      }
      if (options.exp && expiresAt !== undefined) payload.exp = Math.floor((expiresAt + this.skewMillis) / 1000)
      payload.jti = jti
      const token = Jwt.sign(payload, this.signingKey, this.kid)
      const record: TokenRecord = {
        jti,
        subject: options.subject,
        issuedAt: now,
        expiresAt,
        revoked: false,
        data: options.data ?? {}
      }
      if (this.tokens.size >= maxTokenRecords) this.prune(now)
      this.tokens.set(jti, record)
      this.issuedCount++
      return { token, record }
    })
  }

  private prune(now: number): void {
    for (const [jti, record] of this.tokens) {
      if (record.revoked || (record.expiresAt !== undefined && record.expiresAt <= now)) this.tokens.delete(jti)
    }
  }

  /** The record of a token issued here (whatever its state), or undefined for anything else. */
  recordOf(token: string): TokenRecord | undefined {
    let jti = this.verified.get(token)
    if (jti === undefined) {
      const claims = Jwt.verify(token, this.signingKey)
      if (claims === undefined || typeof claims.jti !== "string") return undefined
      jti = claims.jti
      // Bounded like the token store: forgetting a verification only costs an HMAC the next time.
      if (this.verified.size >= maxTokenRecords) this.verified.clear()
      this.verified.set(token, jti)
    }
    return this.tokens.get(jti)
  }

  /** Checks a raw token string. */
  checkToken(token: string, now: number): BearerCheck {
    const record = this.recordOf(token)
    if (record === undefined) return { _tag: "Invalid", reason: "not a token issued here", subject: undefined }
    if (record.revoked) return { _tag: "Invalid", reason: "token revoked", subject: record.subject }
    if (record.expiresAt !== undefined && now >= record.expiresAt) {
      return { _tag: "Invalid", reason: "token expired", subject: record.subject }
    }
    return { _tag: "Valid", record, token }
  }

  /**
   * The token in each `Authorization` header that carried one issued here: a client sends the same header
   * string thousands of times, and reading the token out of it anew made a new string to hash per lookup.
   */
  private readonly bearers = new Map<string, string>()

  /** Checks the `Authorization: Bearer` header of a request. */
  checkBearer(request: HttpServerRequest.HttpServerRequest, now: number): BearerCheck {
    const header = request.headers["authorization"]
    if (header === undefined) return { _tag: "Missing" }
    let token = this.bearers.get(header)
    if (token === undefined) {
      if (header.trim() === "") return { _tag: "Missing" }
      const match = /^Bearer +(\S+) *$/i.exec(header)
      if (match === null) return { _tag: "Invalid", reason: "malformed Authorization header", subject: undefined }
      token = match[1]!
      // Only headers carrying a token issued here, so that junk headers cannot fill the map.
      if (this.recordOf(token) !== undefined) {
        if (this.bearers.size >= maxTokenRecords) this.bearers.clear()
        this.bearers.set(header, token)
      }
    }
    return this.checkToken(token, now)
  }

  /** Revokes the live tokens matching `predicate`; returns how many. */
  revokeWhere(now: number, predicate: (record: TokenRecord) => boolean): number {
    let count = 0
    for (const record of this.tokens.values()) {
      if (record.revoked || (record.expiresAt !== undefined && record.expiresAt <= now)) continue
      if (!predicate(record)) continue
      record.revoked = true
      count++
    }
    this.revokedCount += count
    return count
  }

  /** Counts a token revoked by other means than `revokeWhere`. */
  countRevoked(count: number): void {
    this.revokedCount += count
  }
}
