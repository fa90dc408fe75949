/**
 * What only the Redis store has: a lock TTL, the refresh token sealed at rest, Redis going down, stalling
 * or refusing us, encryption keys, key TTLs. What every store must do is in the shared specification
 * (`TokenStoreSpec.test.ts`, also run over core's memory store). Each cache has its own Redis connection
 * and stands for one process of a fleet; the fake source is shared, so its counters are what the
 * provider would see from the whole fleet.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import type * as AccessToken from "@tollgate/core/AccessToken"
import type * as TokenSource from "@tollgate/core/TokenSource"
import * as TollgateError from "@tollgate/core/TollgateError"
import { Effect, Exit, Logger, Option, Redacted, Schedule, Scope } from "effect"
import { inspect } from "node:util"
import * as Scripts from "../src/internal/tokenScripts.js"
import * as RedisConnection from "../src/RedisConnection.js"
import * as RedisTokenCache from "../src/RedisTokenCache.js"
import * as FakeSource from "./utils/FakeSource.js"
import { connect, dump, inspector, preciseNow, promise, ttls, uniquePrefix } from "./utils/Redis.js"
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

  describe("the fetch lock", () => {
    it.scopedLive("a holder that dies with the lock delays the fleet by the lock TTL, then one process fetches", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("crash")
        const { calls, source } = yield* FakeSource.make()
        // A "process" takes the fetch lock and dies: nothing renews or releases it.
        const dead = yield* connect(server.url, prefix)
        const keys = RedisTokenCache.keysOf(dead, source.identity)
        const reply = yield* dead.run(Scripts.read, [keys.token, keys.lock, keys.fence, keys.fail, keys.users], [
          "get",
          "",
          1000,
          300,
          "dead-owner",
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
          50_000,
          55_000,
          60_000
        ])
        expect(late).toEqual(["fenced"])
        const fresh = yield* processCache(server.url, prefix, source)
        expect(valueOf(yield* fresh.get)).toBe(valueOf(tokens[0]!))
        expect(calls.fetch).toBe(1)
      }))
  })

  describe("refresh", () => {
    it.scopedLive("uses the refresh grant with the stored refresh token", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("refresh-grant")
        const { calls, source } = yield* FakeSource.make({ lifetime: "600 millis", refresh: true })
        const a = yield* processCache(server.url, prefix, source)
        const b = yield* processCache(server.url, prefix, source)
        const first = yield* a.get
        // In use (a caller every 20 ms), the token is due at 500 ms (a sixth of its lifetime ahead, plus
        // jitter); it is stored once a holds the new one.
        yield* a.get.pipe(
          Effect.zipLeft(Effect.sleep("20 millis")),
          Effect.repeat({ until: (token) => valueOf(token) !== valueOf(first) }),
          Effect.timeout("3 seconds")
        )
        const second = yield* b.get
        expect(valueOf(second)).not.toBe(valueOf(first))
        expect(calls).toMatchObject({ fetch: 1, refresh: 1 })
      }))
  })

  describe("failures", () => {
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

  describe("Redis stalled, full or refusing us", () => {
    // Issue #18: a read that timed out on the client still ran once Redis resumed and took the fetch lock
    // for nobody, so the fleet waited out the lock TTL (10 s) after the pause.
    it.scopedLive(
      "after a pause (SIGSTOP, then SIGCONT) a get succeeds within 2 s of resume, not after the lock TTL",
      () =>
        Effect.gen(function*() {
          const own = yield* RedisServer.scoped
          const prefix = uniquePrefix("pause")
          const client = yield* inspector(own.url)
          const info = yield* promise(() => client.info("server"))
          const pid = Number(/process_id:(\d+)/.exec(info)![1])
          const { calls, source } = yield* FakeSource.make()
          const connection = yield* connect(own.url, prefix, { commandTimeout: "300 millis" })
          const cache = yield* RedisTokenCache.make(source).pipe(
            Effect.provideService(RedisConnection.RedisConnection, connection)
          )
          // A fleet that has been running: the scripts are loaded, the token was just refused (a 401).
          yield* cache.invalidate(yield* cache.get)
          process.kill(pid, "SIGSTOP")
          const resume = Effect.sync(() => process.kill(pid, "SIGCONT"))
          yield* Effect.addFinalizer(() => Effect.ignore(resume))
          // Callers during the pause fail at once with a typed error naming the cause; each of their reads
          // is queued in the stopped server.
          for (let i = 0; i < 3; i++) {
            const error = yield* Effect.flip(cache.get)
            expect(error._tag).toBe("TokenEndpointUnavailable")
            expect(error.message).toContain("shared token store (Redis) did not answer in time")
            yield* Effect.sleep("500 millis")
          }
          yield* Effect.sleep("1 second")
          yield* resume
          const resumed = preciseNow()
          const token = yield* cache.get.pipe(
            Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.upTo("8 seconds")))
          )
          expect(preciseNow() - resumed).toBeLessThan(2_000)
          expect(valueOf(token)).toContain("fetch-2")
          expect(calls.fetch).toBe(2)
        }),
      30_000
    )

    it.scopedLive("errors name the cause: out of memory, wrong password, unreachable", () =>
      Effect.gen(function*() {
        const { source } = yield* FakeSource.make()
        const full = yield* RedisServer.scopedWith(["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"])
        const filler = yield* inspector(full.url)
        // Fill the server past maxmemory: every write is refused with OOM from then on.
        yield* promise(async () => {
          const block = "x".repeat(64 * 1024)
          for (let i = 0; i < 64; i++) {
            try {
              await filler.set(`fill:${i}`, block)
            } catch {
              return
            }
          }
        })
        const oom = yield* Effect.flip(
          processCache(full.url, uniquePrefix("oom"), source).pipe(Effect.flatMap((c) => c.get))
        )
        expect(oom.message).toContain("shared token store (Redis) is out of memory")

        const password = "right-pa55word"
        const locked = yield* RedisServer.scopedWith(["--requirepass", password])
        const wrong = `redis://:wrong-${password}@127.0.0.1:${locked.port}`
        const auth = yield* Effect.flip(
          processCache(wrong, uniquePrefix("auth"), source).pipe(Effect.flatMap((c) => c.get))
        )
        expect(auth.message).toContain("shared token store (Redis) refused Tollgate's credentials")
        expect(auth.message).not.toContain("Stream isn't writeable")
        expect(auth.message).not.toContain(password)

        const gone = yield* RedisServer.scoped
        const cache = yield* processCache(gone.url, uniquePrefix("gone"), source)
        yield* promise(() => gone.kill())
        const unreachable = yield* Effect.flip(cache.get)
        expect(unreachable.message).toContain("shared token store (Redis) is unreachable")
        expect(unreachable.message).not.toContain("Stream isn't writeable")
      }), 30_000)
  })

  describe("scope close", () => {
    it.scopedLive("revokeOnClose: \"never\" leaves the token to expire", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("never")
        const { calls, source } = yield* FakeSource.make({ revoke: true })
        const a = yield* closableCache(server.url, prefix, source, { revokeOnClose: "never" })
        yield* a.cache.get
        yield* a.close
        expect(calls.revoke).toBe(0)
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

    it.scopedLive("a process with another key neither deletes the token nor fetches its own: it says why, once", () =>
      Effect.gen(function*() {
        const prefix = uniquePrefix("keys")
        const client = yield* inspector(server.url)
        const logs: Array<string> = []
        const logger = Logger.make(({ annotations, logLevel, message }) => {
          logs.push(`${logLevel.label} ${inspect(message)} ${inspect([...annotations])}`)
        })
        const { calls, source } = yield* FakeSource.make()
        const keys = RedisTokenCache.keysOf({ prefix }, source.identity)
        const a = yield* processCache(server.url, prefix, source, { encryptionKey: Redacted.make("key-one") })
        const b = yield* processCache(server.url, prefix, source, { encryptionKey: Redacted.make("key-two") })
        const c = yield* processCache(server.url, prefix, source)
        const first = yield* a.get
        const errors = yield* Effect.all([Effect.flip(b.get), Effect.flip(b.get), Effect.flip(c.get)]).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, logger))
        )
        for (const error of errors) {
          expect(error._tag).toBe("TokenEndpointUnavailable")
          expect(error.message).toContain("TOLLGATE_REDIS_ENCRYPTION_KEY")
        }
        expect(errors[0]!.message).toMatch(/sealed with key id \S+, but this process has key id \S+/)
        expect(errors[2]!.message).toContain("but this process has no encryption key")
        // Logged once per process and cause, as an error; the token stays, nobody fetched again.
        expect(logs.filter((line) => line.startsWith("ERROR"))).toHaveLength(2)
        expect(yield* promise(() => client.exists(keys.token))).toBe(1)
        expect(calls.fetch).toBe(1)
        expect(valueOf(yield* a.get)).toBe(valueOf(first))
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
