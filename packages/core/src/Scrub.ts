/**
 * The one scrubber every error message and log line that may quote outside text goes through: provider
 * error descriptions, Redis replies, URLs from configuration. A server may echo what it was sent in any
 * encoding (raw, percent-encoded in either case, form-encoded, JSON-escaped, base64 of `id:secret`), and
 * a URL may carry credentials in its user-info or query; all of them come out as `<redacted>`.
 *
 * @since 0.2.0
 */
import { Encoding } from "effect"

/**
 * What replaces a secret.
 *
 * @since 0.2.0
 * @category constants
 */
export const placeholder = "<redacted>"

/**
 * Secrets shorter than this are not scrubbed: replacing every "a" of a message would destroy it, and a
 * secret that short protects nothing.
 *
 * @since 0.2.0
 * @category constants
 */
export const minimumLength = 4

const lowerPercent = (text: string): string => text.replace(/%[0-9A-F]{2}/g, (escape) => escape.toLowerCase())

const formEncode = (value: string): string => new URLSearchParams([["", value]]).toString().slice(1)

const jsonEscaped = (value: string): string => JSON.stringify(value).slice(1, -1)

// JSON writers that escape every non-ASCII character (and "/", as PHP does).
const jsonAsciiEscaped = (value: string): string =>
  jsonEscaped(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
    .replace(/\//g, "\\/")

// Padded and unpadded, standard and URL-safe: the padded forms are longer, so they are replaced first.
const base64 = (value: string): ReadonlyArray<string> => {
  const padded = Encoding.encodeBase64(value)
  const urlSafe = padded.replace(/\+/g, "-").replace(/\//g, "_")
  return [padded, padded.replace(/=+$/, ""), urlSafe, urlSafe.replace(/=+$/, "")]
}

/**
 * Every form in which a server might echo `secret` back: as sent, percent-encoded (upper and lower case
 * hex, as .NET's `UrlEncode` writes), form-encoded (`+` for a space), JSON-escaped (also with every
 * non-ASCII character and `/` escaped), and base64 (standard and URL-safe, padding optional). Pass
 * `id:secret` as a secret of its own to cover an echoed HTTP Basic header.
 *
 * @since 0.2.0
 * @category scrubbing
 */
export const encodings = (secret: string): ReadonlyArray<string> => {
  const percent = encodeURIComponent(secret)
  const form = formEncode(secret)
  const forms = new Set([
    secret,
    percent,
    lowerPercent(percent),
    form,
    lowerPercent(form),
    jsonEscaped(secret),
    jsonAsciiEscaped(secret),
    ...base64(secret)
  ])
  // Longest first, so a long form is replaced whole before a shorter one inside it.
  return [...forms].filter((form) => form.length >= minimumLength).sort((a, b) => b.length - a.length)
}

const userInfo = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]+@/gi

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&")

// A hex number matched in either case, as writers differ (`%2b`, `%2B`, `\u002b`, `\u002B`).
const hexPattern = (n: number, width: number): string =>
  n.toString(16).padStart(width, "0").replace(/[a-f]/g, (digit) => `[${digit}${digit.toUpperCase()}]`)

const shortEscapes: Readonly<Record<string, string>> = {
  "\"": "\\\\\"",
  "\\": "\\\\\\\\",
  "/": "\\\\/",
  "\n": "\\\\n",
  "\r": "\\\\r",
  "\t": "\\\\t",
  "\b": "\\\\b",
  "\f": "\\\\f"
}

const utf8 = new TextEncoder()

// One character in any of the forms a writer may give it: itself, percent-encoded (its UTF-8 bytes),
// `+` for a space, a JSON `\uXXXX` escape (its UTF-16 units) or a short JSON escape. Characters are
// matched one by one, so a writer escaping only some of them (.NET escapes `+`, `<`, `&`, `'`) is caught.
const characterPattern = (char: string): string => {
  const forms = [[...utf8.encode(char)].map((byte) => `%${hexPattern(byte, 2)}`).join("")]
  let units = ""
  for (let i = 0; i < char.length; i++) units += `\\\\u${hexPattern(char.charCodeAt(i), 4)}`
  forms.push(units)
  if (char === " ") forms.push("\\+")
  const short = shortEscapes[char]
  if (short !== undefined) forms.push(short)
  // The character itself last: an escape that begins with it (`\\` for a backslash) is matched whole.
  forms.push(escapeRegExp(char))
  return `(?:${forms.join("|")})`
}

const patterns = new Map<string, RegExp>()

// Every encoding of `secret` in one expression: its base64 forms, then its characters in any mix of forms.
const patternOf = (secret: string): RegExp => {
  let pattern = patterns.get(secret)
  if (pattern === undefined) {
    const chars = [...secret].map(characterPattern).join("")
    pattern = new RegExp([...base64(secret).map(escapeRegExp), chars].join("|"), "g")
    // Secrets are few (one client's credentials); the bound only guards against a caller passing many.
    if (patterns.size > 256) patterns.clear()
    patterns.set(secret, pattern)
  }
  pattern.lastIndex = 0
  return pattern
}

/**
 * Removes every secret, in every encoding of `encodings`, and the user-info of every URL from `text`,
 * then bounds its length. The result is safe to put in an error or a log line.
 *
 * @since 0.2.0
 * @category scrubbing
 */
export const text = (
  value: string,
  secrets: Iterable<string> = [],
  options?: { readonly maxLength?: number | undefined }
): string => {
  let result = value.replace(userInfo, `$1${placeholder}@`)
  for (const secret of secrets) {
    if (secret.length < minimumLength) continue
    result = result.replace(patternOf(secret), placeholder)
  }
  const maxLength = options?.maxLength ?? 300
  return result.length > maxLength ? `${result.slice(0, maxLength)}…` : result
}

/**
 * A URL as it may be shown: scheme, host and path only. User-info, query and fragment are dropped (an
 * ellipsis marks a dropped query or fragment), because any of them may hold a credential. A value that
 * does not parse as a URL is cut the same way by hand: everything up to the last `@` of its authority,
 * and everything from the first `?` or `#`.
 *
 * @since 0.2.0
 * @category scrubbing
 */
export const url = (value: string): string => {
  const trimmed = value.trim()
  // Only a scheme followed by "//" has an authority: in "client:S3cret@host" the "scheme" is a user name.
  const hasAuthority = /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)
  if (hasAuthority && URL.canParse(trimmed)) {
    const parsed = new URL(trimmed)
    if (parsed.host !== "") {
      const dropped = parsed.search !== "" || parsed.hash !== "" ? "…" : ""
      return `${parsed.protocol}//${parsed.host}${parsed.pathname}${dropped}`
    }
  }
  const cut = trimmed.search(/[?#]/)
  const head = cut < 0 ? trimmed : trimmed.slice(0, cut)
  const scheme = hasAuthority ? /^[a-z][a-z0-9+.-]*:\/\//i.exec(head)![0] : ""
  const rest = head.slice(scheme.length)
  const at = rest.lastIndexOf("@")
  return `${scheme}${at < 0 ? rest : rest.slice(at + 1)}${cut < 0 ? "" : "…"}`
}
