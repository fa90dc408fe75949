import type { HttpApp, HttpClientRequest } from "@effect/platform"
import {
  Cookies,
  Headers,
  HttpClient,
  HttpClientError,
  HttpClientResponse,
  HttpIncomingMessage,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse,
  Multipart,
  UrlParams
} from "@effect/platform"
import * as Transport from "@tollgate/core/Transport"
import { Cause, Chunk, Effect, FiberRef, Inspectable, Option, Stream } from "effect"
import { globalValue } from "effect/GlobalValue"
import type * as Faults from "../Faults.js"
import { type Aborted, whenAborted } from "./abort.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const empty = new Uint8Array(0)

const concat = (chunks: Chunk.Chunk<Uint8Array>): Uint8Array => {
  let length = 0
  for (const chunk of chunks) length += chunk.length
  const out = new Uint8Array(length)
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.length
  }
  return out
}

const toArrayBuffer = (bytes: Uint8Array): ArrayBuffer => bytes.slice().buffer as ArrayBuffer

/**
 * A server request built from a client request whose body is already in memory: every read is a plain
 * Effect (no promises), so an emulator runs under `TestClock` or a virtual-time driver without the clock
 * moving while a body is "in flight".
 */
class MemoryServerRequest extends Inspectable.Class implements HttpServerRequest.HttpServerRequest {
  readonly [HttpServerRequest.TypeId]: HttpServerRequest.TypeId = HttpServerRequest.TypeId
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId

  constructor(
    readonly source: HttpClientRequest.HttpClientRequest,
    readonly url: string,
    readonly originalUrl: string,
    readonly method: HttpServerRequest.HttpServerRequest["method"],
    readonly headers: Headers.Headers,
    private readonly body: Uint8Array,
    private readonly address: string | undefined
  ) {
    super()
  }

  get remoteAddress(): Option.Option<string> {
    return Option.fromNullable(this.address)
  }

  get cookies(): Record<string, string> {
    return Cookies.parseHeader(this.headers.cookie ?? "")
  }

  private decodeError(cause: unknown) {
    return new HttpServerError.RequestError({ request: this, reason: "Decode", cause })
  }

  get text(): Effect.Effect<string, HttpServerError.RequestError> {
    return Effect.sync(() => decoder.decode(this.body))
  }

  get json(): Effect.Effect<unknown, HttpServerError.RequestError> {
    return Effect.try({ try: () => JSON.parse(decoder.decode(this.body)), catch: (cause) => this.decodeError(cause) })
  }

  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpServerError.RequestError> {
    return Effect.try({
      try: () => UrlParams.fromInput(new URLSearchParams(decoder.decode(this.body))),
      catch: (cause) => this.decodeError(cause)
    })
  }

  get arrayBuffer(): Effect.Effect<ArrayBuffer, HttpServerError.RequestError> {
    return Effect.sync(() => toArrayBuffer(this.body))
  }

  get stream(): Stream.Stream<Uint8Array, HttpServerError.RequestError> {
    return Stream.succeed(this.body)
  }

  get multipart(): HttpServerRequest.HttpServerRequest["multipart"] {
    return Effect.fail(new Multipart.MultipartError({ reason: "InternalError", cause: "not supported in memory" }))
  }

  get multipartStream(): HttpServerRequest.HttpServerRequest["multipartStream"] {
    return Stream.fail(new Multipart.MultipartError({ reason: "InternalError", cause: "not supported in memory" }))
  }

  get upgrade(): HttpServerRequest.HttpServerRequest["upgrade"] {
    return Effect.fail(
      new HttpServerError.RequestError({ request: this, reason: "Decode", description: "not an upgradeable request" })
    )
  }

  modify(options: {
    readonly url?: string
    readonly headers?: Headers.Headers
    readonly remoteAddress?: string
  }): HttpServerRequest.HttpServerRequest {
    return new MemoryServerRequest(
      this.source,
      options.url ?? this.url,
      this.originalUrl,
      this.method,
      options.headers ?? this.headers,
      this.body,
      options.remoteAddress ?? this.address
    )
  }

  toJSON(): unknown {
    return HttpIncomingMessage.inspect(this, {
      _id: "@effect/platform/HttpServerRequest",
      method: this.method,
      url: this.originalUrl
    })
  }
}

/** A client response whose body is bytes in memory or an Effect stream: no promises either. */
class MemoryClientResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  readonly remoteAddress: Option.Option<string> = Option.none()
  private cached: Effect.Effect<Uint8Array, HttpClientError.ResponseError> | undefined

  private readonly body: Uint8Array | Stream.Stream<Uint8Array, unknown>

  constructor(
    readonly request: HttpClientRequest.HttpClientRequest,
    readonly status: number,
    readonly headers: Headers.Headers,
    body: Uint8Array | Stream.Stream<Uint8Array, unknown>,
    signal: AbortSignal | undefined
  ) {
    super()
    // A streamed body is read after the answer, while the request can still be aborted: it ends there.
    this.body = signal === undefined || body instanceof Uint8Array
      ? body
      : Stream.interruptWhen(body, whenAborted(signal))
  }

  private decodeError(cause: unknown) {
    return new HttpClientError.ResponseError({ request: this.request, response: this, reason: "Decode", cause })
  }

  private get bytes(): Effect.Effect<Uint8Array, HttpClientError.ResponseError> {
    const body = this.body
    if (body instanceof Uint8Array) return Effect.succeed(body)
    this.cached ??= Effect.runSync(
      Effect.cached(Effect.mapError(Effect.map(Stream.runCollect(body), concat), (cause) => this.decodeError(cause)))
    )
    return this.cached
  }

  get cookies(): Cookies.Cookies {
    const setCookie = this.headers["set-cookie"]
    return setCookie === undefined ? Cookies.empty : Cookies.fromSetCookie(setCookie)
  }

  get text(): Effect.Effect<string, HttpClientError.ResponseError> {
    return Effect.map(this.bytes, (bytes) => decoder.decode(bytes))
  }

  get json(): Effect.Effect<unknown, HttpClientError.ResponseError> {
    return Effect.flatMap(
      this.text,
      (text) =>
        Effect.try({ try: () => (text === "" ? null : JSON.parse(text)), catch: (cause) => this.decodeError(cause) })
    )
  }

  get arrayBuffer(): Effect.Effect<ArrayBuffer, HttpClientError.ResponseError> {
    return Effect.map(this.bytes, toArrayBuffer)
  }

  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (text) =>
      Effect.try({
        try: () => UrlParams.fromInput(new URLSearchParams(text)),
        catch: (cause) => this.decodeError(cause)
      }))
  }

  get formData(): Effect.Effect<FormData, HttpClientError.ResponseError> {
    return Effect.fail(this.decodeError(new Error("in-memory sandbox responses carry no form data")))
  }

  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    const body = this.body
    // A copy: emulators answer constant bodies from bytes encoded once, which a reader must not change.
    return body instanceof Uint8Array
      ? Stream.sync(() => body.slice())
      : Stream.mapError(body, (cause) => this.decodeError(cause))
  }

  toJSON(): unknown {
    return HttpIncomingMessage.inspect(this, {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status
    })
  }
}

const requestBody = (
  request: HttpClientRequest.HttpClientRequest
): Effect.Effect<
  { readonly bytes: Uint8Array; readonly contentType?: string | undefined },
  HttpClientError.RequestError
> => {
  const encodeError = (cause: unknown) => new HttpClientError.RequestError({ request, reason: "Encode", cause })
  const body = request.body
  switch (body._tag) {
    case "Empty":
      return Effect.succeed({ bytes: empty })
    case "Uint8Array":
      return Effect.succeed({ bytes: body.body, contentType: body.contentType })
    case "Raw": {
      const raw = body.body
      if (typeof raw === "string") return Effect.succeed({ bytes: encoder.encode(raw), contentType: body.contentType })
      if (raw instanceof Uint8Array) return Effect.succeed({ bytes: raw, contentType: body.contentType })
      return Effect.fail(
        encodeError(new TypeError("the in-memory sandbox client takes string or Uint8Array raw bodies"))
      )
    }
    case "Stream":
      return Effect.mapBoth(Stream.runCollect(body.stream), {
        onFailure: encodeError,
        onSuccess: (chunks) => ({ bytes: concat(chunks), contentType: body.contentType })
      })
    case "FormData":
      // The multipart encoding comes from the platform's own Response; the only promise on this path.
      return Effect.tryPromise({
        try: async () => {
          const encoded = new Response(body.formData)
          return {
            bytes: new Uint8Array(await encoded.arrayBuffer()),
            contentType: encoded.headers.get("content-type") ?? undefined
          }
        },
        catch: encodeError
      })
  }
}

const responseOf = (
  request: HttpClientRequest.HttpClientRequest,
  response: HttpServerResponse.HttpServerResponse,
  signal: AbortSignal | undefined
): Effect.Effect<HttpClientResponse.HttpClientResponse> => {
  let headers = response.headers
  if (!Cookies.isEmpty(response.cookies)) {
    headers = Headers.set(headers, "set-cookie", Cookies.toSetCookieHeaders(response.cookies).join(", "))
  }
  const body = response.body
  switch (body._tag) {
    case "Empty":
      return Effect.succeed(new MemoryClientResponse(request, response.status, headers, empty, signal))
    case "Uint8Array":
      return Effect.succeed(new MemoryClientResponse(request, response.status, headers, body.body, signal))
    case "Raw":
      if (typeof body.body === "string") {
        return Effect.succeed(
          new MemoryClientResponse(request, response.status, headers, encoder.encode(body.body), signal)
        )
      }
      if (body.body instanceof Uint8Array) {
        return Effect.succeed(new MemoryClientResponse(request, response.status, headers, body.body, signal))
      }
      break
    case "Stream":
      return Effect.succeed(new MemoryClientResponse(request, response.status, headers, body.stream, signal))
  }
  // Anything else goes through a web Response.
  return Effect.map(
    Effect.runtime<never>(),
    (runtime) => HttpClientResponse.fromWeb(request, HttpServerResponse.toWeb(response, { runtime }))
  )
}

/**
 * What answers a server request handed to it, without a context to read it from. Every wait of it
 * honours `signal` (made with `abort.ts`'s `sleep` or `hang`), which is the client's abort signal when there is one.
 */
export type Handle<E> = (
  request: HttpServerRequest.HttpServerRequest,
  signal: AbortSignal | undefined
) => Effect.Effect<HttpServerResponse.HttpServerResponse, E | Aborted>

/**
 * Apps that can answer a server request handed to them: the emulators'. Providing the request as a
 * service costs an `Effect.locally` per request, and their waits end when the request is aborted, so
 * they need no fiber racing the abort signal either.
 */
const direct = new WeakMap<HttpApp.Default<any>, Handle<any>>()

/** An app from a function of the request, which `dispatch` calls directly. */
export const app = <E>(handle: Handle<E>): HttpApp.Default<E> => {
  const app = Effect.flatMap(
    HttpServerRequest.HttpServerRequest,
    (request) => handle(request, undefined) as Effect.Effect<HttpServerResponse.HttpServerResponse, E>
  )
  direct.set(app, handle)
  return app
}

const removeHost = (url: URL): string => `${url.pathname}${url.search}`

/**
 * Runs `app` for `request` on the calling fiber, without sockets or promises (bar FormData request bodies).
 * Once `signal` aborts, the request fails with a transport error, as over a socket: an emulator's app
 * stops at its next wait (see `abort.ts`), any other app runs in a fiber of its own that the abort interrupts.
 */
export const dispatch = (
  app: HttpApp.Default<Faults.ConnectionDropped>,
  request: HttpClientRequest.HttpClientRequest,
  url: URL,
  remoteAddress: string,
  signal: AbortSignal | undefined
): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError> => {
  const body = request.body
  const inMemory = body._tag === "Empty" || body._tag === "Uint8Array" ||
    (body._tag === "Raw" && (typeof body.body === "string" || body.body instanceof Uint8Array))
  return inMemory
    ? answer(app, request, url, remoteAddress, requestBodySync(body), signal)
    : Effect.flatMap(requestBody(request), (read) => answer(app, request, url, remoteAddress, read, signal))
}

const requestBodySync = (
  body: HttpClientRequest.HttpClientRequest["body"]
): { readonly bytes: Uint8Array; readonly contentType?: string | undefined } => {
  switch (body._tag) {
    case "Uint8Array":
      return { bytes: body.body, contentType: body.contentType }
    case "Raw":
      return {
        bytes: typeof body.body === "string" ? encoder.encode(body.body) : body.body as Uint8Array,
        contentType: body.contentType
      }
    default:
      return { bytes: empty }
  }
}

const answer = (
  app: HttpApp.Default<Faults.ConnectionDropped>,
  request: HttpClientRequest.HttpClientRequest,
  url: URL,
  remoteAddress: string,
  body: { readonly bytes: Uint8Array; readonly contentType?: string | undefined },
  signal: AbortSignal | undefined
): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError> => {
  if (signal?.aborted) return Effect.fail(abortError(request, signal))
  let headers = request.headers
  if (body.contentType !== undefined && headers["content-type"] === undefined) {
    headers = Headers.set(headers, "content-type", body.contentType)
  }
  if (headers.host === undefined) headers = Headers.set(headers, "host", url.host)
  const path = removeHost(url)
  const serverRequest = new MemoryServerRequest(
    request,
    path,
    path,
    request.method,
    headers,
    body.bytes,
    remoteAddress
  )
  const handle = direct.get(app)
  let response: Effect.Effect<HttpServerResponse.HttpServerResponse, Faults.ConnectionDropped | Aborted>
  if (handle !== undefined) {
    response = Effect.suspend(() => handle(serverRequest, signal))
  } else {
    response = Effect.provideService(app, HttpServerRequest.HttpServerRequest, serverRequest)
    if (signal !== undefined) response = Effect.raceFirst(response, whenAborted(signal))
  }
  // One handler for all outcomes, rather than a combinator each: an aborted request or a dropped
  // connection is a transport error (whatever else failed alongside), otherwise a defect is a 500, and
  // anything else (an interruption) passes through. An answer that comes once the request is aborted
  // is not read either.
  return Effect.matchCauseEffect(response, {
    onFailure: (cause) => {
      const failure = Cause.failureOption(cause)
      if (failure._tag === "Some") {
        if (failure.value._tag === "Aborted") return Effect.fail(abortError(request, signal!))
        if (failure.value._tag === "ConnectionDropped") {
          return new HttpClientError.RequestError({
            request,
            reason: "Transport",
            cause: failure.value,
            description: failure.value.message
          })
        }
      }
      return Option.isSome(Cause.dieOption(cause))
        ? responseOf(request, HttpServerResponse.text("Internal Server Error", { status: 500 }), signal)
        : Effect.failCause(cause as Cause.Cause<never>)
    },
    onSuccess: (response) =>
      signal?.aborted ? Effect.fail(abortError(request, signal)) : responseOf(request, response, signal)
  })
}

const abortError = (request: HttpClientRequest.HttpClientRequest, signal: AbortSignal) =>
  new HttpClientError.RequestError({
    request,
    reason: "Transport",
    cause: signal.reason,
    description: "the request was aborted"
  })

const maxCachedUrls = 1024

/** The platform's registry of abort controllers by request (`HttpClient.withScope`'s), shared per copy of it. */
const scopedRequests = globalValue(
  "@effect/platform/HttpClient/scopedRequests",
  () => new WeakMap<HttpClientRequest.HttpClientRequest, AbortController>()
)

/**
 * An `HttpClient` over a function that answers in memory, which must honour the abort signal it is given
 * (end the request with a transport error once it aborts): the client is declared `Transport.abortable`
 * (and in memory), so Tollgate's clients hand it their deadlines rather than bounding each attempt with a
 * fiber, and register no unread response to be aborted when collected.
 *
 * A request the platform would trace gets the platform client's span, as on a real transport. One it
 * would not (the tracer off, or `HttpClient.withTracerDisabledWhen`, as Tollgate's own clients do) is
 * answered directly: it skips the abort controller and the finalization-registry entry the platform makes
 * for every response, which a long simulation would pile up faster than the registry frees them, and is
 * aborted only through a controller registered for it (`HttpClient.withScope`'s, or Tollgate's own);
 * interrupting it stops it as ever. Untraced, each distinct URL string is parsed once; `answer` must
 * treat the `URL` it is given as read-only.
 */
export const client = (
  answer: (
    request: HttpClientRequest.HttpClientRequest,
    url: URL,
    signal: AbortSignal | undefined
  ) => Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>
): HttpClient.HttpClient => {
  const traced = HttpClient.make(answer)
  const urls = new Map<string, URL>()
  const untraced = (
    request: HttpClientRequest.HttpClientRequest
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError> => {
    // With query parameters or a fragment the platform builds a new URL; so does a page's location.
    const plain = request.urlParams.length === 0 && request.hash._tag === "None" && !("location" in globalThis)
    let url = plain ? urls.get(request.url) : undefined
    if (url === undefined) {
      const made = UrlParams.makeUrl(request.url, request.urlParams, request.hash)
      if (made._tag === "Left") {
        return Effect.fail(new HttpClientError.RequestError({ request, reason: "InvalidUrl", cause: made.left }))
      }
      url = made.right
      if (plain) {
        if (urls.size >= maxCachedUrls) urls.clear()
        urls.set(request.url, url)
      }
    }
    return answer(request, url, scopedRequests.get(request)?.signal)
  }
  return Transport.abortable(
    HttpClient.makeWith(
      (effect: Effect.Effect<HttpClientRequest.HttpClientRequest>) =>
        Effect.flatMap(
          effect,
          (request) =>
            Effect.withFiberRuntime((fiber) =>
              fiber.getFiberRef(FiberRef.currentTracerEnabled) &&
                !fiber.getFiberRef(HttpClient.currentTracerDisabledWhen)(request)
                ? traced.execute(request)
                : untraced(request)
            )
        ),
      Effect.succeed as HttpClient.HttpClient.Preprocess<never, never>
    ),
    { inMemory: true }
  )
}
