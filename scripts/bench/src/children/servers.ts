/**
 * Loopback servers for the bench, in their own process: strict sliding-window API servers and fixed-window
 * servers that announce their budget (scenario 3), a plain 200 server (scenario 7) and an OAuth2 token endpoint (scenario 4). Plain node:http, no
 * framework, so the server's own cost stays small and identical for every client measured.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { serve } from "../lib/child.js"

const host = "127.0.0.1"
const servers = new Map<string, Http.Server>()

const listen = (name: string, handler: Http.RequestListener): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Http.createServer({ keepAlive: true }, handler)
    server.keepAliveTimeout = 30_000
    server.on("error", reject)
    server.listen({ host, port: 0, backlog: 16_384 }, () => {
      servers.set(name, server)
      resolve((server.address() as AddressInfo).port)
    })
  })

const close = (name: string): Promise<void> =>
  new Promise((resolve) => {
    const server = servers.get(name)
    if (server === undefined) return resolve()
    servers.delete(name)
    server.closeAllConnections()
    server.close(() => resolve())
  })

/** mulberry32: a seeded generator, so every limiter meets the same sequence of latencies. */
const random = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/** Answers `status` (a 200 says "ok") after `delay` ms, the request body discarded. */
const answerLater = (
  request: Http.IncomingMessage,
  response: Http.ServerResponse,
  status: number,
  headers: Record<string, string>,
  delay: number
): void => {
  request.resume()
  setTimeout(() => {
    response.writeHead(status, headers)
    response.end(status === 200 ? "ok" : "rate limited")
  }, delay)
}

interface WindowSpec {
  readonly name: string
  readonly limit: number
  readonly windowMillis: number
  readonly minLatency: number
  readonly maxLatency: number
  readonly seed: number
}

/** Every arrival, as `[epoch millis, status]`, per window server. */
const arrivals = new Map<string, Array<readonly [number, number]>>()

/**
 * "No more than `limit` arrivals in any interval of length `windowMillis`": an arrival at `t` is admitted
 * when fewer than `limit` admitted arrivals lie in `(t - windowMillis, t]`, else answered 429 with
 * Retry-After (whole seconds, rounded up) and nothing else: no X-RateLimit headers, so no client learns
 * more than any other. Time is `Date.now()`, the clock every limiter measured here reads.
 */
const startWindow = async (spec: WindowSpec): Promise<number> => {
  const admitted: Array<number> = []
  let head = 0
  const log: Array<readonly [number, number]> = []
  arrivals.set(spec.name, log)
  const latency = random(spec.seed)
  return listen(spec.name, (request, response) => {
    const now = Date.now()
    while (head < admitted.length && admitted[head]! <= now - spec.windowMillis) head++
    const inWindow = admitted.length - head
    let status = 200
    const headers: Record<string, string> = { "content-type": "text/plain" }
    if (inWindow >= spec.limit) {
      status = 429
      headers["retry-after"] = String(Math.max(1, Math.ceil((admitted[head]! + spec.windowMillis - now) / 1000)))
    } else {
      admitted.push(now)
    }
    log.push([now, status])
    answerLater(request, response, status, headers, spec.minLatency + latency() * (spec.maxLatency - spec.minLatency))
  })
}

interface FixedSpec extends WindowSpec {
  /** Also log the window index of each arrival (see `fixedWindows`). */
  readonly fixed: true
}

/** The window index of each arrival at a fixed-window server, aligned with its `arrivals` log. */
const fixedWindows = new Map<string, Array<number>>()

/**
 * A fixed window of `limit` requests per `windowMillis`, starting at the first request after the previous
 * window ended (as `express-rate-limit` and `@fastify/rate-limit` count per client). Every answer announces
 * `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (whole seconds until the window ends,
 * rounded up); a request over the limit is answered 429 with `Retry-After` and still counts in its window.
 * This is the server of issue 14, written for the bench (core's tests have their own; the bench imports no
 * test files).
 */
const startFixed = async (spec: FixedSpec): Promise<number> => {
  let windowStart = Number.NEGATIVE_INFINITY
  let count = 0
  let index = -1
  const log: Array<readonly [number, number]> = []
  const windows: Array<number> = []
  arrivals.set(spec.name, log)
  fixedWindows.set(spec.name, windows)
  const latency = random(spec.seed)
  return listen(spec.name, (request, response) => {
    const now = Date.now()
    if (now >= windowStart + spec.windowMillis) {
      windowStart = now
      count = 0
      index++
    }
    count++
    const reset = String(Math.ceil((windowStart + spec.windowMillis - now) / 1000))
    const status = count > spec.limit ? 429 : 200
    const headers: Record<string, string> = {
      "content-type": "text/plain",
      "x-ratelimit-limit": String(spec.limit),
      "x-ratelimit-remaining": String(Math.max(0, spec.limit - count)),
      "x-ratelimit-reset": reset
    }
    if (status === 429) headers["retry-after"] = reset
    log.push([now, status])
    windows.push(index)
    answerLater(request, response, status, headers, spec.minLatency + latency() * (spec.maxLatency - spec.minLatency))
  })
}

let tokenRequests = 0

serve({
  startWindows: async (specs: ReadonlyArray<WindowSpec | FixedSpec>) => {
    const ports: Record<string, number> = {}
    for (const spec of specs) ports[spec.name] = await ("fixed" in spec ? startFixed(spec) : startWindow(spec))
    return ports
  },
  arrivals: (names: ReadonlyArray<string>) => Object.fromEntries(names.map((name) => [name, arrivals.get(name) ?? []])),
  fixedWindows: (names: ReadonlyArray<string>) =>
    Object.fromEntries(names.map((name) => [name, fixedWindows.get(name) ?? []])),
  startPlain: () =>
    listen("plain", (request, response) => {
      request.resume()
      response.writeHead(200, { "content-type": "text/plain", "content-length": "2" })
      response.end("ok")
    }),
  startToken: (params: { readonly latencyMillis: number }) => {
    tokenRequests = 0
    return listen("token", (request, response) => {
      tokenRequests++
      let body = ""
      request.on("data", (chunk) => (body += String(chunk)))
      request.on("end", () => {
        const form = new URLSearchParams(body)
        const ok = request.method === "POST" && form.get("grant_type") === "client_credentials" &&
          (request.headers.authorization ?? "").startsWith("Basic ")
        setTimeout(() => {
          response.writeHead(ok ? 200 : 400, { "content-type": "application/json", "cache-control": "no-store" })
          response.end(
            JSON.stringify(
              ok
                ? { access_token: `token-${tokenRequests}`, token_type: "Bearer", expires_in: 3600 }
                : { error: "invalid_request" }
            )
          )
        }, params.latencyMillis)
      })
    })
  },
  tokenRequests: () => tokenRequests,
  resetTokenRequests: () => {
    tokenRequests = 0
  },
  close: async (names: ReadonlyArray<string>) => {
    for (const name of names) {
      await close(name)
      arrivals.delete(name)
      fixedWindows.delete(name)
    }
  }
})
