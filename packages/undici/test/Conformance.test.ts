/**
 * The same requests through the platform's undici client (`NodeHttpClient.makeUndici`) and ours, against
 * one loopback server: every observable result (status, headers, cookies, body, the typed error and its
 * reason, the spans) must be identical. Each case also states the expected result, so two clients that
 * broke the same way would not pass. The few places where ours differs on purpose have their own tests
 * at the end.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Headers from "@effect/platform/Headers"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as UrlParams from "@effect/platform/UrlParams"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Effect, Exit, Option, Stream, Tracer } from "effect"
import type { Scope } from "effect"
import { Agent, FormData as UndiciFormData } from "undici"
import * as UndiciHttpClient from "../src/UndiciHttpClient.js"
import * as Server from "./utils/Server.js"

const agent = (options?: Agent.Options) =>
  Effect.acquireRelease(Effect.sync(() => new Agent(options)), (agent) => Effect.promise(() => agent.destroy()))

/** Both clients, each over its own undici Agent built with `options`. */
const clients = (options?: Agent.Options) =>
  Effect.gen(function*() {
    return {
      platform: NodeHttpClient.makeUndici(yield* agent(options)),
      ours: UndiciHttpClient.make(yield* agent(options))
    }
  })

/** What a caller can observe of a failure: the error's type and reason, and what undici reported. */
const describeFailure = (cause: Cause.Cause<unknown>): unknown => {
  if (Cause.isInterruptedOnly(cause)) return "interrupted"
  const error = Cause.squash(cause)
  if (HttpClientError.isHttpClientError(error)) {
    const inner = error.cause as { readonly code?: unknown; readonly name?: unknown } | undefined
    return {
      _tag: error._tag,
      reason: error.reason,
      status: error._tag === "ResponseError" ? error.response.status : undefined,
      cause: inner?.code ?? inner?.name
    }
  }
  return { _tag: (error as { readonly _tag?: unknown })._tag ?? String(error) }
}

const outcome = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) =>
  Effect.map(
    Effect.exit(Effect.scoped(effect)),
    (exit) => Exit.isSuccess(exit) ? { value: exit.value } : { failure: describeFailure(exit.cause) }
  )

/** Status, headers (but the date), cookies. */
const head = (response: HttpClientResponse.HttpClientResponse) => {
  const { date: _, ...headers } = response.headers
  return { status: response.status, headers, cookies: response.cookies.toJSON(), remote: response.remoteAddress }
}

/** Runs `program` with each client, and checks both observed the same. */
const same = <A, E>(program: (client: HttpClient.HttpClient) => Effect.Effect<A, E, Scope.Scope>) =>
  Effect.gen(function*() {
    const { ours, platform } = yield* clients()
    const theirs = yield* outcome(program(platform))
    const mine = yield* outcome(program(ours))
    expect(mine).toStrictEqual(theirs)
    return mine
  })

const readJson = (request: HttpClientRequest.HttpClientRequest) => (client: HttpClient.HttpClient) =>
  Effect.flatMap(
    client.execute(request),
    (response) => Effect.map(response.json, (body) => ({ ...head(response), body }))
  )

const readText = (request: HttpClientRequest.HttpClientRequest) => (client: HttpClient.HttpClient) =>
  Effect.flatMap(
    client.execute(request),
    (response) => Effect.map(response.text, (body) => ({ ...head(response), body }))
  )

interface Echo {
  readonly method: string
  readonly url: string
  readonly headers: Record<string, string>
  readonly length?: number
  readonly sha256?: string
  readonly text?: string
  readonly form?: ReadonlyArray<ReadonlyArray<string>>
}

const echoed = (result: { readonly value?: unknown; readonly failure?: unknown }): Echo => {
  expect(result.failure).toBeUndefined()
  return (result.value as { readonly body: Echo }).body
}

/** A form with a field and a file, in the given `FormData` implementation. */
const form = (Implementation: new() => Pick<FormData, "append">): FormData => {
  const data = new Implementation()
  data.append("field", "value")
  data.append("file", new Blob(["file contents"], { type: "text/plain" }), "notes.txt")
  return data as FormData
}

/** `form` as the server parsed it. */
const formReceived = [["field", "value"], ["file", "notes.txt", "text/plain", "file contents"]]

const chunksOf = (bytes: Uint8Array, size: number): Array<Uint8Array> => {
  const chunks: Array<Uint8Array> = []
  for (let offset = 0; offset < bytes.length; offset += size) chunks.push(bytes.subarray(offset, offset + size))
  return chunks
}

/** The default tracer, keeping every span it starts. */
const recording = Effect.map(Effect.tracer, (base) => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (...args) => {
      const span = base.span(...args)
      spans.push(span)
      return span
    },
    context: (f, fiber) => base.context(f, fiber)
  })
  return { spans, tracer }
})

describe("UndiciHttpClient conforms to NodeHttpClient.makeUndici", () => {
  describe("methods", () => {
    for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const) {
      it.scopedLive(method, () =>
        Effect.gen(function*() {
          const server = yield* Server.make
          const result = yield* same(readJson(HttpClientRequest.make(method)(server.url("/echo?q=1&r=a%20b"))))
          const echo = echoed(result)
          expect(echo.method).toBe(method)
          expect(echo.url).toBe("/echo?q=1&r=a%20b")
          expect(echo.length).toBe(0)
        }))
    }

    it.scopedLive("HEAD: headers, no body", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const result = yield* same(readText(HttpClientRequest.head(server.url("/bytes?size=1000"))))
        expect(result.value).toMatchObject({ status: 200, body: "", headers: { "content-length": "1000" } })
      }))

    it.scopedLive("URL parameters and a fragment", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const request = HttpClientRequest.get(server.url("/echo?a=1")).pipe(
          HttpClientRequest.setUrlParams({ b: "x y", c: ["1", "2"] })
        )
        const echo = echoed(yield* same(readJson(request)))
        expect(echo.url).toBe("/echo?a=1&b=x+y&c=1&c=2")
      }))
  })

  describe("request bodies", () => {
    const cases: ReadonlyArray<
      readonly [
        string,
        (request: HttpClientRequest.HttpClientRequest) => HttpClientRequest.HttpClientRequest,
        Partial<Echo>
      ]
    > = [
      ["none on a POST", (r) => r, { length: 0, text: "" }],
      ["text", HttpClientRequest.bodyText("héllo wörld", "text/plain; charset=utf-8"), { text: "héllo wörld" }],
      ["Uint8Array", HttpClientRequest.bodyUint8Array(Server.pattern(1000)), {
        length: 1000,
        sha256: Server.sha256(Server.pattern(1000))
      }],
      ["JSON", HttpClientRequest.bodyUnsafeJson({ a: 1, b: ["c"] }), { text: "{\"a\":1,\"b\":[\"c\"]}" }],
      ["URL parameters", HttpClientRequest.bodyUrlParams({ a: "1", b: "x y&z" }), { text: "a=1&b=x+y%26z" }],
      ["raw", HttpClientRequest.setBody(HttpBody.raw("raw body", { contentType: "text/x-raw" })), { text: "raw body" }],
      ["empty Uint8Array", HttpClientRequest.bodyUint8Array(new Uint8Array(0)), { length: 0 }],
      [
        "stream with a content length",
        HttpClientRequest.bodyStream(Stream.fromIterable(chunksOf(Server.pattern(100_000), 7_000)), {
          contentLength: 100_000
        }),
        { length: 100_000, sha256: Server.sha256(Server.pattern(100_000)) }
      ],
      [
        "stream without a length (chunked)",
        HttpClientRequest.bodyStream(Stream.fromIterable(chunksOf(Server.pattern(100_000), 7_000))),
        { length: 100_000, sha256: Server.sha256(Server.pattern(100_000)) }
      ],
      [
        "large Uint8Array (8 MiB)",
        HttpClientRequest.bodyUint8Array(Server.pattern(8 * 1024 * 1024)),
        { length: 8 * 1024 * 1024, sha256: Server.sha256(Server.pattern(8 * 1024 * 1024)) }
      ],
      [
        "large stream (8 MiB)",
        HttpClientRequest.bodyStream(Stream.fromIterable(chunksOf(Server.pattern(8 * 1024 * 1024), 65_536))),
        { length: 8 * 1024 * 1024, sha256: Server.sha256(Server.pattern(8 * 1024 * 1024)) }
      ]
    ]
    for (const [name, withBody, expected] of cases) {
      it.scopedLive(name, () =>
        Effect.gen(function*() {
          const server = yield* Server.make
          const echo = echoed(yield* same(readJson(withBody(HttpClientRequest.post(server.url("/echo"))))))
          expect(echo).toMatchObject(expected)
        }))
    }

    it.scopedLive("form data (undici's own FormData), with a file", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const request = HttpClientRequest.post(server.url("/echo")).pipe(
          HttpClientRequest.bodyFormData(form(UndiciFormData))
        )
        const result = yield* same(readJson(request))
        expect(echoed(result).form).toStrictEqual(formReceived)
      }))

    it.scopedLive("a failing body stream fails the request with a Transport error", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const body = Stream.concat(Stream.make(new Uint8Array([1, 2, 3])), Stream.fail(new Error("source broke")))
        const result = yield* same(
          readJson(HttpClientRequest.post(server.url("/echo")).pipe(HttpClientRequest.bodyStream(body)))
        )
        expect(result.failure).toMatchObject({ _tag: "RequestError", reason: "Transport" })
      }))

    it.scopedLive("a request body is streamed: the server has its first bytes before the rest exists", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const { ours, platform } = yield* clients()
        for (const client of [platform, ours]) {
          const before = server.gatedBytes()
          // The second chunk is only made once the server has received the first: a client that collected
          // the body before sending would wait forever.
          const second = Effect.gen(function*() {
            while (server.gatedBytes() < before + 5) yield* Effect.sleep("5 millis")
            return new TextEncoder().encode("second")
          })
          const body = Stream.concat(Stream.make(new TextEncoder().encode("first")), Stream.fromEffect(second))
          const response = yield* client.execute(
            HttpClientRequest.post(server.url("/upload-gated")).pipe(HttpClientRequest.bodyStream(body))
          )
          expect(yield* response.json).toStrictEqual({ length: 11, text: "firstsecond" })
        }
      }).pipe(Effect.timeout("10 seconds")))
  })

  describe("responses", () => {
    it.scopedLive("headers, with multi-value set-cookie and repeated headers", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const result = yield* same(readText(HttpClientRequest.get(server.url("/headers"))))
        expect(result.value).toMatchObject({
          status: 200,
          body: "headers",
          headers: { "x-multi": "one, two", "x-mixed-case": "Value", "set-cookie": expect.any(String) },
          remote: Option.none()
        })
        const cookies = (result.value as { readonly cookies: { readonly cookies: Record<string, unknown> } }).cookies
        expect(Object.keys(cookies.cookies).sort()).toStrictEqual(["lang", "session", "theme"])
        expect(cookies.cookies["session"]).toMatchObject({ value: "abc", options: { path: "/", httpOnly: true } })
      }))

    for (const status of [200, 201, 204, 304, 400, 404, 429, 500, 503]) {
      it.scopedLive(`status ${status} is a response, not an error`, () =>
        Effect.gen(function*() {
          const server = yield* Server.make
          const result = yield* same(readText(HttpClientRequest.get(server.url(`/status?code=${status}`))))
          expect(result.value).toMatchObject({
            status,
            body: status === 204 || status === 304 ? "" : `status ${status}`
          })
        }))
    }

    it.scopedLive("filterStatusOk turns a 404 into ResponseError StatusCode", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const result = yield* same((client) =>
          HttpClient.filterStatusOk(client).execute(HttpClientRequest.get(server.url("/status?code=404")))
        )
        expect(result.failure).toMatchObject({ _tag: "ResponseError", reason: "StatusCode", status: 404 })
      }))

    it.scopedLive("a large body (8 MiB) read whole and streamed", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const size = 8 * 1024 * 1024
        const request = HttpClientRequest.get(server.url(`/bytes?size=${size}`))
        const whole = yield* same((client) =>
          Effect.flatMap(client.execute(request), (response) =>
            Effect.map(
              response.arrayBuffer,
              (body) => ({ ...head(response), sha256: Server.sha256(new Uint8Array(body)) })
            ))
        )
        const streamed = yield* same((client) =>
          Effect.flatMap(client.execute(request), (response) =>
            Effect.map(
              Stream.runCollect(response.stream),
              (chunks) => ({ ...head(response), sha256: Server.sha256(Buffer.concat(Chunk.toArray(chunks))) })
            ))
        )
        const expected = Server.sha256(Server.pattern(size))
        expect(whole.value).toMatchObject({ status: 200, sha256: expected })
        expect(streamed.value).toMatchObject({ status: 200, sha256: expected })
      }))

    it.scopedLive("a chunked body, streamed", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const result = yield* same((client) =>
          Effect.flatMap(client.execute(HttpClientRequest.get(server.url("/chunked"))), (response) =>
            response.stream.pipe(
              Stream.decodeText(),
              Stream.mkString,
              Effect.map((body) => ({ ...head(response), body }))
            ))
        )
        expect(result.value).toMatchObject({ status: 200, body: "alpha beta gamma" })
      }))

    it.scopedLive("a response body is streamed: its first chunk arrives before the server has finished", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const { ours, platform } = yield* clients()
        for (const client of [platform, ours]) {
          const response = yield* client.execute(HttpClientRequest.get(server.url("/gated")))
          const text = response.stream.pipe(
            Stream.decodeText(),
            Stream.tap((chunk) => Effect.sync(() => chunk.startsWith("first") && server.release())),
            Stream.mkString
          )
          expect(yield* text).toBe("first;rest")
        }
      }).pipe(Effect.timeout("10 seconds")))

    it.scopedLive("text, json, urlParamsBody and a byte order mark", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const url = (query: string) => server.url(`/text?${query}`)
        const json = yield* same(
          readJson(HttpClientRequest.get(url("body=%7B%22a%22%3A%5B1%5D%7D&type=application/json")))
        )
        expect(json.value).toMatchObject({ body: { a: [1] } })
        const empty = yield* same(readJson(HttpClientRequest.get(url("body=&type=application/json"))))
        expect(empty.value).toMatchObject({ body: null })
        const bom = yield* same(readText(HttpClientRequest.get(url("body=h%C3%A9&bom"))))
        expect(bom.value).toMatchObject({ body: "hé" })
        const params = yield* same((client) =>
          Effect.flatMap(
            client.execute(HttpClientRequest.get(url("body=a%3D1%26b%3Dx%2By"))),
            (response) => Effect.map(response.urlParamsBody, UrlParams.toRecord)
          )
        )
        expect(params.value).toStrictEqual({ a: "1", b: "x y" })
      }))

    it.scopedLive("invalid JSON is ResponseError Decode", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const result = yield* same(readJson(HttpClientRequest.get(server.url("/text?body=%7Bnope"))))
        expect(result.failure).toMatchObject({
          _tag: "ResponseError",
          reason: "Decode",
          status: 200,
          cause: "SyntaxError"
        })
      }))

    it.scopedLive("redirects are not followed, and followRedirects works the same", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        for (const code of [301, 302, 303, 307, 308]) {
          const result = yield* same(readText(HttpClientRequest.get(server.url(`/redirect?code=${code}`))))
          expect(result.value).toMatchObject({
            status: code,
            body: "moved",
            headers: { location: "/echo?redirected=1" }
          })
        }
        const followed = yield* same((client) =>
          readJson(HttpClientRequest.get(server.url("/redirect")))(HttpClient.followRedirects(client))
        )
        expect(echoed(followed)).toMatchObject({ method: "GET", url: "/echo?redirected=1" })
      }))
  })

  describe("failures", () => {
    it.scopedLive("connection refused is RequestError Transport", () =>
      Effect.gen(function*() {
        const port = yield* Server.closedPort
        const result = yield* same(readText(HttpClientRequest.get(`http://127.0.0.1:${port}/`)))
        expect(result.failure).toStrictEqual({
          _tag: "RequestError",
          reason: "Transport",
          status: undefined,
          cause: "ECONNREFUSED"
        })
      }))

    it.scopedLive("a host that does not resolve is RequestError Transport", () =>
      Effect.gen(function*() {
        // The lookup is the agent's (so the test needs no resolver); it fails as getaddrinfo does.
        const lookup = (hostname: string, _options: unknown, callback: (error: Error) => void) =>
          callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND", hostname }))
        const { ours, platform } = yield* clients({ connect: { lookup } as NonNullable<Agent.Options["connect"]> })
        const request = HttpClientRequest.get("http://no-such-host.invalid/")
        const theirs = yield* outcome(readText(request)(platform))
        const mine = yield* outcome(readText(request)(ours))
        expect(mine).toStrictEqual(theirs)
        expect(mine.failure).toMatchObject({ _tag: "RequestError", reason: "Transport", cause: "ENOTFOUND" })
      }))

    it.scopedLive("an invalid URL is RequestError InvalidUrl", () =>
      Effect.gen(function*() {
        const result = yield* same(readText(HttpClientRequest.get("http://[not a host/")))
        expect(result.failure).toMatchObject({ _tag: "RequestError", reason: "InvalidUrl" })
      }))

    it.scopedLive("an invalid header value is RequestError Transport", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const result = yield* same(
          readText(HttpClientRequest.get(server.url("/echo")).pipe(HttpClientRequest.setHeader("x-bad", "a\r\nb")))
        )
        expect(result.failure).toMatchObject({ _tag: "RequestError", reason: "Transport" })
      }))

    it.scopedLive("a connection dropped mid-body is ResponseError Decode, read whole or streamed", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const request = HttpClientRequest.get(server.url("/cut"))
        const whole = yield* same(readText(request))
        expect(whole.failure).toMatchObject({ _tag: "ResponseError", reason: "Decode", status: 200 })
        const streamed = yield* same((client) =>
          Effect.flatMap(client.execute(request), (response) => Stream.runDrain(response.stream))
        )
        expect(streamed.failure).toMatchObject({ _tag: "ResponseError", reason: "Decode", status: 200 })
      }))

    it.scopedLive("a timeout while waiting for the headers interrupts the request and closes its connection", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const { ours, platform } = yield* clients()
        for (const client of [platform, ours]) {
          const result = yield* outcome(
            Effect.timeout(client.execute(HttpClientRequest.get(server.url("/hang"))), "50 millis")
          )
          expect(result.failure).toStrictEqual({ _tag: "TimeoutException" })
          while (server.open() > 0) yield* Effect.sleep("5 millis")
        }
      }))

    it.scopedLive("a timeout while reading the body aborts the request and closes its connection", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const { ours, platform } = yield* clients()
        for (const client of [platform, ours]) {
          const response = yield* client.execute(HttpClientRequest.get(server.url("/hang-body")))
          expect(response.status).toBe(200)
          const result = yield* outcome(Effect.timeout(response.text, "50 millis"))
          expect(result.failure).toStrictEqual({ _tag: "TimeoutException" })
          while (server.open() > 0) yield* Effect.sleep("5 millis")
          const streamed = yield* client.execute(HttpClientRequest.get(server.url("/hang-body")))
          const first = yield* streamed.stream.pipe(Stream.take(1), Stream.runCollect)
          expect(new TextDecoder().decode(Chunk.unsafeHead(first))).toBe("partial;")
          // A reader that stops early leaves nothing running either.
          while (server.open() > 0) yield* Effect.sleep("5 millis")
        }
      }))
  })

  describe("tracing", () => {
    const traced = (client: HttpClient.HttpClient, request: HttpClientRequest.HttpClientRequest) =>
      Effect.gen(function*() {
        const { spans, tracer } = yield* recording
        const echo = yield* client.execute(request).pipe(
          Effect.flatMap((response) => response.json),
          Effect.withSpan("caller"),
          Effect.withTracer(tracer)
        ) as Effect.Effect<{ readonly headers: Record<string, string> }, unknown>
        const [caller, http] = [spans.find((s) => s.name === "caller")!, spans.find((s) => s.name !== "caller")]
        return { spans, caller, http, echo }
      })

    it.scopedLive("one client span with the platform's name, kind, parent, attributes and status", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const { ours, platform } = yield* clients()
        const request = HttpClientRequest.post(server.url("/echo?q=1")).pipe(
          HttpClientRequest.setHeaders({
            "x-visible": "yes",
            authorization: "Bearer secret-token",
            "x-secret-key": "hunter2"
          }),
          HttpClientRequest.bodyText("hi")
        )
        const render = (run: Effect.Effect.Success<ReturnType<typeof traced>>) => {
          expect(run.spans).toHaveLength(2)
          const http = run.http!
          expect(http.parent).toStrictEqual(Option.some(run.caller))
          return {
            name: http.name,
            kind: http.kind,
            attributes: Object.fromEntries(
              [...http.attributes].map(([key, value]) => [key, key === "http.response.header.date" ? "<date>" : value])
            ),
            ended: http.status._tag,
            exit: http.status._tag === "Ended" ? http.status.exit._tag : undefined,
            sentTraceparent: run.echo.headers["traceparent"] !== undefined
          }
        }
        // The default redacted names and a pattern of the caller's.
        const redacting = Effect.locally(Headers.currentRedactedNames, ["authorization", "Set-Cookie", /^x-secret-/])
        const theirs = render(yield* redacting(traced(platform, request)))
        const mine = render(yield* redacting(traced(ours, request)))
        expect(mine).toStrictEqual(theirs)
        expect(mine).toMatchObject({
          name: "http.client POST",
          kind: "client",
          ended: "Ended",
          exit: "Success",
          attributes: {
            "http.request.method": "POST",
            "http.request.header.x-visible": "yes",
            "http.request.header.authorization": "<redacted>",
            "http.request.header.x-secret-key": "<redacted>",
            "http.response.header.content-type": "application/json",
            "http.response.status_code": 200,
            "url.query": "q=1"
          }
        })
      }))

    it.scopedLive("trace context headers name the client span, and are left out when propagation is off", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const { ours } = yield* clients()
        // The server masks the values (they differ per run); ask it for the raw header instead.
        const run = yield* traced(ours, HttpClientRequest.get(server.url("/echo")))
        expect(run.echo.headers["traceparent"]).toBe("<trace>")
        expect(run.echo.headers["b3"]).toBe("<trace>")
        const off = yield* traced(
          HttpClient.withTracerPropagation(ours, false),
          HttpClientRequest.get(server.url("/echo"))
        )
        expect(off.echo.headers["traceparent"]).toBeUndefined()
        expect(off.spans).toHaveLength(2)
        const disabled = yield* traced(
          HttpClient.withTracerDisabledWhen(ours, () => true),
          HttpClientRequest.get(server.url("/echo"))
        )
        expect(disabled.spans.map((s) => s.name)).toStrictEqual(["caller"])
        expect(disabled.echo.headers["traceparent"]).toBeUndefined()
        const named = yield* traced(
          HttpClient.withSpanNameGenerator(ours, (request) => `GET ${new URL(request.url).pathname}`),
          HttpClientRequest.get(server.url("/echo"))
        )
        expect(named.spans.map((s) => s.name)).toStrictEqual(["caller", "GET /echo"])
      }))

    it.scopedLive("the traceparent sent is the client span's", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const { ours, platform } = yield* clients()
        for (const client of [platform, ours]) {
          // Capture the request as sent (after propagation) through the response.
          const { spans, tracer } = yield* recording
          const response = yield* Effect.withTracer(client.execute(HttpClientRequest.get(server.url("/echo"))), tracer)
          const span = spans[0]!
          expect(response.request.headers["traceparent"]).toBe(`00-${span.traceId}-${span.spanId}-01`)
          expect(response.request.headers["b3"]).toBe(`${span.traceId}-${span.spanId}-1`)
        }
      }))

    it.scopedLive("a failed request ends its span with the failure", () =>
      Effect.gen(function*() {
        const port = yield* Server.closedPort
        const { ours, platform } = yield* clients()
        const exits: Array<unknown> = []
        for (const client of [platform, ours]) {
          const { spans, tracer } = yield* recording
          yield* Effect.exit(Effect.withTracer(client.get(`http://127.0.0.1:${port}/`), tracer))
          const status = spans[0]!.status
          exits.push(
            status._tag === "Ended"
              ? describeFailure(Exit.isFailure(status.exit) ? status.exit.cause : Cause.empty)
              : status._tag
          )
        }
        expect(exits[1]).toStrictEqual(exits[0])
        expect(exits[1]).toMatchObject({ _tag: "RequestError", reason: "Transport", cause: "ECONNREFUSED" })
      }))
  })

  describe("where ours differs on purpose", () => {
    it.scopedLive("formData parses the body (the platform's fails: undici's request API does not implement it)", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const { ours, platform } = yield* clients()
        const read = (client: HttpClient.HttpClient) =>
          Effect.flatMap(client.get(server.url("/form")), (response) => response.formData)
        const theirs = yield* outcome(read(platform))
        expect(theirs.failure).toMatchObject({
          _tag: "ResponseError",
          reason: "Decode",
          cause: "UND_ERR_NOT_SUPPORTED"
        })
        const mine = yield* read(ours)
        expect([...mine.entries()]).toStrictEqual([["field", "value"]])
      }))

    it.scopedLive("a body of the global FormData is sent (the platform's fails: undici 7 rejects Node's FormData)", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const { ours, platform } = yield* clients()
        const request = HttpClientRequest.post(server.url("/echo")).pipe(HttpClientRequest.bodyFormData(form(FormData)))
        const theirs = yield* outcome(readJson(request)(platform))
        expect(theirs.failure).toMatchObject({ _tag: "RequestError", reason: "Transport", cause: "TypeError" })
        const mine = yield* outcome(readJson(request)(ours))
        expect(echoed(mine).form).toStrictEqual(formReceived)
      }))

    it.scopedLive("a URL's fragment is not sent (the platform's client puts it in the request line)", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const { ours } = yield* clients()
        const echo = yield* Effect.flatMap(ours.get(server.url("/echo?a=1#part")), (response) => response.json)
        expect((echo as Echo).url).toBe("/echo?a=1")
      }))

    it.scopedLive("a body read whole can be read again, in any form", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const { ours } = yield* clients()
        const response = yield* ours.get(server.url("/text?body=%7B%22a%22%3A1%7D"))
        expect(yield* response.text).toBe("{\"a\":1}")
        expect(yield* response.json).toStrictEqual({ a: 1 })
        expect(new TextDecoder().decode(yield* response.arrayBuffer)).toBe("{\"a\":1}")
        const streamed = yield* Stream.runCollect(Stream.decodeText(response.stream))
        expect(Chunk.join(streamed, "")).toBe("{\"a\":1}")
      }))
  })
})
