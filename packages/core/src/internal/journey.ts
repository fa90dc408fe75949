/**
 * A request's journey through the ApiClient, step by step: where it stands (`begin`), its permit
 * (`attempt`), its token (`token`), one exchange on the wire (`internal/send.ts`), what the answer means
 * and one report of it to the limiter (`answered`), what happens next (`handle`, over the pure
 * `Outcome.decide`), and its end in metrics and on its span (`finish`).
 *
 * The fast path (`run`) takes the same steps without waiting: a permit free at once (`tryHold`) and a
 * token at hand (the cache's synchronous read), in the step that sends; a 2xx that says nothing about
 * limits ends there, in one exit handler. Any other answer continues on the slow path from what it said.
 */
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Cause, DateTime, Duration, Effect, Exit, Function, Option } from "effect"
import type { Fiber } from "effect"
import type { Clock, MetricLabel, Tracer } from "effect"
import type * as AccessToken from "../AccessToken.js"
import type * as ApiClient from "../ApiClient.js"
import type * as RateLimiter from "../RateLimiter.js"
import * as RateLimitHeaders from "../RateLimitHeaders.js"
import type * as TokenCache from "../TokenCache.js"
import * as TollgateError from "../TollgateError.js"
import * as ClientOptions from "./clientOptions.js"
import type * as Compile from "./compile.js"
import * as Local from "./lane.js"
import type { ClientMetrics } from "./metrics.js"
import * as Outcome from "./outcome.js"
import { toObservation } from "./plan.js"
import type { Exchange, Sender, SendError } from "./send.js"
import { isUnanswered, Unanswered } from "./unanswered.js"

type Request = HttpClientRequest.HttpClientRequest
type Response = HttpClientResponse.HttpClientResponse
type Error = ApiClient.Error

export interface Environment {
  readonly config: ClientOptions.Config
  readonly clock: Clock.Clock
  readonly limiter: RateLimiter.Service
  readonly tokens: TokenCache.Service | undefined
  /** The limiter's compiled policy, when core built it (synchronous permits). */
  readonly node: Compile.Node | undefined
  /** The cache's synchronous read, when core built it (or no cache: never a token). */
  readonly peek: (() => AccessToken.AccessToken | undefined) | undefined
  readonly sender: Sender
  readonly metrics: ClientMetrics
  readonly keyOf: (request: Request) => string
  readonly idempotentMethods: ReadonlySet<string>
}

type PerRequest = ApiClient.RequestOptions

/**
 * Where one request stands. It is the limiter subject of its own permits (`key`, `request`); the rest
 * (permit options, rules) is worked out only if the request leaves the fast path.
 */
export class Journey {
  private cachedKey: string | undefined = undefined
  private cachedPermit: RateLimiter.PermitOptions | undefined = undefined
  private cachedPolicy: Outcome.Policy | undefined = undefined
  /** The states of the retry schedules, stepped as the request retries. */
  schedule: unknown
  backoff: unknown

  constructor(
    private readonly env: Environment,
    readonly request: Request,
    private readonly perRequest: PerRequest,
    readonly startedAt: number,
    readonly span: Tracer.Span | undefined,
    readonly tags: ReadonlyArray<MetricLabel.MetricLabel>
  ) {
    this.schedule = env.config.schedule.initial
    this.backoff = env.config.backoff.initial
  }

  get key(): string {
    return this.cachedKey ??= this.env.keyOf(this.request)
  }

  /** A retry keeps the place the request took when it first asked (`requestedAt`). */
  get permit(): RateLimiter.PermitOptions {
    return this.cachedPermit ??= {
      key: this.key,
      request: this.request,
      cost: this.perRequest.cost,
      deadline: this.perRequest.permitDeadline ?? this.env.config.permitDeadline,
      priority: this.perRequest.priority,
      requestedAt: this.startedAt
    }
  }

  get policy(): Outcome.Policy {
    const { config, idempotentMethods } = this.env
    return this.cachedPolicy ??= {
      provider: config.provider,
      key: this.key,
      rateLimited: config.rateLimited,
      maxWait: config.maxWait,
      idempotent: idempotentMethods.has(this.request.method) || config.nonIdempotent ||
        this.perRequest.retryNonIdempotent === true,
      replayable: this.request.body._tag !== "Stream",
      deadline: this.startedAt + config.requestTimeout
    }
  }
}

/** An attempt's outcome, and for a 429 the instant the gate closed until (`undefined`: none). */
interface Attempted {
  readonly outcome: Outcome.Outcome<Error>
  readonly next: number | undefined
}

const quiet = toObservation(RateLimitHeaders.empty, 1)

export class Journeys {
  /** Responses the server admitted (not a 429, not a renewable 401): the 429 rule's "anyone admitted". */
  private admitted = 0
  private readonly attemptTimeout: () => TollgateError.Timeout
  private readonly wholeTimeout: () => TollgateError.Timeout
  private readonly parseOptions: RateLimitHeaders.ParseOptions

  constructor(private readonly env: Environment, readonly noRequestOptions: PerRequest) {
    const { provider, requestTimeout, timeout } = env.config
    const timeoutOf = (operation: string, millis: number) => () =>
      new TollgateError.Timeout({ provider, operation, after: Duration.millis(millis) })
    this.attemptTimeout = timeoutOf("API request", timeout)
    this.wholeTimeout = timeoutOf("API request, waits and retries included", requestTimeout)
    this.parseOptions = { resetFormat: env.config.resetFormat }
  }

  private now(): number {
    return this.env.clock.unsafeCurrentTimeMillis()
  }

  /** A request starting now. */
  begin(request: Request, perRequest: PerRequest, span: Journey["span"], tags: Journey["tags"]): Journey {
    return new Journey(this.env, request, perRequest, this.now(), span, tags)
  }

  /** The whole journey: the fast path when everything is at hand, else the slow one. */
  run(j: Journey, perRequest: PerRequest, fiber: Fiber.RuntimeFiber<unknown, unknown>): Effect.Effect<Response, Error> {
    const { node, peek, sender, tokens } = this.env
    if (node === undefined || peek === undefined || perRequest !== this.noRequestOptions) {
      return this.slow(j, this.attempt(j))
    }
    const token = peek()
    if (tokens !== undefined && token === undefined) return this.slow(j, this.attempt(j))
    // Nothing to clean up if the caller is interrupted (no permit to return, no controller of ours, no
    // tracer setting to restore): no uninterruptible region either.
    if (j.span === undefined && sender.isPlain() && !node.settles(j)) {
      const hold = node.tryHold(j, 1)
      if (hold === undefined) return this.slow(j, this.attempt(j))
      const exchange = this.exchange(j, token)
      return Effect.flatMap(
        Effect.exit(exchange.start(fiber)),
        (exit) => this.fastAnswer(j, exchange, hold, token, exit, Function.identity)
      )
    }
    return Effect.uninterruptibleMask((restore) => {
      const hold = node.tryHold(j, 1)
      if (hold === undefined) return restore(this.slow(j, this.attempt(j)))
      const exchange = this.exchange(j, token)
      return Effect.flatMap(
        Effect.exit(restore(exchange.start(fiber))),
        (exit) => this.fastAnswer(j, exchange, hold, token, exit, restore)
      )
    })
  }

  /**
   * A fast attempt's end, run where the permit is held (uninterruptibly when it must come back): a quiet
   * 2xx is the response; anything else is reported, the permit released, and the journey goes on along
   * the slow path (under `restore`).
   */
  private fastAnswer(
    j: Journey,
    exchange: Exchange,
    hold: Local.Hold,
    token: AccessToken.AccessToken | undefined,
    exit: Exit.Exit<Response, SendError>,
    restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  ): Effect.Effect<Response, Error> {
    if (exit._tag === "Failure") {
      const failure = exchange.failed(exit.cause)
      if (isUnanswered(Exit.failCause(failure))) hold.settleUnanswered()
      else hold.settle()
      if (Cause.isInterrupted(failure)) return Effect.failCause(failure)
      return restore(this.slow(j, this.failed(failure, token)))
    }
    const answer = exchange.answer(exit.value)
    if (
      answer instanceof TollgateError.Timeout || answer.status >= 300 || answer.status < 200 ||
      RateLimitHeaders.isPresent(answer.headers)
    ) {
      return Effect.flatMap(
        Effect.ensuring(this.answered(j, answer, token), Effect.sync(() => hold.settle())),
        (attempted) => restore(this.slow(j, Effect.succeed(attempted)))
      )
    }
    this.env.node!.observe(quiet, j)
    hold.settle()
    this.admitted++
    this.env.metrics.response(answer.status, j.tags)
    this.finish(j, answer.status)
    return Effect.succeed(answer)
  }

  /** The journey from a first attempt on, with its end recorded. */
  private slow(j: Journey, first: Effect.Effect<Attempted, Error>): Effect.Effect<Response, Error> {
    const journey = Effect.flatMap(first, (attempted) => this.handle(j, attempted, Outcome.initial)).pipe(
      Effect.tapBoth({
        onFailure: (error) => Effect.sync(() => this.finish(j, error._tag)),
        onSuccess: (response) => Effect.sync(() => this.finish(j, response.status))
      })
    )
    // Token requests made on the way nest under the request's span.
    return j.span === undefined ? journey : Effect.withParentSpan(journey, j.span)
  }

  private remaining(j: Journey): number {
    return j.startedAt + this.env.config.requestTimeout - this.now()
  }

  private exchange(j: Journey, token: AccessToken.AccessToken | undefined): Exchange {
    const left = this.remaining(j)
    const { timeout } = this.env.config
    return left < timeout
      ? this.env.sender.exchange(j.request, token, j.span, Math.max(0, left), this.wholeTimeout)
      : this.env.sender.exchange(j.request, token, j.span, timeout, this.attemptTimeout)
  }

  /**
   * One attempt holding a permit (queued by the request's place, within its bound): the token, the
   * exchange, what the answer means, and its report to the limiter while the permit is still held.
   */
  private attempt(j: Journey): Effect.Effect<Attempted, Error> {
    const { limiter, metrics } = this.env
    // Counted as waiting from here to its permit; the region makes sure the count is always taken back.
    return Effect.uninterruptibleMask((restore) => {
      const queuedAt = this.now()
      let waiting = true
      const stopWaiting = () => {
        if (waiting) {
          waiting = false
          metrics.queued(-1)
        }
      }
      metrics.queued(1)
      const left = this.remaining(j)
      const bounded = left !== Number.POSITIVE_INFINITY
      const permit = bounded ? { ...j.permit, timeout: Duration.millis(Math.max(0, left)) } : j.permit
      const held = Effect.suspend(() => {
        stopWaiting()
        const waited = this.now() - queuedAt
        if (waited > 0) metrics.waited(waited, j.tags)
        return Effect.flatMap(this.token(j), (token) =>
          Effect.uninterruptibleMask((restore) => {
            const exchange = this.exchange(j, token)
            return Effect.matchCauseEffect(restore(exchange.send), {
              onFailure: (cause) => {
                const failure = exchange.failed(cause)
                const attempted = this.failed(failure, token)
                // The limiter keeps the permit of an attempt that may still reach the server.
                return isUnanswered(Exit.failCause(failure))
                  ? Effect.flatMap(attempted, (attempted) => Effect.fail(new Unanswered(attempted)))
                  : attempted
              },
              onSuccess: (raw) => this.answered(j, exchange.answer(raw), token)
            })
          }))
      })
      return restore(limiter.withPermit(permit)(held)).pipe(
        Effect.catchIf(
          (error): error is Unanswered<Attempted> => error instanceof Unanswered,
          (unanswered) => Effect.succeed(unanswered.value)
        ),
        Effect.ensuring(Effect.sync(stopWaiting)),
        // The permit's timeout is the request's bound: running out of it is the request's `Timeout`.
        Effect.catchIf(
          (error): error is TollgateError.RateLimited =>
            bounded && error._tag === "RateLimited" && error.reason === "timeout",
          () => Effect.fail(this.wholeTimeout())
        )
      )
    })
  }

  /** The token at hand, or waited for within the request's bound (the gate rechecked after the wait). */
  private token(j: Journey): Effect.Effect<AccessToken.AccessToken | undefined, Error> {
    const { limiter, peek, sender, tokens } = this.env
    const token = peek?.()
    if (tokens === undefined || token !== undefined) return Effect.succeed(token)
    // A 429 seen by another fiber while this one waited for its token closes the gate for it too.
    const wait = Effect.zipLeft(tokens.get, limiter.awaitGate(j.permit))
    const left = this.remaining(j)
    if (left === Number.POSITIVE_INFINITY) return wait
    return sender.options.deadlines.bound(wait, Math.max(0, left), this.wholeTimeout)
  }

  private failed(
    cause: Cause.Cause<SendError>,
    token: AccessToken.AccessToken | undefined
  ): Effect.Effect<Attempted, Error> {
    const error = Cause.failureOption(cause)
    if (Option.isNone(error)) return Effect.failCause(cause)
    return Effect.succeed({
      outcome: Outcome.classify({ error: error.value }, token, RateLimitHeaders.empty),
      next: undefined
    })
  }

  /** What a response means, parsed once, and reported to the limiter once (a 429 with its retry instant). */
  private answered(
    j: Journey,
    answer: Response | TollgateError.Timeout,
    token: AccessToken.AccessToken | undefined
  ): Effect.Effect<Attempted, Error> {
    if (answer instanceof TollgateError.Timeout) return this.failed(Cause.fail(answer), token)
    const { config, limiter, metrics } = this.env
    const at = this.now()
    const info = RateLimitHeaders.fromHeaders(answer.headers, at, this.parseOptions)
    const outcome = Outcome.classify<Error>({ response: answer }, token, info)
    metrics.response(answer.status, j.tags)
    if (Outcome.isAdmitted(outcome)) this.admitted++
    if (outcome._tag !== "Throttled") return Effect.as(limiter.observe(info, j.permit), { outcome, next: undefined })
    const announced = RateLimitHeaders.waitUntil(info)
    const retryAt = Option.isSome(announced)
      ? Effect.succeed(announced.value.epochMillis)
      : Effect.map(ClientOptions.step(config.backoff, j.backoff, answer, at), (step) => {
        if (step === undefined) return undefined
        j.backoff = step.state
        return at + step.delay
      })
    return Effect.flatMap(retryAt, (next) =>
      Effect.as(
        limiter.observe(
          info,
          next === undefined
            ? { ...j.permit, throttled: true }
            : { ...j.permit, throttledUntil: DateTime.unsafeMake(next) }
        ),
        { outcome, next }
      ))
  }

  /** What happens next: `Outcome.decide`, after asking the retry schedule about a transient failure. */
  private handle(j: Journey, attempted: Attempted, state: Outcome.State): Effect.Effect<Response, Error> {
    const { config, metrics, tokens } = this.env
    const { outcome } = attempted
    const next = outcome._tag !== "Transient" || !j.policy.idempotent || !j.policy.replayable
      ? Effect.succeed(attempted.next)
      : Effect.map(ClientOptions.step(config.schedule, j.schedule, outcome.failure, this.now()), (step) => {
        if (step === undefined) return undefined
        j.schedule = step.state
        return step.delay
      })
    return Effect.flatMap(next, (next) => {
      const decision = Outcome.decide(outcome, state, j.policy, { now: this.now(), admitted: this.admitted, next })
      if (decision._tag === "Return") return Effect.succeed(decision.response)
      const cleanup = Effect.zipRight(
        decision.invalidate === undefined ? Effect.void : Effect.asVoid(tokens!.invalidate(decision.invalidate)),
        decision.discard === undefined ? Effect.void : Effect.ignore(decision.discard.arrayBuffer)
      )
      if (decision._tag === "Fail") return Effect.zipRight(cleanup, Effect.fail(decision.error as Error))
      metrics.retried(decision.reason, j.tags)
      return cleanup.pipe(
        Effect.zipRight(decision.sleep > 0 ? Effect.sleep(Duration.millis(decision.sleep)) : Effect.void),
        Effect.zipRight(Effect.suspend(() => this.attempt(j))),
        Effect.flatMap((attempted) => this.handle(j, attempted, decision.state))
      )
    })
  }

  /** The end of a journey: its duration and outcome in metrics and on its span. */
  private finish(j: Journey, outcome: number | string): void {
    this.env.metrics.finished(outcome, this.now() - j.startedAt, j.tags)
    if (j.span !== undefined && typeof outcome === "number") j.span.attribute("http.response.status_code", outcome)
  }
}
