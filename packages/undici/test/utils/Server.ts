/**
 * A node:http server on 127.0.0.1 for the conformance and interruption tests, with the routes they share.
 * It keeps count of the connections open right now and the most ever open at once, so a test can tell
 * a freed connection from a leaked one.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { createHash } from "node:crypto"
import * as Http from "node:http"
import type { AddressInfo, Socket } from "node:net"

export interface Server {
  readonly origin: string
  readonly url: (path: string) => string
  /** Connections open right now. */
  readonly open: () => number
  /** The most connections ever open at once. */
  readonly peak: () => number
  /** Requests whose response has neither finished nor lost its connection. */
  readonly busy: () => number
  /** Connections accepted so far. */
  readonly accepted: () => number
  /** Requests seen so far, per path (without the query). */
  readonly hits: (path: string) => number
  /** Request-body bytes received so far by `/upload-gated`. */
  readonly gatedBytes: () => number
  /** Lets the response of `/gated` finish. */
  readonly release: () => void
}

/** Deterministic bytes (no long runs, so nothing compresses or lines up by accident). */
export const pattern = (size: number): Uint8Array => {
  const bytes = new Uint8Array(size)
  let x = 0x2545f491
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    bytes[i] = x & 0xff
  }
  return bytes
}

export const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

const readBody = (request: Http.IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => resolve(Buffer.concat(chunks)))
    request.on("error", reject)
  })

const json = (response: Http.ServerResponse, status: number, value: unknown) => {
  const body = JSON.stringify(value)
  response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
  response.end(body)
}

export const make: Effect.Effect<Server, never, Scope.Scope> = Effect.gen(function*() {
  const sockets = new Set<Socket>()
  const hits = new Map<string, number>()
  let peak = 0
  let busy = 0
  let accepted = 0
  let gatedBytes = 0
  let releases: Array<() => void> = []
  let closing = false

  const handler = async (request: Http.IncomingMessage, response: Http.ServerResponse) => {
    const url = new URL(request.url ?? "/", "http://localhost")
    hits.set(url.pathname, (hits.get(url.pathname) ?? 0) + 1)
    switch (url.pathname) {
      case "/echo": {
        const body = await readBody(request)
        const contentType = request.headers["content-type"] ?? ""
        const form = contentType.startsWith("multipart/form-data")
          ? await Promise.all(
            [...(await new Response(new Uint8Array(body), { headers: { "content-type": contentType } }).formData())
              .entries()].map(
                async ([name, value]) =>
                  typeof value === "string" ? [name, value] : [name, value.name, value.type, await value.text()]
              )
          )
          : undefined
        // What differs between two runs of the same request: the multipart boundary (and with it the
        // length) and the trace ids.
        const { host: _, ...headers } = request.headers
        if (form !== undefined) {
          headers["content-type"] = "multipart/form-data; boundary=<boundary>"
          delete headers["content-length"]
        }
        for (const name of ["traceparent", "b3"]) if (name in headers) headers[name] = "<trace>"
        return json(response, 200, {
          method: request.method,
          url: request.url,
          headers,
          ...(form === undefined
            ? { length: body.length, sha256: sha256(body), text: body.length > 4096 ? "" : body.toString("utf8") }
            : { form })
        })
      }
      case "/status": {
        const status = Number(url.searchParams.get("code"))
        response.writeHead(status, { "content-type": "text/plain" })
        return response.end(status === 204 || status === 304 ? undefined : `status ${status}`)
      }
      case "/headers": {
        response.setHeader("set-cookie", ["session=abc; Path=/; HttpOnly", "theme=dark; Max-Age=3600", "lang=en"])
        response.setHeader("x-multi", ["one", "two"])
        response.setHeader("X-Mixed-Case", "Value")
        response.writeHead(200, { "content-type": "text/plain" })
        return response.end("headers")
      }
      case "/bytes": {
        const size = Number(url.searchParams.get("size"))
        const bytes = pattern(size)
        response.writeHead(200, { "content-type": "application/octet-stream", "content-length": size })
        // In pieces, so the client sees many chunks.
        for (let offset = 0; offset < size; offset += 16_384) response.write(bytes.subarray(offset, offset + 16_384))
        return response.end()
      }
      case "/chunked": {
        response.writeHead(200, { "content-type": "text/plain" })
        for (const part of ["alpha ", "beta ", "gamma"]) {
          response.write(part)
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
        return response.end()
      }
      case "/gated": {
        // The first part at once, the rest only after `release`: a client that waits for the whole body
        // before handing over its first chunk never gets it.
        response.writeHead(200, { "content-type": "text/plain" })
        response.write("first;")
        if (!closing) await new Promise<void>((resolve) => releases.push(resolve))
        return response.end("rest")
      }
      case "/upload-gated": {
        request.on("data", (chunk: Buffer) => (gatedBytes += chunk.length))
        const body = await readBody(request)
        return json(response, 200, { length: body.length, text: body.toString("utf8") })
      }
      case "/text": {
        const body = url.searchParams.get("body") ?? ""
        const bytes = url.searchParams.has("bom")
          ? Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(body)])
          : Buffer.from(body)
        response.writeHead(200, { "content-type": url.searchParams.get("type") ?? "text/plain; charset=utf-8" })
        return response.end(bytes)
      }
      case "/form": {
        const body = "--XyZ\r\ncontent-disposition: form-data; name=\"field\"\r\n\r\nvalue\r\n--XyZ--\r\n"
        response.writeHead(200, { "content-type": "multipart/form-data; boundary=XyZ" })
        return response.end(body)
      }
      case "/redirect": {
        response.writeHead(Number(url.searchParams.get("code") ?? 302), { location: "/echo?redirected=1" })
        return response.end("moved")
      }
      case "/cut": {
        // Promises 1,000 bytes, sends 100, then drops the connection.
        response.writeHead(200, { "content-type": "text/plain", "content-length": 1000 })
        response.write("x".repeat(100))
        return setTimeout(() => request.socket.destroy(), 10)
      }
      case "/hang":
        // Never answers; the connection stays open until the client gives up on it.
        return
      case "/hang-body": {
        response.writeHead(200, { "content-type": "text/plain" })
        return response.write("partial;")
      }
      default:
        response.writeHead(404)
        return response.end()
    }
  }

  const server = Http.createServer({ keepAlive: true }, (request, response) => {
    busy++
    response.on("close", () => busy--)
    handler(request, response).catch((error) => {
      response.destroy(error)
    })
  })
  server.on("connection", (socket) => {
    accepted++
    sockets.add(socket)
    peak = Math.max(peak, sockets.size)
    socket.on("close", () => sockets.delete(socket))
  })
  yield* Effect.acquireRelease(
    Effect.async<void>((resume) => {
      server.listen({ host: "127.0.0.1", port: 0 }, () => resume(Effect.void))
    }),
    () =>
      Effect.async<void>((resume) => {
        closing = true
        for (const release of releases) release()
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    origin,
    url: (path) => origin + path,
    open: () => sockets.size,
    peak: () => peak,
    busy: () => busy,
    accepted: () => accepted,
    hits: (path) => hits.get(path) ?? 0,
    gatedBytes: () => gatedBytes,
    release: () => {
      const waiting = releases
      releases = []
      for (const release of waiting) release()
    }
  }
})

/** A port nothing listens on: bound, then closed. */
export const closedPort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = Http.createServer()
  server.listen({ host: "127.0.0.1", port: 0 }, () => {
    const port = (server.address() as AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})
