/**
 * The shared token cache through core's `TokenCache.Service` interface. Each cache has its own Redis
 * connection and stands for one process of a fleet; the fake source is shared, so its counters are
 * what the provider would see from the whole fleet.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import type * as AccessToken from "@tollgate/core/AccessToken"
import type * as TokenSource from "@tollgate/core/TokenSource"
import * as TollgateError from "@tollgate/core/TollgateError"
import { Duration, Effect, Exit, Fiber, Logger, Option, Redacted, Schedule, Scope } from "effect"
import { inspect } from "node:util"
import * as Scripts from "../src/internal/tokenScripts.js"
import * as RedisConnection from "../src/RedisConnection.js"
import * as RedisTokenCache from "../src/RedisTokenCache.js"
import * as FakeSource from "./utils/FakeSource.js"
import { connect, dump, eventually, inspector, preciseNow, promise, ttls, uniquePrefix } from "./utils/Redis.js"
import * as RedisServer from "./utils/RedisServer.js"

const available = await RedisServer.requireRedis("RedisTokenCache")

const valueOf = (token: AccessToken.AccessToken) => Redacted.value(token.value)

const unavailable = () =>
  new TollgateError.TokenEndpointUnavailable({ provider: "fake", reason: "HTTP 503", status: 503 })

/** A cache on a connection of its own, in the current scope: one "process". */
const processCache = (
  url: string,
  prefix: string,
  source: TokenSource.Service,
  options?: RedisTokenCache.Options
) =>
  Effect.flatMap(
    connect(url, prefix),
    (connection) =>
      RedisTokenCache.make(source, options).pipe(Effect.provideService(RedisConnection.RedisConnection, connection))
  )

/** The same, in a scope of its own that the test closes. */
const closableCache = (
  url: string,
  prefix: string,
  source: TokenSource.Service,
  options?: RedisTokenCache.Options
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const cache = yield* Scope.extend(processCache(url, prefix, source, options), scope)
    return { cache, close: Scope.close(scope, Exit.void) }
  })

describe.skipIf(!available)("RedisTokenCache", () => {
  let server: RedisServer.Server
  beforeAll(async () => {
    server = await RedisServer.start()
  })
  afterAll(async () => {
    await server?.stop()
  })

  describe("one fetch for the fleet (invariant 1)", () => {
    it.scopedLive("many callers in several processes on a cold cache cause exactly one fetch", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("single")
        const { calls, source } = yield* FakeSource.make({ latency: "80 millis" })
        const caches = yield* Effect.forEach(Array.from({ length: 5 }), () => processCache(server.url, prefix, source))
        const tokens = yield* Effect.all(
          caches.flatMap((cache) => Array.from({ length: 200 }, () => cache.get)),
          { concurrency: "unbounded" }
        )
        expect(calls.fetch).toBe(1)
        expect(calls.maxInFlight).toBe(1)
        expect(new Set(tokens.map(valueOf)).size).toBe(1)
        // Each process keeps a local copy; the stats say which process fetched.
        const stats = yield* Effect.forEach(caches, (cache) => cache.stats)
        expect(stats.reduce((sum, s) => sum + s.fetches, 0)).toBe(1)
      }))

    it.scopedLive("a holder that dies with the lock delays the fleet by the lock TTL, then one process fetches", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("crash")
        const { calls, source } = yield* FakeSource.make()
        // A "process" takes the fetch lock and dies: nothing renews or releases it.
        const dead = yield* connect(server.url, prefix)
        const keys = RedisTokenCache.keysOf(dead, source.identity)
        const reply = yield* dead.run(Scripts.read, [keys.token, keys.lock, keys.fence, keys.fail, keys.users], [
          1000,
          100,
          "get",
          "",
          1000,
          300,
          "1",
          60_000
        ])
        expect((reply as Array<string>)[0]).toBe("lock")
        const staleFence = (reply as Array<string>)[1]!
        const caches = yield* Effect.forEach(
          Array.from({ length: 3 }),
          () => processCache(server.url, prefix, source, { lock: { ttl: "300 millis" } })
        )
        const t0 = preciseNow()
        const tokens = yield* Effect.all(caches.map((cache) => cache.get), { concurrency: "unbounded" })
        expect(preciseNow() - t0).toBeGreaterThanOrEqual(250)
        expect(calls.fetch).toBe(1)
        expect(new Set(tokens.map(valueOf)).size).toBe(1)
        // The dead holder's fence is stale: a late write from it is refused.
        const late = yield* dead.run(Scripts.store, [keys.token, keys.lock, keys.fence, keys.fail], [
          staleFence,
          "p1.{}",
          "stale",
          0,
          60_000,
          60_000
        ])
        expect(late).toEqual(["fenced"])
        const fresh = yield* processCache(server.url, prefix, source)
        expect(valueOf(yield* fresh.get)).toBe(valueOf(tokens[0]!))
        expect(calls.fetch).toBe(1)
      }))
  })

  describe("refresh (invariants 2 and 3)", () => {
    it.scopedLive("one process refreshes ahead of expiry, the others adopt its token, and no token is served inside its margin", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("refresh")
        const lifetime = 1_200
        const { calls, source } = yield* FakeSource.make({ lifetime: Duration.millis(lifetime), latency: "20 millis" })
        const caches = yield* Effect.forEach(
          Array.from({ length: 3 }),
          () => processCache(server.url, prefix, source, { refreshBefore: "500 millis" })
        )
        const margin = Math.min(30_000, lifetime / 10, 500)
        const served: Array<{ token: AccessToken.AccessToken; at: number; process: number }> = []
        const start = Date.now()
        const run = 3_000
        yield* Effect.forEach(caches, (cache, process) =>
          Effect.gen(function*() {
            while (Date.now() - start < run) {
              const token = yield* cache.get
              served.push({ token, at: Date.now(), process })
              yield* Effect.sleep("15 millis")
            }
          }), { concurrency: "unbounded", discard: true })
        for (const { at, token } of served) {
          expect(Option.getOrThrow(token.expiresAt).epochMillis - at).toBeGreaterThan(margin - 5)
        }
        // Invariant 3 for the fleet: ⌈T / (L − refreshBefore)⌉ + 1.
        expect(calls.fetch).toBeLessThanOrEqual(Math.ceil(run / (lifetime - 500)) + 1)
        expect(calls.fetch).toBeGreaterThanOrEqual(4)
        // Every process moved to each new token and never went back to an older one. Only the newest
        // token may be missing from a process, when it appeared too close to the end for the others to
        // adopt it (they adopt at their own refresh instant, after polling the holder's lock).
        const sequence = (token: AccessToken.AccessToken) => Number(valueOf(token).split("-").at(-1))
        const newest = Math.max(...served.map(({ token }) => sequence(token)))
        const firstServed = Math.min(...served.filter(({ token }) => sequence(token) === newest).map(({ at }) => at))
        for (const process of caches.keys()) {
          const own = served.filter((s) => s.process === process).map(({ token }) => sequence(token))
          expect(own).toEqual([...own].sort((a, b) => a - b))
          const expected = new Set(served.map(({ token }) => sequence(token)))
          if (!own.includes(newest) && firstServed > start + run - 500) expected.delete(newest)
          expect(new Set(own)).toEqual(expected)
        }
        // Each request the source saw is counted by exactly one process, once it has answered: a refresh
        // may still be in flight when the callers stop.
        let counted = 0
        yield* eventually(() => {
          counted = caches.reduce((sum, cache) => {
            const s = Effect.runSync(cache.stats)
            return sum + s.fetches + s.refreshes
          }, 0)
          return calls.inFlight === 0 && counted === calls.fetch + calls.refresh
        })
        expect(counted).toBe(calls.fetch + calls.refresh)
      }))

    it.scopedLive("uses the refresh grant with the stored refresh token", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("refresh-grant")
        const { calls, source } = yield* FakeSource.make({ lifetime: "600 millis", refresh: true })
        const a = yield* processCache(server.url, prefix, source)
        const b = yield* processCache(server.url, prefix, source)
        const first = yield* a.get
        // The refresh is due at 300 ms (half the lifetime, plus jitter); it is stored once a holds the
        // new token.
        yield* eventually(() => Option.exists(Effect.runSync(a.current), (token) => valueOf(token) !== valueOf(first)))
        const second = yield* b.get
        expect(valueOf(second)).not.toBe(valueOf(first))
        expect(calls).toMatchObject({ fetch: 1, refresh: 1 })
      }))
  })

  describe("invalidate (compare-and-set, fleet-wide)", () => {
    it.scopedLive("a 401 for an old token never drops a newer one", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("cas")
        const { calls, source } = yield* FakeSource.make()
        const a = yield* processCache(server.url, prefix, source)
        const b = yield* processCache(server.url, prefix, source)
        const client = yield* inspector(server.url)
        const keys = RedisTokenCache.keysOf({ prefix }, source.identity)
        const t1 = yield* a.get
        expect(valueOf(yield* b.get)).toBe(valueOf(t1))
        // b sees a 401 for t1: dropped here and in Redis.
        expect(yield* b.invalidate(t1)).toBe(true)
        expect(yield* promise(() => client.exists(keys.token))).toBe(0)
        const t2 = yield* b.get
        expect(valueOf(t2)).not.toBe(valueOf(t1))
        expect(calls.fetch).toBe(2)
        // a's stale 401 for t1 drops only a's own copy, never t2.
        expect(yield* a.invalidate(t1)).toBe(true)
        expect(yield* b.invalidate(t1)).toBe(false)
        expect(valueOf(yield* a.get)).toBe(valueOf(t2))
        expect(valueOf(yield* b.get)).toBe(valueOf(t2))
        expect(calls.fetch).toBe(2)
        expect(Option.map(yield* a.current, valueOf)).toEqual(Option.some(valueOf(t2)))
        expect((yield* a.stats).invalidations).toBe(1)
      }))
  })

  describe("failures", () => {
    it.scopedLive("a failed fetch is shared: the fleet gets the same error without asking again until the cooldown ends", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("cooldown")
        let down = true
        const { calls, source } = yield* FakeSource.make({ fail: () => (down ? unavailable() : undefined) })
        const options: RedisTokenCache.Options = {
          retry: { attempts: 1 },
          // Jittered between half and all of it: long enough that "at once" below stays inside it.
          cooldown: { base: "1 second", max: "1 second" }
        }
        const caches = yield* Effect.forEach(
          Array.from({ length: 3 }),
          () => processCache(server.url, prefix, source, options)
        )
        const errors = yield* Effect.all(caches.map((cache) => Effect.flip(cache.get)), { concurrency: "unbounded" })
        expect(calls.fetch).toBe(1)
        for (const error of errors) expect(error).toMatchObject({ _tag: "TokenEndpointUnavailable", status: 503 })
        const again = yield* Effect.flip(caches[1]!.get)
        expect(again._tag).toBe("TokenEndpointUnavailable")
        expect(again.message).toContain("HTTP 503")
        expect(calls.fetch).toBe(1)
        down = false
        // Once the cooldown ends one process asks again, and only once.
        yield* caches[2]!.get.pipe(Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 60 }))
        expect(calls.fetch).toBe(2)
      }))

    it.scopedLive("Redis down: a valid local copy is still served, otherwise a typed failure and no fetch; recovers", () =>
      Effect.gen(function*() {
        const own = yield* RedisServer.scoped
        const prefix = uniquePrefix("down")
        const { calls, source } = yield* FakeSource.make()
        const warm = yield* processCache(own.url, prefix, source)
        const cold = yield* processCache(own.url, prefix, source)
        const token = yield* warm.get
        yield* promise(() => own.kill("SIGKILL"))
        expect(valueOf(yield* warm.get)).toBe(valueOf(token))
        const error = yield* Effect.flip(cold.get)
        expect(error._tag).toBe("TokenEndpointUnavailable")
        expect(error.message).toContain("shared token store (Redis) is unreachable")
        expect(calls.fetch).toBe(1)
        // invalidate never fails: it drops the local copy and tells Redis when it can.
        expect(yield* warm.invalidate(token)).toBe(true)
        expect((yield* Effect.flip(warm.get))._tag).toBe("TokenEndpointUnavailable")
        yield* promise(() => own.restart())
        // Each process reconnects on its own backoff (up to 2 s) and its cache retries after a cooldown that
        // doubles per failure: on a loaded machine either can take several seconds, so poll each, bounded.
        const untilRecovered = Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.upTo("20 seconds")))
        const recovered = yield* untilRecovered(cold.get)
        expect(valueOf(recovered)).not.toBe(valueOf(token))
        expect(valueOf(yield* untilRecovered(warm.get))).toBe(valueOf(recovered))
        expect(calls.fetch).toBe(2)
      }))
  })

  describe("scope close: revoke only when the last user leaves", () => {
    it.scopedLive("closing one process leaves the token to the others; the last one out revokes it", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("revoke")
        const { calls, source } = yield* FakeSource.make({ revoke: true })
        const client = yield* inspector(server.url)
        const keys = RedisTokenCache.keysOf({ prefix }, source.identity)
        const a = yield* closableCache(server.url, prefix, source)
        const b = yield* closableCache(server.url, prefix, source)
        const token = yield* a.cache.get
        yield* b.cache.get
        yield* a.close
        expect(calls.revoke).toBe(0)
        expect(valueOf(yield* b.cache.get)).toBe(valueOf(token))
        yield* b.close
        expect(calls.revoked).toEqual([valueOf(token)])
        expect(yield* promise(() => client.exists(keys.token))).toBe(0)
        expect((yield* Effect.flip(b.cache.get)).message).toContain("closed")
      }))

    it.scopedLive("revokeOnClose: \"never\" leaves the token to expire", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("never")
        const { calls, source } = yield* FakeSource.make({ revoke: true })
        const a = yield* closableCache(server.url, prefix, source, { revokeOnClose: "never" })
        yield* a.cache.get
        yield* a.close
        expect(calls.revoke).toBe(0)
      }))

    it.scopedLive("closing while this process holds the fetch lock releases it for the others", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("close-lock")
        const { calls, source } = yield* FakeSource.make({ latency: "300 millis" })
        const a = yield* closableCache(server.url, prefix, source)
        const b = yield* processCache(server.url, prefix, source)
        const waiter = yield* Effect.fork(Effect.flip(a.cache.get))
        // a holds the lock and its request is at the source.
        yield* eventually(() => calls.inFlight === 1)
        expect(calls.fetch).toBe(1)
        yield* a.close
        expect((yield* Fiber.join(waiter))._tag).toBe("TokenEndpointUnavailable")
        const t0 = preciseNow()
        yield* b.get
        // b did not wait for a lock TTL (10 s by default): the lock was released.
        expect(preciseNow() - t0).toBeLessThan(1_000)
        expect(calls.fetch).toBe(2)
      }))
  })

  describe("secrets (invariant 8)", () => {
    it.scopedLive("never appear in logs, errors, anything returned, or Redis when encryption is on", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("secrets")
        const client = yield* inspector(server.url)
        const clientSecret = "client-secret-that-must-not-leak"
        const lines: Array<string> = []
        const logger = Logger.make(({ annotations, message }) => {
          lines.push(inspect({ message, annotations: [...annotations] }, { depth: 10 }))
        })
        let failing = false
        const { calls, source } = yield* FakeSource.make({
          lifetime: "800 millis",
          refresh: true,
          revoke: true,
          fail: () => (failing ? unavailable() : undefined)
        })
        const encryptionKey = Redacted.make("k3y-for-tests-0123456789abcdefghijklmnop")
        const produced: Array<unknown> = []
        let stored = ""
        yield* Effect.scoped(Effect.gen(function*() {
          const a = yield* processCache(server.url, prefix, source, { encryptionKey, retry: { attempts: 1 } })
          const b = yield* processCache(server.url, prefix, source, { encryptionKey, retry: { attempts: 1 } })
          produced.push(yield* a.get, yield* b.get)
          yield* Effect.sleep("450 millis")
          produced.push(yield* b.get)
          stored = yield* dump(client, prefix)
          failing = true
          // Poll rather than sleep a fixed time: on a loaded machine the last good refresh can land late.
          const poll = Schedule.spaced("50 millis").pipe(Schedule.upTo("5 seconds"))
          produced.push(yield* Effect.retry(Effect.flip(a.get), poll))
          failing = false
          produced.push(yield* Effect.retry(a.get, poll), yield* a.stats, yield* b.current)
          stored += yield* dump(client, prefix)
        })).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
        expect(lines.length).toBeGreaterThan(0)
        expect(stored).toContain("v1.")
        const secrets = [
          clientSecret,
          ...calls.issued.flatMap((t) => [valueOf(t), ...Option.toArray(Option.map(t.refreshToken, Redacted.value))])
        ]
        expect(secrets.length).toBeGreaterThan(4)
        const rendered = [
          ...lines,
          stored,
          ...produced.flatMap((value) => [String(value), JSON.stringify(value), inspect(value, { depth: 10 })]),
          ...produced.filter((v): v is Error => v instanceof Error).map((e) => e.message)
        ].join("\n")
        for (const secret of secrets) expect(rendered).not.toContain(secret)
        // Key names carry a digest of the identity, not the client id.
        expect(stored).not.toContain(source.identity.clientId)
      }))

    it.scopedLive("a process with another key cannot read the token: it treats it as missing", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("keys")
        const { calls, source } = yield* FakeSource.make()
        const a = yield* processCache(server.url, prefix, source, { encryptionKey: Redacted.make("key-one") })
        const b = yield* processCache(server.url, prefix, source, { encryptionKey: Redacted.make("key-two") })
        const first = yield* a.get
        const second = yield* b.get
        expect(valueOf(second)).not.toBe(valueOf(first))
        expect(calls.fetch).toBe(2)
      }))
  })

  it.scopedLive("every key carries a TTL", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("ttl")
      const client = yield* inspector(server.url)
      let fail = false
      const { source } = yield* FakeSource.make({ revoke: true, fail: () => (fail ? unavailable() : undefined) })
      const { source: noExpiry } = yield* FakeSource.make({ lifetime: null })
      const a = yield* processCache(server.url, prefix, source, { retry: { attempts: 1 } })
      const b = yield* processCache(server.url, prefix, noExpiry)
      const token = yield* a.get
      yield* b.get
      yield* a.invalidate(token)
      fail = true
      yield* Effect.flip(a.get)
      const found = yield* ttls(client, prefix)
      expect(found.map(([key]) => key.split(":").at(-1)).sort()).toEqual(["fail", "fence", "fence", "token", "users"])
      for (const [key, ttl] of found) expect({ key, ttl: ttl > 0 }).toEqual({ key, ttl: true })
    }))
})
