/**
 * What the client hands back: responses and errors that name the request the caller built, never the one
 * sent with the bearer token. Platform responses and errors print their request's headers, and outside a
 * fiber nothing redacts them; the platform's own response wrapper prints its original's request whatever
 * you override. So a response is a thin view over the original whose `request` and printed form are the
 * caller's, and an error is re-made with the caller's request.
 *
 * The view also does for the request what the platform's wrapper does when the client owns the request's
 * `AbortController` (see `internal/send.ts`): a body read that is interrupted aborts the request, and a
 * response dropped unread is aborted when it is collected, so it does not hold its connection.
 */
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import { Effect, Inspectable, Stream } from "effect"

const abandoned = new FinalizationRegistry<AbortController>((controller) => controller.abort())

export class AnsweredResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  // Private fields: no printer, `JSON.stringify` or `inspect` (even with `showHidden`) walks into the
  // original and its request.
  readonly #original: HttpClientResponse.HttpClientResponse
  readonly #controller: AbortController | undefined

  constructor(
    original: HttpClientResponse.HttpClientResponse,
    readonly request: HttpClientRequest.HttpClientRequest,
    controller?: AbortController | undefined
  ) {
    super()
    this.#original = original
    this.#controller = controller
    if (controller !== undefined) abandoned.register(this, controller, this)
  }
  get status() {
    return this.#original.status
  }
  get headers() {
    return this.#original.headers
  }
  get cookies() {
    return this.#original.cookies
  }
  get remoteAddress() {
    return this.#original.remoteAddress
  }
  get formData() {
    return this.read(this.#original.formData)
  }
  get json() {
    return this.read(this.#original.json)
  }
  get text() {
    return this.read(this.#original.text)
  }
  get urlParamsBody() {
    return this.read(this.#original.urlParamsBody)
  }
  get arrayBuffer() {
    return this.read(this.#original.arrayBuffer)
  }
  get stream() {
    const stream = Stream.mapError(this.#original.stream, (error) => this.answered(error))
    const controller = this.#controller
    if (controller === undefined) return stream
    return Stream.suspend(() => {
      abandoned.unregister(this)
      return Stream.ensuring(stream, Effect.sync(() => controller.abort()))
    })
  }
  private read<A>(body: Effect.Effect<A, HttpClientError.ResponseError>) {
    const read = Effect.mapError(body, (error) => this.answered(error))
    const controller = this.#controller
    if (controller === undefined) return read
    return Effect.suspend(() => {
      abandoned.unregister(this)
      return Effect.onInterrupt(read, () => Effect.sync(() => controller.abort()))
    })
  }
  // A body that fails to arrive (a connection dropped mid-body) fails with the platform's error, which
  // holds the request as sent, bearer token included, and prints it unredacted outside a fiber: it is
  // re-made to name this response and the caller's request instead.
  private answered(error: HttpClientError.ResponseError): HttpClientError.ResponseError {
    return new HttpClientError.ResponseError({
      request: this.request,
      response: this,
      reason: error.reason,
      cause: error.cause,
      ...(error.description === undefined ? {} : { description: error.description })
    })
  }
  toJSON(): unknown {
    return HttpIncomingMessage.inspect(this, {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status
    })
  }
}

/** `error` as the caller's request would have failed: naming `request`, never the one sent. */
export const withoutCredentials = <E extends { readonly _tag: string }>(
  error: E,
  request: HttpClientRequest.HttpClientRequest
): E => {
  const platform = error as unknown as HttpClientError.HttpClientError
  switch (platform._tag) {
    case "RequestError":
      return new HttpClientError.RequestError({
        request,
        reason: platform.reason,
        cause: platform.cause,
        ...(platform.description === undefined ? {} : { description: platform.description })
      }) as unknown as E
    case "ResponseError":
      return new HttpClientError.ResponseError({
        request,
        response: platform.response instanceof AnsweredResponse
          ? platform.response
          : new AnsweredResponse(platform.response, request),
        reason: platform.reason,
        cause: platform.cause,
        ...(platform.description === undefined ? {} : { description: platform.description })
      }) as unknown as E
    default:
      return error
  }
}
