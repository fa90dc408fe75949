/**
 * All four provider emulators at once, served on loopback (`layer`) or reachable in memory without
 * sockets (`layerMemory`), plus `serve` for one emulator and an in-memory `HttpClient` that routes
 * requests by host name.
 *
 * On loopback, each emulator listens on its own `127.0.0.1` port and runs on the clock of the Layer that
 * built it (the live clock, normally). In memory, each request runs the emulator's `HttpApp` on the
 * calling fiber, so a program's whole HTTP stack runs under `TestClock`: an hour of token lifetimes and
 * rate windows passes with `TestClock.adjust`.
 *
 * @since 0.1.0
 */
import type { HttpApp, HttpServerError } from "@effect/platform"
import { HttpClient, HttpClientError } from "@effect/platform"
import type { HttpClientRequest } from "@effect/platform"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Context, Effect, Layer } from "effect"
import type { Scope } from "effect"
import * as Http from "node:http"
import type * as Emulator from "./Emulator.js"
import type * as Faults from "./Faults.js"
import * as Memory from "./internal/memory.js"
import * as NombaSandbox from "./NombaSandbox.js"
import * as NoraSandbox from "./NoraSandbox.js"
import * as NorceSandbox from "./NorceSandbox.js"
import * as TokenProjectSandbox from "./TokenProjectSandbox.js"

/**
 * The host names the in-memory client answers for (`http://<host>` is each emulator's base URL in memory).
 *
 * @since 0.1.0
 * @category constants
 */
export const hosts = {
  nora: "nora.sandbox.test",
  norce: "norce.sandbox.test",
  nomba: "nomba.sandbox.test",
  tokenProject: "token-project.sandbox.test"
} as const

/**
 * An emulator with the base URL it is reachable at.
 *
 * @since 0.1.0
 * @category models
 */
export type Served<A extends Emulator.Emulator> = A & {
  /** e.g. `http://127.0.0.1:49152` on loopback, `http://nora.sandbox.test` in memory; no trailing slash. */
  readonly baseUrl: string
}

/**
 * The four emulators.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly nora: Served<NoraSandbox.NoraSandbox>
  readonly norce: Served<NorceSandbox.NorceSandbox>
  readonly nomba: Served<NombaSandbox.NombaSandbox>
  readonly tokenProject: Served<TokenProjectSandbox.TokenProjectSandbox>
}

/**
 * The sandbox: all four emulators with their base URLs.
 *
 * @since 0.1.0
 * @category tags
 */
export class Sandbox extends Context.Tag("@tollgate/testing/Sandbox")<Sandbox, Service>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The time scale of all four emulators (each emulator's own option wins). Default 1. */
  readonly timeScale?: number | undefined
  /** Loopback host to listen on. Default `127.0.0.1`. */
  readonly host?: string | undefined
  /**
   * Base port: Nora listens on `port`, Norce on `port + 1`, Nomba on `port + 2`, Token project on
   * `port + 3`. Default 0: each on a free port.
   */
  readonly port?: number | undefined
  readonly nora?: NoraSandbox.Options | undefined
  readonly norce?: NorceSandbox.Options | undefined
  readonly nomba?: NombaSandbox.Options | undefined
  readonly tokenProject?: TokenProjectSandbox.Options | undefined
}

/**
 * Options of `serve`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServeOptions {
  /** Default `127.0.0.1`. */
  readonly host?: string | undefined
  /** Default 0: a free port. */
  readonly port?: number | undefined
}

/**
 * Serves one emulator on loopback with `NodeHttpServer`, until the scope closes (closing it also cuts
 * connections still open, e.g. requests the emulator is deliberately never answering).
 *
 * @example
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { NoraSandbox, Sandbox } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * // One emulator on its own 127.0.0.1 port until the scope closes.
 * Effect.gen(function*() {
 *   const served = yield* Sandbox.serve(yield* NoraSandbox.make(), { port: 0 })
 *   const response = yield* HttpClient.get(`${served.baseUrl}/api/forms`)
 *   console.log(response.status) // 401: no token
 * }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici), Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const serve = <A extends Emulator.Emulator>(
  emulator: A,
  options?: ServeOptions
): Effect.Effect<Served<A>, HttpServerError.ServeError, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options?.host ?? "127.0.0.1"
    const nodeServer = Http.createServer()
    const server = yield* NodeHttpServer.make(() => nodeServer, { host, port: options?.port ?? 0 })
    // Registered after the server's own finalizer, so it runs first: `close` waits for open connections.
    yield* Effect.addFinalizer(() => Effect.sync(() => nodeServer.closeAllConnections()))
    yield* server.serve(emulator.app)
    const port = server.address._tag === "TcpAddress" ? server.address.port : 0
    const shownHost = host.includes(":") ? `[${host}]` : host
    return { ...emulator, baseUrl: `http://${shownHost}:${port}` }
  })

const makeEmulators = (options: Options | undefined) =>
  Effect.all({
    nora: NoraSandbox.make({ timeScale: options?.timeScale, ...options?.nora }),
    norce: NorceSandbox.make({ timeScale: options?.timeScale, ...options?.norce }),
    nomba: NombaSandbox.make({ timeScale: options?.timeScale, ...options?.nomba }),
    tokenProject: TokenProjectSandbox.make({ timeScale: options?.timeScale, ...options?.tokenProject })
  })

/**
 * Builds the four emulators and serves each on loopback, until the scope closes.
 *
 * @example
 * ```ts
 * import { Sandbox } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * // The four emulators, each on its own 127.0.0.1 port until the scope closes.
 * Effect.gen(function*() {
 *   const sandbox = yield* Sandbox.make()
 *   console.log(sandbox.nora.baseUrl.startsWith("http://127.0.0.1:")) // true
 * }).pipe(Effect.scoped, Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<Service, HttpServerError.ServeError, Scope.Scope> =>
  Effect.gen(function*() {
    const emulators = yield* makeEmulators(options)
    const base = options?.port ?? 0
    const at = (offset: number): ServeOptions => ({ host: options?.host, port: base === 0 ? 0 : base + offset })
    return yield* Effect.all({
      nora: serve(emulators.nora, at(0)),
      norce: serve(emulators.norce, at(1)),
      nomba: serve(emulators.nomba, at(2)),
      tokenProject: serve(emulators.tokenProject, at(3))
    })
  })

/**
 * The sandbox on loopback: the four emulators, each on its own `127.0.0.1` port, stopped when the Layer's
 * scope closes.
 *
 * @example
 * ```ts
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Sandbox } from "@tollgate/testing"
 * import { Effect, Layer } from "effect"
 *
 * // The sandbox on loopback, reached through the real transport as a deployed program would.
 * const Live = Layer.merge(Sandbox.layer(), NodeHttpClient.layerUndici)
 *
 * Effect.gen(function*() {
 *   const sandbox = yield* Sandbox.Sandbox
 *   console.log(sandbox.norce.baseUrl.startsWith("http://127.0.0.1:")) // true
 * }).pipe(Effect.provide(Live), Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<Sandbox, HttpServerError.ServeError> =>
  Layer.scoped(Sandbox, make(options))

/**
 * Builds the four emulators for in-memory use: base URLs are `http://<hosts.X>`.
 *
 * @example
 * ```ts
 * import { Sandbox } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * // The four emulators without sockets; their base URLs name `Sandbox.hosts`.
 * Effect.gen(function*() {
 *   const sandbox = yield* Sandbox.makeMemory()
 *   console.log(sandbox.nomba.baseUrl) // "http://nomba.sandbox.test"
 * }).pipe(Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = (options?: Omit<Options, "host" | "port">): Effect.Effect<Service> =>
  Effect.map(makeEmulators(options), (emulators) => ({
    nora: { ...emulators.nora, baseUrl: `http://${hosts.nora}` },
    norce: { ...emulators.norce, baseUrl: `http://${hosts.norce}` },
    nomba: { ...emulators.nomba, baseUrl: `http://${hosts.nomba}` },
    tokenProject: { ...emulators.tokenProject, baseUrl: `http://${hosts.tokenProject}` }
  }))

/**
 * Options of the in-memory client.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClientOptions {
  /** The client address the emulators see (Norce's per-IP limit keys on it). Default `127.0.0.1`. */
  readonly remoteAddress?: string | undefined
}

/**
 * An `HttpClient` that answers requests by running the `HttpApp` that `route` picks for the URL, on the
 * calling fiber, without sockets and without promises (request and response bodies are held in memory and
 * read as plain Effects; only a `FormData` request body goes through a web `Response` to be encoded), so
 * it runs under `TestClock` and virtual-time drivers alike. A URL no app is picked for fails with a
 * transport `RequestError`, as an unknown host would; an app's `ConnectionDropped` becomes a transport
 * `RequestError` too, and a defect a 500.
 *
 * Like a socket transport it honours each request's abort signal, and is declared `Transport.abortable`
 * so Tollgate's clients hand it their deadlines instead of a fiber per attempt: an aborted request fails
 * with a transport `RequestError` at once. An emulator stops at its next wait (the pending virtual-time
 * sleep is taken out; a request that already arrived stays recorded, as a server would have seen it);
 * any other app runs in a fiber of its own that the abort interrupts.
 *
 * A request the platform would trace gets the platform client's span, as on a real transport. One it
 * would not (the tracer off, or `HttpClient.withTracerDisabledWhen`, as Tollgate's own clients do) is
 * answered directly: it skips the abort controller the platform registers for every response, which a
 * long simulation would otherwise pile up faster than the finalization registry frees it, and is
 * aborted through a controller registered for it (`HttpClient.withScope`'s or Tollgate's). `route` is
 * given a URL parsed once per distinct URL string: read it, do not change it.
 *
 * @example
 * ```ts
 * import { HttpClientRequest } from "@effect/platform"
 * import { NoraSandbox, Sandbox } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * Effect.gen(function*() {
 *   const nora = yield* NoraSandbox.make()
 *   // Every host answered by the one emulator; return `undefined` for hosts no emulator serves.
 *   const http = Sandbox.makeClient((url) => (url.host === "nora.sandbox.test" ? nora.app : undefined))
 *   const response = yield* http.execute(HttpClientRequest.get("https://nora.sandbox.test/api/forms"))
 *   console.log(response.status) // 401: no token
 *   const unknown = yield* Effect.flip(http.execute(HttpClientRequest.get("https://elsewhere.test/")))
 *   console.log(unknown._tag) // "RequestError", as for an unknown host
 * }).pipe(Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeClient = (
  route: (url: URL) => HttpApp.Default<Faults.ConnectionDropped> | undefined,
  options?: ClientOptions
): HttpClient.HttpClient => {
  const remoteAddress = options?.remoteAddress ?? "127.0.0.1"
  const answer = (request: HttpClientRequest.HttpClientRequest, url: URL, signal: AbortSignal | undefined) => {
    const app = route(url)
    return app === undefined
      ? Effect.fail(
        new HttpClientError.RequestError({
          request,
          reason: "Transport",
          description: `getaddrinfo ENOTFOUND ${url.hostname} (no sandbox emulator serves this host)`
        })
      )
      : Memory.dispatch(app, request, url, remoteAddress, signal)
  }
  return Memory.client(answer)
}

const routesOf = (service: Service): Map<string, HttpApp.Default<Faults.ConnectionDropped>> => {
  const routes = new Map<string, HttpApp.Default<Faults.ConnectionDropped>>()
  for (const key of ["nora", "norce", "nomba", "tokenProject"] as const) {
    routes.set(hosts[key], service[key].app)
    routes.set(new URL(service[key].baseUrl).host, service[key].app)
  }
  return routes
}

/**
 * An in-memory `HttpClient` for the `Sandbox` in context: it routes `http://nora.sandbox.test` (and the
 * other `hosts`) and each emulator's own base URL host to that emulator, without sockets.
 *
 * @example
 * ```ts
 * import { HttpClient, HttpClientRequest } from "@effect/platform"
 * import { Sandbox } from "@tollgate/testing"
 * import { Effect, Layer } from "effect"
 *
 * // An in-memory client for a sandbox served on loopback: requests skip the sockets.
 * const Live = Sandbox.layerClient().pipe(Layer.provideMerge(Sandbox.layer()))
 *
 * Effect.gen(function*() {
 *   const sandbox = yield* Sandbox.Sandbox
 *   const http = yield* HttpClient.HttpClient
 *   const response = yield* http.execute(HttpClientRequest.get(`${sandbox.nora.baseUrl}/api/forms`))
 *   console.log(response.status) // 401: no token
 * }).pipe(Effect.provide(Live), Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient = (options?: ClientOptions): Layer.Layer<HttpClient.HttpClient, never, Sandbox> =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.map(Sandbox, (service) => {
      const routes = routesOf(service)
      return makeClient((url) => routes.get(url.host), options)
    })
  )

/**
 * The sandbox in memory: the four emulators (base URLs `http://<hosts.X>`) and an `HttpClient` that reaches
 * them without sockets. Build it inside an `it.effect` test and the emulators run on its `TestClock`.
 *
 * @example
 * ```ts
 * import { OAuth2 } from "@tollgate/core"
 * import { Sandbox } from "@tollgate/testing"
 * import { Effect, Redacted } from "effect"
 *
 * // The emulators and an HttpClient that reaches them, in memory (on the TestClock inside `it.effect`).
 * Effect.gen(function*() {
 *   const sandbox = yield* Sandbox.Sandbox
 *   const { clientId, clientSecret } = sandbox.norce.credentials
 *   const source = yield* OAuth2.make({
 *     provider: "norce",
 *     tokenUrl: `https://${Sandbox.hosts.norce}/identity/1.0/connect/token`,
 *     clientId,
 *     clientSecret: Redacted.make(clientSecret),
 *     authMethod: "client_secret_post",
 *     scope: "playground"
 *   })
 *   console.log((yield* source.fetch).type) // "Bearer"
 * }).pipe(Effect.provide(Sandbox.layerMemory()), Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (
  options?: Omit<Options, "host" | "port"> & ClientOptions
): Layer.Layer<Sandbox | HttpClient.HttpClient> =>
  layerClient(options).pipe(Layer.provideMerge(Layer.effect(Sandbox, makeMemory(options))))
