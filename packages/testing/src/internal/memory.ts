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
import { Cause, Chunk, Effect, FiberRef, Inspectable, Option, Stream } from "effect"
import type * as Faults from "../Faults.js"

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

  constructor(
    readonly request: HttpClientRequest.HttpClientRequest,
    readonly status: number,
    readonly headers: Headers.Headers,
    private readonly body: Uint8Array | Stream.Stream<Uint8Array, unknown>
  ) {
    super()
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
  response: HttpServerResponse.HttpServerResponse
): Effect.Effect<HttpClientResponse.HttpClientResponse> => {
  let headers = response.headers
  if (!Cookies.isEmpty(response.cookies)) {
    headers = Headers.set(headers, "set-cookie", Cookies.toSetCookieHeaders(response.cookies).join(", "))
  }
  const body = response.body
  switch (body._tag) {
    case "Empty":
      return Effect.succeed(new MemoryClientResponse(request, response.status, headers, empty))
    case "Uint8Array":
      return Effect.succeed(new MemoryClientResponse(request, response.status, headers, body.body))
    case "Raw":
      if (typeof body.body === "string") {
        return Effect.succeed(new MemoryClientResponse(request, response.status, headers, encoder.encode(body.body)))
      }
      if (body.body instanceof Uint8Array) {
        return Effect.succeed(new MemoryClientResponse(request, response.status, headers, body.body))
      }
      break
    case "Stream":
      return Effect.succeed(new MemoryClientResponse(request, response.status, headers, body.stream))
  }
  // Anything else goes through a web Response.
  return Effect.map(
    Effect.runtime<never>(),
    (runtime) => HttpClientResponse.fromWeb(request, HttpServerResponse.toWeb(response, { runtime }))
  )
}

/**
 * Apps that can answer a server request handed to them, without a context to read it from: the
 * emulators'. Providing the request as a service costs an `Effect.locally` per request.
 */
const direct = new WeakMap<
  HttpApp.Default<any>,
  (request: HttpServerRequest.HttpServerRequest) => Effect.Effect<HttpServerResponse.HttpServerResponse, any>
>()

/** An app from a function of the request, which `dispatch` calls directly. */
export const app = <E>(
  handle: (request: HttpServerRequest.HttpServerRequest) => Effect.Effect<HttpServerResponse.HttpServerResponse, E>
): HttpApp.Default<E> => {
  const app = Effect.flatMap(HttpServerRequest.HttpServerRequest, handle)
  direct.set(app, handle)
  return app
}

const removeHost = (url: URL): string => `${url.pathname}${url.search}`

/**
 * Runs `app` for `request` on the calling fiber, without sockets or promises (bar FormData request bodies).
 */
export const dispatch = (
  app: HttpApp.Default<Faults.ConnectionDropped>,
  request: HttpClientRequest.HttpClientRequest,
  url: URL,
  remoteAddress: string
): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError> => {
  const body = request.body
  const inMemory = body._tag === "Empty" || body._tag === "Uint8Array" ||
    (body._tag === "Raw" && (typeof body.body === "string" || body.body instanceof Uint8Array))
  return inMemory
    ? answer(app, request, url, remoteAddress, requestBodySync(body))
    : Effect.flatMap(requestBody(request), (read) => answer(app, request, url, remoteAddress, read))
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
  body: { readonly bytes: Uint8Array; readonly contentType?: string | undefined }
): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError> => {
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
  const response: Effect.Effect<HttpServerResponse.HttpServerResponse, Faults.ConnectionDropped> = handle === undefined
    ? Effect.provideService(app, HttpServerRequest.HttpServerRequest, serverRequest)
    : Effect.suspend(() => handle(serverRequest))
  // One handler for all outcomes, rather than a combinator each: a dropped connection is a transport error
  // (whatever else failed alongside), otherwise a defect is a 500, and anything else (an interruption)
  // passes through.
  return Effect.matchCauseEffect(response, {
    onFailure: (cause) => {
      const failure = Cause.failureOption(cause)
      if (failure._tag === "Some" && failure.value._tag === "ConnectionDropped") {
        return new HttpClientError.RequestError({
          request,
          reason: "Transport",
          cause: failure.value,
          description: failure.value.message
        })
      }
      return Option.isSome(Cause.dieOption(cause))
        ? responseOf(request, HttpServerResponse.text("Internal Server Error", { status: 500 }))
        : Effect.failCause(cause as Cause.Cause<never>)
    },
    onSuccess: (response) => responseOf(request, response)
  })
}

const maxCachedUrls = 1024

/**
 * An `HttpClient` over a function that answers in memory. A request the platform would trace gets the
 * platform client's span, as on a real transport. One it would not (the tracer off, or
 * `HttpClient.withTracerDisabledWhen`, as Tollgate's own clients do) is answered directly: there is no
 * connection to abort, so it skips the abort controller and the finalization-registry entry the platform
 * makes for every response, which a long simulation would pile up faster than the registry frees them.
 * Untraced, each distinct URL string is parsed once; `answer` must treat the `URL` it is given as read-only.
 */
export const client = (
  answer: (
    request: HttpClientRequest.HttpClientRequest,
    url: URL
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
    return answer(request, url)
  }
  return HttpClient.makeWith(
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
  )
}
