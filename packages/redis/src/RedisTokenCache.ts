/**
 * Core's `TokenCache`, shared by a fleet through Redis: this module is only a `TokenStore` (its keys,
 * its Lua scripts, the sealing of tokens at rest). One token per identity and one token request per
 * lifetime for the whole fleet; fails closed when Redis is unreachable.
 *
 * The design: `docs/redis.md` in the repository.
 *
 * @since 0.1.0
 */
import * as AccessToken from "@tollgate/core/AccessToken"
import * as TokenCache from "@tollgate/core/TokenCache"
import * as TokenSource from "@tollgate/core/TokenSource"
import * as TokenStore from "@tollgate/core/TokenStore"
import * as TollgateError from "@tollgate/core/TollgateError"
import { Config, DateTime, Duration, Effect, Either, Layer, Option, Random, Redacted, Schema, Scope } from "effect"
import type { ConfigError } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as Durations from "./internal/durations.js"
import * as Seal from "./internal/seal.js"
import * as Scripts from "./internal/tokenScripts.js"
import * as RedisConnection from "./RedisConnection.js"

/**
 * Core's options, plus what sharing needs. `revokeOnClose` takes the rule to apply: `"last-user"` (the
 * default, also what `true` means) or `"never"` (also `false`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Omit<TokenCache.Options, "revokeOnClose" | "store"> {
  /**
   * Seals tokens at rest with AES-256-GCM under a key derived from this secret (use 32 random bytes,
   * base64). Every process of the fleet must use the same one: a process with another key logs the
   * mismatch and fails closed rather than replace the stored token. Without it tokens are stored as
   * plain JSON (still never logged).
   */
  readonly encryptionKey?: Redacted.Redacted<string> | undefined
  /** Default: `"last-user"`. */
  readonly revokeOnClose?: boolean | "last-user" | "never" | undefined
  readonly lock?: {
    /**
     * How long the fetch lock outlives a holder that stops renewing it (a crash): the fleet waits at
     * most this long before another process fetches. Renewed every third of it. Default: 10 seconds.
     */
    readonly ttl?: Duration.DurationInput | undefined
    /** First delay between polls of a process waiting for another's fetch. Default: 10 ms. */
    readonly pollInitial?: Duration.DurationInput | undefined
    /** Longest delay between polls (growing by half each poll, with jitter). Default: 250 ms. */
    readonly pollMax?: Duration.DurationInput | undefined
  } | undefined
  /** How long a process counts as a user of the token without renewing (for "last-user"). Default: 30 s. */
  readonly membershipLease?: Duration.DurationInput | undefined
  /** How long a token without expiry stays in Redis. Default: 24 hours. */
  readonly noExpiryTtl?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  ...TokenCache.defaults,
  lockTtl: Duration.seconds(10),
  pollInitial: Duration.millis(10),
  pollMax: Duration.millis(250),
  membershipLease: Duration.seconds(30),
  noExpiryTtl: Duration.hours(24),
  fenceTtl: Duration.days(7)
} as const

/**
 * The hash tag of an identity's keys: a digest of `TokenSource.identityKey`, so client ids, scopes and
 * endpoints never appear in key names.
 *
 * @since 0.1.0
 * @category keys
 */
export const tagOf = (identity: TokenSource.Identity): string =>
  `tok.${createHash("sha256").update(TokenSource.identityKey(identity)).digest("base64url").slice(0, 32)}`

/**
 * The Redis keys of an identity, for inspection and tests.
 *
 * @since 0.1.0
 * @category keys
 */
export const keysOf = (
  connection: Pick<RedisConnection.Service, "prefix">,
  identity: TokenSource.Identity
): {
  readonly token: string
  readonly lock: string
  readonly fence: string
  readonly fail: string
  readonly users: string
} => {
  const tag = tagOf(identity)
  const key = (name: string) => RedisConnection.key(connection, tag, name)
  return { token: key("token"), lock: key("lock"), fence: key("fence"), fail: key("fail"), users: key("users") }
}

const str = (value: unknown): string =>
  typeof value === "string" ? value : value instanceof Buffer ? value.toString("utf8") : String(value ?? "")

const relative = (value: string | undefined): number | undefined =>
  value === undefined || value === "" ? undefined : Number(value)

// Failures cross processes through their Schema: every process decodes the same typed error.
const ErrorJson = Schema.parseJson(TollgateError.TokenErrorSchema)
const encodeError = Schema.encodeSync(ErrorJson)
const decodeError = Schema.decodeUnknownEither(ErrorJson)

const storeError = (error: RedisConnection.RedisError): TokenStore.TokenStoreError =>
  new TokenStore.TokenStoreError({
    store: "Redis",
    operation: error.operation,
    kind: error.kind === "config" ? "other" : error.kind,
    reason: error.reason
  })

/**
 * The Redis `TokenStore`: pass it as `store` to `TokenCache.make`, or use `make`, `layer` or
 * `layerBackend`, which do.
 *
 * @example
 * ```ts
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { OAuth2, TokenCache } from "@tollgate/core"
 * import { RedisConnection, RedisTokenCache } from "@tollgate/redis"
 * import { Effect, Redacted } from "effect"
 *
 * // Core's cache over the Redis store: what `RedisTokenCache.make` does, with the cache's options your own.
 * const program = Effect.gen(function*() {
 *   const connection = yield* RedisConnection.RedisConnection
 *   const source = yield* OAuth2.make({
 *     tokenUrl: "https://auth.acme.example/oauth/token",
 *     clientId: "my-client",
 *     clientSecret: Redacted.make("my-secret")
 *   })
 *   const store = RedisTokenCache.store(connection, { encryptionKey: Redacted.make("32 random bytes, base64") })
 *   const tokens = yield* TokenCache.make(source, { store, refreshBefore: "1 minute" })
 *   return yield* tokens.get
 * }).pipe(
 *   Effect.scoped,
 *   Effect.provide(RedisConnection.layer({ url: "redis://127.0.0.1:6379" })),
 *   Effect.provide(NodeHttpClient.layerUndici)
 * )
 *
 * // Effect.runPromise(program) with a Redis at 127.0.0.1:6379
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const store = (
  connection: RedisConnection.Service,
  options: Pick<Options, "encryptionKey" | "lock" | "membershipLease" | "noExpiryTtl" | "revokeOnClose"> = {}
): TokenStore.Factory => ({
  make: (identity, settings) =>
    Effect.gen(function*() {
      const clock = yield* Effect.clock
      const scope = yield* Effect.scope
      const now = () => clock.unsafeCurrentTimeMillis()
      const keys = keysOf(connection, identity)
      const aad = tagOf(identity)
      const sealer = Seal.make(options.encryptionKey === undefined ? undefined : Redacted.value(options.encryptionKey))
      const readKeys = [keys.token, keys.lock, keys.fence, keys.fail, keys.users]
      const lockTtl = Math.max(50, Duration.toMillis(options.lock?.ttl ?? defaults.lockTtl))
      const pollInitial = Math.max(1, Duration.toMillis(options.lock?.pollInitial ?? defaults.pollInitial))
      const pollMax = Math.max(pollInitial, Duration.toMillis(options.lock?.pollMax ?? defaults.pollMax))
      const membershipLease = Math.max(100, Duration.toMillis(options.membershipLease ?? defaults.membershipLease))
      const noExpiryTtl = Duration.toMillis(options.noExpiryTtl ?? defaults.noExpiryTtl)
      const fenceTtl = Duration.toMillis(defaults.fenceTtl)
      // Membership only matters when closing may revoke.
      const tracksUsers = settings.revokes && options.revokeOnClose !== false && options.revokeOnClose !== "never"
      const member = `${connection.instanceId}.${randomBytes(4).toString("base64url")}`
      let joined = false

      const run = (script: RedisConnection.Script, keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) =>
        Effect.mapError(connection.run(script, keys, args), storeError)

      // Rebuilds a token read from Redis on this process's clock: only durations crossed the wire.
      const open = (parts: ReadonlyArray<string>): TokenStore.Entry | undefined => {
        const payload = sealer.open(parts[3] ?? "", aad)
        if (payload === undefined) return undefined
        const at = now()
        const expiresIn = relative(parts[6])
        return {
          token: new AccessToken.AccessToken({
            value: Redacted.make(payload.value),
            type: payload.type,
            obtainedAt: DateTime.unsafeMake(Math.round(at + Number(parts[5] ?? "0"))),
            expiresAt: expiresIn === undefined
              ? Option.none()
              : Option.some(DateTime.unsafeMake(Math.floor(at + expiresIn))),
            refreshToken: Option.map(Option.fromNullable(payload.refreshToken), Redacted.make),
            scope: Option.fromNullable(payload.scope)
          }),
          refreshAt: at + (relative(parts[7]) ?? Number.POSITIVE_INFINITY),
          usableUntil: at + (relative(parts[8]) ?? Number.POSITIVE_INFINITY)
        }
      }

      const foreign = (envelope: string): string | undefined => {
        const stored = Seal.keyIdOf(envelope)
        if (stored === undefined || stored === sealer.keyId) return undefined
        const describe = (id: string) => (id === "none" ? "no encryption key" : `key id ${id}`)
        return `the shared token store holds a token sealed with ${describe(stored)}, but this process has ${
          describe(sealer.keyId)
        }: every process sharing the Redis prefix must use the same TOLLGATE_REDIS_ENCRYPTION_KEY`
      }

      const pollDelay = (polls: number, ceiling: number) =>
        Effect.map(
          Random.next,
          (r) => {
            const span = Math.min(pollMax, pollInitial * 1.5 ** polls)
            return Math.max(1, Math.min(Math.round(span / 2 + (span / 2) * r), ceiling))
          }
        )

      const read = (
        mode: "get" | "refresh",
        attempt: number
      ): Effect.Effect<TokenStore.Read, TokenStore.TokenStoreError> =>
        Effect.gen(function*() {
          const owner = randomBytes(9).toString("base64url")
          const reply = yield* run(Scripts.read, readKeys, [
            mode,
            tracksUsers ? member : "",
            membershipLease,
            lockTtl,
            owner,
            fenceTtl
          ]).pipe(
            // The read may still run once Redis answers again, and take the lock for nobody: release it then.
            Effect.tapError(() =>
              Effect.forkIn(
                Effect.ignore(connection.run(Scripts.releaseOwner, [keys.lock], [owner], { inline: true })),
                scope
              )
            )
          )
          const parts = Array.isArray(reply) ? reply.map(str) : []
          const [status, detail = "", err = "", sealed = "", fp = ""] = parts
          if (status !== "cooldown" && status !== "wait") joined = tracksUsers
          const stored = () => (sealed === "" ? undefined : open(parts))
          switch (status) {
            case "token": {
              const mismatch = foreign(sealed)
              if (mismatch !== undefined) return { _tag: "Unreadable", reason: mismatch } as const
              const entry = stored()
              if (entry !== undefined) return { _tag: "Token", entry } as const
              // Unreadable under our own key: tampered or corrupt. Drop it (compare-and-set) and read again.
              if (attempt > 3) {
                return { _tag: "Unreadable", reason: "the shared token store holds a corrupt token" } as const
              }
              yield* run(Scripts.invalidate, [keys.token], [fp])
              return yield* read(mode, attempt + 1)
            }
            case "lock": {
              const mismatch = sealed === "" ? undefined : foreign(sealed)
              if (mismatch !== undefined) {
                yield* Effect.ignore(run(Scripts.release, [keys.lock], [detail]))
                return { _tag: "Unreadable", reason: mismatch } as const
              }
              return {
                _tag: "Locked",
                lease: { fence: detail },
                stored: Option.map(Option.fromNullable(stored()), (entry) => entry.token)
              } as const
            }
            case "wait":
              return {
                _tag: "Busy",
                wait: (polls: number) =>
                  Effect.flatMap(pollDelay(polls, Number(detail) + 1), (delay) => Effect.sleep(Duration.millis(delay)))
              } as const
            case "cooldown": {
              const retryAt = now() + Number(detail)
              const decoded = decodeError(err)
              const error = Either.isRight(decoded) ? decoded.right : new TollgateError.TokenEndpointUnavailable({
                provider: identity.provider,
                reason: "another process's token request failed",
                retryAt: DateTime.unsafeMake(Math.ceil(retryAt))
              })
              return { _tag: "Cooldown", error, retryAt } as const
            }
            default:
              return yield* Effect.fail(
                new TokenStore.TokenStoreError({
                  store: "Redis",
                  operation: Scripts.read.name,
                  kind: "other",
                  reason: "unexpected reply"
                })
              )
          }
        })

      if (tracksUsers) {
        const beat = Effect.suspend(() =>
          joined
            ? Effect.ignore(connection.run(Scripts.heartbeat, [keys.users], [member, membershipLease]))
            : Effect.void
        )
        yield* Effect.forkIn(
          Effect.interruptible(
            Effect.forever(Effect.zipRight(Effect.sleep(Duration.millis(membershipLease / 3)), beat))
          ),
          scope
        )
      }

      return {
        name: "Redis",
        shared: true,
        read: (mode) => read(mode, 0),
        keepAlive: (lease) =>
          Effect.sleep(Duration.millis(lockTtl / 3)).pipe(
            Effect.zipRight(Effect.either(connection.run(Scripts.renewLock, [keys.lock], [lease.fence, lockTtl]))),
            Effect.forever
          ),
        commit: (lease, entry) =>
          Effect.suspend(() => {
            const token = entry.token
            const at = now()
            const expiresIn = Option.match(token.expiresAt, { onNone: () => "", onSome: (e) => e.epochMillis - at })
            return run(Scripts.store, [keys.token, keys.lock, keys.fence, keys.fail], [
              lease.fence,
              sealer.seal({
                value: Redacted.value(token.value),
                type: token.type,
                refreshToken: Option.getOrUndefined(Option.map(token.refreshToken, Redacted.value)),
                scope: Option.getOrUndefined(token.scope)
              }, aad),
              sealer.fingerprint(Redacted.value(token.value)),
              Math.min(0, token.obtainedAt.epochMillis - at),
              expiresIn,
              expiresIn === "" ? "" : entry.refreshAt - at,
              expiresIn === "" ? "" : entry.usableUntil - at,
              noExpiryTtl
            ]).pipe(Effect.map((reply) => {
              const outcome = Array.isArray(reply) ? str(reply[0]) : ""
              return outcome === "stored" || outcome === "expired" ? outcome : "fenced"
            }))
          }),
        fail: (lease, error, cooldown) =>
          Effect.gen(function*() {
            const announced = "retryAt" in error && error.retryAt !== undefined ? error.retryAt.epochMillis - now() : -1
            const r = yield* Random.next
            const reply = yield* run(Scripts.fail, [keys.lock, keys.fence, keys.fail], [
              lease.fence,
              cooldown.base,
              cooldown.max,
              encodeError(error),
              announced > 0 ? Math.ceil(announced) : "",
              r
            ])
            return now() + Number(Array.isArray(reply) ? str(reply[0]) : "0")
          }),
        release: (lease) => Effect.ignore(connection.run(Scripts.release, [keys.lock], [lease.fence])),
        invalidate: (token) =>
          run(Scripts.invalidate, [keys.token], [sealer.fingerprint(Redacted.value(token.value))]).pipe(
            Effect.map((deleted) => Number(deleted) === 1)
          ),
        leave: ({ revoke, token }) =>
          !tracksUsers ? Effect.succeed(false) : run(Scripts.leave, [keys.users, keys.token], [
            member,
            Option.match(token, { onNone: () => "", onSome: (t) => sealer.fingerprint(Redacted.value(t.value)) }),
            revoke ? "1" : "0"
          ]).pipe(Effect.map((last) => Number(last) === 1))
      } satisfies TokenStore.Store
    })
})

/**
 * Builds a shared cache over `source`: core's `TokenCache.make` over this module's store.
 *
 * @example
 * ```ts
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { OAuth2 } from "@tollgate/core"
 * import { RedisConnection, RedisTokenCache } from "@tollgate/redis"
 * import { Config, Effect, Redacted } from "effect"
 *
 * // One token for the fleet: the first process fetches it, the others read it (encrypted at rest).
 * const program = Effect.gen(function*() {
 *   const source = yield* OAuth2.make({
 *     provider: "acme",
 *     tokenUrl: "https://auth.acme.example/oauth/token",
 *     clientId: "my-client",
 *     clientSecret: yield* Config.redacted("ACME_CLIENT_SECRET")
 *   })
 *   const tokens = yield* RedisTokenCache.make(source, {
 *     encryptionKey: yield* Config.redacted("TOLLGATE_REDIS_ENCRYPTION_KEY")
 *   })
 *   return yield* tokens.get
 * }).pipe(
 *   Effect.scoped,
 *   Effect.provide(RedisConnection.layer({ url: Redacted.make("redis://127.0.0.1:6379") })),
 *   Effect.provide(NodeHttpClient.layerUndici)
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  source: TokenSource.Service,
  options: Options = {}
): Effect.Effect<TokenCache.Service, TollgateError.InvalidArgument, Scope.Scope | RedisConnection.RedisConnection> =>
  Effect.flatMap(RedisConnection.RedisConnection, (connection) => {
    const invalid = Durations.firstInvalid("RedisTokenCache.make", {
      "lock.ttl": options.lock?.ttl,
      "lock.pollInitial": options.lock?.pollInitial,
      "lock.pollMax": options.lock?.pollMax,
      membershipLease: options.membershipLease,
      noExpiryTtl: options.noExpiryTtl
    })
    if (invalid !== undefined) return Effect.fail(invalid)
    return TokenCache.make(source, {
      ...options,
      revokeOnClose: options.revokeOnClose !== false && options.revokeOnClose !== "never",
      store: store(connection, options)
    })
  })

/**
 * A shared cache over the `TokenSource` in context, under core's `TokenCache` Tag: swap
 * `TokenCache.layer(options)` for this and the program shares its token with the fleet.
 *
 * @example
 * ```ts
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { OAuth2, TokenSource } from "@tollgate/core"
 * import { RedisConnection, RedisTokenCache } from "@tollgate/redis"
 * import { Layer, Redacted } from "effect"
 *
 * // In place of `TokenCache.layer()`: the same Tag, the fleet's token.
 * const TokensLive = RedisTokenCache.layer({ revokeOnClose: "last-user" }).pipe(
 *   Layer.provide(TokenSource.layerEffect(OAuth2.make({
 *     provider: "acme",
 *     tokenUrl: "https://auth.acme.example/oauth/token",
 *     clientId: "my-client",
 *     clientSecret: Redacted.make("my-secret")
 *   }))),
 *   Layer.provide(RedisConnection.layer({ url: "redis://127.0.0.1:6379" })),
 *   Layer.provide(NodeHttpClient.layerUndici)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options?: Options
): Layer.Layer<
  TokenCache.TokenCache,
  TollgateError.InvalidArgument,
  TokenSource.TokenSource | RedisConnection.RedisConnection
> => Layer.scoped(TokenCache.TokenCache, Effect.flatMap(TokenSource.TokenSource, (source) => make(source, options)))

/**
 * The encryption key from the environment: `TOLLGATE_REDIS_ENCRYPTION_KEY` (secret, optional).
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Option.Option<Redacted.Redacted<string>>> = Config.option(
  Config.redacted("TOLLGATE_REDIS_ENCRYPTION_KEY")
)

/**
 * `layer` with the encryption key from `config` and the connection from `RedisConnection.layerFromEnv`
 * (`REDIS_URL`): the one-line replacement for `TokenCache.layer(options)`.
 *
 * @example
 * ```ts
 * import { RedisTokenCache } from "@tollgate/redis"
 *
 * // In place of `TokenCache.layer(options)`: REDIS_URL and TOLLGATE_REDIS_ENCRYPTION_KEY from the environment.
 * // It still needs the `TokenSource` in context.
 * const TokensLive = RedisTokenCache.layerConfig({ timeout: "10 seconds" })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options?: Omit<Options, "encryptionKey">
): Layer.Layer<
  TokenCache.TokenCache,
  ConfigError.ConfigError | RedisConnection.RedisError | TollgateError.InvalidArgument,
  TokenSource.TokenSource
> =>
  Layer.unwrapEffect(
    Effect.map(config, (encryptionKey) => layer({ ...options, encryptionKey: Option.getOrUndefined(encryptionKey) }))
  ).pipe(Layer.provide(RedisConnection.layerFromEnv))

/**
 * Makes every token cache built through `TokenCache.makeWithBackend` a Redis one: provider modules
 * (`Nora.layer`, ...) and `TokenCache.layer` then share their tokens with the fleet. `options` add the
 * Redis-only settings (encryption key, lock, revocation rule) to what each cache asks for.
 *
 * @example
 * ```ts
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Norce } from "@tollgate/providers"
 * import { RedisConnection, RedisTokenCache } from "@tollgate/redis"
 * import { Layer, Redacted } from "effect"
 *
 * // Every cache built through `TokenCache.makeWithBackend` (provider Layers included) now shares its token.
 * const encryptionKey = Redacted.make("32 random bytes in base64, e.g. from `openssl rand -base64 32`")
 * const NorceLive = Norce.layerConfig().pipe(
 *   Layer.provide(RedisTokenCache.layerBackend({ encryptionKey })),
 *   Layer.provide(RedisConnection.layerFromEnv),
 *   Layer.provide(NodeHttpClient.layerUndici)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerBackend = (
  options?: Omit<Options, keyof TokenCache.Options> & { readonly revokeOnClose?: Options["revokeOnClose"] }
): Layer.Layer<TokenCache.TokenCacheBackend, never, RedisConnection.RedisConnection> =>
  Layer.effect(
    TokenCache.TokenCacheBackend,
    Effect.map(RedisConnection.RedisConnection, (connection): TokenCache.Backend => ({
      make: (source, cacheOptions) =>
        make(source, { ...cacheOptions, ...options }).pipe(
          Effect.provideService(RedisConnection.RedisConnection, connection)
        )
    }))
  )
