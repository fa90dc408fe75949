/**
 * Issue #18's one scrubber, as a property: a random secret, echoed by a server in any encoding it might
 * use (upper or lower percent-encoding, form `+`, JSON escapes short and `\uXXXX` in either case, `\/`,
 * .NET's partial escaping, base64 of the secret and of `id:secret`, standard or URL-safe, padded or not,
 * and URL user-info), never shows in the rendered error: `String(error)`, `JSON.stringify(error)` or
 * `Cause.pretty`.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Redacted } from "effect"
import * as fc from "fast-check"
import * as OAuth2 from "../src/OAuth2.js"
import * as Scrub from "../src/Scrub.js"

const CLIENT_ID = "scrub-client"

const hexCase = (text: string, upper: boolean) =>
  text.replace(
    /%[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}/g,
    (escape) => upper ? escape.toUpperCase().replace("\\U", "\\u") : escape.toLowerCase()
  )

const unicodeEscaped = (text: string, escape: (c: string) => boolean, upper: boolean) =>
  [...text].map((c) =>
    escape(c)
      ? Array.from({ length: c.length }, (_, i) => {
        const hex = c.charCodeAt(i).toString(16).padStart(4, "0")
        return `\\u${upper ? hex.toUpperCase() : hex}`
      }).join("")
      : c
  ).join("")

const base64Forms = (value: string) => {
  const padded = Buffer.from(value, "utf8").toString("base64")
  const urlSafe = padded.replace(/\+/g, "-").replace(/\//g, "_")
  return [padded, padded.replace(/=+$/, ""), urlSafe, urlSafe.replace(/=+$/, "")]
}

/** Every form a server may echo `secret` in, written independently of `Scrub`. */
const echoes = (secret: string): ReadonlyArray<readonly [string, string]> => {
  const percent = encodeURIComponent(secret)
  const form = new URLSearchParams([["", secret]]).toString().slice(1)
  const json = JSON.stringify(secret).slice(1, -1)
  const surrogate = (c: string) => c.codePointAt(0)! > 0xffff
  return [
    ["raw", secret],
    ["percent, upper", hexCase(percent, true)],
    ["percent, lower", hexCase(percent, false)],
    ["form", hexCase(form, true)],
    ["form, lower", hexCase(form, false)],
    ["JSON", json],
    ["JSON, \\/", json.replace(/\//g, "\\/")],
    ["JSON, every character \\u, lower", unicodeEscaped(secret, () => true, false)],
    ["JSON, every character \\u, upper", unicodeEscaped(secret, () => true, true)],
    ["JSON, non-ASCII \\u", unicodeEscaped(secret, (c) => c.charCodeAt(0) > 0x7e || surrogate(c), false)],
    ["JSON, .NET", unicodeEscaped(secret, (c) => /[+<>&'`]/.test(c) || c.charCodeAt(0) > 0x7e, true)],
    ...base64Forms(secret).map((b) => ["base64 of secret", b] as const),
    ...base64Forms(`${CLIENT_ID}:${secret}`).map((b) => ["base64 of id:secret", b] as const),
    ["user-info", `https://${CLIENT_ID}:${percent}@idp.example/token`]
  ]
}

const secretArbitrary = fc.tuple(
  fc.string({ unit: "grapheme", minLength: 4, maxLength: 16 }),
  fc.constantFrom("", " ", "+", "/", "=", "&", "\"", "\\", "é", "😀", "%", "<>", "'"),
  fc.boolean()
).map(([body, special, last]) => last ? `Zq${body}${special}` : `Zq${special}${body}~9`)

const rendered = (error: unknown): ReadonlyArray<string> => [
  String(error),
  JSON.stringify(error),
  Cause.pretty(Cause.fail(error)),
  (error as { readonly message?: string }).message ?? ""
]

describe("one scrubber for every encoding a server can echo (issue 18)", () => {
  it.prop("Scrub.text removes every encoding of a secret, and user-info", [secretArbitrary], ([secret]) => {
    for (const [name, echo] of echoes(secret)) {
      const text = Scrub.text(`error: ${echo} (was sent)`, [secret, `${CLIENT_ID}:${secret}`], { maxLength: 10_000 })
      expect(text, name).not.toContain(echo)
      expect(text, name).not.toContain(secret)
    }
  }, { fastCheck: { numRuns: 300 } })

  it.effect.prop(
    "an OAuth2 token endpoint echoing the secret in any encoding never puts it in the error",
    [secretArbitrary, fc.constantFrom(400, 401, 500, 503)],
    ([secret, status]) =>
      Effect.gen(function*() {
        for (const [name, echo] of echoes(secret)) {
          const server = HttpClient.make((request) =>
            Effect.succeed(HttpClientResponse.fromWeb(
              request,
              new Response(
                JSON.stringify({
                  error: status === 401 ? "invalid_client" : "invalid_request",
                  error_description: `bad client_secret=${echo}, see ${echo}`,
                  message: echo
                }),
                { status, headers: { "content-type": "application/json" } }
              )
            ))
          )
          const source = yield* OAuth2.make({
            tokenUrl: "https://idp.example/token",
            clientId: CLIENT_ID,
            clientSecret: Redacted.make(secret),
            authMethod: status === 400 ? "client_secret_post" : "client_secret_basic"
          }).pipe(Effect.provideService(HttpClient.HttpClient, server))
          const error = yield* Effect.flip(source.fetch).pipe(Effect.provideService(HttpClient.HttpClient, server))
          for (const text of rendered(error)) {
            expect(text, name).not.toContain(echo)
            expect(text, name).not.toContain(secret)
          }
        }
      }),
    { fastCheck: { numRuns: 40 } }
  )
})
