/**
 * The server side of issue 14's scenario: a fixed window of `limit` requests per `windowMillis` starting at
 * the first request after the previous window ended (as `@fastify/rate-limit` and `express-rate-limit` count
 * per client), announcing `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` in whole
 * seconds until the reset (rounded up), and `Retry-After` on 429. Refused requests count in their window
 * too. Time is whatever clock the caller passes, so the same server runs on `TestClock` and on loopback.
 */
import { Effect } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

export interface Arrival {
  readonly at: number
  readonly status: number
  /** The index of the server window it arrived in. */
  readonly window: number
}

export const make = (limit: number, windowMillis: number) => {
  let start = Number.NEGATIVE_INFINITY
  let count = 0
  let index = -1
  const arrivals: Array<Arrival> = []
  const handle = (now: number): { readonly status: number; readonly headers: Record<string, string> } => {
    if (now >= start + windowMillis) {
      start = now
      count = 0
      index++
    }
    count++
    const reset = String(Math.ceil((start + windowMillis - now) / 1000))
    const headers: Record<string, string> = {
      "x-ratelimit-limit": String(limit),
      "x-ratelimit-remaining": String(Math.max(0, limit - count)),
      "x-ratelimit-reset": reset
    }
    const status = count > limit ? 429 : 200
    arrivals.push({ at: now, status, window: index })
    return status === 429 ? { status, headers: { ...headers, "retry-after": reset } } : { status, headers }
  }
  return { handle, arrivals }
}

/** What issue 14 measures from a run's arrivals. */
export const summarize = (arrivals: ReadonlyArray<Arrival>) => {
  const perWindow = new Map<number, { admitted: number; refused: number }>()
  for (const arrival of arrivals) {
    const entry = perWindow.get(arrival.window) ?? { admitted: 0, refused: 0 }
    if (arrival.status === 429) entry.refused++
    else entry.admitted++
    perWindow.set(arrival.window, entry)
  }
  const later = [...perWindow.entries()].filter(([window]) => window > 0).map(([, entry]) => entry)
  return {
    refused: arrivals.filter((a) => a.status === 429).length,
    refusedAfterFirstWindow: later.reduce((sum, entry) => sum + entry.refused, 0),
    mostAdmittedInAWindow: Math.max(0, ...[...perWindow.values()].map((entry) => entry.admitted)),
    windows: perWindow.size
  }
}

/** The same server on a loopback port (wall clock), closed with the scope. */
export const serve = (limit: number, windowMillis: number) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Http.Server; readonly url: string; readonly arrivals: ReadonlyArray<Arrival> }>(
      (resume) => {
        const window = make(limit, windowMillis)
        const server = Http.createServer((_req, res) => {
          const answer = window.handle(Date.now())
          res.writeHead(answer.status, { ...answer.headers, "content-type": "application/json" })
          res.end(answer.status === 429 ? "{\"error\":\"Too Many Requests\"}" : "{\"ok\":true}")
        })
        server.listen(0, "127.0.0.1", () => {
          const port = (server.address() as AddressInfo).port
          resume(Effect.succeed({ server, url: `http://127.0.0.1:${port}`, arrivals: window.arrivals }))
        })
      }
    ),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )
