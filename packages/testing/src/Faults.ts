/**
 * Fault injection for the sandbox emulators: latency, 5xx, timeouts and dropped connections at a rate,
 * and scripted steps, for the token endpoint and the API routes separately.
 *
 * The design: `docs/testing.md` in the repository.
 *
 * @since 0.1.0
 */
import { Data, Duration } from "effect"
import type { Effect } from "effect"

/**
 * The routes a fault applies to: the token endpoint(s) or the API routes.
 *
 * @since 0.1.0
 * @category models
 */
export type Target = "token" | "api"

/**
 * How a connection is dropped: `"reset"` closes it before any response byte (on loopback the socket is
 * destroyed; in memory the client sees a transport error), `"partial"` sends the status line, headers and
 * part of a JSON body, then closes it.
 *
 * @since 0.1.0
 * @category models
 */
export type DropMode = "reset" | "partial"

/**
 * Added latency, drawn uniformly from `[min, max]` for each request.
 *
 * @since 0.1.0
 * @category models
 */
export interface Latency {
  readonly min: Duration.Duration
  readonly max: Duration.Duration
}

/**
 * The random faults of one target. Rates are probabilities in `[0, 1]`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  readonly latency: Latency | undefined
  /** Rate of 5xx answers. */
  readonly errorRate: number
  /** Status of the 5xx answers (default 503). */
  readonly errorStatus: number
  /** Body of the 5xx answers: an HTML error page, as a proxy would send, or a JSON body. */
  readonly errorBody: "html" | "json"
  /** Rate of requests never answered, until the client gives up. */
  readonly timeoutRate: number
  /** Rate of dropped connections. */
  readonly dropRate: number
  readonly dropMode: DropMode
}

/**
 * No faults at all: the default of every target.
 *
 * @since 0.1.0
 * @category constructors
 */
export const none: Config = {
  latency: undefined,
  errorRate: 0,
  errorStatus: 503,
  errorBody: "html",
  timeoutRate: 0,
  dropRate: 0,
  dropMode: "reset"
}

/**
 * A change to a target's configuration: fields left out keep their value; `latency: null` removes the
 * latency. A single duration is a fixed latency, `{ min, max }` a uniform range.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly latency?:
    | Duration.DurationInput
    | { readonly min: Duration.DurationInput; readonly max: Duration.DurationInput }
    | null
    | undefined
  readonly errorRate?: number | undefined
  readonly errorStatus?: number | undefined
  readonly errorBody?: "html" | "json" | undefined
  readonly timeoutRate?: number | undefined
  readonly dropRate?: number | undefined
  readonly dropMode?: DropMode | undefined
}

const rate = (name: string, value: number): number => {
  if (!(value >= 0 && value <= 1)) throw new RangeError(`${name} must be within [0, 1], got ${value}`)
  return value
}

const toLatency = (input: NonNullable<Options["latency"]>): Latency => {
  if (typeof input === "object" && input !== null && "min" in input && "max" in input) {
    const min = Duration.decode(input.min)
    const max = Duration.decode(input.max)
    return Duration.lessThanOrEqualTo(min, max) ? { min, max } : { min: max, max: min }
  }
  const fixed = Duration.decode(input as Duration.DurationInput)
  return { min: fixed, max: fixed }
}

/**
 * Applies `options` to `config`. Throws a `RangeError` for a rate outside `[0, 1]` or a status outside
 * 500–599.
 *
 * @since 0.1.0
 * @category combinators
 */
export const update = (config: Config, options: Options): Config => {
  const errorStatus = options.errorStatus ?? config.errorStatus
  if (!(Number.isInteger(errorStatus) && errorStatus >= 500 && errorStatus <= 599)) {
    throw new RangeError(`errorStatus must be a 5xx status, got ${errorStatus}`)
  }
  return {
    latency: options.latency === null
      ? undefined
      : options.latency === undefined
      ? config.latency
      : toLatency(options.latency),
    errorRate: rate("errorRate", options.errorRate ?? config.errorRate),
    errorStatus,
    errorBody: options.errorBody ?? config.errorBody,
    timeoutRate: rate("timeoutRate", options.timeoutRate ?? config.timeoutRate),
    dropRate: rate("dropRate", options.dropRate ?? config.dropRate),
    dropMode: options.dropMode ?? config.dropMode
  }
}

/**
 * One scripted step: the exact outcome of the next request to a target.
 *
 * @since 0.1.0
 * @category models
 */
export type Step = Respond | Timeout | Drop | PassThrough

/**
 * Answer with exactly this status, these headers and this raw body (nothing is added but, on loopback,
 * the headers Node.js itself always sends).
 *
 * @since 0.1.0
 * @category models
 */
export interface Respond {
  readonly _tag: "Respond"
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | Uint8Array | undefined
  readonly delay: Duration.Duration | undefined
}

/**
 * Never answer, until the client gives up.
 *
 * @since 0.1.0
 * @category models
 */
export interface Timeout {
  readonly _tag: "Timeout"
  readonly delay: Duration.Duration | undefined
}

/**
 * Drop the connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface Drop {
  readonly _tag: "Drop"
  readonly mode: DropMode
  readonly delay: Duration.Duration | undefined
}

/**
 * Let the emulator answer normally (optionally after a delay), without random faults: useful to script
 * "the second response fails".
 *
 * @since 0.1.0
 * @category models
 */
export interface PassThrough {
  readonly _tag: "PassThrough"
  readonly delay: Duration.Duration | undefined
}

const delayOf = (options: { readonly delay?: Duration.DurationInput | undefined } | undefined) =>
  options?.delay === undefined ? undefined : Duration.decode(options.delay)

/**
 * A scripted response with a raw body, e.g. an HTML page, truncated JSON or an empty 429.
 *
 * @example
 * ```ts
 * import { HttpClientRequest } from "@effect/platform"
 * import { Faults, NoraSandbox, Sandbox } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * Effect.gen(function*() {
 *   const emulator = yield* NoraSandbox.make()
 *   // The token endpoint's next answer: an HTML error page from a proxy, then the emulator as usual.
 *   yield* emulator.faults.script("token", Faults.respond({ status: 502, body: "<html>Bad Gateway</html>" }))
 *   const http = Sandbox.makeClient(() => emulator.app)
 *   const token = HttpClientRequest.post("https://nora.sandbox.test/api/token").pipe(
 *     HttpClientRequest.bodyUnsafeJson(NoraSandbox.defaultCredentials)
 *   )
 *   console.log((yield* http.execute(token)).status) // 502
 *   console.log((yield* http.execute(token)).status) // 200
 * }).pipe(Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const respond = (options: {
  readonly status: number
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly body?: string | Uint8Array | undefined
  readonly delay?: Duration.DurationInput | undefined
}): Step => ({
  _tag: "Respond",
  status: options.status,
  headers: options.headers ?? {},
  body: options.body,
  delay: delayOf(options)
})

/**
 * A scripted JSON response: `body` is serialized with `JSON.stringify` and sent as `application/json`
 * (pass a string to `respond` instead for malformed JSON).
 *
 * @since 0.1.0
 * @category constructors
 */
export const json = (status: number, body: unknown, options?: {
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly delay?: Duration.DurationInput | undefined
}): Step =>
  respond({
    status,
    headers: { "content-type": "application/json", ...options?.headers },
    body: JSON.stringify(body),
    delay: options?.delay
  })

/**
 * A scripted HTML response, as a load balancer or proxy answers.
 *
 * @since 0.1.0
 * @category constructors
 */
export const html = (status: number, page: string, options?: {
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly delay?: Duration.DurationInput | undefined
}): Step =>
  respond({
    status,
    headers: { "content-type": "text/html; charset=utf-8", ...options?.headers },
    body: page,
    delay: options?.delay
  })

/**
 * A scripted timeout: the request is never answered.
 *
 * @since 0.1.0
 * @category constructors
 */
export const timeout = (options?: { readonly delay?: Duration.DurationInput | undefined }): Step => ({
  _tag: "Timeout",
  delay: delayOf(options)
})

/**
 * A scripted dropped connection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const drop = (options?: {
  readonly mode?: DropMode | undefined
  readonly delay?: Duration.DurationInput | undefined
}): Step => ({ _tag: "Drop", mode: options?.mode ?? "reset", delay: delayOf(options) })

/**
 * A scripted normal answer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const passThrough = (options?: { readonly delay?: Duration.DurationInput | undefined }): Step => ({
  _tag: "PassThrough",
  delay: delayOf(options)
})

/**
 * The failure of an emulator's `HttpApp` when it drops a connection without a socket to destroy (in
 * memory). The in-memory client turns it into a transport `RequestError`; a loopback server never sees
 * it, because there the socket itself is destroyed.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionDropped extends Data.TaggedError("ConnectionDropped")<{
  readonly target: Target
}> {
  override get message(): string {
    return `the sandbox dropped the connection (${this.target} route)`
  }
}

/**
 * The runtime fault controls of one emulator.
 *
 * @since 0.1.0
 * @category models
 */
export interface Controls {
  /** Changes the random faults of a target (or both); dies with a `RangeError` for an invalid value. */
  readonly set: (target: Target | "all", options: Options) => Effect.Effect<void>
  /** The current random-fault configuration of a target. */
  readonly config: (target: Target) => Effect.Effect<Config>
  /** Appends steps to a target's script; each request to that target consumes one. */
  readonly script: (target: Target, ...steps: ReadonlyArray<Step>) => Effect.Effect<void>
  /** How many scripted steps of a target are still waiting. */
  readonly pending: (target: Target) => Effect.Effect<number>
  /**
   * Shifts the timestamps the emulator writes into what it issues (JWT `iat`/`exp`, Nomba `expiresAt`)
   * by this many milliseconds (positive: the provider's clock runs ahead). Validity on the server side
   * and the HTTP `Date` header are unaffected.
   */
  readonly setClockSkew: (millis: number) => Effect.Effect<void>
  /** Back to no faults: both configurations, both scripts, and the skew. */
  readonly reset: Effect.Effect<void>
}
