import { HttpClient, HttpClientRequest } from "@effect/platform"
import type { Headers, HttpClientError } from "@effect/platform"
import { Effect } from "effect"
import type * as Emulator from "../../src/Emulator.js"
import * as Sandbox from "../../src/Sandbox.js"

/** A base URL for an emulator reached through `clientFor`. */
export const base = "http://emulator.sandbox.test"

/** An in-memory client that sends every request to `emulator`. */
export const clientFor = (emulator: Emulator.Emulator, options?: Sandbox.ClientOptions): HttpClient.HttpClient =>
  Sandbox.makeClient(() => emulator.app, options)

/** A response read to the end. */
export interface Answer {
  readonly status: number
  readonly headers: Headers.Headers
  readonly text: string
  /** The body parsed as JSON, or undefined. */
  readonly body: any
}

const parse = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** Sends a request and reads the whole answer. */
export const send = (
  client: HttpClient.HttpClient,
  request: HttpClientRequest.HttpClientRequest
): Effect.Effect<Answer, HttpClientError.HttpClientError> =>
  Effect.flatMap(
    client.execute(request),
    (response) =>
      Effect.map(
        response.text,
        (text) => ({ status: response.status, headers: response.headers, text, body: parse(text) })
      )
  )

/** `POST url` with a JSON body. */
export const postJson = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  HttpClientRequest.post(url).pipe(HttpClientRequest.bodyUnsafeJson(body), HttpClientRequest.setHeaders(headers))

/** `POST url` with a form-urlencoded body. */
export const postForm = (url: string, fields: Record<string, string> | string, headers: Record<string, string> = {}) =>
  HttpClientRequest.post(url).pipe(
    typeof fields === "string"
      ? HttpClientRequest.bodyText(fields, "application/x-www-form-urlencoded")
      : HttpClientRequest.bodyUrlParams(fields),
    HttpClientRequest.setHeaders(headers)
  )

/** `GET url` with a bearer token and extra headers. */
export const getWith = (url: string, token: string | undefined, headers: Record<string, string> = {}) =>
  HttpClientRequest.get(url).pipe(
    token === undefined ? (r) => r : HttpClientRequest.bearerToken(token),
    HttpClientRequest.setHeaders(headers)
  )

/** The payload of a compact JWT. */
export const jwtPayload = (token: string): Record<string, any> =>
  JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8"))

/** The header of a compact JWT. */
export const jwtHeader = (token: string): Record<string, any> =>
  JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString("utf8"))
