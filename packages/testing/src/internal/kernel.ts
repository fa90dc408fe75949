import type { HttpApp, HttpServerRequest } from "@effect/platform"
import { HttpServerResponse } from "@effect/platform"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Context, Duration, Effect, Random, RuntimeFlags, Stream, Tracer } from "effect"
import type { Scope } from "effect"
import * as FindMyWay from "find-my-way-ts"
import { IncomingMessage } from "node:http"
import type * as Emulator from "../Emulator.js"
import * as Faults from "../Faults.js"
import * as Recording from "../Recording.js"
import * as Abort from "./abort.js"
import * as Http from "./http.js"
import * as Memory from "./memory.js"
import { TokenStore } from "./tokens.js"

/** What a route handler answers, with what the recording needs to know about it. */
export interface Handled {
  readonly response: HttpServerResponse.HttpServerResponse
  /** Whether a rate limiter counted the request. */
  readonly admitted?: boolean | undefined
  readonly client?: string | undefined
  /** For token routes: defaults to granted for 2xx, refused otherwise. */
  readonly outcome?: "granted" | "refused" | undefined
  readonly reason?: string | undefined
}

/** The parameters of a route's path template (`:formId`), decoded. */
export type Params = Readonly<Record<string, string | undefined>>

/** A route's own logic: the request and its path parameters in, what it answers out. */
export type Handler = (request: HttpServerRequest.HttpServerRequest, params: Params) => Effect.Effect<Handled>

/**
 * A handler behind the kernel's faults and recording. Its waits end when `signal` (the in-memory
 * client's abort signal, if any) aborts.
 */
export type Respond = (
  request: HttpServerRequest.HttpServerRequest,
  params: Params,
  signal: AbortSignal | undefined
) => Effect.Effect<HttpServerResponse.HttpServerResponse, Faults.ConnectionDropped | Abort.Aborted>

/**
 * A route of an emulator. Its name, `"METHOD /path/:param"`, is both what it serves (a path template as
 * the platform's `HttpRouter` takes it) and the route the recording names.
 */
export interface Route {
  readonly name: string
  readonly respond: Respond
}

type Chosen = Faults.Step | { readonly _tag: "Error" }

/** What the kernel's guard records of each answer (the route kind decides how). */
type Recorder = (
  at: number,
  request: HttpServerRequest.HttpServerRequest,
  status: number,
  handled: Handled | undefined,
  fault: Recording.Fault | undefined
) => void

interface Resolved {
  readonly path: string
  readonly respond: Respond
}

const maxResolvedUrls = 1024

/**
 * The machinery every emulator shares: fault injection in front of its routes, the recording, the token
 * store and JWT signing (`TokenStore`), the time scale and the clock skew. State is plain mutable data changed only in
 * synchronous sections, which JavaScript runs atomically.
 */
export class Kernel extends TokenStore {
  readonly timeScale: number
  readonly recordArrivals: boolean
  readonly faultConfig: Record<Faults.Target, Faults.Config> = { token: Faults.none, api: Faults.none }
  readonly scripts: Record<Faults.Target, Array<Faults.Step>> = { token: [], api: [] }
  private tokenRequests: Array<Recording.TokenRequest> = []
  private arrivals: Array<Recording.Arrival> = []
  private observers: ReadonlyArray<Recording.Observer> = []
  /** Observers that asked for arrivals not to be kept while they watch. */
  private unkept = 0
  private counters = Kernel.zero()

  constructor(
    readonly provider: Emulator.Provider,
    options: Emulator.Options | undefined,
    signingKey: string,
    kid: string
  ) {
    super(signingKey, kid, options?.clockSkewMillis ?? 0)
    const timeScale = options?.timeScale ?? 1
    if (!(timeScale > 0 && Number.isFinite(timeScale))) {
      throw new RangeError(`timeScale must be a positive number, got ${timeScale}`)
    }
    this.timeScale = timeScale
    this.recordArrivals = options?.recordArrivals ?? true
  }

  static make(provider: Emulator.Provider, options: Emulator.Options | undefined): Effect.Effect<Kernel> {
    return Effect.map(TokenStore.keys(provider), ({ key, kid }) => new Kernel(provider, options, key, kid))
  }

  private static zero() {
    return {
      issue: 0,
      refresh: 0,
      revoke: 0,
      granted: 0,
      refused: 0,
      faults: 0,
      unauthorizedToken: 0,
      unauthorizedApi: 0,
      rateLimitedToken: 0,
      rateLimitedApi: 0
    }
  }

  /** A documented duration in milliseconds, divided by the time scale. */
  scaled(millis: number): number {
    // Interpretation ALL-3: every documented duration is divided by the time scale.
    return millis / this.timeScale
  }

  snapshot(): Recording.Snapshot {
    const c = this.counters
    const arrivals = this.arrivals.slice()
    return {
      provider: this.provider,
      tokenRequests: this.tokenRequests.slice(),
      tokenCounts: {
        issue: c.issue,
        refresh: c.refresh,
        revoke: c.revoke,
        granted: c.granted,
        refused: c.refused,
        faults: c.faults
      },
      arrivals,
      unauthorized: { token: c.unauthorizedToken, api: c.unauthorizedApi },
      rateLimited: { token: c.rateLimitedToken, api: c.rateLimitedApi },
      tokensIssued: this.issuedCount,
      tokensRevoked: this.revokedCount,
      maxArrivalsInWindow: (windowMillis, filter) => Recording.maxArrivalsInWindow(arrivals, windowMillis, filter)
    }
  }

  resetRecording(): void {
    this.tokenRequests = []
    this.arrivals = []
    this.counters = Kernel.zero()
    this.issuedCount = 0
    this.revokedCount = 0
  }

  /** Hands every API arrival to `observer` until the scope closes (see `Emulator.observeArrivals`). */
  observe(observer: Recording.Observer, options?: { readonly keep?: boolean | undefined }): Effect.Effect<
    void,
    never,
    Scope.Scope
  > {
    const keep = options?.keep ?? true
    return Effect.acquireRelease(
      Effect.sync(() => {
        this.observers = [...this.observers, observer]
        if (!keep) this.unkept++
      }),
      () =>
        Effect.sync(() => {
          this.observers = this.observers.filter((o) => o !== observer)
          if (!keep) this.unkept--
        })
    )
  }

  controls(): Faults.Controls {
    return {
      set: (target, options) =>
        Effect.sync(() => {
          for (const t of target === "all" ? (["token", "api"] as const) : [target]) {
            this.faultConfig[t] = Faults.update(this.faultConfig[t], options)
          }
        }),
      config: (target) => Effect.sync(() => this.faultConfig[target]),
      script: (target, ...steps) =>
        Effect.sync(() => {
          this.scripts[target].push(...steps)
        }),
      pending: (target) => Effect.sync(() => this.scripts[target].length),
      setClockSkew: (millis) =>
        Effect.sync(() => {
          this.skewMillis = millis
        }),
      reset: Effect.sync(() => {
        this.faultConfig.token = Faults.none
        this.faultConfig.api = Faults.none
        this.scripts.token = []
        this.scripts.api = []
        this.skewMillis = 0
      })
    }
  }

  /** A token endpoint route: faults, then the handler, then recording. */
  token(kind: Recording.TokenKind, route: string, handler: Handler): Route {
    return {
      name: route,
      respond: this.guard("token", handler, (at, _request, status, handled, fault) => {
        const c = this.counters
        c[kind]++
        if (status === 401) c.unauthorizedToken++
        if (status === 429) c.rateLimitedToken++
        const outcome: Recording.TokenOutcome = fault !== undefined
          ? "fault"
          : handled?.outcome ?? (status >= 200 && status < 300 ? "granted" : "refused")
        c[outcome === "fault" ? "faults" : outcome]++
        if (this.recordArrivals) {
          this.tokenRequests.push({ at, kind, route, status, outcome, reason: fault ?? handled?.reason })
        }
      })
    }
  }

  /** An API route: faults, then the handler, then recording. */
  api(route: string, handler: Handler): Route {
    return { name: route, respond: this.apiGuard(route, handler) }
  }

  private apiGuard(route: string, handler: Handler): Respond {
    return this.guard("api", handler, (at, request, status, handled, fault) => {
      const c = this.counters
      if (status === 401) c.unauthorizedApi++
      if (status === 429) c.rateLimitedApi++
      const keep = this.recordArrivals && this.unkept === 0
      if (keep || this.observers.length > 0) {
        const arrival: Recording.Arrival = {
          at,
          method: request.method,
          route,
          path: Http.pathOf(request.url),
          status,
          admitted: handled?.admitted ?? false,
          client: handled?.client,
          fault
        }
        if (keep) this.arrivals.push(arrival)
        for (const observer of this.observers) observer(arrival)
      }
    })
  }

  /**
   * The emulator's app: each request goes to the route its method and path match, and an unknown route
   * is answered with `notFound` (through the API faults, recorded as `"METHOD *"`).
   *
   * Routes are matched by find-my-way, as the platform's `HttpRouter` matches them (a `HEAD` falls back
   * to the `GET` route), and a matched route runs interruptibly with the route's path set as the
   * current span's `http.route`, as there. The router itself is not used: per request it copies the
   * fiber's whole context and runs the route under `Effect.locally`, which was most of the time an
   * emulator took to answer in memory. The app also hands the in-memory transport a direct entry that
   * takes the request as an argument, so no context is provided at all there.
   */
  app(
    routes: ReadonlyArray<Route>,
    notFound: (request: HttpServerRequest.HttpServerRequest) => HttpServerResponse.HttpServerResponse
  ): HttpApp.Default<Faults.ConnectionDropped> {
    const router = FindMyWay.make<Resolved>()
    for (const route of routes) {
      const space = route.name.indexOf(" ")
      const path = route.name.slice(space + 1) as `/${string}`
      router.on(route.name.slice(0, space), path, { path, respond: route.respond })
    }
    const unknown = new Map<string, Respond>()
    const notFoundOf = (method: string): Respond => {
      let respond = unknown.get(method)
      if (respond === undefined) {
        respond = this.apiGuard(`${method} *`, (request) => Effect.succeed({ response: notFound(request) }))
        unknown.set(method, respond)
      }
      return respond
    }
    const noParams: Params = {}
    // What a method and URL resolve to never changes, and clients send the same few URLs over and over:
    // each is resolved once (the router also parses the query string every time).
    const resolved = new Map<string, FindMyWay.FindResult<Resolved> | null>()
    const resolve = (method: string, url: string) => {
      const key = `${method} ${url}`
      let found = resolved.get(key)
      if (found === undefined) {
        found = router.find(method, url) ?? (method === "HEAD" ? router.find("GET", url) : undefined) ?? null
        if (resolved.size >= maxResolvedUrls) resolved.clear()
        resolved.set(key, found)
      }
      return found
    }
    const handle: Memory.Handle<Faults.ConnectionDropped> = (request, signal) => {
      const found = resolve(request.method, request.url)
      if (found === null) return notFoundOf(request.method)(request, noParams, signal)
      const route = found.handler
      const params = found.params
      return Effect.withFiberRuntime((fiber, status) => {
        const span = Context.getOption(fiber.currentContext, Tracer.ParentSpan)
        if (span._tag === "Some" && span.value._tag === "Span") span.value.attribute("http.route", route.path)
        const respond = route.respond(request, params, signal)
        // A region that is interruptible already needs no switch (and its revert) per request.
        return RuntimeFlags.interruption(status.runtimeFlags) ? respond : Effect.interruptible(respond)
      })
    }
    return Memory.app(handle)
  }

  private dateSecond = Number.NaN
  private dateValue = ""

  /** The `Date` header for an instant: formatted once per second, which is all it shows. */
  private dateHeader(at: number): string {
    const second = Math.floor(at / 1000)
    if (second !== this.dateSecond) {
      this.dateSecond = second
      this.dateValue = new Date(at).toUTCString()
    }
    return this.dateValue
  }

  /**
   * Faults in front of a handler, then the recording. Written as plain functions over a few Effects
   * rather than a generator: an emulator answers every request of a long simulation through it.
   */
  private guard(
    target: Faults.Target,
    handler: Handler,
    record: Recorder
  ): Respond {
    const answer = (
      request: HttpServerRequest.HttpServerRequest,
      params: Params,
      signal: AbortSignal | undefined,
      config: Faults.Config,
      step: Faults.Step | undefined
    ) =>
      Effect.clockWith((clock) => {
        const at = clock.unsafeCurrentTimeMillis()
        if (step !== undefined) {
          return step._tag === "PassThrough"
            ? this.handle(request, params, handler, record, at)
            : this.fault(request, signal, config, target, step, record, at)
        }
        const total = config.dropRate + config.timeoutRate + config.errorRate
        if (!(total > 0)) return this.handle(request, params, handler, record, at)
        return Effect.flatMap(Random.next, (u) => {
          const chosen: Chosen | undefined = u < config.dropRate
            ? Faults.drop({ mode: config.dropMode })
            : u < config.dropRate + config.timeoutRate
            ? Faults.timeout()
            : u < total
            ? { _tag: "Error" }
            : undefined
          return chosen === undefined
            ? this.handle(request, params, handler, record, at)
            : this.fault(request, signal, config, target, chosen, record, at)
        })
      })
    // The waits (latency, a scripted delay) come before the request arrives: one aborted then never does.
    return (request, params, signal) =>
      Effect.suspend(() => {
        const step = this.scripts[target].shift()
        const config = this.faultConfig[target]
        const answered = answer(request, params, signal, config, step)
        const delay = step?.delay === undefined ? 0 : Duration.toMillis(step.delay)
        const delayed = delay > 0 ? Effect.zipRight(Abort.sleep(delay, signal), answered) : answered
        const latency = config.latency
        if (latency === undefined) return delayed
        const min = Duration.toMillis(latency.min)
        const max = Duration.toMillis(latency.max)
        const sleep = (millis: number) => millis > 0 ? Effect.zipRight(Abort.sleep(millis, signal), delayed) : delayed
        return max > min ? Effect.flatMap(Random.next, (u) => sleep(min + u * (max - min))) : sleep(min)
      })
  }

  private handle(
    request: HttpServerRequest.HttpServerRequest,
    params: Params,
    handler: Handler,
    record: Recorder,
    at: number
  ): Effect.Effect<HttpServerResponse.HttpServerResponse> {
    return Effect.map(handler(request, params), (handled) => {
      record(at, request, handled.response.status, handled, undefined)
      return HttpServerResponse.setHeader(handled.response, "date", this.dateHeader(at))
    })
  }

  private fault(
    request: HttpServerRequest.HttpServerRequest,
    signal: AbortSignal | undefined,
    config: Faults.Config,
    target: Faults.Target,
    chosen: Chosen,
    record: Recorder,
    at: number
  ): Effect.Effect<HttpServerResponse.HttpServerResponse, Faults.ConnectionDropped | Abort.Aborted> {
    switch (chosen._tag) {
      case "Respond": {
        record(at, request, chosen.status, undefined, "scripted")
        return Effect.succeed(Http.raw(chosen.status, chosen.body, chosen.headers))
      }
      case "Error": {
        record(at, request, config.errorStatus, undefined, "error")
        return Effect.succeed(HttpServerResponse.setHeader(errorPage(config), "date", this.dateHeader(at)))
      }
      case "Timeout": {
        record(at, request, 0, undefined, "timeout")
        return Abort.hang(signal)
      }
      case "Drop": {
        record(at, request, 0, undefined, "drop")
        return dropConnection(request, chosen.mode, target)
      }
      case "PassThrough": {
        return Effect.dieMessage("unreachable")
      }
    }
  }
}

const errorPage = (config: Faults.Config): HttpServerResponse.HttpServerResponse => {
  const status = config.errorStatus
  const text = Http.statusText(status)
  return config.errorBody === "json"
    ? Http.json(status, { statusCode: status, message: text })
    : HttpServerResponse.html(
      `<!DOCTYPE html>\n<html>\n<head><title>${status} ${text}</title></head>\n<body>\n<center><h1>${status} ${text}</h1></center>\n<hr><center>sandbox-proxy</center>\n</body>\n</html>\n`
    ).pipe(HttpServerResponse.setStatus(status))
}

const partialBody = "{\"partial\":\"the connection was dropped in the middle of this bo"

const dropConnection = (
  request: HttpServerRequest.HttpServerRequest,
  mode: Faults.DropMode,
  target: Faults.Target
): Effect.Effect<HttpServerResponse.HttpServerResponse, Faults.ConnectionDropped> => {
  if (request.source instanceof IncomingMessage) {
    // On loopback: really tear the TCP connection down. The server interrupts this fiber when the
    // response closes, so waiting forever here is only until then.
    const socket = request.source.socket
    return Effect.zipRight(
      Effect.sync(() => {
        if (mode === "partial") {
          const response = NodeHttpServerRequest.toServerResponse(request)
          response.writeHead(200, { "content-type": "application/json", "content-length": "4096" })
          response.write(partialBody, () => socket.destroy())
        } else {
          socket.destroy()
        }
      }),
      Effect.never
    )
  }
  if (mode === "partial") {
    return Effect.succeed(
      HttpServerResponse.stream(
        Stream.concat(
          Stream.make(new TextEncoder().encode(partialBody)),
          Stream.fail(new Faults.ConnectionDropped({ target }))
        ),
        { status: 200, contentType: "application/json" }
      )
    )
  }
  return Effect.fail(new Faults.ConnectionDropped({ target }))
}
