import type { HttpServerRequest } from "@effect/platform"
import { HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { STATUS_CODES } from "node:http"

/** A JSON response with exactly this status, body and headers. */
export const json = (
  status: number,
  body: unknown,
  headers?: Readonly<Record<string, string>>
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(body, headers === undefined ? { status } : { status, headers })

/** A response with a raw body and only the given headers (no content type is guessed). */
export const raw = (
  status: number,
  body: string | Uint8Array | undefined,
  headers: Readonly<Record<string, string>>
): HttpServerResponse.HttpServerResponse =>
  body === undefined || body.length === 0
    ? HttpServerResponse.empty({ status, headers })
    : HttpServerResponse.raw(typeof body === "string" ? new TextEncoder().encode(body) : body, { status, headers })

/** The reason phrase of a status. */
export const statusText = (status: number): string => STATUS_CODES[status] ?? "Unknown"

/** The request body as text, or undefined when it cannot be read. */
export const bodyText = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<string | undefined> =>
  Effect.orElseSucceed(request.text, () => undefined)

/** The media type of the request body, lower case, without parameters. */
export const mediaType = (request: HttpServerRequest.HttpServerRequest): string | undefined => {
  const value = request.headers["content-type"]
  if (value === undefined) return undefined
  return value.split(";")[0]!.trim().toLowerCase()
}

/** The request path without its query string. */
export const pathOf = (url: string): string => {
  const index = url.indexOf("?")
  return index === -1 ? url : url.slice(0, index)
}

/** The query parameters of the request URL, each with all its values. */
export const queryOf = (url: string): URLSearchParams => {
  const index = url.indexOf("?")
  return new URLSearchParams(index === -1 ? "" : url.slice(index + 1))
}

/** Parses JSON, answering undefined for malformed input. */
export const parseJson = (text: string | undefined): { readonly value: unknown } | undefined => {
  if (text === undefined) return undefined
  try {
    return { value: JSON.parse(text) }
  } catch {
    return undefined
  }
}

/** Whether a value is a plain JSON object. */
export const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** Seconds as shown to clients: a whole number when at least one, otherwise milliseconds precision. */
export const shownSeconds = (seconds: number): number =>
  seconds >= 1 ? Math.floor(seconds) : Math.max(0.001, Math.round(seconds * 1000) / 1000)

/** Compares two strings in constant time with respect to their contents. */
export const safeEqual = (a: string, b: string): boolean =>
  timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest())
