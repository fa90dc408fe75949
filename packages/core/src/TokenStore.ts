/**
 * Where a `TokenCache` keeps the token its process shares with others: a small interface (read or
 * lock, commit if fenced, invalidate if same, membership) under the one cache implementation, so a
 * backend ships only its storage.
 *
 * The design: `docs/tokens.md` in the repository.
 *
 * @since 0.2.0
 */
import { Deferred, Effect, Exit, FiberId, Option, Random, Schema } from "effect"
import type { Scope } from "effect"
import * as AccessToken from "./AccessToken.js"
import * as TokenSource from "./TokenSource.js"
import type * as TollgateError from "./TollgateError.js"

/**
 * A stored token with the instants (on the caller's clock) from which it is due for refresh and until
 * which it may be handed out.
 *
 * @since 0.2.0
 * @category models
 */
export interface Entry {
  readonly token: AccessToken.AccessToken
  readonly refreshAt: number
  readonly usableUntil: number
}

/**
 * Proof of holding the fetch lock: the fence it was taken with.
 *
 * @since 0.2.0
 * @category models
 */
export interface Lease {
  readonly fence: string
}

/**
 * What `read` found:
 *
 * - `Token`: a token good for the read's mode;
 * - `Locked`: the caller now holds the fetch lock; `stored` is the token in the store, if any (the base
 *   of a refresh_token grant);
 * - `Busy`: another cache holds the lock; `wait(attempt)` returns when reading again is worthwhile;
 * - `Cooldown`: the last fetch failed and no new one may start before `retryAt`;
 * - `Unreadable`: the stored token cannot be used by this process and must not be replaced by it (it
 *   is sealed under another encryption key): `reason` says why.
 *
 * @since 0.2.0
 * @category models
 */
export type Read =
  | { readonly _tag: "Token"; readonly entry: Entry }
  | { readonly _tag: "Locked"; readonly lease: Lease; readonly stored: Option.Option<AccessToken.AccessToken> }
  | { readonly _tag: "Busy"; readonly wait: (attempt: number) => Effect.Effect<void> }
  | { readonly _tag: "Cooldown"; readonly error: TollgateError.TokenError; readonly retryAt: number }
  | { readonly _tag: "Unreadable"; readonly reason: string }

/**
 * How a store failed: `unreachable` (no connection), `timeout` (no answer in time), `auth` (it refused
 * our credentials), `oom` (it is out of memory), `readonly` (a replica), `other`.
 *
 * @since 0.2.0
 * @category models
 */
export type StoreErrorKind = "unreachable" | "timeout" | "auth" | "oom" | "readonly" | "other"

const phrases: Record<StoreErrorKind, string> = {
  unreachable: "is unreachable",
  timeout: "did not answer in time",
  auth: "refused Tollgate's credentials",
  oom: "is out of memory",
  readonly: "is read-only (a replica?)",
  other: "failed"
}

/**
 * A store operation failed. `reason` is the store's own first line, scrubbed; never a token.
 *
 * @since 0.2.0
 * @category errors
 */
export class TokenStoreError extends Schema.TaggedError<TokenStoreError>("@tollgate/core/TokenStoreError")(
  "TokenStoreError",
  {
    store: Schema.String,
    operation: Schema.String,
    kind: Schema.Literal("unreachable", "timeout", "auth", "oom", "readonly", "other"),
    reason: Schema.String
  }
) {
  /**
   * What happened, as a phrase after the store's name ("is unreachable", "is out of memory").
   *
   * @since 0.2.0
   */
  get summary(): string {
    return `${phrases[this.kind]}: ${this.reason}`
  }
  /**
   * @since 0.2.0
   */
  override get message(): string {
    return `The shared token store (${this.store}) ${this.summary} (during ${this.operation}).`
  }
}

/**
 * The storage of one identity's token, as seen by one cache.
 *
 * @since 0.2.0
 * @category models
 */
export interface Store {
  /** Names the backend in errors and logs ("memory", "Redis"). */
  readonly name: string
  /** Whether caches in other processes may share it: their refreshes are then spread with jitter. */
  readonly shared: boolean
  /**
   * Read or lock. `"get"` accepts a token usable now; `"refresh"` only one not yet due for refresh.
   */
  readonly read: (mode: "get" | "refresh") => Effect.Effect<Read, TokenStoreError>
  /**
   * Keeps a lease alive while its fetch runs (renewing a lock TTL); runs until interrupted. A store whose
   * locks never lapse has none.
   */
  readonly keepAlive?: ((lease: Lease) => Effect.Effect<void>) | undefined
  /** Writes `entry` if `lease` still holds the current fence, and releases the lock. */
  readonly commit: (lease: Lease, entry: Entry) => Effect.Effect<"stored" | "fenced" | "expired", TokenStoreError>
  /**
   * Records a failed fetch if `lease` still holds the current fence, so nobody starts another before
   * the cooldown ends (doubling from `base` to `max` with each consecutive failure, with jitter, and
   * never before the error's own `retryAt`), and releases the lock. Returns the end of the cooldown.
   */
  readonly fail: (
    lease: Lease,
    error: TollgateError.TokenError,
    cooldown: { readonly base: number; readonly max: number }
  ) => Effect.Effect<number, TokenStoreError>
  /** Releases the lock if `lease` still holds it. Never fails: a lock it cannot release lapses. */
  readonly release: (lease: Lease) => Effect.Effect<void>
  /** Drops the stored token if it is `token`. Returns whether it did. */
  readonly invalidate: (token: AccessToken.AccessToken) => Effect.Effect<boolean, TokenStoreError>
  /**
   * Leaves the set of users. With `revoke`, when no other user remains and the stored token is `token`,
   * deletes it and answers `true`: the caller then revokes it at the provider.
   */
  readonly leave: (
    options: { readonly token: Option.Option<AccessToken.AccessToken>; readonly revoke: boolean }
  ) => Effect.Effect<boolean, TokenStoreError>
}

/**
 * Opens the store of an identity for one cache, in the cache's scope.
 *
 * @since 0.2.0
 * @category models
 */
export interface Factory {
  /**
   * `revokes`: whether the cache will ask to revoke at close; a store may skip tracking membership
   * otherwise.
   */
  readonly make: (
    identity: TokenSource.Identity,
    settings: { readonly revokes: boolean }
  ) => Effect.Effect<Store, never, Scope.Scope>
}

interface Slot {
  entry: Entry | undefined
  fence: number
  lock: number | undefined
  failure:
    | { readonly error: TollgateError.TokenError; readonly retryAt: number; readonly consecutive: number }
    | undefined
  readonly members: Set<object>
  changed: Deferred.Deferred<void>
}

/**
 * A store in this process's memory. Each call makes a new one: the default of `TokenCache.make` is a
 * private one per cache; caches given the same factory share tokens per identity, as the processes of a
 * fleet do through Redis (one fetch for all of them, the last one out revokes).
 *
 * @example
 * ```ts
 * import { AccessToken, TokenCache, TokenSource } from "@tollgate/core"
 * import * as TokenStore from "@tollgate/core/TokenStore"
 * import { DateTime, Effect, Either, Redacted } from "effect"
 *
 * let minted = 0
 * const source = TokenSource.make({
 *   identity: { provider: "acme", endpoint: "https://auth.acme.example/token", clientId: "my-client" },
 *   fetch: Effect.map(DateTime.now, (receivedAt) =>
 *     Either.getOrThrow(AccessToken.make({ value: Redacted.make(`token-${++minted}`), expiresIn: 3600, receivedAt })))
 * })
 *
 * // Two caches over one store share their token, as the processes of a fleet do through Redis.
 * const store = TokenStore.memory()
 * Effect.gen(function*() {
 *   const first = yield* TokenCache.make(source, { store })
 *   const second = yield* TokenCache.make(source, { store })
 *   yield* first.get
 *   yield* second.get
 *   console.log(minted) // 1
 * }).pipe(Effect.scoped, Effect.runPromise)
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const memory = (): Factory => {
  const slots = new Map<string, Slot>()
  return {
    make: (identity) =>
      Effect.map(Effect.clock, (clock): Store => {
        const key = TokenSource.identityKey(identity)
        let slot = slots.get(key)
        if (slot === undefined) {
          slot = {
            entry: undefined,
            fence: 0,
            lock: undefined,
            failure: undefined,
            members: new Set(),
            changed: Deferred.unsafeMake(FiberId.none)
          }
          slots.set(key, slot)
        }
        const s = slot
        const member = {}
        s.members.add(member)
        const now = () => clock.unsafeCurrentTimeMillis()
        const signal = () => {
          const previous = s.changed
          s.changed = Deferred.unsafeMake(FiberId.none)
          Deferred.unsafeDone(previous, Exit.void)
        }
        const releaseLock = (lease: Lease) => {
          if (s.lock !== undefined && String(s.lock) === lease.fence) {
            s.lock = undefined
            signal()
          }
        }
        return {
          name: "memory",
          shared: false,
          read: (mode) =>
            Effect.sync((): Read => {
              const at = now()
              const e = s.entry
              if (e !== undefined && at < e.usableUntil && (mode === "get" || at < e.refreshAt)) {
                return { _tag: "Token", entry: e }
              }
              if (s.failure !== undefined && at < s.failure.retryAt) {
                return { _tag: "Cooldown", error: s.failure.error, retryAt: s.failure.retryAt }
              }
              if (s.lock !== undefined) {
                const changed = s.changed
                return { _tag: "Busy", wait: () => Deferred.await(changed) }
              }
              s.lock = ++s.fence
              return { _tag: "Locked", lease: { fence: String(s.lock) }, stored: Option.fromNullable(e?.token) }
            }),
          commit: (lease, entry) =>
            Effect.sync(() => {
              if (String(s.fence) !== lease.fence) return "fenced"
              releaseLock(lease)
              const expiresAt = Option.getOrUndefined(entry.token.expiresAt)
              if (expiresAt !== undefined && expiresAt.epochMillis <= now()) return "expired"
              s.entry = entry
              s.failure = undefined
              signal()
              return "stored"
            }),
          fail: (lease, error, cooldown) =>
            Effect.map(Random.next, (r) => {
              let retryAt = now()
              if (String(s.fence) === lease.fence) {
                const consecutive = (s.failure?.consecutive ?? 0) + 1
                const span = Math.min(cooldown.max, cooldown.base * 2 ** (consecutive - 1))
                const announced = "retryAt" in error && error.retryAt !== undefined ? error.retryAt.epochMillis : 0
                retryAt = Math.max(now() + Math.round(span / 2 + (span / 2) * r), announced)
                s.failure = { error, retryAt, consecutive }
              }
              releaseLock(lease)
              signal()
              return retryAt
            }),
          release: (lease) => Effect.sync(() => releaseLock(lease)),
          invalidate: (token) =>
            Effect.sync(() => {
              if (s.entry === undefined || !AccessToken.isSameToken(s.entry.token, token)) return false
              s.entry = undefined
              signal()
              return true
            }),
          leave: ({ revoke, token }) =>
            Effect.sync(() => {
              s.members.delete(member)
              const last = s.members.size === 0
              if (!(revoke && last && Option.isSome(token) && s.entry !== undefined)) return false
              if (!AccessToken.isSameToken(s.entry.token, token.value)) return false
              s.entry = undefined
              return true
            })
        }
      })
  }
}
