/**
 * The one specification every `TokenStore` must meet, as an `@effect/vitest` suite. Import it only
 * from test files, by its subpath: `@effect/vitest` can only be loaded inside a test run.
 *
 * The design: `docs/testing.md` in the repository.
 *
 * @since 0.2.0
 */
import { describe, expect, it } from "@effect/vitest"
import type { TokenSource } from "@tollgate/core"
import { AccessToken, TokenCache, TokenStore, TollgateError } from "@tollgate/core"
import { Clock, DateTime, Duration, Effect, Exit, Fiber, Option, Redacted, Schedule, Scope } from "effect"
import * as FakeTokenSource from "./FakeTokenSource.js"

/**
 * A store's storage for one test, as several processes see it.
 *
 * @since 0.2.0
 * @category models
 */
export interface Namespace {
  /** The store as one more process sees it: the same storage, through its own connection if it has one. */
  readonly process: Effect.Effect<TokenStore.Factory, never, Scope.Scope>
}

/**
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** Names the store in the suite's title. */
  readonly name: string
  /** A fresh, empty namespace, for one test. */
  readonly namespace: Effect.Effect<Namespace, never, Scope.Scope>
  /** Skips the whole suite, printing this reason, when set (e.g. no server on this machine). */
  readonly skip?: string | undefined
}

let identities = 0
const uniqueIdentity = (): Partial<TokenSource.Identity> => ({
  clientId: `spec-${process.pid}-${Date.now().toString(36)}-${++identities}`
})

const tokenAt = (value: string, obtainedAt: number, lifetime: number) =>
  new AccessToken.AccessToken({
    value: Redacted.make(value),
    type: "Bearer",
    obtainedAt: DateTime.unsafeMake(obtainedAt),
    expiresAt: Option.some(DateTime.unsafeMake(obtainedAt + lifetime)),
    refreshToken: Option.none(),
    scope: Option.none()
  })

const entryOf = (token: AccessToken.AccessToken): TokenStore.Entry => ({ token, ...TokenCache.schedule(token) })

const valueOf = (token: AccessToken.AccessToken) => Redacted.value(token.value)

const poll = Schedule.spaced("20 millis").pipe(Schedule.upTo("5 seconds"))

/** `read`, asserted to be of kind `tag`. */
const expectRead = <T extends TokenStore.Read["_tag"]>(tag: T, read: TokenStore.Read) => {
  expect(read._tag).toBe(tag)
  return read as Extract<TokenStore.Read, { readonly _tag: T }>
}

/**
 * Registers the suite. Call it at the top level of a test file.
 *
 * @since 0.2.0
 * @category running
 */
export const run = (options: Options): void => {
  if (options.skip !== undefined) console.warn(`[TokenStoreSpec: ${options.name}] SKIPPED: ${options.skip}`)
  describe.skipIf(options.skip !== undefined)(`TokenStore spec: ${options.name}`, () => {
    const open = (namespace: Namespace, identity: TokenSource.Identity, revokes = true) =>
      Effect.flatMap(namespace.process, (factory) => factory.make(identity, { revokes }))

    // Two processes opening one identity's store, in a fresh namespace.
    const twoProcesses = Effect.gen(function*() {
      const namespace = yield* options.namespace
      const { source } = yield* FakeTokenSource.make({ identity: uniqueIdentity() })
      const a = yield* open(namespace, source.identity)
      const b = yield* open(namespace, source.identity)
      return { namespace, source, a, b }
    })

    const cacheIn = (namespace: Namespace, source: TokenSource.Service, cacheOptions?: TokenCache.Options) =>
      Effect.flatMap(namespace.process, (store) => TokenCache.make(source, { ...cacheOptions, store }))

    const closable = (namespace: Namespace, source: TokenSource.Service, cacheOptions?: TokenCache.Options) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const cache = yield* Scope.extend(cacheIn(namespace, source, cacheOptions), scope)
        return { cache, close: Scope.close(scope, Exit.void) }
      })

    describe("store operations", () => {
      it.scopedLive("read or lock, and commit only with the current fence", () =>
        Effect.gen(function*() {
          const { a, b } = yield* twoProcesses
          const first = expectRead("Locked", yield* a.read("get"))
          expect(Option.isNone(first.stored)).toBe(true)
          expect((yield* b.read("get"))._tag).toBe("Busy")
          yield* a.release(first.lease)
          const second = expectRead("Locked", yield* b.read("get"))
          const now = yield* Clock.currentTimeMillis
          const token = tokenAt("spec-token-1", now, 60_000)
          // The first holder stalled past its lock: its late write is refused.
          expect(yield* a.commit(first.lease, entryOf(token))).toBe("fenced")
          expect(yield* b.commit(second.lease, entryOf(token))).toBe("stored")
          const read = expectRead("Token", yield* a.read("get"))
          expect(valueOf(read.entry.token)).toBe("spec-token-1")
          expect(Option.getOrThrow(read.entry.token.expiresAt).epochMillis).toBeGreaterThan(now + 59_000)
          expect(read.entry.usableUntil).toBeLessThanOrEqual(Option.getOrThrow(token.expiresAt).epochMillis + 50)
        }))

      it.scopedLive("a token due for refresh is enough for get, not for refresh", () =>
        Effect.gen(function*() {
          const { a: store } = yield* twoProcesses
          const locked = expectRead("Locked", yield* store.read("get"))
          const now = yield* Clock.currentTimeMillis
          const token = tokenAt("spec-due", now, 60_000)
          yield* store.commit(locked.lease, { token, refreshAt: now - 1, usableUntil: now + 30_000 })
          expect((yield* store.read("get"))._tag).toBe("Token")
          const refresh = expectRead("Locked", yield* store.read("refresh"))
          // The stored token comes with the lock: the base of a refresh_token grant.
          expect(Option.map(refresh.stored, valueOf)).toEqual(Option.some("spec-due"))
          yield* store.release(refresh.lease)
        }))

      it.scopedLive("invalidate drops the stored token only if it is the one given", () =>
        Effect.gen(function*() {
          const { a: store } = yield* twoProcesses
          const locked = expectRead("Locked", yield* store.read("get"))
          const now = yield* Clock.currentTimeMillis
          yield* store.commit(locked.lease, entryOf(tokenAt("spec-current", now, 60_000)))
          expect(yield* store.invalidate(tokenAt("spec-older", now, 60_000))).toBe(false)
          expect((yield* store.read("get"))._tag).toBe("Token")
          expect(yield* store.invalidate(tokenAt("spec-current", now, 60_000))).toBe(true)
          expect(yield* store.invalidate(tokenAt("spec-current", now, 60_000))).toBe(false)
          expect((yield* store.read("get"))._tag).toBe("Locked")
        }))

      it.scopedLive("a failure crosses processes as the same typed error, for the whole cooldown", () =>
        Effect.gen(function*() {
          const { a, b } = yield* twoProcesses
          const locked = expectRead("Locked", yield* a.read("get"))
          const now = yield* Clock.currentTimeMillis
          const error = new TollgateError.TokenEndpointUnavailable({
            provider: "spec",
            reason: "HTTP 503",
            status: 503,
            attempts: 3,
            retryAt: DateTime.unsafeMake(now + 400)
          })
          const until = yield* a.fail(locked.lease, error, { base: 100, max: 100 })
          // Never before the instant the endpoint announced.
          expect(until).toBeGreaterThanOrEqual(now + 390)
          const seen = expectRead("Cooldown", yield* b.read("get"))
          expect(seen.error).toEqual(error)
          expect(seen.error.message).toBe(error.message)
          expect(seen.retryAt).toBeGreaterThanOrEqual(now + 350)
          for (
            const other of [
              new TollgateError.InvalidCredentials({ provider: "spec", status: 401, code: "invalid_client" }),
              new TollgateError.Timeout({ provider: "spec", operation: "token request", after: Duration.seconds(15) })
            ]
          ) {
            yield* Effect.sleep(Duration.millis(Math.max(0, seen.retryAt - (yield* Clock.currentTimeMillis)) + 150))
            const next = yield* Effect.retry(
              Effect.flatMap(a.read("get"), (r) => (r._tag === "Locked" ? Effect.succeed(r) : Effect.fail(r._tag))),
              poll
            )
            yield* a.fail(next.lease, other, { base: 100, max: 100 })
            const again = expectRead("Cooldown", yield* b.read("get"))
            expect(again.error).toEqual(other)
          }
        }))

      it.scopedLive("the last member to leave, and only it, deletes the token it holds for revocation", () =>
        Effect.gen(function*() {
          const { a, b, namespace, source } = yield* twoProcesses
          const locked = expectRead("Locked", yield* a.read("get"))
          const now = yield* Clock.currentTimeMillis
          const token = tokenAt("spec-shared", now, 60_000)
          yield* a.commit(locked.lease, entryOf(token))
          expect((yield* b.read("get"))._tag).toBe("Token")
          expect(yield* a.leave({ token: Option.some(token), revoke: true })).toBe(false)
          expect((yield* b.read("get"))._tag).toBe("Token")
          expect(yield* b.leave({ token: Option.some(tokenAt("spec-other", now, 60_000)), revoke: true })).toBe(false)
          const c = yield* open(namespace, source.identity)
          expect((yield* c.read("get"))._tag).toBe("Token")
          expect(yield* c.leave({ token: Option.some(token), revoke: true })).toBe(true)
          expect((yield* (yield* open(namespace, source.identity)).read("get"))._tag).toBe("Locked")
        }))
    })

    describe("TokenCache over the store, several processes", () => {
      it.scopedLive("many callers in several processes on a cold store cause exactly one fetch", () =>
        Effect.gen(function*() {
          const namespace = yield* options.namespace
          const fake = yield* FakeTokenSource.make({ identity: uniqueIdentity(), latency: "50 millis" })
          const caches = yield* Effect.forEach([1, 2, 3], () => cacheIn(namespace, fake.source))
          const tokens = yield* Effect.all(
            caches.flatMap((cache) => Array.from({ length: 100 }, () => cache.get)),
            { concurrency: "unbounded" }
          )
          const recording = yield* fake.recording
          expect(recording.fetches).toBe(1)
          expect(recording.maxConcurrent).toBe(1)
          expect(new Set(tokens.map(valueOf)).size).toBe(1)
        }))

      it.scopedLive("a stale 401 in one process never drops the newer token of the fleet", () =>
        Effect.gen(function*() {
          const namespace = yield* options.namespace
          const fake = yield* FakeTokenSource.make({ identity: uniqueIdentity() })
          const a = yield* cacheIn(namespace, fake.source)
          const b = yield* cacheIn(namespace, fake.source)
          const t1 = yield* a.get
          expect(valueOf(yield* b.get)).toBe(valueOf(t1))
          expect(yield* b.invalidate(t1)).toBe(true)
          const t2 = yield* b.get
          expect(valueOf(t2)).not.toBe(valueOf(t1))
          yield* a.invalidate(t1)
          expect(valueOf(yield* a.get)).toBe(valueOf(t2))
          expect(valueOf(yield* b.get)).toBe(valueOf(t2))
          expect((yield* fake.recording).fetches).toBe(2)
        }))

      it.scopedLive("a failed fetch is shared: the fleet gets the same error without asking again until the cooldown ends", () =>
        Effect.gen(function*() {
          const namespace = yield* options.namespace
          let down = true
          const fake = yield* FakeTokenSource.make({
            identity: uniqueIdentity(),
            fail: () =>
              down
                ? new TollgateError.TokenEndpointUnavailable({ provider: "fake", reason: "HTTP 503", status: 503 })
                : undefined
          })
          const cacheOptions: TokenCache.Options = {
            retry: { attempts: 1 },
            cooldown: { base: "1 second", max: "1 second" }
          }
          const caches = yield* Effect.forEach([1, 2, 3], () => cacheIn(namespace, fake.source, cacheOptions))
          const errors = yield* Effect.all(caches.map((cache) => Effect.flip(cache.get)), { concurrency: "unbounded" })
          for (const error of errors) expect(error).toMatchObject({ _tag: "TokenEndpointUnavailable", status: 503 })
          expect((yield* Effect.flip(caches[1]!.get)).message).toContain("HTTP 503")
          expect((yield* fake.recording).fetches).toBe(1)
          down = false
          yield* Effect.retry(caches[2]!.get, poll)
          expect((yield* fake.recording).fetches).toBe(2)
        }))

      it.scopedLive(
        "one process renews the token in use, the others adopt it; idle, nobody renews",
        () =>
          Effect.gen(function*() {
            const namespace = yield* options.namespace
            const lifetime = 1_000
            const fake = yield* FakeTokenSource.make({
              identity: uniqueIdentity(),
              lifetime: Duration.millis(lifetime),
              latency: "10 millis"
            })
            const caches = yield* Effect.forEach([1, 2, 3], () => cacheIn(namespace, fake.source))
            const margin = lifetime / 12
            const start = Date.now()
            const run = 2_500
            const served: Array<
              { readonly token: AccessToken.AccessToken; readonly at: number; readonly process: number }
            > = []
            yield* Effect.forEach(caches, (cache, process) =>
              Effect.gen(function*() {
                while (Date.now() - start < run) {
                  const token = yield* cache.get
                  served.push({ token, at: Date.now(), process })
                  yield* Effect.sleep("15 millis")
                }
              }), { concurrency: "unbounded", discard: true })
            // Never inside the margin, judged on this process's clock (a little slack for the event loop).
            for (const { at, token } of served) {
              expect(Option.getOrThrow(token.expiresAt).epochMillis - at).toBeGreaterThan(margin - 15)
            }
            const busy = yield* fake.recording
            // Each process moves on to every newer token and never goes back to an older one.
            const order = (token: AccessToken.AccessToken) =>
              busy.issued.findIndex((t) => valueOf(t) === valueOf(token))
            for (const process of caches.keys()) {
              const seen = served.filter((s) => s.process === process).map((s) => order(s.token))
              expect(seen).toEqual([...seen].sort((x, y) => x - y))
            }
            // Invariant 3 for the fleet: ⌈T / (L − refreshBefore)⌉ + 1, refreshBefore a sixth of L.
            expect(busy.fetches + busy.refreshes).toBeLessThanOrEqual(Math.ceil(run / (lifetime * 5 / 6)) + 1)
            expect(busy.fetches + busy.refreshes).toBeGreaterThanOrEqual(3)
            yield* Effect.sleep("300 millis")
            const settled = yield* fake.recording
            yield* Effect.sleep(Duration.millis(lifetime * 1.5))
            const idle = yield* fake.recording
            expect(idle.fetches + idle.refreshes).toBe(settled.fetches + settled.refreshes)
          }),
        20_000
      )

      it.scopedLive("closing one process leaves the token to the others; the last one out revokes it", () =>
        Effect.gen(function*() {
          const namespace = yield* options.namespace
          const fake = yield* FakeTokenSource.make({ identity: uniqueIdentity(), revoke: true })
          const a = yield* closable(namespace, fake.source)
          const b = yield* closable(namespace, fake.source)
          const token = yield* a.cache.get
          yield* b.cache.get
          yield* a.close
          expect((yield* fake.recording).revocations).toBe(0)
          expect(valueOf(yield* b.cache.get)).toBe(valueOf(token))
          yield* b.close
          const recording = yield* fake.recording
          expect(recording.revoked.map(valueOf)).toEqual([valueOf(token)])
          // Revoked and gone from the store: the next process fetches a new one.
          const c = yield* cacheIn(namespace, fake.source)
          expect(valueOf(yield* c.get)).not.toBe(valueOf(token))
        }))

      it.scopedLive("a process that closes while fetching releases the lock for the others", () =>
        Effect.gen(function*() {
          const namespace = yield* options.namespace
          const fake = yield* FakeTokenSource.make({ identity: uniqueIdentity(), latency: "300 millis" })
          const a = yield* closable(namespace, fake.source)
          const b = yield* cacheIn(namespace, fake.source)
          const waiter = yield* Effect.fork(Effect.flip(a.cache.get))
          yield* Effect.retry(
            Effect.flatMap(fake.recording, (r) => (r.fetches === 1 ? Effect.void : Effect.fail("not yet"))),
            poll
          )
          yield* a.close
          expect((yield* Fiber.join(waiter))._tag).toBe("TokenEndpointUnavailable")
          const started = Date.now()
          yield* b.get
          // Well before any lock TTL: the lock was released, not left to lapse.
          expect(Date.now() - started).toBeLessThan(2_000)
          expect((yield* fake.recording).fetches).toBe(2)
        }))
    })
  })
}
