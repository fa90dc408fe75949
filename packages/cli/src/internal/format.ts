/**
 * How a token is shown: its metadata in full, its value masked (a length and a fingerprint that tells
 * two tokens apart without revealing either) unless the user asked to see it.
 */
import * as AccessToken from "@tollgate/core/AccessToken"
import { DateTime, Duration, Option, Redacted } from "effect"
import { createHash } from "node:crypto"
import * as Report from "../Report.js"

/** The first 12 hex digits of the SHA-256 of the token: enough to compare two tokens, useless to use one. */
export const fingerprint = (value: Redacted.Redacted<string>): string =>
  createHash("sha256").update(Redacted.value(value)).digest("hex").slice(0, 12)

const isJwt = (value: string): boolean => /^[\w-]+\.[\w-]+\.[\w-]*$/.test(value)

export interface TokenView {
  readonly provider: string
  readonly sandbox: boolean
  readonly token: AccessToken.AccessToken
  readonly reveal: boolean
  readonly now: DateTime.Utc
}

const seconds = (duration: Duration.Duration): number => Math.round(Duration.toMillis(duration)) / 1000

/** The token as JSON: metadata, and the value only with `reveal`. */
export const tokenJson = (view: TokenView): Record<string, unknown> => {
  const { token } = view
  const value = Redacted.value(token.value)
  return {
    provider: view.provider,
    sandbox: view.sandbox,
    type: token.type,
    ...(view.reveal ? { token: value } : {}),
    format: isJwt(value) ? "jwt" : "opaque",
    length: value.length,
    fingerprint: `sha256:${fingerprint(token.value)}`,
    obtainedAt: DateTime.formatIso(token.obtainedAt),
    expiresAt: Option.getOrNull(Option.map(token.expiresAt, DateTime.formatIso)),
    expiresInSeconds: Option.getOrNull(
      Option.map(token.expiresAt, (at) => Math.max(0, Math.round((at.epochMillis - view.now.epochMillis) / 1000)))
    ),
    lifetimeSeconds: Option.getOrNull(Option.map(token.lifetime, seconds)),
    scope: Option.getOrNull(token.scope),
    refreshToken: Option.isSome(token.refreshToken)
  }
}

/** The token for people, one field per line, aligned. */
export const tokenLines = (view: TokenView): string => {
  const { token } = view
  const value = Redacted.value(token.value)
  const shown = view.reveal
    ? value
    : `•••••••• (hidden: ${isJwt(value) ? "JWT" : "opaque"}, ${value.length} characters, sha256:${
      fingerprint(token.value)
    }; --reveal shows it)`
  const expires = Option.match(token.expiresAt, {
    onNone: () => "not stated (valid until the provider refuses it)",
    onSome: (at) => {
      const left = at.epochMillis - view.now.epochMillis
      const lifetime = Option.match(token.lifetime, {
        onNone: () => "",
        onSome: (d) => `, lifetime ${Report.formatDuration(Duration.toMillis(d))}`
      })
      return `${DateTime.formatIso(at)} (${left > 0 ? `in ${Report.formatDuration(left)}` : "expired"}${lifetime})`
    }
  })
  const rows: ReadonlyArray<readonly [string, string]> = [
    ["provider", `${view.provider}${view.sandbox ? " (sandbox)" : ""}`],
    ["token", shown],
    ["type", token.type],
    ["obtained at", DateTime.formatIso(token.obtainedAt)],
    ["expires at", expires],
    ["scope", Option.getOrElse(token.scope, () => "(none stated)")],
    ["refresh token", Option.isSome(token.refreshToken) ? "yes (kept hidden)" : "no"]
  ]
  const size = Math.max(...rows.map(([label]) => label.length))
  return rows.map(([label, text]) => `${label.padEnd(size)}  ${text}`).join("\n")
}
