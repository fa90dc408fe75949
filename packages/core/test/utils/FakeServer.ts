import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Clock, Duration, Effect } from "effect"
import * as Transport from "../../src/Transport.js"

export interface Reply {
  readonly status?: number
  readonly headers?: Record<string, string>
  readonly body?: string
  /** Simulates a connection that fails before any response. */
  readonly transportError?: boolean
}

export interface Arrival {
  readonly at: number
  readonly method: string
  readonly url: string
  readonly authorization: string | undefined
  readonly headers: Readonly<Record<string, string>>
}

export interface FakeServerOptions {
  /**
   * Honour each request's abort signal, as a real transport does (the client then bounds attempts by
   * aborting, without a fiber); declared with `Transport.abortable`. Default: false (a plain fake).
   */
  readonly abortable?: boolean
  /** Time before the server sees the request, and after it answers, in milliseconds. */
  readonly latency?: (n: number) => readonly [number, number]
  readonly handle: (request: HttpClientRequest.HttpClientRequest, context: { n: number; now: number }) => Reply
}

/** An in-memory transport: records every arrival with the virtual time the server saw it. */
export const make = (options: FakeServerOptions) => {
  const arrivals: Array<Arrival> = []
  const client = HttpClient.make((request, _url, signal) =>
    Effect.gen(function*() {
      const n = arrivals.length
      const [up, down] = options.latency?.(n) ?? [0, 0]
      if (up > 0) yield* Effect.sleep(Duration.millis(up))
      const now = yield* Clock.currentTimeMillis
      arrivals.push({
        at: now,
        method: request.method,
        url: request.url,
        authorization: request.headers["authorization"],
        headers: request.headers
      })
      const reply = options.handle(request, { n, now })
      if (down > 0) yield* Effect.sleep(Duration.millis(down))
      if (reply.transportError) {
        return yield* Effect.fail(
          new HttpClientError.RequestError({ request, reason: "Transport", cause: new Error("socket hang up") })
        )
      }
      return HttpClientResponse.fromWeb(
        request,
        new Response(reply.body ?? "{}", {
          status: reply.status ?? 200,
          headers: { "content-type": "application/json", ...reply.headers }
        })
      )
    }).pipe((
      exchange
    ) => (options.abortable === true ? Effect.raceFirst(exchange, aborted(request, signal)) : exchange))
  )
  return { client: options.abortable === true ? Transport.abortable(client) : client, arrivals }
}

const aborted = (request: HttpClientRequest.HttpClientRequest, signal: AbortSignal) =>
  Effect.async<never, HttpClientError.HttpClientError>((resume) => {
    const abort = () =>
      resume(Effect.fail(new HttpClientError.RequestError({ request, reason: "Transport", description: "aborted" })))
    if (signal.aborted) return abort()
    signal.addEventListener("abort", abort, { once: true })
    return Effect.sync(() => signal.removeEventListener("abort", abort))
  })

/** The most entries of a list of instants inside any interval of length `window` (half-open). */
export const maxInWindow = (times: ReadonlyArray<number>, window: number): number => {
  const sorted = [...times].sort((a, b) => a - b)
  let max = 0
  let start = 0
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= window) start++
    max = Math.max(max, end - start + 1)
  }
  return max
}
