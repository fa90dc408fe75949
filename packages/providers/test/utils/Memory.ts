import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Clock, Effect } from "effect"

/** A request as an in-memory server sees it, at a virtual instant. */
export interface Seen {
  readonly at: number
  readonly method: string
  readonly url: URL
  readonly headers: Readonly<Record<string, string>>
  readonly contentType: string | undefined
  readonly body: string
}

export interface Reply {
  readonly status?: number
  readonly headers?: Readonly<Record<string, string>>
  readonly body?: unknown
}

/**
 * An in-memory `HttpClient` (`HttpClient.make`) for tests under `TestClock`: records every request with
 * the virtual time it arrived and answers with `handle`.
 */
export const make = (handle: (request: Seen, n: number) => Reply) => {
  const seen: Array<Seen> = []
  const client = HttpClient.make((request) =>
    Effect.gen(function*() {
      const body = request.body._tag === "Uint8Array" ? new TextDecoder().decode(request.body.body) : ""
      // Query parameters set with `setUrlParams` travel beside the URL until the transport joins them.
      const url = new URL(request.url)
      for (const [name, value] of request.urlParams) url.searchParams.append(name, value)
      const entry: Seen = {
        at: yield* Clock.currentTimeMillis,
        method: request.method,
        url,
        headers: request.headers,
        contentType: request.body._tag === "Empty" ? undefined : request.body.contentType,
        body
      }
      const n = seen.length
      seen.push(entry)
      const reply = handle(entry, n)
      const text = reply.body === undefined
        ? ""
        : typeof reply.body === "string"
        ? reply.body
        : JSON.stringify(reply.body)
      return HttpClientResponse.fromWeb(
        request,
        new Response(text.length === 0 ? null : text, {
          status: reply.status ?? 200,
          headers: { "content-type": "application/json", ...reply.headers }
        })
      )
    })
  )
  return { client, seen }
}
