import { Effect } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

/** One request as the server saw it on the wire. */
export interface Recorded {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: Http.IncomingHttpHeaders
  readonly rawBody: string
  /** Wall-clock milliseconds when the request was complete. */
  readonly at: number
}

/** What the server does with a request. */
export interface Answer {
  readonly status: number
  readonly headers?: Readonly<Record<string, string>>
  /** A string is sent as is; anything else as JSON. */
  readonly body?: unknown
}

export interface Server {
  readonly url: string
  readonly requests: ReadonlyArray<Recorded>
}

/** A real HTTP server on 127.0.0.1 and an ephemeral port, closed with its connections with the scope. */
export const serve = (handler: (request: Recorded, n: number) => Answer) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Http.Server; readonly info: Server }>((resume) => {
      const requests: Array<Recorded> = []
      const server = Http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (chunk: Buffer) => chunks.push(chunk))
        req.on("end", () => {
          const url = new URL(req.url ?? "/", "http://127.0.0.1")
          const recorded: Recorded = {
            method: req.method ?? "",
            path: url.pathname,
            query: url.searchParams,
            headers: req.headers,
            rawBody: Buffer.concat(chunks).toString("utf8"),
            at: Date.now()
          }
          const n = requests.length
          requests.push(recorded)
          let answer: Answer
          try {
            answer = handler(recorded, n)
          } catch (error) {
            answer = { status: 500, headers: { "content-type": "text/plain" }, body: `test server bug: ${error}` }
          }
          const body = answer.body === undefined
            ? ""
            : typeof answer.body === "string"
            ? answer.body
            : JSON.stringify(answer.body)
          res.writeHead(answer.status, {
            ...(typeof answer.body === "object" && answer.body !== null
              ? { "content-type": "application/json; charset=utf-8" }
              : {}),
            ...answer.headers
          })
          res.end(body)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as AddressInfo).port
        resume(Effect.succeed({ server, info: { url: `http://127.0.0.1:${port}`, requests } }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ info }) => info))

/** A JWT-shaped token (unsigned) with the given claims. */
export const jwt = (claims: Record<string, unknown>): string => {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")
  return `${part({ alg: "RS256", typ: "JWT" })}.${part(claims)}.c2lnbmF0dXJl`
}
