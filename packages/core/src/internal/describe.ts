import { Predicate } from "effect"

/**
 * Names the kind of a value for an error message without ever echoing it: a token response field may
 * hold a secret, so "a string" is as specific as Tollgate gets.
 */
export const kindOf = (value: unknown): string => {
  if (value === undefined) return "missing"
  if (value === null) return "null"
  if (typeof value === "string") return value.length === 0 ? "an empty string" : "a string"
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "NaN"
    if (!Number.isFinite(value)) return "an infinite number"
    if (value === 0) return "zero"
    return value < 0 ? "a negative number" : "a number"
  }
  if (typeof value === "boolean") return "a boolean"
  if (Array.isArray(value)) return "an array"
  if (Predicate.isRecord(value)) return "an object"
  return typeof value
}

/**
 * Describes a response body that is not JSON by its content type only ("an HTML page", "plain text").
 */
export const describeBody = (contentType: string | undefined, text: string): string => {
  if (text.trim().length === 0) return "an empty body"
  const type = (contentType ?? "").toLowerCase()
  if (type.includes("html") || /^\s*<(!doctype|html)/i.test(text)) return "an HTML page"
  if (type.includes("json")) return "truncated or invalid JSON"
  if (type.startsWith("text/")) return "plain text"
  const mediaType = type.split(";")[0]!.trim()
  if (mediaType.length === 0) return "a body that is not JSON"
  return `${/^[aeiou]/.test(mediaType) ? "an" : "a"} ${mediaType} body`
}
