import * as Cookies from "@effect/platform/Cookies"
import * as Headers from "@effect/platform/Headers"
import type * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import * as UrlParams from "@effect/platform/UrlParams"
import { Chunk, Context, Effect, FiberRef, Inspectable, Option, Redacted, Stream } from "effect"
import type { Fiber, Tracer } from "effect"
import { globalValue } from "effect/GlobalValue"
import type { IncomingHttpHeaders } from "node:http"
import * as Undici from "undici"
import type { Dispatcher } from "undici"
import * as StreamBody from "./streamBody.js"

/** @internal */
export const requestOptionsKey = "@tollgate/undici/UndiciHttpClient/RequestOptions"

/** @internal */
export type RequestOptions = Omit<Dispatcher.DispatchOptions, "origin" | "path" | "method" | "headers" | "body">

/** @internal */
export interface ClientOptions {
  readonly highWaterMark: number
  readonly requestOptions: RequestOptions | undefined
}

type Body = Exclude<Dispatcher.DispatchOptions["body"], undefined>

/** @internal */
export const make = (dispatcher: Dispatcher, options: ClientOptions): HttpClient.HttpClient =>
  HttpClient.makeWith(
    (effect) =>
      Effect.flatMap(effect, (request) =>
        Effect.withFiberRuntime<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>((fiber) => {
          const url = UrlParams.makeUrl(request.url, request.urlParams, request.hash)
          if (url._tag === "Left") {
            return Effect.fail(new HttpClientError.RequestError({ request, reason: "InvalidUrl", cause: url.left }))
          }
          const scoped = scopedRequests.get(request)?.signal
          const traced = fiber.getFiberRef(FiberRef.currentTracerEnabled) &&
            !fiber.getFiberRef(HttpClient.currentTracerDisabledWhen)(request)
          return traced
            ? sendTraced(dispatcher, options, request, url.right, scoped, fiber)
            : send(dispatcher, options, request, url.right, scoped, fiber, undefined)
        })),
    Effect.succeed as HttpClient.HttpClient.Preprocess<never, never>
  )

/**
 * Where `HttpClient.withScope` keeps the controller that aborts a request when its scope closes: the
 * platform's own (a `globalValue`, so one per `effect` instance), read so that `withScope` works here too.
 */
const scopedRequests = globalValue(
  "@effect/platform/HttpClient/scopedRequests",
  () => new WeakMap<HttpClientRequest.HttpClientRequest, AbortController>()
)

/**
 * Aborts what an abandoned response still holds: registered only for a response whose body is in flight
 * when it is handed over (a small body has ended by then), as the platform client does for every response.
 */
const abandoned = new FinalizationRegistry<Exchange>((exchange) => exchange.abort())

/**
 * The span, its attributes and the trace context headers exactly as `HttpClient.make` of
 * `@effect/platform` 0.97 sets them. Copied rather than reached through `HttpClient.make`, whose per
 * request `AbortController`, finalization registration and response wrapper cost as much as undici
 * itself; interruption and abandoned responses are handled by `Exchange` instead.
 */
const sendTraced = (
  dispatcher: Dispatcher,
  options: ClientOptions,
  request: HttpClientRequest.HttpClientRequest,
  url: URL,
  scoped: AbortSignal | undefined,
  fiber: Fiber.RuntimeFiber<unknown, unknown>
): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError> => {
  const nameGenerator = Context.get(fiber.currentContext, HttpClient.SpanNameGenerator)
  return Effect.useSpan(nameGenerator(request), { kind: "client", captureStackTrace: false }, (span) => {
    span.attribute("http.request.method", request.method)
    span.attribute("server.address", url.origin)
    if (url.port !== "") span.attribute("server.port", +url.port)
    span.attribute("url.full", url.toString())
    span.attribute("url.path", url.pathname)
    span.attribute("url.scheme", url.protocol.slice(0, -1))
    const query = url.search.slice(1)
    if (query !== "") span.attribute("url.query", query)
    const redactedNames = fiber.getFiberRef(Headers.currentRedactedNames)
    headerAttributes(span, "http.request.header.", request.headers, redactedNames)
    const sent = fiber.getFiberRef(HttpClient.currentTracerPropagation)
      ? HttpClientRequest.setHeaders(request, HttpTraceContext.toHeaders(span))
      : request
    const sending = send(dispatcher, options, sent, url, scoped, fiber, (response) => {
      span.attribute("http.response.status_code", response.status)
      headerAttributes(span, "http.response.header.", response.headers, redactedNames)
    })
    // Only a streamed body runs the caller's code (its stream) while sending: it sees the span as parent.
    return sent.body._tag === "Stream" ? Effect.withParentSpan(sending, span) : sending
  })
}

/**
 * One attribute per header, a redacted one as `<redacted>`: what the platform's client records from
 * `Headers.redact`, without building the redacted copy of the headers.
 */
const headerAttributes = (
  span: Tracer.Span,
  prefix: string,
  headers: Headers.Headers,
  redactedNames: ReadonlyArray<string | RegExp>
): void => {
  let redacted: Set<string> | undefined
  for (const key of redactedNames) {
    if (typeof key === "string") {
      const name = key.toLowerCase()
      if (name in headers) (redacted ??= new Set()).add(name)
    } else {
      for (const name in headers) if (key.test(name)) (redacted ??= new Set()).add(name)
    }
  }
  for (const name in headers) {
    span.attribute(prefix + name, redacted !== undefined && redacted.has(name) ? redactedText : headers[name])
  }
}

const redactedText = String(Redacted.make(""))

const send = (
  dispatcher: Dispatcher,
  options: ClientOptions,
  request: HttpClientRequest.HttpClientRequest,
  url: URL,
  scoped: AbortSignal | undefined,
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  onResponse: ((response: HttpClientResponse.HttpClientResponse) => void) | undefined
): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError> => {
  const dispatchOptions: Dispatcher.DispatchOptions = {
    origin: url.origin,
    // The fragment is the client's own: it never goes on the wire.
    path: url.pathname + url.search,
    method: request.method as Dispatcher.HttpMethod,
    headers: request.headers,
    body: null,
    // Timeouts are the caller's (Effect.timeout and friends), as in the platform's undici client.
    headersTimeout: 0,
    bodyTimeout: 0
  }
  if (options.requestOptions !== undefined) withOptions(dispatchOptions, options.requestOptions)
  const perRequest: RequestOptions | undefined = fiber.currentContext.unsafeMap.get(requestOptionsKey)
  if (perRequest !== undefined) withOptions(dispatchOptions, perRequest)
  const exchange = new Exchange(request, options.highWaterMark, onResponse)
  const body = request.body
  if (body._tag !== "Stream") {
    dispatchOptions.body = plainBody(body)
    return exchange.send(dispatcher, dispatchOptions, scoped)
  }
  return Effect.flatMap(Effect.runtime<never>(), (runtime) => {
    dispatchOptions.body = StreamBody.toReadable(runtime, body.stream)
    return exchange.send(dispatcher, dispatchOptions, scoped)
  })
}

/** The caller's options, but never over what the request itself says. */
const withOptions = (dispatchOptions: Dispatcher.DispatchOptions, options: RequestOptions): void => {
  const { headers, method, origin, path } = dispatchOptions
  Object.assign(dispatchOptions, options, { headers, method, origin, path })
}

const plainBody = (body: Exclude<HttpBody.HttpBody, HttpBody.Stream>): Body | null => {
  switch (body._tag) {
    case "Empty":
      return null
    case "Uint8Array":
      return body.body
    case "Raw":
      return body.body as Body
    case "FormData":
      return formData(body.formData)
  }
}

/**
 * undici sends only its own `FormData`: Node's global one (from the undici bundled with Node) fails its
 * brand check, and the request with it. The entries are copied into this undici's, which then writes
 * the multipart body with its length.
 */
const formData = (data: FormData): Body => {
  if (data instanceof Undici.FormData) return data as unknown as Body
  const copy = new Undici.FormData()
  for (const [name, value] of data.entries()) {
    if (typeof value === "string") copy.append(name, value)
    else copy.append(name, value, value.name)
  }
  return copy as unknown as Body
}

const WAITING = 0
const OPEN = 1
const DONE = 2
const FAILED = 3

type Resume = (effect: Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError>) => void

/**
 * One request and its response body, as undici's dispatch handler. The body is buffered up to the high
 * water mark and undici is paused beyond it until a reader asks for more, so an unread response holds at
 * most that much memory (and its connection, until it is read, its read is interrupted, or it is
 * abandoned and collected). A small response has usually ended by the time the caller's fiber resumes,
 * and is then read without waiting.
 *
 * Nothing here refers to the `UndiciResponse`, so an abandoned response can be collected (and its
 * request aborted) while undici still holds this handler.
 */
class Exchange implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined = undefined
  private aborted = false
  private resume: Resume | undefined = undefined
  state = WAITING
  /** Received and not yet handed to a stream reader; the entire body once a reader asked for all of it. */
  chunks: Array<Buffer> = []
  size = 0
  error: Error | undefined = undefined
  /** A reader wants the entire body: never pause. */
  whole = false
  /** A reader took chunks out of `chunks`. */
  streamed = false
  private waiters: Array<() => void> | undefined = undefined
  private signal: AbortSignal | undefined = undefined
  private registered = false

  constructor(
    readonly request: HttpClientRequest.HttpClientRequest,
    readonly highWaterMark: number,
    private onResponse: ((response: HttpClientResponse.HttpClientResponse) => void) | undefined
  ) {}

  /** Sends the request through `dispatcher`; interrupting the fiber that waits for the response aborts it. */
  send(
    dispatcher: Dispatcher,
    options: Dispatcher.DispatchOptions,
    scoped: AbortSignal | undefined
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError> {
    return Effect.async((resume) => {
      this.resume = resume
      if (scoped !== undefined) this.watch(scoped)
      try {
        dispatcher.dispatch(options, this)
      } catch (cause) {
        this.onResponseError(undefined, cause as Error)
      }
      return Effect.sync(() => this.abort())
    })
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.aborted) controller.abort(new Undici.errors.RequestAbortedError())
    else this.controller = controller
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // 1xx informational responses precede the final one.
    if (statusCode < 200 || this.state !== WAITING) return
    this.controller = controller
    this.state = OPEN
    const resume = this.resume!
    this.resume = undefined
    resume(Effect.sync(() => {
      const response = new UndiciResponse(this.request, this, statusCode, headers)
      // By now a small body has usually ended: only a body still in flight is worth aborting when abandoned.
      if (this.state === OPEN) {
        abandoned.register(response, this, this)
        this.registered = true
      }
      // Let go of the span: it keeps the response once it ends, and the registry keeps this exchange.
      const onResponse = this.onResponse
      this.onResponse = undefined
      onResponse?.(response)
      return response
    }))
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(chunk)
    this.size += chunk.length
    if (this.size >= this.highWaterMark && !this.whole) controller.pause()
    this.wake()
  }

  onResponseEnd(): void {
    if (this.state !== OPEN) return
    this.state = DONE
    this.settle()
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    if (this.state === WAITING) {
      this.state = FAILED
      const resume = this.resume
      this.resume = undefined
      this.settle()
      resume?.(
        Effect.fail(new HttpClientError.RequestError({ request: this.request, reason: "Transport", cause: error }))
      )
    } else if (this.state === OPEN) {
      this.state = FAILED
      this.error = error
      this.settle()
    }
  }

  /** Aborts the request (at once, or when undici starts it), unless its response has ended. */
  abort(): void {
    if (this.aborted || this.state === DONE || this.state === FAILED) return
    this.aborted = true
    this.controller?.abort(new Undici.errors.RequestAbortedError())
  }

  /** Aborts the request when `signal` fires (`HttpClient.withScope`'s scope closing). */
  watch(signal: AbortSignal): void {
    if (signal.aborted) return this.abort()
    this.signal = signal
    signal.addEventListener("abort", this, { once: true })
  }

  /** The abort listener (an object with `handleEvent`, so an exchange allocates no closure for it). */
  handleEvent(): void {
    this.abort()
  }

  /** Lets undici deliver more of the body, if it was paused. */
  demand(): void {
    if (this.controller !== undefined && this.controller.paused) this.controller.resume()
  }

  /**
   * Waits until the body has ended or failed, or (`untilData`) until more of it has arrived. A reader
   * interrupted while waiting aborts the request, as the platform client's response does.
   */
  awaitBody(untilData: boolean): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      if (this.state !== OPEN || (untilData && this.chunks.length > 0)) return resume(Effect.void)
      const waiter = () => {
        if (this.state !== OPEN || untilData) resume(Effect.void)
        else (this.waiters ??= []).push(waiter)
      }
      ;(this.waiters ??= []).push(waiter)
      this.demand()
      return Effect.sync(() => this.abort())
    })
  }

  private settle(): void {
    this.controller = undefined
    if (this.signal !== undefined) {
      this.signal.removeEventListener("abort", this)
      this.signal = undefined
    }
    if (this.registered) {
      abandoned.unregister(this)
      this.registered = false
    }
    this.wake()
  }

  private wake(): void {
    const waiters = this.waiters
    if (waiters === undefined) return
    this.waiters = undefined
    for (const waiter of waiters) waiter()
  }
}

const utf8Bom = (bytes: Uint8Array): boolean =>
  bytes.length > 2 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf

const chunksOf = (response: UndiciResponse): ReadonlyArray<Buffer> => response.exchange.chunks

const decodeText = (response: UndiciResponse): string => {
  if (response.cachedText !== undefined) return response.cachedText
  const { chunks, size } = response.exchange
  const buffer = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)
  return response.cachedText = buffer.toString("utf8", utf8Bom(buffer) ? 3 : 0)
}

const decodeBytes = (response: UndiciResponse): Uint8Array<ArrayBuffer> => {
  if (response.cachedBytes !== undefined) return response.cachedBytes
  // A copy even of a single chunk (a view into a larger buffer): the ArrayBuffer handed out is the body only.
  const { chunks, size } = response.exchange
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.length
  }
  return response.cachedBytes = bytes
}

/** The next chunks of a streamed body: what has arrived, or (waiting for it) what arrives next. */
const pull = (
  response: UndiciResponse
): Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<HttpClientError.ResponseError>> => {
  const next: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<HttpClientError.ResponseError>> = Effect.suspend(
    () => {
      const exchange = response.exchange
      if (exchange.chunks.length > 0) {
        const chunks = exchange.chunks
        exchange.chunks = []
        exchange.size = 0
        exchange.demand()
        return Effect.succeed(Chunk.unsafeFromArray<Uint8Array>(chunks))
      }
      if (exchange.state === DONE) return Effect.fail(Option.none())
      if (exchange.state === FAILED) return Effect.fail(Option.some(response.decodeError(exchange.error)))
      return Effect.flatMap(exchange.awaitBody(true), () => next)
    }
  )
  return next
}

class UndiciResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  // On the prototype (below), not set per response.
  declare readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId
  declare readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId

  constructor(
    readonly request: HttpClientRequest.HttpClientRequest,
    /** @internal */
    readonly exchange: Exchange,
    readonly status: number,
    private readonly rawHeaders: IncomingHttpHeaders
  ) {
    super()
  }

  private cachedHeaders: Headers.Headers | undefined = undefined
  get headers(): Headers.Headers {
    return this.cachedHeaders ??= Headers.fromInput(this.rawHeaders)
  }

  private cachedCookies: Cookies.Cookies | undefined = undefined
  get cookies(): Cookies.Cookies {
    if (this.cachedCookies !== undefined) return this.cachedCookies
    const header = this.rawHeaders["set-cookie"]
    return this.cachedCookies = header === undefined
      ? Cookies.empty
      : Cookies.fromSetCookie(Array.isArray(header) ? header : [header])
  }

  get remoteAddress(): Option.Option<string> {
    return Option.none()
  }

  /** @internal */
  decodeError(cause: unknown, description?: string): HttpClientError.ResponseError {
    return new HttpClientError.ResponseError({
      request: this.request,
      response: this,
      reason: "Decode",
      cause,
      ...(description === undefined ? {} : { description })
    })
  }

  /**
   * The entire body, read once and kept, decoded by `decode`. Most bodies have ended by the time the
   * caller asks (see `Exchange`): those are decoded at once.
   */
  private whole<A>(decode: (response: UndiciResponse) => A): Effect.Effect<A, HttpClientError.ResponseError> {
    const exchange = this.exchange
    if (exchange.state === DONE && !exchange.streamed) return Effect.succeed(decode(this))
    return Effect.suspend(() => {
      if (exchange.streamed) {
        return Effect.fail(this.decodeError(undefined, "the body was already read as a stream"))
      }
      if (exchange.state === DONE) return Effect.succeed(decode(this))
      if (exchange.state === FAILED) return Effect.fail(this.decodeError(exchange.error))
      exchange.whole = true
      return Effect.flatMap(exchange.awaitBody(false), () => this.whole(decode))
    })
  }

  /** @internal */
  cachedBytes: Uint8Array<ArrayBuffer> | undefined = undefined
  /** @internal */
  cachedText: string | undefined = undefined

  get text(): Effect.Effect<string, HttpClientError.ResponseError> {
    return this.whole(decodeText)
  }

  get json(): Effect.Effect<unknown, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (text) => {
      try {
        return Effect.succeed(text === "" ? null : JSON.parse(text) as unknown)
      } catch (cause) {
        return Effect.fail(this.decodeError(cause))
      }
    })
  }

  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (text) => {
      try {
        return Effect.succeed(UrlParams.fromInput(new URLSearchParams(text)))
      } catch (cause) {
        return Effect.fail(this.decodeError(cause))
      }
    })
  }

  get arrayBuffer(): Effect.Effect<ArrayBuffer, HttpClientError.ResponseError> {
    return Effect.map(this.whole(decodeBytes), (bytes) => bytes.buffer)
  }

  get formData(): Effect.Effect<FormData, HttpClientError.ResponseError> {
    return Effect.flatMap(this.whole(decodeBytes), (bytes) =>
      Effect.tryPromise({
        // The fetch API's parser, for both multipart/form-data and application/x-www-form-urlencoded.
        try: () => new Response(bytes, { headers: { "content-type": this.headers["content-type"] ?? "" } }).formData(),
        catch: (cause) => this.decodeError(cause)
      }))
  }

  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    return Stream.suspend(() => {
      const exchange = this.exchange
      // Read whole already (or being read whole): the stream replays it.
      if (exchange.whole) return Stream.flatMap(this.whole(chunksOf), (chunks) => Stream.fromIterable(chunks))
      if (exchange.streamed) {
        return Stream.fail(this.decodeError(undefined, "the body was already read as a stream"))
      }
      exchange.streamed = true
      // A reader that stops early (or fails, or is interrupted) leaves no request running.
      return Stream.ensuring(Stream.repeatEffectChunkOption(pull(this)), Effect.sync(() => exchange.abort()))
    })
  }

  override toJSON(): unknown {
    const that = { _id: "@effect/platform/HttpClientResponse", request: this.request.toJSON(), status: this.status }
    // `inspect` shows the body by reading it: only one that has ended, so inspecting a response never
    // starts reading one (or stops it from being streamed).
    const exchange = this.exchange
    return exchange.state === DONE && !exchange.streamed
      ? HttpIncomingMessage.inspect(this, that)
      : { ...that, headers: Inspectable.redact(this.headers), remoteAddress: this.remoteAddress.toJSON() }
  }
}

Object.assign(UndiciResponse.prototype, {
  [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId,
  [HttpClientResponse.TypeId]: HttpClientResponse.TypeId
})
