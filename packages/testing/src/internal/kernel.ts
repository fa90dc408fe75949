import type { HttpApp, HttpRouter } from "@effect/platform"
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Clock, Duration, Effect, Random, Stream } from "effect"
import type { Scope } from "effect"
import { IncomingMessage } from "node:http"
import type * as Emulator from "../Emulator.js"
import * as Faults from "../Faults.js"
import * as Recording from "../Recording.js"
import * as Http from "./http.js"
import * as Jwt from "./jwt.js"

/** An access token the emulator issued. */
export interface TokenRecord {
  readonly jti: string
  /** The client, app or account the token was issued to. */
  readonly subject: string
  readonly issuedAt: number
  /** Server-side expiry in ms from the Clock, undefined when the token never expires. */
  readonly expiresAt: number | undefined
  revoked: boolean
  /** Provider details, e.g. Nomba's account id. */
  readonly data: Readonly<Record<string, string>>
}

/** The result of checking the bearer token of a request. */
export type BearerCheck =
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Invalid"; readonly reason: string; readonly subject: string | undefined }
  | { readonly _tag: "Valid"; readonly record: TokenRecord; readonly token: string }

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

type Chosen = Faults.Step | { readonly _tag: "Error" }

const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

/** A random string from Effect's `Random`. */
export const randomString = (length: number, chars: string = alphabet): Effect.Effect<string> =>
  Effect.map(
    Effect.all(Array.from({ length }, () => Random.nextIntBetween(0, chars.length))),
    (indexes) => indexes.map((i) => chars[i]).join("")
  )

const maxTokenRecords = 10_000

/**
 * The machinery every emulator shares: fault injection in front of its routes, the recording, the token
 * store and JWT signing, the time scale and the clock skew. State is plain mutable data changed only in
 * synchronous sections, which JavaScript runs atomically.
 */
export class Kernel {
  readonly timeScale: number
  skewMillis: number
  readonly recordArrivals: boolean
  readonly faultConfig: Record<Faults.Target, Faults.Config> = { token: Faults.none, api: Faults.none }
  readonly scripts: Record<Faults.Target, Array<Faults.Step>> = { token: [], api: [] }
  readonly tokens = new Map<string, TokenRecord>()
  /**
   * The `jti` of each token string whose signature already checked out. The key never changes, so a
   * token verified once verifies forever; a client sends the same token thousands of times, and an HMAC
   * per request was a large share of an emulator's time in long simulations.
   */
  private readonly verified = new Map<string, string>()
  private tokenRequests: Array<Recording.TokenRequest> = []
  private arrivals: Array<Recording.Arrival> = []
  private observers: ReadonlyArray<Recording.Observer> = []
  /** Observers that asked for arrivals not to be kept while they watch. */
  private unkept = 0
  private counters = Kernel.zero()
  private sequence = 0

  constructor(
    readonly provider: Emulator.Provider,
    options: Emulator.Options | undefined,
    private readonly signingKey: string,
    private readonly kid: string
  ) {
    const timeScale = options?.timeScale ?? 1
    if (!(timeScale > 0 && Number.isFinite(timeScale))) {
      throw new RangeError(`timeScale must be a positive number, got ${timeScale}`)
    }
    this.timeScale = timeScale
    this.skewMillis = options?.clockSkewMillis ?? 0
    this.recordArrivals = options?.recordArrivals ?? true
  }

  static make(provider: Emulator.Provider, options: Emulator.Options | undefined): Effect.Effect<Kernel> {
    return Effect.zipWith(
      randomString(43, alphabet + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
      randomString(8),
      (key, kid) => new Kernel(provider, options, key, `${provider}-${kid}`)
    )
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
      rateLimitedApi: 0,
      tokensIssued: 0,
      tokensRevoked: 0
    }
  }

  /** A documented duration in milliseconds, divided by the time scale. */
  scaled(millis: number): number {
    // Interpretation ALL-3: every documented duration is divided by the time scale.
    return millis / this.timeScale
  }

  /**
   * Issues a signed JWT and remembers it. Interpretation ALL-1: tokens are HS256 JWTs signed by this
   * emulator instance; no other string verifies.
   */
  issue(options: {
    readonly subject: string
    readonly lifetimeMillis: number | undefined
    readonly claims: Record<string, unknown>
    readonly exp: boolean
    readonly data?: Readonly<Record<string, string>> | undefined
  }): Effect.Effect<{ readonly token: string; readonly record: TokenRecord }> {
    return Effect.gen(this, function*() {
      const now = yield* Clock.currentTimeMillis
      const jti = `${yield* randomString(20)}${(this.sequence++).toString(36)}`
      const expiresAt = options.lifetimeMillis === undefined ? undefined : now + options.lifetimeMillis
      const payload: Record<string, unknown> = {
        ...options.claims,
        iat: Math.floor((now + this.skewMillis) / 1000)
      }
      if (options.exp && expiresAt !== undefined) payload.exp = Math.floor((expiresAt + this.skewMillis) / 1000)
      payload.jti = jti
      const token = Jwt.sign(payload, this.signingKey, this.kid)
      const record: TokenRecord = {
        jti,
        subject: options.subject,
        issuedAt: now,
        expiresAt,
        revoked: false,
        data: options.data ?? {}
      }
      if (this.tokens.size >= maxTokenRecords) this.prune(now)
      this.tokens.set(jti, record)
      this.counters.tokensIssued++
      return { token, record }
    })
  }

  private prune(now: number): void {
    for (const [jti, record] of this.tokens) {
      if (record.revoked || (record.expiresAt !== undefined && record.expiresAt <= now)) this.tokens.delete(jti)
    }
  }

  /** The record of a token issued here (whatever its state), or undefined for anything else. */
  recordOf(token: string): TokenRecord | undefined {
    let jti = this.verified.get(token)
    if (jti === undefined) {
      const claims = Jwt.verify(token, this.signingKey)
      if (claims === undefined || typeof claims.jti !== "string") return undefined
      jti = claims.jti
      // Bounded like the token store: forgetting a verification only costs an HMAC the next time.
      if (this.verified.size >= maxTokenRecords) this.verified.clear()
      this.verified.set(token, jti)
    }
    return this.tokens.get(jti)
  }

  /** Checks a raw token string. */
  checkToken(token: string, now: number): BearerCheck {
    const record = this.recordOf(token)
    if (record === undefined) return { _tag: "Invalid", reason: "not a token issued here", subject: undefined }
    if (record.revoked) return { _tag: "Invalid", reason: "token revoked", subject: record.subject }
    if (record.expiresAt !== undefined && now >= record.expiresAt) {
      return { _tag: "Invalid", reason: "token expired", subject: record.subject }
    }
    return { _tag: "Valid", record, token }
  }

  /** Checks the `Authorization: Bearer` header of a request. */
  checkBearer(request: HttpServerRequest.HttpServerRequest, now: number): BearerCheck {
    const header = request.headers["authorization"]
    if (header === undefined || header.trim() === "") return { _tag: "Missing" }
    const match = /^Bearer +(\S+) *$/i.exec(header)
    if (match === null) return { _tag: "Invalid", reason: "malformed Authorization header", subject: undefined }
    return this.checkToken(match[1]!, now)
  }

  /** Revokes the live tokens matching `predicate`; returns how many. */
  revokeWhere(now: number, predicate: (record: TokenRecord) => boolean): number {
    let count = 0
    for (const record of this.tokens.values()) {
      if (record.revoked || (record.expiresAt !== undefined && record.expiresAt <= now)) continue
      if (!predicate(record)) continue
      record.revoked = true
      count++
    }
    this.counters.tokensRevoked += count
    return count
  }

  /** Counts a token revoked by other means than `revokeWhere`. */
  countRevoked(count: number): void {
    this.counters.tokensRevoked += count
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
      tokensIssued: c.tokensIssued,
      tokensRevoked: c.tokensRevoked,
      maxArrivalsInWindow: (windowMillis, filter) => Recording.maxArrivalsInWindow(arrivals, windowMillis, filter)
    }
  }

  resetRecording(): void {
    this.tokenRequests = []
    this.arrivals = []
    this.counters = Kernel.zero()
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

  /** Wraps a token endpoint handler: faults, then recording. */
  token<R>(
    kind: Recording.TokenKind,
    route: string,
    handler: Effect.Effect<Handled, never, R>
  ): Effect.Effect<
    HttpServerResponse.HttpServerResponse,
    Faults.ConnectionDropped,
    R | HttpServerRequest.HttpServerRequest
  > {
    return this.guard("token", handler, (at, _request, status, handled, fault) => {
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

  /** Wraps an API route handler: faults, then recording. */
  api<R>(
    route: string,
    handler: Effect.Effect<Handled, never, R>
  ): Effect.Effect<
    HttpServerResponse.HttpServerResponse,
    Faults.ConnectionDropped,
    R | HttpServerRequest.HttpServerRequest
  > {
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

  /** Turns a router into the emulator's app, answering unknown routes with `notFound` (through the API faults). */
  app(
    router: HttpRouter.HttpRouter<Faults.ConnectionDropped, never>,
    notFound: (request: HttpServerRequest.HttpServerRequest) => HttpServerResponse.HttpServerResponse
  ): HttpApp.Default<Faults.ConnectionDropped> {
    return Effect.catchTag(
      router,
      "RouteNotFound",
      (error) => this.api(`${error.request.method} *`, Effect.succeed({ response: notFound(error.request) }))
    )
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

  private guard<R>(
    target: Faults.Target,
    handler: Effect.Effect<Handled, never, R>,
    record: (
      at: number,
      request: HttpServerRequest.HttpServerRequest,
      status: number,
      handled: Handled | undefined,
      fault: Recording.Fault | undefined
    ) => void
  ): Effect.Effect<
    HttpServerResponse.HttpServerResponse,
    Faults.ConnectionDropped,
    R | HttpServerRequest.HttpServerRequest
  > {
    return Effect.gen(this, function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const step = this.scripts[target].shift()
      const config = this.faultConfig[target]
      if (config.latency !== undefined) {
        const min = Duration.toMillis(config.latency.min)
        const max = Duration.toMillis(config.latency.max)
        const millis = max > min ? min + (yield* Random.next) * (max - min) : min
        if (millis > 0) yield* Effect.sleep(Duration.millis(millis))
      }
      if (step?.delay !== undefined) yield* Effect.sleep(step.delay)
      const at = yield* Clock.currentTimeMillis
      let chosen: Chosen | undefined = step !== undefined && step._tag !== "PassThrough" ? step : undefined
      if (step === undefined) {
        const total = config.dropRate + config.timeoutRate + config.errorRate
        if (total > 0) {
          const u = yield* Random.next
          if (u < config.dropRate) chosen = Faults.drop({ mode: config.dropMode })
          else if (u < config.dropRate + config.timeoutRate) chosen = Faults.timeout()
          else if (u < total) chosen = { _tag: "Error" }
        }
      }
      if (chosen === undefined) {
        const handled = yield* handler
        record(at, request, handled.response.status, handled, undefined)
        return HttpServerResponse.setHeader(handled.response, "date", this.dateHeader(at))
      }
      switch (chosen._tag) {
        case "Respond": {
          record(at, request, chosen.status, undefined, "scripted")
          return Http.raw(chosen.status, chosen.body, chosen.headers)
        }
        case "Error": {
          record(at, request, config.errorStatus, undefined, "error")
          return HttpServerResponse.setHeader(errorPage(config), "date", this.dateHeader(at))
        }
        case "Timeout": {
          record(at, request, 0, undefined, "timeout")
          return yield* Effect.never
        }
        case "Drop": {
          record(at, request, 0, undefined, "drop")
          return yield* dropConnection(request, chosen.mode, target)
        }
        case "PassThrough": {
          return yield* Effect.dieMessage("unreachable")
        }
      }
    })
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
