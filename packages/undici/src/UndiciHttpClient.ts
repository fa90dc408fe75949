/**
 * An `HttpClient` straight over undici's `Dispatcher`: what `NodeHttpClient.layerUndici` does, without
 * the layers between undici and the caller's fiber. Same errors, spans and trace headers as the platform's
 * client; a drop-in for it.
 *
 * The design: `docs/transports.md` in the repository.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as TollgateError from "@tollgate/core/TollgateError"
import { Context, Effect, Layer, Option } from "effect"
import type { Scope } from "effect"
import * as Undici from "undici"
import * as internal from "./internal/client.js"

/**
 * The undici `Dispatcher` (an `Agent`, a `Pool`, a `Client`, or one composed with interceptors) the
 * client sends through.
 *
 * @since 0.1.0
 * @category tags
 */
export class Dispatcher extends Context.Tag("@tollgate/undici/UndiciHttpClient/Dispatcher")<
  Dispatcher,
  Undici.Dispatcher
>() {}

/**
 * undici options for the requests sent while this service is provided (`headersTimeout`, `bodyTimeout`,
 * `reset`, `idempotent`, ...), as `NodeHttpClient.UndiciRequestOptions` is for the platform's client.
 * Provided to one of the layers, they apply to every request of its client; provided around a request,
 * they override those. Both timeouts are off unless set here, as in the platform's client.
 *
 * @since 0.1.0
 * @category tags
 */
export class RequestOptions extends Context.Tag(internal.requestOptionsKey)<
  RequestOptions,
  Omit<Undici.Dispatcher.DispatchOptions, "origin" | "path" | "method" | "headers" | "body">
>() {}

/**
 * How the dispatcher the layers build connects.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Most connections open to one origin at a time; unlimited when absent (undici's default and the platform's). */
  readonly connections?: number | undefined
  /** Any other undici `Agent` option: keep-alive timeouts, TLS (`connect`), pipelining. */
  readonly agent?: Omit<Undici.Agent.Options, "connections"> | undefined
}

/**
 * The client over a dispatcher the caller owns (and closes).
 *
 * @example
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { UndiciHttpClient } from "@tollgate/undici"
 * import { Effect } from "effect"
 * import * as Http from "node:http"
 * import type { AddressInfo } from "node:net"
 * import { Agent } from "undici"
 *
 * // A dispatcher the caller owns: shared with other code, closed by the caller.
 * const agent = new Agent({ connections: 8 })
 * const client = UndiciHttpClient.make(agent)
 *
 * Effect.gen(function*() {
 *   const server = Http.createServer((_request, response) => response.end("hello"))
 *   yield* Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void)))
 *   const { port } = server.address() as AddressInfo
 *   const response = yield* client.get(`http://127.0.0.1:${port}/`)
 *   console.log(response.status) // 200
 *   yield* response.text
 *   server.close()
 *   yield* Effect.promise(() => agent.close())
 * }).pipe(Effect.provideService(HttpClient.HttpClient, client), Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  dispatcher: Undici.Dispatcher,
  options?: {
    /** undici options for every request; a `RequestOptions` service around a request overrides them. */
    readonly requestOptions?: RequestOptions["Type"] | undefined
  }
): HttpClient.HttpClient =>
  internal.make(dispatcher, { highWaterMark: 64 * 1024, requestOptions: options?.requestOptions })

const describe = (value: unknown): string =>
  typeof value === "number" ? String(value) : typeof value === "string" ? "a string" : typeof value

/**
 * An undici `Agent` (a pool of connections per origin) for the scope: destroyed when the scope closes,
 * which aborts the requests still in flight.
 *
 * @example
 * ```ts
 * import { UndiciHttpClient } from "@tollgate/undici"
 * import { Effect } from "effect"
 *
 * // An Agent for the scope, with at most 16 connections per origin; destroyed when the scope closes.
 * Effect.gen(function*() {
 *   const dispatcher = yield* UndiciHttpClient.makeDispatcher({ connections: 16, agent: { keepAliveTimeout: 10_000 } })
 *   const client = UndiciHttpClient.make(dispatcher)
 *   console.log(typeof client.execute) // "function"
 *   // Bad options are a typed error, not a crash.
 *   const refused = yield* Effect.flip(UndiciHttpClient.makeDispatcher({ connections: 0 }))
 *   console.log(refused._tag) // "InvalidArgument"
 * }).pipe(Effect.scoped, Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeDispatcher = (
  options: Options = {}
): Effect.Effect<Undici.Dispatcher, TollgateError.InvalidArgument, Scope.Scope> => {
  const connections = options.connections
  if (connections !== undefined && !(Number.isSafeInteger(connections) && connections > 0)) {
    return Effect.fail(
      new TollgateError.InvalidArgument({
        module: "UndiciHttpClient",
        argument: "connections",
        expected: "a positive integer",
        received: describe(connections)
      })
    )
  }
  return acquire(() => new Undici.Agent({ ...options.agent, connections: connections ?? null }))
}

const acquire = (build: () => Undici.Dispatcher) =>
  Effect.acquireRelease(
    Effect.try({
      try: build,
      // undici validates its options in the constructor; its messages name the option, never a value.
      catch: (cause) =>
        new TollgateError.InvalidArgument({
          module: "UndiciHttpClient",
          argument: "agent",
          expected: "valid undici Agent options",
          received: cause instanceof Error ? cause.message : describe(cause)
        })
    }),
    (dispatcher) => Effect.promise(() => dispatcher.destroy())
  )

/**
 * @example
 * ```ts
 * import { UndiciHttpClient } from "@tollgate/undici"
 * import { Layer } from "effect"
 *
 * // One Agent for the program; the client over it, plus the Agent itself for code that needs undici directly.
 * const HttpLive = UndiciHttpClient.layerWithoutDispatcher.pipe(
 *   Layer.provideMerge(UndiciHttpClient.layerDispatcher({ connections: 32 }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerDispatcher = (options?: Options): Layer.Layer<Dispatcher, TollgateError.InvalidArgument> =>
  Layer.scoped(Dispatcher, makeDispatcher(options))

/**
 * The client over the `Dispatcher` in context.
 *
 * @example
 * ```ts
 * import { UndiciHttpClient } from "@tollgate/undici"
 * import { Layer } from "effect"
 * import { Agent } from "undici"
 *
 * // The client over a dispatcher from elsewhere, with undici options for every request.
 * const agent = new Agent({ pipelining: 1 })
 * const HttpLive = UndiciHttpClient.layerWithoutDispatcher.pipe(
 *   Layer.provide(Layer.succeed(UndiciHttpClient.Dispatcher, agent)),
 *   Layer.provide(Layer.succeed(UndiciHttpClient.RequestOptions, { headersTimeout: 5_000, bodyTimeout: 30_000 }))
 * )
 * agent.close()
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithoutDispatcher: Layer.Layer<HttpClient.HttpClient, never, Dispatcher> = Layer.effect(
  HttpClient.HttpClient,
  Effect.gen(function*() {
    const requestOptions = yield* Effect.serviceOption(RequestOptions)
    return make(yield* Dispatcher, { requestOptions: Option.getOrUndefined(requestOptions) })
  })
)

/**
 * The client over its own undici `Agent`, with the given connection options.
 *
 * @example
 * ```ts
 * import { UndiciHttpClient } from "@tollgate/undici"
 *
 * // Its own Agent, at most 8 connections per origin, kept alive for 30 seconds.
 * const HttpLive = UndiciHttpClient.layerWithOptions({ connections: 8, agent: { keepAliveTimeout: 30_000 } })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithOptions = (
  options: Options
): Layer.Layer<HttpClient.HttpClient, TollgateError.InvalidArgument> =>
  Layer.provide(layerWithoutDispatcher, layerDispatcher(options))

/**
 * The client over its own undici `Agent` with undici's defaults: a drop-in for
 * `NodeHttpClient.layerUndici`.
 *
 * @example
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { UndiciHttpClient } from "@tollgate/undici"
 * import { Effect } from "effect"
 * import * as Http from "node:http"
 * import type { AddressInfo } from "node:net"
 *
 * // A drop-in for `NodeHttpClient.layerUndici`; here against a server on loopback.
 * Effect.gen(function*() {
 *   const server = Http.createServer((_request, response) => response.end("hello"))
 *   yield* Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void)))
 *   const { port } = server.address() as AddressInfo
 *   const response = yield* HttpClient.get(`http://127.0.0.1:${port}/`)
 *   console.log(yield* response.text) // "hello"
 *   server.close()
 * }).pipe(Effect.provide(UndiciHttpClient.layer), Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<HttpClient.HttpClient> = Layer.orDie(layerWithOptions({})) // undici's defaults are valid
