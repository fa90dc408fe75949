/**
 * One attempt on the wire: the bearer token and (when the user opts in) the trace context added to the
 * caller's request, the transport called, the attempt bounded by the client's timeout, and what comes
 * back turned into what the caller may see (`internal/answered.ts`).
 *
 * The bound costs no fiber on a transport that honours its abort signal. The platform hands every
 * transport built with `HttpClient.make` an `AbortSignal`, and takes it from the controller registered
 * for the request (what `HttpClient.withScope` does), so the client registers its own: at the deadline it
 * aborts the request and the transport ends the attempt itself (undici, fetch and node:http all do). A
 * transport is known to honour the signal once it has listened to one; until then (in-memory fakes whose
 * waits are Effects never do) each attempt runs in a child fiber that the deadline interrupts. Either
 * way the attempt has ended before the caller sees `Timeout`.
 *
 * The platform's own span around the attempt is switched off: it would end holding the request as sent,
 * bearer token included, which a tracer printing span exits outside a fiber shows unredacted.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import { Cause, Effect, FiberRef, Function } from "effect"
import type { Fiber, Tracer } from "effect"
import { globalValue } from "effect/GlobalValue"
import type * as AccessToken from "../AccessToken.js"
import * as Bearer from "../Bearer.js"
import * as TollgateError from "../TollgateError.js"
import * as Transport from "../Transport.js"
import { AnsweredResponse, withoutCredentials } from "./answered.js"
import type { Deadlines, Entry } from "./deadlines.js"

/** The platform's registry of controllers by request (`HttpClient.withScope`'s), shared per `effect` copy. */
const scopedRequests = globalValue(
  "@effect/platform/HttpClient/scopedRequests",
  () => new WeakMap<HttpClientRequest.HttpClientRequest, AbortController>()
)

const listen = EventTarget.prototype.addEventListener

/** What `FiberRef.set` calls on the running fiber; called directly to spare two steps per attempt. */
interface Settable {
  setFiberRef<A>(fiberRef: FiberRef.FiberRef<A>, value: A): void
}

export interface SenderOptions {
  readonly provider: string
  readonly base: HttpClient.HttpClient
  readonly deadlines: Deadlines
  /** Add `traceparent`/`b3` to requests (the user opted in). */
  readonly propagate: boolean
}

export type SendError = HttpClientError.HttpClientError | TollgateError.Timeout

/** What is known about the transport's abort signal. */
const UNKNOWN = 0
/** It listened to one: a deadline aborts the request, no fiber needed. */
const ABORTABLE = 1
/** It answered without listening: its waits are Effects (an in-memory fake), bounded by a child fiber. */
const PLAIN = 2

/**
 * Sends attempts through one transport, learning from the first one that reaches it whether it honours
 * abort signals.
 */
export class Sender {
  state: number
  /** Its responses hold no connection: one dropped unread needs no abort (`Transport.abortable`). */
  readonly inMemory: boolean

  constructor(readonly options: SenderOptions) {
    this.state = Transport.isAbortable(options.base) ? ABORTABLE : UNKNOWN
    this.inMemory = Transport.isInMemory(options.base)
  }

  /** An attempt of `prepared` (the caller's request, base URL and fixed headers applied). */
  exchange(
    prepared: HttpClientRequest.HttpClientRequest,
    token: AccessToken.AccessToken | undefined,
    span: Tracer.Span | undefined,
    millis: number,
    timeout: () => TollgateError.Timeout
  ): Exchange {
    return new Exchange(this, prepared, token, span, millis, timeout)
  }

  /**
   * Whether an untraced attempt started now leaves nothing to clean up if its fiber is interrupted: the
   * transport is plain, so the client owns no controller and the platform's own abort handling stands.
   */
  isPlain(): boolean {
    return this.state === PLAIN
  }
}

/**
 * One attempt. `send` is run by the caller under its own exit handler, which calls `answer` with the
 * response or `failed` with the failure: the attempt needs no handler (and no uninterruptible region) of
 * its own, so a fast request pays for one at most.
 */
export class Exchange {
  /** The request's controller, when the client owns it (the transport's signal is ours). */
  private controller: AbortController | undefined = undefined
  private entry: Entry | undefined = undefined
  private fiber: Settable | undefined = undefined
  private disabledWhen: ((request: HttpClientRequest.HttpClientRequest) => boolean) | undefined = undefined
  /** Set while learning: the transport listened to the signal. */
  private listened = false
  private learning = false

  constructor(
    private readonly sender: Sender,
    readonly prepared: HttpClientRequest.HttpClientRequest,
    private readonly token: AccessToken.AccessToken | undefined,
    private readonly span: Tracer.Span | undefined,
    private readonly millis: number,
    /** The error of an attempt past its bound (the attempt's own, or the request's when that is nearer). */
    private readonly timeout: () => TollgateError.Timeout
  ) {}

  /** The transport's answer, as it came; only `answer` and `failed` may look at it. */
  get send(): Effect.Effect<HttpClientResponse.HttpClientResponse, SendError> {
    return Effect.withFiberRuntime((fiber) => this.start(fiber))
  }

  /** `send`, started at once on `fiber` (the caller's, running now): its deadline counts from here. */
  start(fiber: Fiber.RuntimeFiber<unknown, unknown>): Effect.Effect<HttpClientResponse.HttpClientResponse, SendError> {
    {
      const { base, deadlines, propagate } = this.sender.options
      let outgoing = this.token === undefined
        ? this.prepared
        : HttpClientRequest.setHeader(this.prepared, "authorization", Bearer.authorization(this.token))
      if (fiber.getFiberRef(FiberRef.currentTracerEnabled)) {
        if (
          propagate && this.span !== undefined && fiber.getFiberRef(HttpClient.currentTracerPropagation) &&
          !fiber.getFiberRef(HttpClient.currentTracerDisabledWhen)(outgoing)
        ) {
          outgoing = HttpClientRequest.setHeaders(outgoing, HttpTraceContext.toHeaders(this.span))
        }
        // Switched off for this attempt only, and back on in `answer`/`failed`: cheaper than `Effect.locally`.
        this.fiber = fiber as unknown as Settable
        this.disabledWhen = fiber.getFiberRef(HttpClient.currentTracerDisabledWhen)
        this.fiber.setFiberRef(HttpClient.currentTracerDisabledWhen, Function.constTrue)
      }
      const state = this.sender.state
      const bounded = this.millis !== Number.POSITIVE_INFINITY
      if (state === UNKNOWN || (state === ABORTABLE && bounded)) {
        const controller = this.controller = new AbortController()
        if (state === UNKNOWN) this.listen(controller.signal)
        // The registry is keyed by request: a caller's request object sent by several fibers at once
        // must not share one controller, so an attempt sends a request object of its own.
        if (outgoing === this.prepared) outgoing = HttpClientRequest.setHeaders(outgoing, {})
        scopedRequests.set(outgoing, controller)
      }
      const sent = base.execute(outgoing)
      if (!bounded) return sent
      if (state === ABORTABLE) {
        const controller = this.controller!
        this.entry = deadlines.arm(this.millis, () => controller.abort())
        return sent
      }
      return deadlines.bound(sent, this.millis, () => {
        this.controller?.abort()
        return this.timeout()
      })
    }
  }

  // Notes whether the transport listens to `signal`, for the first attempt that reaches it.
  private listen(signal: AbortSignal): void {
    this.learning = true
    const exchange = this
    ;(signal as { addEventListener: typeof listen }).addEventListener = function(this: AbortSignal) {
      exchange.listened = true
      return listen.apply(this, arguments as unknown as Parameters<typeof listen>)
    }
  }

  private end(reached: boolean): boolean {
    if (this.fiber !== undefined) {
      this.fiber.setFiberRef(HttpClient.currentTracerDisabledWhen, this.disabledWhen!)
      this.fiber = undefined
    }
    if (this.learning && reached && this.sender.state === UNKNOWN) {
      this.sender.state = this.listened ? ABORTABLE : PLAIN
    }
    const entry = this.entry
    if (entry === undefined) return false
    this.entry = undefined
    this.sender.options.deadlines.finish(entry)
    return entry.expired
  }

  /** What the caller may see of `response`: its view, or `Timeout` when the deadline passed first. */
  answer(response: HttpClientResponse.HttpClientResponse): AnsweredResponse | TollgateError.Timeout {
    if (this.end(true)) {
      // The abort came too late to stop the headers; the body is aborted, so the attempt timed out.
      this.controller!.abort()
      return this.timeout()
    }
    return new AnsweredResponse(response, this.prepared, this.sender.inMemory ? undefined : this.controller)
  }

  /** What the caller may see of a failed attempt: an interrupted one is aborted on the wire. */
  failed(cause: Cause.Cause<SendError>): Cause.Cause<SendError> {
    const failure = Cause.failureOption(cause)
    const reached = failure._tag === "Some" &&
      (failure.value._tag === "Timeout" ||
        (failure.value._tag === "RequestError" && failure.value.reason === "Transport"))
    const expired = this.end(reached)
    if (Cause.isInterrupted(cause)) {
      this.controller?.abort()
      return cause
    }
    if (expired) return Cause.fail(this.timeout())
    return Cause.map(cause, (error) => withoutCredentials(error, this.prepared))
  }
}
