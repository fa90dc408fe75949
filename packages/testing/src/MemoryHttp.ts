/**
 * HTTP without sockets or promises: an `HttpClient` whose responses come from a handler you write,
 * with bodies held in memory. Every step is a plain Effect, so it runs under `TestClock` and in
 * `VirtualTime` simulations at full speed (a web `Response` body, by contrast, is read through
 * promises).
 *
 * @since 0.1.0
 */
import * as Cookies from "@effect/platform/Cookies"
import * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as UrlParams from "@effect/platform/UrlParams"
import * as Transport from "@tollgate/core/Transport"
import { Effect, Exit, Inspectable, Layer, Option, Stream } from "effect"

/**
 * What a handler answers.
 *
 * @since 0.1.0
 * @category models
 */
export interface Reply {
  /** Default: 200. */
  readonly status?: number | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** A string is sent as is; any other value as JSON. Default: empty. */
  readonly body?: unknown
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

class MemoryResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  readonly remoteAddress: Option.Option<string> = Option.none()

  constructor(
    readonly request: HttpClientRequest.HttpClientRequest,
    readonly status: number,
    readonly headers: Headers.Headers,
    private readonly body: string
  ) {
    super()
  }

  private decodeError(cause: unknown) {
    return new HttpClientError.ResponseError({ request: this.request, response: this, reason: "Decode", cause })
  }

  get cookies(): Cookies.Cookies {
    const setCookie = this.headers["set-cookie"]
    return setCookie === undefined ? Cookies.empty : Cookies.fromSetCookie(setCookie)
  }

  get text(): Effect.Effect<string, HttpClientError.ResponseError> {
    return Effect.succeed(this.body)
  }

  get json(): Effect.Effect<unknown, HttpClientError.ResponseError> {
    return Effect.try({
      try: () => (this.body === "" ? null : JSON.parse(this.body)),
      catch: (cause) => this.decodeError(cause)
    })
  }

  get arrayBuffer(): Effect.Effect<ArrayBuffer, HttpClientError.ResponseError> {
    return Effect.sync(() => encoder.encode(this.body).buffer as ArrayBuffer)
  }

  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpClientError.ResponseError> {
    return Effect.try({
      try: () => UrlParams.fromInput(new URLSearchParams(this.body)),
      catch: (cause) => this.decodeError(cause)
    })
  }

  get formData(): Effect.Effect<FormData, HttpClientError.ResponseError> {
    return Effect.fail(this.decodeError(new Error("in-memory responses carry no form data")))
  }

  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    return Stream.succeed(encoder.encode(this.body))
  }

  toJSON(): unknown {
    return HttpIncomingMessage.inspect(this, {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status
    })
  }
}

/**
 * Builds a response held in memory. JSON bodies get `content-type: application/json` unless the
 * reply sets one.
 *
 * @since 0.1.0
 * @category constructors
 */
export const response = (
  request: HttpClientRequest.HttpClientRequest,
  reply: Reply
): HttpClientResponse.HttpClientResponse => {
  const isString = typeof reply.body === "string"
  const body = reply.body === undefined ? "" : isString ? reply.body as string : JSON.stringify(reply.body)
  const headers = Headers.fromInput({
    ...(reply.body === undefined || isString ? {} : { "content-type": "application/json" }),
    ...reply.headers
  })
  return new MemoryResponse(request, reply.status ?? 200, headers, body)
}

/**
 * Reads a request body held in memory (JSON, form or text bodies), for handlers that check what they
 * were sent. Streamed bodies read as empty.
 *
 * @since 0.1.0
 * @category getters
 */
export const requestText = (request: HttpClientRequest.HttpClientRequest): string => {
  const body = request.body
  switch (body._tag) {
    case "Uint8Array":
      return decoder.decode(body.body)
    case "Raw":
      return typeof body.body === "string" ? body.body : ""
    default:
      return ""
  }
}

/**
 * An `HttpClient` answered by `handler`. Fail the handler with an `HttpClientError` to simulate a
 * transport failure; sleep in it to simulate latency.
 *
 * Like a real transport it honours each request's abort signal (declared with `Transport.abortable`, so
 * Tollgate's client hands it its deadlines): a handler still running when the request is aborted is
 * interrupted, and the request fails with a transport error. An answer the handler gives at once
 * (`Effect.succeed`) costs nothing of the kind.
 *
 * @example
 * ```ts
 * import { HttpClientRequest } from "@effect/platform"
 * import { MemoryHttp } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * // A handler per request: a status, headers and a body (JSON unless a string), or a transport error.
 * const client = MemoryHttp.client((request) =>
 *   request.url.endsWith("/down")
 *     ? Effect.fail(MemoryHttp.transportError(request))
 *     : Effect.succeed({ status: 200, headers: { "x-ratelimit-remaining": "9" }, body: { url: request.url } })
 * )
 *
 * Effect.gen(function*() {
 *   const response = yield* client.execute(HttpClientRequest.get("https://api.acme.example/items"))
 *   console.log(response.status, response.headers["x-ratelimit-remaining"]) // 200 "9"
 *   const error = yield* Effect.flip(client.execute(HttpClientRequest.get("https://api.acme.example/down")))
 *   console.log(error.reason) // "Transport"
 * }).pipe(Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const client = (
  handler: (request: HttpClientRequest.HttpClientRequest) => Effect.Effect<Reply, HttpClientError.HttpClientError>
): HttpClient.HttpClient =>
  Transport.abortable(
    HttpClient.make((request, _url, signal) => {
      const answer = handler(request)
      if (Exit.isExit(answer)) {
        const exit = answer as Exit.Exit<Reply, HttpClientError.HttpClientError>
        return Exit.isSuccess(exit) ? Effect.succeed(response(request, exit.value)) : Effect.failCause(exit.cause)
      }
      return Effect.map(Effect.raceFirst(answer, aborted(request, signal)), (reply) => response(request, reply))
    }),
    { inMemory: true }
  )

// Fails with a transport error once `signal` aborts.
const aborted = (
  request: HttpClientRequest.HttpClientRequest,
  signal: AbortSignal
): Effect.Effect<never, HttpClientError.HttpClientError> =>
  Effect.async((resume) => {
    const abort = () => resume(Effect.fail(transportError(request, "the request was aborted")))
    if (signal.aborted) return abort()
    signal.addEventListener("abort", abort, { once: true })
    return Effect.sync(() => signal.removeEventListener("abort", abort))
  })

/**
 * The same client as a Layer, to swap in for a real transport.
 *
 * @example
 * ```ts
 * import { ApiClient } from "@tollgate/core"
 * import { MemoryHttp } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * // A scripted API: the first request is throttled for one second, later ones succeed.
 * let calls = 0
 * const Api = MemoryHttp.layer(() =>
 *   Effect.succeed(
 *     ++calls === 1 ? { status: 429, headers: { "retry-after": "1" } } : { body: { ok: true } }
 *   )
 * )
 *
 * Effect.gen(function*() {
 *   const client = yield* ApiClient.make({ provider: "acme", baseUrl: "https://api.acme.example" })
 *   const response = yield* client.get("/items")
 *   console.log(response.status, calls) // 200 2: Tollgate waited out the 429 and retried
 * }).pipe(Effect.scoped, Effect.provide(Api), Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  handler: (request: HttpClientRequest.HttpClientRequest) => Effect.Effect<Reply, HttpClientError.HttpClientError>
): Layer.Layer<HttpClient.HttpClient> => Layer.succeed(HttpClient.HttpClient, client(handler))

/**
 * A transport failure, as a handler returns it for a dropped connection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const transportError = (
  request: HttpClientRequest.HttpClientRequest,
  description = "connection reset"
): HttpClientError.HttpClientError =>
  new HttpClientError.RequestError({
    request,
    reason: "Transport",
    cause: Object.assign(new Error(description), { code: "ECONNRESET" }),
    description
  })
