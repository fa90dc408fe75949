/**
 * The Redis connection a fleet shares its token and its request budget through: atomic Lua scripts
 * sent by digest, a client set up to fail fast rather than queue.
 *
 * The design: `docs/redis.md` in the repository.
 *
 * @since 0.1.0
 */
import * as Scrub from "@tollgate/core/Scrub"
import { Config, Context, Duration, Effect, Layer, Option, Redacted, Runtime, Schema } from "effect"
import type { ConfigError, Scope } from "effect"
import { Redis } from "ioredis"
import type { Cluster, RedisOptions } from "ioredis"
import { createHash, randomBytes } from "node:crypto"
import * as Durations from "./internal/durations.js"

/**
 * What went wrong with Redis, so that callers can say it and act on it: `unreachable` (no connection),
 * `timeout` (no answer within the command timeout: Redis stalled or is overloaded), `auth` (a wrong
 * password or user: fix the URL), `oom` (Redis reached `maxmemory`), `readonly` (connected to a
 * replica), `config` (the URL itself is malformed), `other` (a script error, anything else).
 *
 * @since 0.2.0
 * @category models
 */
export type ErrorKind = "unreachable" | "timeout" | "auth" | "oom" | "readonly" | "config" | "other"

/**
 * Redis could not be reached or refused a command. `kind` classifies the cause; `reason` is the
 * client's or the server's first line of text, scrubbed of URL credentials; it never carries a
 * command's arguments, so never a token, secret or key material.
 *
 * @since 0.1.0
 * @category errors
 */
export class RedisError extends Schema.TaggedError<RedisError>("@tollgate/redis/RedisError")("RedisError", {
  operation: Schema.String,
  kind: Schema.optionalWith(Schema.Literal("unreachable", "timeout", "auth", "oom", "readonly", "config", "other"), {
    default: () => "other"
  }),
  reason: Schema.String
}) {
  /**
   * The cause in a few words ("Redis is unreachable", "Redis is out of memory").
   *
   * @since 0.2.0
   */
  get summary(): string {
    return summaries[this.kind]
  }
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `Redis ${this.operation} failed: ${this.summary} (${this.reason})`
  }
}

const summaries: Record<ErrorKind, string> = {
  unreachable: "Redis is unreachable",
  timeout: "Redis did not answer in time",
  auth: "Redis refused the credentials",
  oom: "Redis is out of memory (maxmemory reached)",
  readonly: "Redis is a read-only replica",
  config: "the Redis URL is invalid",
  other: "Redis returned an error"
}

/**
 * A standalone client or a cluster client: every key a Tollgate script touches shares one hash tag, so
 * each script runs on a single slot.
 *
 * @since 0.1.0
 * @category models
 */
export type Client = Redis | Cluster

/**
 * A Lua script with its SHA-1 digest, ready for `EVALSHA`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Script {
  /** Names the script in errors. */
  readonly name: string
  readonly source: string
  readonly sha: string
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const script = (name: string, source: string): Script => ({
  name,
  source,
  sha: createHash("sha1").update(source).digest("hex")
})

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly client: Client
  /** Prepended to every key, e.g. `tollgate`. */
  readonly prefix: string
  /** Unique to this connection: names this process's permits, leases and memberships in Redis. */
  readonly instanceId: string
  /**
   * Runs `script` atomically: `EVALSHA`, then `EVAL` once if the server no longer has it. With `inline`,
   * `EVAL` at once: for a command that must work even when its answer is never read (sent after a
   * timeout, to undo what a late command did), where no `NOSCRIPT` could be answered with a retry.
   */
  readonly run: (
    script: Script,
    keys: ReadonlyArray<string>,
    args: ReadonlyArray<string | number>,
    options?: { readonly inline?: boolean | undefined }
  ) => Effect.Effect<unknown, RedisError>
  /** Whether the client is connected and ready now. */
  readonly isReady: Effect.Effect<boolean>
  /** Scripts re-sent whole after a `NOSCRIPT` answer, since the connection was made. */
  readonly reloads: Effect.Effect<number>
}

/**
 * The shared connection of a program. Each Redis-backed cache and limiter takes it from context.
 *
 * @since 0.1.0
 * @category tags
 */
export class RedisConnection extends Context.Tag("@tollgate/redis/RedisConnection")<RedisConnection, Service>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `redis://[[user]:password@]host[:port][/db]` or `rediss://…`. Default: `redis://127.0.0.1:6379`. */
  readonly url?: string | Redacted.Redacted<string> | undefined
  /** Prepended to every key. Default: `tollgate`. */
  readonly prefix?: string | undefined
  /** Bound on every command; past it the command fails (and the caller fails closed). Default: 2 seconds. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /** Bound on each connection attempt. Default: 2 seconds. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** Delay between reconnection attempts: doubling from `base` up to `max`, forever. Default: 50 ms to 2 s. */
  readonly reconnect?: {
    readonly base?: Duration.DurationInput | undefined
    readonly max?: Duration.DurationInput | undefined
  } | undefined
  /**
   * Fail building the connection with `RedisError` when Redis cannot be reached within
   * `connectTimeout`. Default: false — the program starts, every shared operation fails closed until
   * Redis answers, and a warning is logged.
   */
  readonly failIfUnreachable?: boolean | undefined
  /** Further ioredis options, applied last (the fail-fast settings above can be overridden here). */
  readonly redisOptions?: RedisOptions | undefined
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  url: "redis://127.0.0.1:6379",
  prefix: "tollgate",
  commandTimeout: Duration.seconds(2),
  connectTimeout: Duration.seconds(2),
  reconnectBase: Duration.millis(50),
  reconnectMax: Duration.seconds(2)
} as const

const firstLine = (error: unknown): string => {
  const text = error instanceof Error ? error.message : typeof error === "string" ? error : "unknown error"
  return Scrub.text(text.split("\n")[0] ?? "", [], { maxLength: 200 })
}

/**
 * Classifies what the client threw: a server reply by its error code (`OOM`, `WRONGPASS`, `NOAUTH`,
 * `READONLY`), a client error by its text. ioredis reports a command on a connection that is down as
 * "Stream isn't writeable": the cause is then the connection's last error, when there is one (a wrong
 * password shows up there, not on the command).
 *
 * @since 0.2.0
 * @category errors
 */
export const classify = (
  error: unknown,
  lastConnectionError?: string | undefined
): { readonly kind: ErrorKind; readonly reason: string } => {
  const reason = firstLine(error)
  const code = /^[A-Z]+/.exec(reason)?.[0]
  if (code === "OOM" || /\bOOM command not allowed\b/.test(reason)) return { kind: "oom", reason }
  if (code === "WRONGPASS" || code === "NOAUTH" || code === "NOPERM" || /invalid password|AUTH/.test(reason)) {
    return { kind: "auth", reason }
  }
  if (code === "READONLY") return { kind: "readonly", reason }
  if (/timed out/i.test(reason)) return { kind: "timeout", reason }
  if (
    /Stream isn't writeable|Connection is closed|max retries|ECONNREFUSED|ECONNRESET|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|EPIPE/i
      .test(reason)
  ) {
    if (lastConnectionError !== undefined) {
      const cause = classify(lastConnectionError)
      if (cause.kind === "auth" || cause.kind === "oom") return cause
      return { kind: "unreachable", reason: `no connection; last error: ${cause.reason}` }
    }
    return { kind: "unreachable", reason: /Stream isn't writeable/.test(reason) ? "no connection" : reason }
  }
  return { kind: "other", reason }
}

const isNoScript = (error: unknown): boolean => error instanceof Error && error.message.startsWith("NOSCRIPT")

/**
 * Wraps a client made elsewhere (a `Cluster`, a Sentinel setup, a client with TLS settings). The caller
 * keeps ownership: the client is not closed with the scope. For failing closed, configure it with
 * `enableOfflineQueue: false` and a `commandTimeout`.
 *
 * @example
 * ```ts
 * import { RedisConnection } from "@tollgate/redis"
 * import { Redis } from "ioredis"
 *
 * // A client configured elsewhere (here lazily, so nothing connects until the first command). For failing
 * // closed, disable the offline queue and bound each command.
 * const client = new Redis({ lazyConnect: true, enableOfflineQueue: false, commandTimeout: 2000 })
 * const connection = RedisConnection.fromClient(client, { prefix: "my-service" })
 * console.log(connection.prefix) // "my-service"
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromClient = (
  client: Client,
  options?: {
    readonly prefix?: string | undefined
    /** The connection's last error, when the caller tracks it: names the cause of "Stream isn't writeable". */
    readonly lastError?: (() => string | undefined) | undefined
  }
): Service => {
  let reloads = 0
  const run = (
    script: Script,
    keys: ReadonlyArray<string>,
    args: ReadonlyArray<string | number>,
    runOptions?: { readonly inline?: boolean | undefined }
  ): Effect.Effect<unknown, RedisError> =>
    Effect.tryPromise({
      try: async () => {
        const tail = [keys.length, ...keys, ...args]
        if (runOptions?.inline === true) return await client.call("EVAL", script.source, ...tail)
        try {
          return await client.call("EVALSHA", script.sha, ...tail)
        } catch (error) {
          if (!isNoScript(error)) throw error
          reloads++
          return await client.call("EVAL", script.source, ...tail)
        }
      },
      catch: (error) => new RedisError({ operation: script.name, ...classify(error, options?.lastError?.()) })
    })
  return {
    client,
    prefix: options?.prefix ?? defaults.prefix,
    instanceId: randomBytes(9).toString("base64url"),
    run,
    isReady: Effect.sync(() => client.status === "ready"),
    reloads: Effect.sync(() => reloads)
  }
}

/**
 * Connects to Redis, owned by the current scope (closing it quits the connection). The connection
 * reconnects forever in the background; commands issued while it is down fail at once.
 *
 * @example
 * ```ts
 * import { RedisConnection, RedisRateLimiter } from "@tollgate/redis"
 * import { RateLimiter } from "@tollgate/core"
 * import { Effect, Redacted } from "effect"
 *
 * // The connection lives in the program's scope; shared limiters and caches are built over it.
 * const program = Effect.gen(function*() {
 *   const connection = yield* RedisConnection.make({
 *     url: Redacted.make("redis://127.0.0.1:6379"),
 *     prefix: "my-service",
 *     commandTimeout: "500 millis"
 *   })
 *   const limiter = yield* RedisRateLimiter.make(RateLimiter.slidingWindow({ limit: 60, window: "1 minute" })).pipe(
 *     Effect.provideService(RedisConnection.RedisConnection, connection)
 *   )
 *   return yield* limiter.withPermit()(Effect.succeed("sent"))
 * }).pipe(Effect.scoped)
 *
 * // Effect.runPromise(program) with a Redis at 127.0.0.1:6379
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Service, RedisError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* checkUrl(
      options.url === undefined
        ? defaults.url
        : Redacted.isRedacted(options.url)
        ? Redacted.value(options.url)
        : options.url
    )
    const url = options.url === undefined
      ? defaults.url
      : Redacted.isRedacted(options.url)
      ? Redacted.value(options.url)
      : options.url
    const invalid = Durations.firstInvalid("RedisConnection.make", {
      commandTimeout: options.commandTimeout,
      connectTimeout: options.connectTimeout,
      "reconnect.base": options.reconnect?.base,
      "reconnect.max": options.reconnect?.max
    })
    if (invalid !== undefined) {
      return yield* Effect.fail(new RedisError({ operation: "connect", kind: "config", reason: invalid.message }))
    }
    const commandTimeout = Duration.toMillis(options.commandTimeout ?? defaults.commandTimeout)
    const connectTimeout = Duration.toMillis(options.connectTimeout ?? defaults.connectTimeout)
    const base = Duration.toMillis(options.reconnect?.base ?? defaults.reconnectBase)
    const max = Duration.toMillis(options.reconnect?.max ?? defaults.reconnectMax)
    const runtime = yield* Effect.runtime<never>()
    const log = (effect: Effect.Effect<void>) => Runtime.runFork(runtime)(effect)

    const client = yield* Effect.acquireRelease(
      Effect.try({
        try: () =>
          new Redis(url, {
            lazyConnect: true,
            enableOfflineQueue: false,
            autoResendUnfulfilledCommands: false,
            maxRetriesPerRequest: 0,
            commandTimeout,
            connectTimeout,
            retryStrategy: (times) => Math.min(max, base * 2 ** Math.min(times - 1, 20)),
            ...options.redisOptions
          }),
        // The client parses the URL itself and throws on what it cannot read; never quote the URL.
        catch: () => new RedisError({ operation: "connect", kind: "config", reason: `cannot parse ${Scrub.url(url)}` })
      }),
      (client) =>
        Effect.promise(() => client.quit().catch(() => undefined)).pipe(
          Effect.timeout(Duration.seconds(1)),
          Effect.ignore,
          Effect.ensuring(Effect.sync(() => client.disconnect()))
        )
    )

    // ioredis reports connection errors as events; without a listener it prints them. Transitions are
    // logged once each, never the URL (it may hold a password).
    let lost = false
    let lastError: string | undefined = undefined
    client.on("error", (error: unknown) => {
      lastError = firstLine(error)
      if (lost) return
      lost = true
      log(
        Effect.logWarning("Tollgate lost its Redis connection; shared operations fail closed until it is back").pipe(
          Effect.annotateLogs({ reason: firstLine(error) })
        )
      )
    })
    client.on("ready", () => {
      lastError = undefined
      if (!lost) return
      lost = false
      log(Effect.logInfo("Tollgate's Redis connection is back"))
    })

    const connected = yield* Effect.tryPromise({
      try: () => client.connect(),
      catch: (error) => new RedisError({ operation: "connect", ...classify(error, lastError) })
    }).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(connectTimeout + 100),
        onTimeout: () => new RedisError({ operation: "connect", kind: "timeout", reason: "timed out" })
      }),
      Effect.either
    )
    if (connected._tag === "Left") {
      if (options.failIfUnreachable === true) return yield* Effect.fail(connected.left)
      lost = true
      yield* Effect.logWarning("Tollgate cannot reach Redis yet; shared operations fail closed until it answers").pipe(
        Effect.annotateLogs({ reason: connected.left.reason })
      )
    }
    return fromClient(client, { prefix: options.prefix, lastError: () => lastError })
  })

// A malformed URL is a typed error before any client sees it: ioredis decodes the user-info with
// `decodeURIComponent` and throws a `URIError` (a defect) on `%ZZ`. Nothing of the URL but its shape
// is ever quoted.
const checkUrl = (url: string): Effect.Effect<void, RedisError> => {
  const invalid = (why: string) =>
    Effect.fail(new RedisError({ operation: "connect", kind: "config", reason: `${why} (got ${Scrub.url(url)})` }))
  if (!/^rediss?:\/\//i.test(url.trim())) return invalid("expected a redis:// or rediss:// URL")
  let parsed: URL
  try {
    parsed = new URL(url.trim())
  } catch {
    return invalid("not a valid URL")
  }
  for (const part of [parsed.username, parsed.password, parsed.pathname]) {
    try {
      decodeURIComponent(part)
    } catch {
      return invalid("malformed percent-encoding in the URL")
    }
  }
  return Effect.void
}

/**
 * @example
 * ```ts
 * import { RedisConnection } from "@tollgate/redis"
 * import { Redacted } from "effect"
 *
 * // One connection for the whole program, quit when the program's scope closes.
 * const RedisLive = RedisConnection.layer({
 *   url: Redacted.make("redis://127.0.0.1:6379/0"),
 *   prefix: "my-service",
 *   failIfUnreachable: true // fail at start-up rather than failing closed on every shared operation
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<RedisConnection, RedisError> =>
  Layer.scoped(RedisConnection, make(options))

/**
 * The connection settings from the environment: `REDIS_URL` (secret: it may hold a password; default
 * `redis://127.0.0.1:6379`), `TOLLGATE_REDIS_PREFIX` (default `tollgate`) and
 * `TOLLGATE_REDIS_COMMAND_TIMEOUT` (a duration such as `2 seconds`).
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  url: Config.redacted("REDIS_URL").pipe(Config.withDefault(Redacted.make(defaults.url))),
  prefix: Config.string("TOLLGATE_REDIS_PREFIX").pipe(Config.withDefault(defaults.prefix)),
  commandTimeout: Config.option(Config.duration("TOLLGATE_REDIS_COMMAND_TIMEOUT"))
}).pipe(Config.map(({ commandTimeout, prefix, url }) => ({
  url,
  prefix,
  commandTimeout: Option.getOrUndefined(commandTimeout)
})))

/**
 * `layer` with the settings of `config`, plus overrides (the environment's command timeout, when set,
 * wins).
 *
 * @example
 * ```ts
 * import { RedisConnection } from "@tollgate/redis"
 *
 * // REDIS_URL, TOLLGATE_REDIS_PREFIX and TOLLGATE_REDIS_COMMAND_TIMEOUT from the environment, plus code-only settings.
 * const RedisLive = RedisConnection.layerConfig({ connectTimeout: "5 seconds", failIfUnreachable: true })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  overrides?: Omit<Options, "url" | "prefix">
): Layer.Layer<RedisConnection, RedisError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(config, ({ commandTimeout, prefix, url }) =>
    layer({
      ...overrides,
      url,
      prefix,
      ...(commandTimeout === undefined ? {} : { commandTimeout })
    })))

/**
 * One connection from the environment, shared by every Layer that uses it: Effect builds a Layer value
 * once per program, so `RedisTokenCache.layerConfig` and `RedisRateLimiter.layerConfig` both use this
 * constant and share a single connection.
 *
 * @example
 * ```ts
 * import { RedisConnection, RedisRateLimiter, RedisTokenCache } from "@tollgate/redis"
 * import { Layer } from "effect"
 *
 * // The backends over one connection from the environment: every provider Layer built on top shares the fleet's
 * // tokens and budgets.
 * const FleetLive = Layer.mergeAll(RedisTokenCache.layerBackend(), RedisRateLimiter.layerBackend()).pipe(
 *   Layer.provide(RedisConnection.layerFromEnv)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromEnv: Layer.Layer<RedisConnection, RedisError | ConfigError.ConfigError> = layerConfig()

/**
 * A key under the connection's prefix whose hash tag is `tag`: every key sharing a tag lives in one
 * Cluster slot, so one script can touch them all.
 *
 * @since 0.1.0
 * @category keys
 */
export const key = (service: Pick<Service, "prefix">, tag: string, name: string): string =>
  `${service.prefix}:{${tag}}:${name}`

/**
 * A hash-tag-safe rendering of an arbitrary name: readable when it is made of plain characters, a
 * SHA-256 digest otherwise (braces would end the hash tag early).
 *
 * @since 0.1.0
 * @category keys
 */
export const tagOf = (name: string): string =>
  /^[\w.:/@ -]{1,100}$/.test(name) ? name : `h.${createHash("sha256").update(name).digest("base64url")}`
