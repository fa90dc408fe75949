/**
 * Core's `TokenCache`, shared by a fleet through Redis: one token per identity for every process, one
 * token request per lifetime for the whole fleet, and the same semantics as the local cache — a token
 * valid for at least the safety margin, a background refresh ahead of expiry (by one process), and
 * compare-and-set invalidation (a 401 for an old token never drops a newer one, fleet-wide).
 *
 * How one fetch serves the fleet: a process that needs a token runs one atomic script that either
 * returns the stored token or, when a new one is needed and nobody is fetching, takes the fetch lock
 * with a fresh fencing value (a counter incremented per lock). Only that process calls the token
 * endpoint; it renews the lock while the request runs and writes the token only if its fence is still
 * the current one, so a holder that stalled past its lock can never overwrite a newer token. The other
 * processes poll with backoff and jitter until the token appears, the lock lapses (a crashed holder),
 * or a failure is recorded — then they all get that failure at once, until a shared cooldown ends, so
 * the fleet does not hammer a failing endpoint.
 *
 * Each process keeps a local copy of the token while it is valid, so Redis is not asked on every
 * request. The token is stored sealed with AES-256-GCM when an encryption key is configured, keyed by a
 * digest of `TokenSource.identityKey`, and is never logged.
 *
 * Revocation when a scope closes follows the "last user" rule: each process using the token holds a
 * membership lease in Redis (renewed in the background); a closing process revokes the token only when
 * no other live member remains and the stored token is still the one it holds — and then it deletes it
 * from Redis in the same atomic step, so nobody picks it up after. A process that cannot reach Redis
 * when it closes never revokes.
 *
 * Redis unreachable: a still-valid local copy is served; otherwise `get` fails with
 * `TokenEndpointUnavailable` whose reason says the shared token store is unreachable. No process fetches
 * a token on its own while Redis is down (the fleet could otherwise burst the token endpoint); it all
 * works again as soon as Redis answers.
 *
 * @since 0.1.0
 */
import * as AccessToken from "@tollgate/core/AccessToken"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as TokenCache from "@tollgate/core/TokenCache"
import * as TokenSource from "@tollgate/core/TokenSource"
import * as TollgateError from "@tollgate/core/TollgateError"
import {
  Cause,
  Config,
  DateTime,
  Deferred,
  Duration,
  Effect,
  ExecutionStrategy,
  Exit,
  Fiber,
  FiberId,
  Layer,
  Option,
  Random,
  Redacted,
  Scope
} from "effect"
import type { ConfigError } from "effect"
import { createHash } from "node:crypto"
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
export interface Options extends Omit<TokenCache.Options, "revokeOnClose"> {
  /**
   * Seals tokens at rest with AES-256-GCM under a key derived from this secret (use 32 random bytes,
   * base64). Every process of the fleet must use the same one; a process that cannot open the stored
   * token treats it as missing. Without it tokens are stored as plain JSON (still never logged).
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

interface Held {
  readonly token: AccessToken.AccessToken
  readonly fp: string
  readonly usableUntil: number
  readonly refreshAt: number
}

interface ReadReply {
  readonly status: "token" | "lock" | "wait" | "cooldown" | "free"
  readonly detail: string
  readonly err: string
  readonly sealed: string
  readonly fp: string
  readonly obtainedIn: number
  readonly expiresIn: number | undefined
  readonly usable: boolean
}

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
  return {
    token: RedisConnection.key(connection, tag, "token"),
    lock: RedisConnection.key(connection, tag, "lock"),
    fence: RedisConnection.key(connection, tag, "fence"),
    fail: RedisConnection.key(connection, tag, "fail"),
    users: RedisConnection.key(connection, tag, "users")
  }
}

const str = (value: unknown): string =>
  typeof value === "string" ? value : value instanceof Buffer ? value.toString("utf8") : String(value ?? "")

const parseRead = (reply: unknown): ReadReply => {
  const parts = Array.isArray(reply) ? reply.map(str) : []
  const status = parts[0]
  if (status !== "token" && status !== "lock" && status !== "wait" && status !== "cooldown" && status !== "free") {
    throw new Error("unexpected reply from the token script")
  }
  return {
    status,
    detail: parts[1] ?? "",
    err: parts[2] ?? "",
    sealed: parts[3] ?? "",
    fp: parts[4] ?? "",
    obtainedIn: Number(parts[5] ?? "0"),
    expiresIn: parts[6] === undefined || parts[6] === "" ? undefined : Number(parts[6]),
    usable: parts[7] === "1"
  }
}

// Failures cross processes as JSON. Core's errors never hold a secret, so neither does this.
const encodeFailure = (error: TollgateError.TokenError): string => {
  switch (error._tag) {
    case "InvalidCredentials":
      return JSON.stringify({
        _tag: error._tag,
        status: error.status,
        code: error.code,
        description: error.description
      })
    case "MalformedTokenResponse":
      return JSON.stringify({
        _tag: error._tag,
        field: error.field,
        expected: error.expected,
        received: error.received,
        status: error.status
      })
    case "TokenEndpointUnavailable":
      return JSON.stringify({ _tag: error._tag, reason: error.reason, status: error.status, attempts: error.attempts })
    case "ProviderError":
      return JSON.stringify({
        _tag: error._tag,
        code: error.code,
        description: error.description,
        status: error.status
      })
    case "Timeout":
      return JSON.stringify({ _tag: error._tag, operation: error.operation, after: Duration.toMillis(error.after) })
  }
}

const decodeFailure = (provider: string, text: string, retryAt: DateTime.Utc): TollgateError.TokenError => {
  let value: Record<string, unknown> = {}
  try {
    const parsed: unknown = JSON.parse(text)
    if (typeof parsed === "object" && parsed !== null) value = parsed as Record<string, unknown>
  } catch {
    // fall through to the generic failure
  }
  const s = (key: string) => (typeof value[key] === "string" ? value[key] : undefined)
  const n = (key: string) => (typeof value[key] === "number" ? value[key] : undefined)
  switch (value["_tag"]) {
    case "InvalidCredentials":
      return new TollgateError.InvalidCredentials({
        provider,
        status: n("status"),
        code: s("code"),
        description: s("description")
      })
    case "MalformedTokenResponse":
      return new TollgateError.MalformedTokenResponse({
        provider,
        field: s("field") ?? "unknown",
        expected: s("expected") ?? "unknown",
        received: s("received") ?? "unknown",
        status: n("status")
      })
    case "ProviderError":
      return new TollgateError.ProviderError({
        provider,
        code: s("code") ?? "unknown",
        description: s("description"),
        status: n("status")
      })
    case "Timeout":
      return new TollgateError.Timeout({
        provider,
        operation: s("operation") ?? "token request",
        after: Duration.millis(n("after") ?? 0)
      })
    case "TokenEndpointUnavailable":
      return new TollgateError.TokenEndpointUnavailable({
        provider,
        reason: s("reason") ?? "another worker's token request failed",
        status: n("status"),
        attempts: n("attempts"),
        retryAt
      })
    default:
      return new TollgateError.TokenEndpointUnavailable({
        provider,
        reason: "another worker's token request failed",
        retryAt
      })
  }
}

const jittered = (millis: number): Effect.Effect<number> =>
  Effect.map(Random.next, (r) => Math.round(millis / 2 + (millis / 2) * r))

/**
 * Builds a shared cache over `source`. Like core's `make`: its refresher and its token request live in
 * the current scope, and closing the scope stops them (releasing the fetch lock if this process holds
 * it) and applies the revocation rule.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  source: TokenSource.Service,
  options: Options = {}
): Effect.Effect<TokenCache.Service, never, Scope.Scope | RedisConnection.RedisConnection> =>
  Effect.gen(function*() {
    const connection = yield* RedisConnection.RedisConnection
    const provider = source.identity.provider
    const clock = yield* Effect.clock
    const scope = yield* Effect.scope
    // Fibers live in a child scope that closes after the shutdown finalizer below has run.
    const fiberScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
    const now = () => clock.unsafeCurrentTimeMillis()

    const keys = keysOf(connection, source.identity)
    const aad = tagOf(source.identity)
    const sealer = Seal.make(options.encryptionKey === undefined ? undefined : Redacted.value(options.encryptionKey))
    const readKeys = [keys.token, keys.lock, keys.fence, keys.fail, keys.users]

    const refreshBefore = Duration.toMillis(options.refreshBefore ?? defaults.refreshBefore)
    const safetyMargin = Duration.toMillis(options.safetyMargin ?? defaults.safetyMargin)
    const cooldownBase = Duration.toMillis(options.cooldown?.base ?? defaults.cooldownBase)
    const cooldownMax = Duration.toMillis(options.cooldown?.max ?? defaults.cooldownMax)
    const closeTimeout = Duration.decode(options.closeTimeout ?? defaults.closeTimeout)
    const lockTtl = Math.max(50, Duration.toMillis(options.lock?.ttl ?? defaults.lockTtl))
    const pollInitial = Math.max(1, Duration.toMillis(options.lock?.pollInitial ?? defaults.pollInitial))
    const pollMax = Math.max(pollInitial, Duration.toMillis(options.lock?.pollMax ?? defaults.pollMax))
    const membershipLease = Math.max(100, Duration.toMillis(options.membershipLease ?? defaults.membershipLease))
    const noExpiryTtl = Duration.toMillis(options.noExpiryTtl ?? defaults.noExpiryTtl)
    const fenceTtl = Duration.toMillis(defaults.fenceTtl)
    const revokeRule = options.revokeOnClose === false || options.revokeOnClose === "never" ? "never" : "last-user"
    // Membership only matters when closing may revoke.
    const tracksUsers = revokeRule === "last-user" && Option.isSome(source.revoke)
    const member = `${connection.instanceId}.${Math.random().toString(36).slice(2, 8)}`

    let held: Held | undefined = undefined
    let flight: Deferred.Deferred<AccessToken.AccessToken, TollgateError.TokenError> | undefined = undefined
    let closed = false
    let changed = Deferred.unsafeMake<void>(FiberId.none)
    const poisoned: Array<string> = []
    const stats = { fetches: 0, refreshes: 0, failures: 0, revocations: 0, invalidations: 0 }

    const closedError = () =>
      new TollgateError.TokenEndpointUnavailable({ provider, reason: "the token cache's scope is closed" })
    const unreachable = (error: RedisConnection.RedisError) =>
      new TollgateError.TokenEndpointUnavailable({
        provider,
        reason: `the shared token store (Redis) is unreachable: ${error.reason}`
      })

    const install = (token: AccessToken.AccessToken, fp: string): void => {
      const timing = TokenCache.schedule(token, options)
      held = { token, fp, usableUntil: timing.usableUntil, refreshAt: timing.refreshAt }
      signal()
    }
    const signal = (): void => {
      const previous = changed
      changed = Deferred.unsafeMake<void>(FiberId.none)
      Deferred.unsafeDone(previous, Exit.void)
    }
    const usable = (h: Held | undefined, at: number): h is Held => h !== undefined && at < h.usableUntil

    // Rebuilds a token read from Redis on this process's clock: only durations crossed the wire.
    const decode = (reply: ReadReply): AccessToken.AccessToken | undefined => {
      if (reply.sealed === "") return undefined
      const payload = sealer.open(reply.sealed, aad)
      if (payload === undefined) return undefined
      const at = now()
      return new AccessToken.AccessToken({
        value: Redacted.make(payload.value),
        type: payload.type,
        obtainedAt: DateTime.unsafeMake(Math.round(at + reply.obtainedIn)),
        expiresAt: reply.expiresIn === undefined
          ? Option.none()
          : Option.some(DateTime.unsafeMake(Math.floor(at + reply.expiresIn))),
        refreshToken: payload.refreshToken === undefined
          ? Option.none()
          : Option.some(Redacted.make(payload.refreshToken)),
        scope: Option.fromNullable(payload.scope)
      })
    }

    const readRemote = (mode: "get" | "refresh") =>
      Effect.flatMap(
        connection.run(Scripts.read, readKeys, [
          refreshBefore,
          safetyMargin,
          mode,
          tracksUsers ? member : "",
          membershipLease,
          lockTtl,
          "1",
          fenceTtl
        ]),
        (reply) =>
          Effect.try({
            try: () => parseRead(reply),
            catch: () => new RedisConnection.RedisError({ operation: Scripts.read.name, reason: "unexpected reply" })
          })
      )

    const invalidateRemote = (fp: string) =>
      connection.run(Scripts.invalidate, [keys.token], [fp]).pipe(Effect.map((deleted) => Number(deleted) === 1))

    const releaseLock = (fence: string) => Effect.ignore(connection.run(Scripts.release, [keys.lock], [fence]))

    const pollDelay = (polls: number, ceiling: number) =>
      Effect.map(
        jittered(Math.min(pollMax, pollInitial * 1.5 ** polls)),
        (delay) => Math.max(1, Math.min(delay, ceiling))
      )

    // The same requests, limiter guard and retries as core's cache.
    const grants = TokenCache.makeGrants(source, options, () => stats.failures++)

    const keepLock = (fence: string): Effect.Effect<void> =>
      Effect.sleep(Duration.millis(lockTtl / 3)).pipe(
        Effect.zipRight(Effect.either(connection.run(Scripts.renewLock, [keys.lock], [fence, lockTtl]))),
        Effect.forever
      )

    // Runs the grant while holding the lock taken with `fence`, then writes the token if the fence is
    // still current. `None` means another process took over meanwhile: read its token instead.
    const fetchUnderLock = (
      fence: string,
      base: Option.Option<AccessToken.AccessToken>
    ): Effect.Effect<Option.Option<AccessToken.AccessToken>, TollgateError.TokenError> =>
      Effect.gen(function*() {
        const renewal = yield* Effect.fork(Effect.interruptible(keepLock(fence)))
        const exit = yield* Effect.exit(
          grants(Effect.succeed(base)).pipe(
            Effect.withSpan("tollgate.token.request", { attributes: { "tollgate.provider": provider } })
          )
        )
        yield* Fiber.interrupt(renewal)
        if (Exit.isFailure(exit)) {
          const failure = Cause.failureOption(exit.cause)
          if (Option.isNone(failure)) {
            yield* releaseLock(fence)
            return yield* Effect.failCause(exit.cause as Cause.Cause<never>)
          }
          const error = failure.value
          const announced = "retryAt" in error && error.retryAt !== undefined ? error.retryAt.epochMillis - now() : -1
          const r = yield* Random.next
          yield* Effect.ignore(connection.run(Scripts.fail, [keys.lock, keys.fence, keys.fail], [
            fence,
            cooldownBase,
            cooldownMax,
            encodeFailure(error),
            announced > 0 ? Math.ceil(announced) : "",
            r
          ]))
          yield* Effect.logWarning("Tollgate could not obtain a token").pipe(
            Effect.annotateLogs({ provider, error: error.message })
          )
          return yield* Effect.fail(error)
        }
        const [token, grant] = exit.value
        if (grant === "fetch") stats.fetches++
        else stats.refreshes++
        const fp = sealer.fingerprint(Redacted.value(token.value))
        const at = now()
        const stored = yield* connection.run(Scripts.store, [keys.token, keys.lock, keys.fence, keys.fail], [
          fence,
          sealer.seal({
            value: Redacted.value(token.value),
            type: token.type,
            refreshToken: Option.getOrUndefined(Option.map(token.refreshToken, Redacted.value)),
            scope: Option.getOrUndefined(token.scope)
          }, aad),
          fp,
          Math.min(0, token.obtainedAt.epochMillis - at),
          Option.match(token.expiresAt, { onNone: () => "", onSome: (expiresAt) => expiresAt.epochMillis - at }),
          noExpiryTtl
        ]).pipe(Effect.map((reply) => (Array.isArray(reply) ? str(reply[0]) : "")), Effect.either)
        if (stored._tag === "Left") {
          // The token is good; serve it here. The fleet's lock lapses and another process fetches.
          yield* Effect.logWarning("Tollgate obtained a token but could not share it through Redis").pipe(
            Effect.annotateLogs({ provider, reason: stored.left.reason })
          )
          install(token, fp)
          return Option.some(token)
        }
        if (stored.right === "stored") {
          install(token, fp)
          return Option.some(token)
        }
        yield* Effect.logDebug("Tollgate's token request was superseded by another process").pipe(
          Effect.annotateLogs({ provider, outcome: stored.right })
        )
        return Option.none()
      }).pipe(Effect.onInterrupt(() => releaseLock(fence)))

    const remember = (fp: string) => {
      if (poisoned.includes(fp)) return
      poisoned.push(fp)
      if (poisoned.length > 16) poisoned.shift()
    }

    // A stored token this process can use, or `undefined` when it cannot (sealed under another key,
    // or one this process already saw refused): such a token is dropped from Redis (compare-and-set).
    const adopt = (reply: ReadReply): Effect.Effect<AccessToken.AccessToken | undefined> =>
      Effect.suspend(() => {
        if (held !== undefined && held.fp === reply.fp && usable(held, now())) return Effect.succeed(held.token)
        const token = poisoned.includes(reply.fp) ? undefined : decode(reply)
        if (token === undefined) return Effect.as(Effect.ignore(invalidateRemote(reply.fp)), undefined)
        install(token, reply.fp)
        return Effect.succeed(token)
      })

    // The slow path of `get`: one fiber per process asks Redis, takes the lock or waits for its holder.
    const obtain = (polls: number): Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError> =>
      Effect.flatMap(Effect.mapError(readRemote("get"), unreachable), (reply) => {
        switch (reply.status) {
          case "token":
            return Effect.flatMap(adopt(reply), (token) =>
              token !== undefined
                ? Effect.succeed(token)
                : polls > 8
                ? Effect.fail(
                  new TollgateError.TokenEndpointUnavailable({
                    provider,
                    reason: "the shared token store holds a token this process cannot use"
                  })
                )
                : obtain(polls + 1))
          case "cooldown": {
            const left = Number(reply.detail)
            return Effect.fail(decodeFailure(provider, reply.err, DateTime.unsafeMake(Math.ceil(now() + left))))
          }
          case "wait":
            return Effect.flatMap(
              pollDelay(polls, Number(reply.detail) + 1),
              (delay) => Effect.zipRight(Effect.sleep(Duration.millis(delay)), obtain(polls + 1))
            )
          case "lock": {
            return Effect.flatMap(
              fetchUnderLock(reply.detail, Option.fromNullable(decode(reply))),
              Option.match({ onNone: () => obtain(0), onSome: Effect.succeed })
            )
          }
          case "free":
            return obtain(polls + 1)
        }
      })

    const runFlight = (deferred: Deferred.Deferred<AccessToken.AccessToken, TollgateError.TokenError>) =>
      obtain(0).pipe(
        Effect.withSpan("tollgate.token.shared", { attributes: { "tollgate.provider": provider } }),
        Effect.exit,
        Effect.flatMap((exit) =>
          Effect.suspend(() => {
            if (flight === deferred) flight = undefined
            if (Exit.isFailure(exit) && Option.isNone(Cause.failureOption(exit.cause))) {
              return Deferred.failCause(
                deferred,
                Cause.isInterruptedOnly(exit.cause) ? Cause.fail(closedError()) : exit.cause as Cause.Cause<never>
              )
            }
            return Deferred.done(deferred, exit)
          })
        ),
        Effect.onInterrupt(() =>
          Effect.suspend(() => {
            if (flight === deferred) flight = undefined
            return Deferred.fail(deferred, closedError())
          })
        )
      )

    const slowGet: Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError> = Effect.uninterruptibleMask(
      (restore) =>
        Effect.suspend(() => {
          if (closed) return Effect.fail(closedError())
          const h = held
          if (usable(h, now())) return Effect.succeed(h.token)
          if (flight !== undefined) return restore(Deferred.await(flight))
          const deferred = Deferred.unsafeMake<AccessToken.AccessToken, TollgateError.TokenError>(FiberId.none)
          flight = deferred
          return Effect.zipRight(
            Effect.forkIn(Effect.interruptible(runFlight(deferred)), fiberScope),
            restore(Deferred.await(deferred))
          )
        })
    )

    const get: Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError> = Effect.suspend(() => {
      const h = held
      return !closed && usable(h, now()) ? Effect.succeed(h.token) : slowGet
    })

    // Renews `h` from its refresh instant on, while it is usable. Whichever process takes the lock first
    // refreshes; the others pick up its token from Redis. Callers keep getting `h` meanwhile.
    const refreshStep = (h: Held, n: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (closed || held !== h || now() >= h.usableUntil) return Effect.void
        const later = (delay: number) =>
          Effect.zipRight(
            Effect.sleep(Duration.millis(Math.max(1, Math.min(delay, h.usableUntil - now())))),
            refreshStep(h, n + 1)
          )
        return Effect.flatMap(Effect.either(readRemote("refresh")), (result) => {
          if (result._tag === "Left") return Effect.flatMap(jittered(Math.min(5_000, 100 * 2 ** n)), later)
          const reply = result.right
          switch (reply.status) {
            case "token":
              return reply.fp === h.fp ? Effect.flatMap(pollDelay(n, pollMax), later) : Effect.asVoid(adopt(reply))
            case "wait":
              return Effect.flatMap(pollDelay(n, Number(reply.detail) + 1), later)
            case "cooldown":
              return later(Number(reply.detail) + 1)
            case "free":
              return later(1)
            case "lock":
              return Effect.flatMap(
                Effect.either(
                  fetchUnderLock(
                    reply.detail,
                    Option.orElse(Option.fromNullable(decode(reply)), () => Option.some(h.token))
                  )
                ),
                (outcome) => outcome._tag === "Right" && Option.isSome(outcome.right) ? Effect.void : later(1)
              )
          }
        })
      })

    // Sleeps until the held token's refresh instant (plus a little jitter, so the fleet does not ask at the
    // same microsecond), then refreshes it. The refresh itself is never interrupted by a new token: a
    // token request cut in the middle may still have counted at the provider.
    const refresher: Effect.Effect<void> = Effect.suspend(() => {
      if (closed) return Effect.void
      const h = held
      const wake = changed
      if (h === undefined || h.refreshAt === Number.POSITIVE_INFINITY) {
        return Effect.zipRight(Deferred.await(wake), refresher)
      }
      return jittered(Math.min(200, Math.max(0, (h.usableUntil - h.refreshAt) / 10))).pipe(
        Effect.flatMap((spread) =>
          Effect.raceFirst(
            Effect.as(RateLimiter.sleepUntil(h.refreshAt + spread), true),
            Effect.as(Deferred.await(wake), false)
          )
        ),
        Effect.flatMap((due) => (due && held === h ? refreshStep(h, 0) : Effect.void)),
        Effect.zipRight(Effect.suspend(() => (held === h && !closed ? Deferred.await(changed) : Effect.void))),
        Effect.zipRight(refresher)
      )
    })
    yield* Effect.forkIn(Effect.interruptible(refresher), fiberScope)

    if (tracksUsers) {
      const beat = Effect.suspend(() =>
        held === undefined
          ? Effect.void
          : Effect.ignore(connection.run(Scripts.heartbeat, [keys.users], [member, membershipLease]))
      )
      yield* Effect.forkIn(
        Effect.interruptible(Effect.forever(Effect.zipRight(Effect.sleep(Duration.millis(membershipLease / 3)), beat))),
        fiberScope
      )
    }

    const invalidate = (token: AccessToken.AccessToken): Effect.Effect<boolean> =>
      Effect.gen(function*() {
        const fp = sealer.fingerprint(Redacted.value(token.value))
        let dropped = false
        if (held !== undefined && AccessToken.isSameToken(held.token, token)) {
          held = undefined
          signal()
          dropped = true
        }
        remember(fp)
        const remote = yield* invalidateRemote(fp).pipe(
          Effect.catchAll((error) =>
            Effect.as(
              Effect.logDebug("Tollgate could not invalidate the shared token; it will on the next read").pipe(
                Effect.annotateLogs({ provider, reason: error.reason })
              ),
              false
            )
          )
        )
        if (dropped || remote) stats.invalidations++
        return dropped || remote
      })

    const revoke = (token: AccessToken.AccessToken) =>
      Option.match(source.revoke, {
        onNone: () => Effect.void,
        onSome: (revoke) =>
          TokenCache.revokeAtClose(revoke, token, {
            provider,
            timeout: closeTimeout,
            onRevoked: () => stats.revocations++
          })
      })

    // Runs before `fiberScope` closes: the refresher and a request in flight are interrupted after it
    // (a lock this process holds is released then).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        signal()
        if (!tracksUsers) return Effect.void
        const h = held
        const live = h !== undefined && Option.match(h.token.expiresAt, {
          onNone: () => true,
          onSome: (expiresAt) => expiresAt.epochMillis > now()
        })
        return connection.run(Scripts.leave, [keys.users, keys.token], [member, h?.fp ?? "", live ? "1" : "0"]).pipe(
          Effect.timeout(closeTimeout),
          Effect.map((last) => Number(last) === 1),
          Effect.catchAll(() => Effect.succeed(false)),
          Effect.flatMap((last) => (last && h !== undefined ? revoke(h.token) : Effect.void))
        )
      })
    )

    return {
      identity: source.identity,
      get,
      invalidate,
      current: Effect.sync(() => (held === undefined ? Option.none() : Option.some(held.token))),
      stats: Effect.sync(() => ({ ...stats }))
    } satisfies TokenCache.Service
  })

/**
 * A shared cache over the `TokenSource` in context, under core's `TokenCache` Tag: swap
 * `TokenCache.layer(options)` for this and the program shares its token with the fleet.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options?: Options
): Layer.Layer<TokenCache.TokenCache, never, TokenSource.TokenSource | RedisConnection.RedisConnection> =>
  Layer.scoped(TokenCache.TokenCache, Effect.flatMap(TokenSource.TokenSource, (source) => make(source, options)))

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
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options?: Omit<Options, "encryptionKey">
): Layer.Layer<
  TokenCache.TokenCache,
  ConfigError.ConfigError | RedisConnection.RedisError,
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
