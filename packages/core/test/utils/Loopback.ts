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
}

/**
 * What the server does with a request: answer it, never answer, drop the connection, or send the status
 * line, headers and half a body and then stall.
 */
export type Answer =
  | {
    readonly status: number
    readonly headers?: Readonly<Record<string, string>>
    /** A string is sent as is; anything else as JSON. */
    readonly body?: unknown
  }
  | "hang"
  | "destroy"
  | "stall-body"

export interface Server {
  readonly url: string
  readonly port: number
  readonly requests: ReadonlyArray<Recorded>
}

/**
 * A real HTTP server on 127.0.0.1 and an ephemeral port, closed (with every open connection, including
 * requests it never answered) when the scope closes.
 */
export const serve = (handler: (request: Recorded) => Answer) =>
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
            rawBody: Buffer.concat(chunks).toString("utf8")
          }
          requests.push(recorded)
          let answer: Answer
          try {
            answer = handler(recorded)
          } catch (error) {
            answer = { status: 500, headers: { "content-type": "text/plain" }, body: `test server bug: ${error}` }
          }
          if (answer === "hang") return
          if (answer === "destroy") {
            req.socket.destroy()
            return
          }
          if (answer === "stall-body") {
            res.writeHead(200, { "content-type": "application/json", "content-length": "1000" })
            res.write("{\"access_token\":\"at_")
            return
          }
          const body = answer.body === undefined
            ? ""
            : typeof answer.body === "string"
            ? answer.body
            : JSON.stringify(answer.body)
          const headers: Record<string, string> = {
            ...(typeof answer.body === "object" && answer.body !== null
              ? { "content-type": "application/json;charset=UTF-8" }
              : {}),
            "cache-control": "no-store",
            ...answer.headers
          }
          res.writeHead(answer.status, headers)
          res.end(body)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as AddressInfo).port
        resume(Effect.succeed({ server, info: { url: `http://127.0.0.1:${port}`, port, requests } }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ info }) => info))

/** A loopback port nothing listens on: bound once, then released. */
export const closedPort = Effect.async<number>((resume) => {
  const server = Http.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})
