import { describe, expect, it } from "@effect/vitest"
import { Clock, DateTime, Duration, Effect, Exit, Fiber, Logger, Option, Redacted, Scope, TestClock } from "effect"
import * as fc from "fast-check"
import { inspect } from "node:util"
import type * as AccessToken from "../src/AccessToken.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as TokenCache from "../src/TokenCache.js"
import * as TokenSource from "../src/TokenSource.js"
import * as TollgateError from "../src/TollgateError.js"
import * as FakeSource from "./utils/FakeSource.js"
import * as Timers from "./utils/Timers.js"

const valueOf = (token: AccessToken.AccessToken) => Redacted.value(token.value)

const unavailable = () =>
  new TollgateError.TokenEndpointUnavailable({ provider: "fake", reason: "HTTP 503", status: 503 })

/** Runs `get` and reports the token with the instant it was handed out. */
const timedGet = (cache: TokenCache.Service) =>
  Effect.flatMap(cache.get, (token) => Effect.map(Clock.currentTimeMillis, (at) => ({ token, at })))

describe("TokenCache", () => {
  describe("single flight (invariant 1)", () => {
    it.effect.prop(
      "N concurrent callers on a cold cache cause exactly one fetch",
      { n: fc.integer({ min: 1, max: 10_000 }), latencyMs: fc.integer({ min: 0, max: 5_000 }) },
      ({ latencyMs, n }) =>
        Effect.gen(function*() {
          const { calls, source } = yield* FakeSource.make({ latency: Duration.millis(latencyMs) })
          const cache = yield* TokenCache.make(source)
          const fiber = yield* Effect.fork(
            Effect.all(Array.from({ length: n }, () => cache.get), { concurrency: "unbounded" })
          )
          yield* TestClock.adjust(Duration.millis(latencyMs))
          const tokens = yield* Fiber.join(fiber)
          expect(calls.fetch).toBe(1)
          expect(calls.maxInFlight).toBe(1)
          expect(new Set(tokens.map(valueOf)).size).toBe(1)
        }).pipe(Effect.scoped),
      { fastCheck: { numRuns: 12 } }
    )

    it.scoped("10,000 concurrent callers share one fetch and its failure", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({
          latency: "100 millis",
          fail: () => new TollgateError.InvalidCredentials({ provider: "fake", status: 401 })
        })
        const cache = yield* TokenCache.make(source)
        const fiber = yield* Effect.fork(
          Effect.all(Array.from({ length: 10_000 }, () => Effect.either(cache.get)), { concurrency: "unbounded" })
        )
        yield* TestClock.adjust("100 millis")
        const results = yield* Fiber.join(fiber)
        expect(calls.fetch).toBe(1)
        expect(results.every((r) => r._tag === "Left" && r.left._tag === "InvalidCredentials")).toBe(true)
      }))
  })

  describe("expiry and refresh (invariants 2 and 3)", () => {
    /** The schedule of a token from first principles (the rule `TokenCache.schedule` implements). */
    const expected = (lifetime: number, refreshBeforeMillis: number | undefined) => {
      const refreshBefore = refreshBeforeMillis === undefined
        ? Math.min(300_000, lifetime / 6)
        : Math.min(refreshBeforeMillis, lifetime / 2)
      return { refreshBefore, margin: Math.min(30_000, refreshBefore / 2) }
    }

    it.effect.prop(
      "a healthy cache never hands out a token inside its safety margin, renews a token in use as soon as its refresh window opens, and fetches within the bound",
      {
        lifetimeSeconds: fc.integer({ min: 20, max: 7_200 }),
        refreshBeforeSeconds: fc.option(fc.integer({ min: 1, max: 900 }), { nil: undefined }),
        latencyPermille: fc.integer({ min: 0, max: 40 }),
        // Gaps between callers, in thousandths of a lifetime: bursts, steady traffic and long silences.
        gaps: fc.array(fc.integer({ min: 0, max: 2_500 }), { minLength: 1, maxLength: 25 })
      },
      ({ gaps, latencyPermille, lifetimeSeconds, refreshBeforeSeconds }) =>
        Effect.gen(function*() {
          const lifetime = lifetimeSeconds * 1000
          const latency = Math.floor((lifetime * latencyPermille) / 1000)
          const { calls, source } = yield* FakeSource.make({
            lifetime: Duration.millis(lifetime),
            latency: Duration.millis(latency)
          })
          const explicit = refreshBeforeSeconds === undefined ? undefined : refreshBeforeSeconds * 1000
          const cache = yield* TokenCache.make(source, {
            refreshBefore: explicit === undefined ? undefined : Duration.millis(explicit),
            // A healthy but slow endpoint (up to 4% of a 2-hour lifetime) is not a timeout here.
            timeout: "1 hour"
          })
          const { margin, refreshBefore } = expected(lifetime, explicit)
          const start = yield* Clock.currentTimeMillis
          const callsAt: Array<number> = []
          for (const gap of gaps) {
            yield* TestClock.adjust(Duration.millis(Math.floor((lifetime * gap) / 1000)))
            const calledAt = yield* Clock.currentTimeMillis
            callsAt.push(calledAt)
            const fiber = yield* Effect.fork(timedGet(cache))
            yield* TestClock.adjust(Duration.millis(latency))
            const { at, token } = yield* Fiber.join(fiber)
            const expiresAt = Option.getOrThrow(token.expiresAt).epochMillis
            const obtainedAt = token.obtainedAt.epochMillis
            const refreshAt = expiresAt - refreshBefore
            // Invariant 2: never inside the margin...
            expect(at).toBeLessThan(expiresAt - margin)
            // ...and a token in use (a call since `refreshBefore` ahead of its refresh instant) is replaced
            // once its refresh window is open and the request has had its latency.
            const trigger = callsAt.find((c) => c >= obtainedAt && c >= refreshAt - refreshBefore && c < at)
            if (trigger !== undefined) expect(at).toBeLessThanOrEqual(Math.max(trigger, refreshAt) + latency + 2)
          }
          const elapsed = (yield* Clock.currentTimeMillis) - start
          // Invariant 3, with no 401s observed.
          const bound = Math.ceil(elapsed / (lifetime - refreshBefore)) + 1
          expect(calls.fetch + calls.refresh).toBeLessThanOrEqual(bound)
          // Idle: once callers stop, at most the renewal the last call asked for, then nothing.
          const before = calls.fetch + calls.refresh
          yield* TestClock.adjust(Duration.millis(lifetime * 20))
          expect(calls.fetch + calls.refresh - before).toBeLessThanOrEqual(1)
        }).pipe(Effect.scoped),
      { fastCheck: { numRuns: 40 } }
    )

    it.scoped("refreshes in the background while in use, so callers never wait for it", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({ lifetime: "1 hour", latency: "2 seconds" })
        const cache = yield* TokenCache.make(source)
        const fiber = yield* Effect.fork(cache.get)
        yield* TestClock.adjust("2 seconds")
        const first = yield* Fiber.join(fiber)
        // A caller every minute keeps the token in use; 5 minutes before expiry the refresh starts, and
        // during its 2 seconds callers still get the old token at once.
        for (let minute = 1; minute <= 55; minute++) {
          yield* TestClock.adjust("1 minute")
          yield* cache.get
        }
        expect(calls.fetch).toBe(2)
        expect(valueOf(yield* cache.get)).toBe(valueOf(first))
        yield* TestClock.adjust("2 seconds")
        expect(valueOf(yield* cache.get)).not.toBe(valueOf(first))
      }))

    it.scoped("clamps the refresh lead to a sixth of a short lifetime", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({ lifetime: "60 seconds" })
        const cache = yield* TokenCache.make(source)
        yield* cache.get
        for (let second = 1; second < 50; second++) {
          yield* TestClock.adjust("1 second")
          yield* cache.get
        }
        expect(calls.fetch).toBe(1)
        yield* TestClock.adjust("1 second")
        expect(calls.fetch).toBe(2)
      }))

    it.scoped("an idle cache renews nothing; the first caller in the refresh window renews in the background", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({ lifetime: "1 hour", latency: "1 second" })
        const cache = yield* TokenCache.make(source)
        const first = yield* Effect.fork(cache.get).pipe(
          Effect.tap(() => TestClock.adjust("1 second")),
          Effect.flatMap(Fiber.join)
        )
        // Last used at 1 second: idle at the refresh instant (55 minutes), so nothing is fetched.
        yield* TestClock.adjust("56 minutes")
        expect(calls.fetch).toBe(1)
        // A caller inside the window gets the valid token at once and starts the renewal.
        expect(valueOf(yield* cache.get)).toBe(valueOf(first))
        yield* TestClock.adjust("1 second")
        expect(calls.fetch).toBe(2)
        expect(valueOf(yield* cache.get)).not.toBe(valueOf(first))
        // Idle again: hours pass without a request.
        yield* TestClock.adjust("5 hours")
        expect(calls.fetch).toBe(2)
        // After expiry the next caller waits for a fresh token.
        const late = yield* Effect.fork(cache.get)
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(late)
        expect(calls.fetch).toBe(3)
      }))

    it.scoped("idleAfter widens what counts as in use; Duration.infinity renews every token", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({ lifetime: "1 hour" })
        const cache = yield* TokenCache.make(source, { idleAfter: "30 minutes" })
        yield* cache.get
        yield* TestClock.adjust("30 minutes")
        yield* cache.get
        yield* TestClock.adjust("25 minutes")
        expect(calls.fetch).toBe(2)
        const always = yield* FakeSource.make({ lifetime: "1 hour" })
        const eager = yield* TokenCache.make(always.source, { idleAfter: Duration.infinity })
        yield* eager.get
        yield* TestClock.adjust("10 hours")
        expect(always.calls.fetch).toBe(Math.floor(10 * 60 / 55) + 1)
      }))

    // Issue #14: tokens of 5 s, 15 s of steady traffic, then 10 s of silence.
    it.scoped("short tokens: 15 s of traffic cost at most ceil(15 / 5) + 1 grants, 10 idle seconds cost none", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({ lifetime: "5 seconds", latency: "20 millis" })
        const cache = yield* TokenCache.make(source)
        const waits: Array<number> = []
        for (let t = 0; t < 15_000; t += 100) {
          const started = yield* Clock.currentTimeMillis
          const fiber = yield* Effect.fork(timedGet(cache))
          yield* TestClock.adjust("100 millis")
          const { at } = yield* Fiber.join(fiber)
          waits.push(at - started)
        }
        expect(calls.fetch).toBeLessThanOrEqual(4)
        // Nobody waited but the very first caller.
        expect(waits.slice(1).every((w) => w === 0)).toBe(true)
        const busy = calls.fetch
        yield* TestClock.adjust("10 seconds")
        expect(calls.fetch).toBe(busy)
      }))

    it.scoped("uses the refresh grant first and falls back to the credentials when it is refused", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({
          lifetime: "30 minutes",
          refresh: true,
          fail: (n, grant) =>
            grant === "refresh" && n === 2
              ? new TollgateError.ProviderError({ provider: "fake", code: "invalid_grant" })
              : undefined
        })
        const cache = yield* TokenCache.make(source)
        // In use every minute: the 30-minute token is renewed 3 minutes early.
        const use = (minutes: number) =>
          Effect.forEach(
            Array.from({ length: minutes }),
            () => Effect.zipRight(TestClock.adjust("1 minute"), cache.get)
          )
        yield* cache.get
        yield* use(27)
        expect(calls).toMatchObject({ fetch: 1, refresh: 1 })
        yield* use(27)
        expect(calls).toMatchObject({ fetch: 2, refresh: 2 })
        const stats = yield* cache.stats
        expect(stats).toMatchObject({ fetches: 2, refreshes: 1 })
      }))

    it.scoped("keeps serving the still-valid token through an outage and fails with a typed error only after expiry", () =>
      Effect.gen(function*() {
        let down = false
        const { calls, source } = yield* FakeSource.make({
          lifetime: "1 hour",
          fail: () => (down ? unavailable() : undefined)
        })
        const cache = yield* TokenCache.make(source)
        const first = yield* cache.get
        down = true
        // The refresh window opens at 55 minutes; the refresher keeps retrying until the token's margin.
        yield* TestClock.adjust("54 minutes")
        for (let minute = 55; minute <= 59; minute++) {
          yield* TestClock.adjust("1 minute")
          expect(valueOf(yield* cache.get)).toBe(valueOf(first))
        }
        expect(calls.fetch).toBeGreaterThan(3)
        yield* TestClock.adjust("30 seconds")
        const failed = yield* Effect.flip(cache.get).pipe(
          Effect.fork,
          Effect.tap(() => TestClock.adjust("1 minute")),
          Effect.flatMap(Fiber.join)
        )
        expect(failed._tag).toBe("TokenEndpointUnavailable")
        down = false
        yield* TestClock.adjust("2 minutes")
        const recovered = yield* cache.get
        expect(valueOf(recovered)).not.toBe(valueOf(first))
      }))
  })

  describe("protecting the token endpoint", () => {
    it.scoped("retries an outage inside one request with backoff, then backs off before the next", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({ fail: () => unavailable() })
        const cache = yield* TokenCache.make(source, { retry: { attempts: 3 } })
        const fiber = yield* Effect.fork(
          Effect.all(Array.from({ length: 50 }, () => Effect.flip(cache.get)), { concurrency: "unbounded" })
        )
        // Backoffs of 125-250 ms then 250-500 ms: the request has failed by 750 ms, and the cooldown of
        // 500-1000 ms that follows has not ended at 800 ms.
        yield* TestClock.adjust("800 millis")
        const errors = yield* Fiber.join(fiber)
        expect(calls.fetch).toBe(3)
        expect(new Set(errors).size).toBe(1)
        // Within the cooldown, callers get the same error without a request.
        const again = yield* Effect.flip(cache.get)
        expect(again).toBe(errors[0])
        expect(calls.fetch).toBe(3)
        yield* TestClock.adjust("1 minute")
        yield* Effect.fork(cache.get)
        yield* TestClock.adjust("1 millis")
        expect(calls.fetch).toBe(4)
      }))

    it.scoped("never retries rejected credentials", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({
          fail: () => new TollgateError.InvalidCredentials({ provider: "fake", status: 401, code: "invalid_client" })
        })
        const cache = yield* TokenCache.make(source)
        const error = yield* Effect.flip(cache.get)
        expect(error._tag).toBe("InvalidCredentials")
        expect(calls.fetch).toBe(1)
      }))

    it.scoped("honours the token endpoint's Retry-After", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({
          fail: (n, _, now) =>
            n === 1
              ? new TollgateError.TokenEndpointUnavailable({
                provider: "fake",
                reason: "rate limited",
                status: 429,
                retryAt: DateTime.unsafeMake(now + 12_000)
              })
              : undefined
        })
        const cache = yield* TokenCache.make(source)
        const fiber = yield* Effect.fork(timedGet(cache))
        yield* TestClock.adjust("11 seconds")
        expect(calls.fetch).toBe(1)
        yield* TestClock.adjust("1 second")
        const { at } = yield* Fiber.join(fiber)
        expect(calls.fetch).toBe(2)
        expect(at).toBe(12_000)
      }))

    it.scoped("sends every grant through the optional limiter", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make()
        const limiter = yield* RateLimiter.make(RateLimiter.tokenBucket({ rate: 1, interval: "1 minute", burst: 2 }))
        const cache = yield* TokenCache.make(source, { limiter, cooldown: { base: "1 millis", max: "1 millis" } })
        for (let i = 0; i < 5; i++) {
          const token = yield* Effect.fork(cache.get).pipe(
            Effect.tap(() => TestClock.adjust("1 second")),
            Effect.flatMap(Fiber.join),
            Effect.option
          )
          if (Option.isSome(token)) yield* cache.invalidate(token.value)
        }
        // 5 seconds: the burst of 2, and nothing more until the bucket refills.
        expect(calls.fetch).toBe(2)
        yield* TestClock.adjust("1 minute")
        yield* cache.get
        expect(calls.fetch).toBe(3)
      }))
  })

  describe("invalidate", () => {
    it.scoped("drops exactly the token it is given: a stale 401 never drops a newer token", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({ lifetime: "1 hour" })
        const cache = yield* TokenCache.make(source)
        const old = yield* cache.get
        yield* TestClock.adjust("54 minutes")
        yield* cache.get
        yield* TestClock.adjust("1 minute")
        const current = yield* cache.get
        expect(valueOf(current)).not.toBe(valueOf(old))
        expect(yield* cache.invalidate(old)).toBe(false)
        expect(valueOf(yield* cache.get)).toBe(valueOf(current))
        expect(yield* cache.invalidate(current)).toBe(true)
        expect(yield* cache.invalidate(current)).toBe(false)
        const next = yield* cache.get
        expect(calls.fetch).toBe(3)
        expect(valueOf(next)).not.toBe(valueOf(current))
      }))

    it.effect.prop(
      "any interleaving of invalidations leaves the newest token in place unless it is the one invalidated",
      { ops: fc.array(fc.oneof(fc.constant("get" as const), fc.nat(20)), { minLength: 1, maxLength: 60 }) },
      ({ ops }) =>
        Effect.gen(function*() {
          const { source } = yield* FakeSource.make({ lifetime: null })
          const cache = yield* TokenCache.make(source)
          const seen: Array<AccessToken.AccessToken> = []
          for (const op of ops) {
            if (op === "get") {
              seen.push(yield* cache.get)
              continue
            }
            const target = seen[op % Math.max(1, seen.length)]
            if (target === undefined) continue
            const before = yield* cache.current
            const dropped = yield* cache.invalidate(target)
            const after = yield* cache.current
            const wasCurrent = Option.isSome(before) && valueOf(before.value) === valueOf(target)
            expect(dropped).toBe(wasCurrent)
            if (!wasCurrent) expect(Option.map(after, valueOf)).toEqual(Option.map(before, valueOf))
            else expect(Option.isNone(after)).toBe(true)
          }
        }).pipe(Effect.scoped)
    )
  })

  describe("interruption", () => {
    it.scoped("interrupted callers do not cancel the fetch the others wait on", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({ latency: "1 second" })
        const cache = yield* TokenCache.make(source)
        const fibers = yield* Effect.forEach(Array.from({ length: 10 }), () => Effect.fork(cache.get))
        yield* TestClock.adjust("500 millis")
        // The first fiber started the fetch; interrupt it and half of the rest.
        yield* Effect.forEach(fibers.filter((_, i) => i % 2 === 0), Fiber.interrupt)
        yield* TestClock.adjust("500 millis")
        const tokens = yield* Effect.forEach(fibers.filter((_, i) => i % 2 === 1), Fiber.join)
        expect(new Set(tokens.map(valueOf)).size).toBe(1)
        expect(calls.fetch).toBe(1)
        expect(valueOf(yield* cache.get)).toBe(valueOf(tokens[0]!))
      }))

    it.effect("interrupting the only caller at any step never wedges the cache or leaks a request", () =>
      Effect.gen(function*() {
        for (let steps = 0; steps < 40; steps++) {
          yield* Effect.scoped(Effect.gen(function*() {
            const { calls, source } = yield* FakeSource.make({ latency: "1 second", lifetime: "1 hour" })
            const cache = yield* TokenCache.make(source)
            const victim = yield* Effect.fork(cache.get)
            for (let i = 0; i < steps; i++) yield* Effect.yieldNow()
            if (steps > 20) yield* TestClock.adjust(Duration.millis((steps - 20) * 50))
            yield* Fiber.interrupt(victim)
            const survivor = yield* Effect.fork(cache.get)
            yield* TestClock.adjust("1 second")
            const token = yield* Fiber.join(survivor)
            expect(calls.fetch).toBe(1)
            expect(valueOf(token)).toBe("secret-token-fetch-1")
          }))
        }
      }))

    it.effect("interrupting the refresher at any step keeps the cache consistent", () =>
      Effect.gen(function*() {
        for (let steps = 0; steps < 30; steps++) {
          const { calls, source } = yield* FakeSource.make({
            latency: "1 second",
            lifetime: "10 minutes",
            revoke: true
          })
          const scope = yield* Scope.make()
          const cache = yield* Scope.extend(TokenCache.make(source), scope)
          const fiber = yield* Effect.fork(cache.get)
          yield* TestClock.adjust("1 second")
          yield* Fiber.join(fiber)
          // Move into the refresh window, then close the scope part-way through the refresh.
          yield* TestClock.adjust("5 minutes")
          for (let i = 0; i < steps; i++) yield* Effect.yieldNow()
          yield* Scope.close(scope, Exit.void)
          expect(calls.fetch).toBeLessThanOrEqual(2)
          expect(calls.revoke).toBe(1)
          const before = calls.fetch
          yield* TestClock.adjust("2 hours")
          expect(calls.fetch).toBe(before)
          expect((yield* Effect.flip(cache.get))._tag).toBe("TokenEndpointUnavailable")
        }
      }))
  })

  describe("scope close", () => {
    it.effect("stops the refresher and revokes the current token exactly once", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({ lifetime: "30 minutes", revoke: true, refresh: true })
        const scope = yield* Scope.make()
        const cache = yield* Scope.extend(TokenCache.make(source), scope)
        const token = yield* cache.get
        yield* Scope.close(scope, Exit.void)
        expect(calls.revoke).toBe(1)
        expect(calls.revoked).toEqual([valueOf(token)])
        yield* TestClock.adjust("3 hours")
        expect(calls).toMatchObject({ fetch: 1, refresh: 0, revoke: 1 })
      }))

    it.effect("interrupts a token request in flight: its waiters fail with a typed error, nothing hangs", () =>
      Effect.gen(function*() {
        const { calls, source } = yield* FakeSource.make({ latency: "1 second", revoke: true })
        const scope = yield* Scope.make()
        const cache = yield* Scope.extend(TokenCache.make(source), scope)
        const caller = yield* Effect.fork(cache.get)
        yield* TestClock.adjust("500 millis")
        yield* Scope.close(scope, Exit.void)
        const error = yield* Effect.flip(Fiber.join(caller))
        expect(error._tag).toBe("TokenEndpointUnavailable")
        expect(error.message).toContain("closed")
        expect(calls.revoke).toBe(0)
      }))

    it.effect("bounds revocation by a timeout and logs its failure instead of throwing", () =>
      Effect.gen(function*() {
        const logs: Array<string> = []
        const { source } = yield* FakeSource.make({ revoke: true, revokeLatency: "1 hour" })
        const scope = yield* Scope.make()
        const cache = yield* Scope.extend(TokenCache.make(source, { closeTimeout: "2 seconds" }), scope)
        yield* cache.get
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* TestClock.adjust("2 seconds")
        const exit = yield* Fiber.await(closing)
        expect(Exit.isSuccess(exit)).toBe(true)
        expect(logs).toEqual([])
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.make(() => {})))))

    it.live("leaves no timer behind on the live clock", () =>
      Effect.gen(function*() {
        const before = yield* Timers.baseline
        const { source } = yield* FakeSource.make({ lifetime: "1 hour", revoke: true })
        const scope = yield* Scope.make()
        const cache = yield* Scope.extend(TokenCache.make(source), scope)
        yield* cache.get
        // The refresher arms its timer once it has run: give it a few turns of the event loop.
        for (let i = 0; i < 50 && Timers.count() <= before; i++) {
          yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        }
        expect(Timers.count()).toBeGreaterThan(before)
        yield* Scope.close(scope, Exit.void)
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        expect(Timers.count()).toBe(before)
      }))
  })

  describe("secrets", () => {
    it.scoped("never appear in logs, errors, String() or JSON of anything returned", () =>
      Effect.gen(function*() {
        const lines: Array<string> = []
        const logger = Logger.make(({ annotations, message }) => {
          lines.push(inspect({ message, annotations: [...annotations] }, { depth: 10 }))
        })
        let failing = false
        const { calls, source } = yield* FakeSource.make({
          lifetime: "10 minutes",
          refresh: true,
          revoke: true,
          fail: () => (failing ? unavailable() : undefined)
        })
        const produced: Array<unknown> = []
        yield* Effect.scoped(Effect.gen(function*() {
          const cache = yield* TokenCache.make(source)
          produced.push(yield* cache.get)
          failing = true
          yield* TestClock.adjust(Duration.seconds(9 * 60 + 45))
          produced.push(
            yield* Effect.flip(cache.get).pipe(
              Effect.fork,
              Effect.tap(() => TestClock.adjust("1 minute")),
              Effect.flatMap(Fiber.join)
            )
          )
          failing = false
          yield* TestClock.adjust("2 minutes")
          produced.push(yield* cache.get, yield* cache.stats, yield* cache.current)
        })).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
        expect(lines.length).toBeGreaterThan(0)
        const secrets = calls.issued.flatMap((
          t
        ) => [valueOf(t), ...Option.toArray(Option.map(t.refreshToken, Redacted.value))])
        expect(secrets.length).toBeGreaterThan(2)
        const rendered = [
          ...lines,
          ...produced.flatMap((value) => [String(value), JSON.stringify(value), inspect(value, { depth: 10 })]),
          ...produced.filter((v): v is Error => v instanceof Error).map((e) => e.message)
        ].join("\n")
        for (const secret of secrets) expect(rendered).not.toContain(secret)
      }))
  })

  describe("identity", () => {
    const base: TokenSource.Identity = {
      provider: "p",
      endpoint: "https://a/token",
      clientId: "c",
      scope: "a b",
      audience: "x",
      extra: { k: "v" }
    }
    it("differs for any difference in client, scope, audience or extra parameters", () => {
      const variants: Array<TokenSource.Identity> = [
        { ...base, provider: "q" },
        { ...base, endpoint: "https://b/token" },
        { ...base, clientId: "d" },
        { ...base, scope: "a" },
        { ...base, audience: "y" },
        { ...base, audience: undefined },
        { ...base, extra: { k: "w" } },
        { ...base, extra: { k: "v", j: "v" } }
      ]
      const keys = new Set([base, ...variants].map(TokenSource.identityKey))
      expect(keys.size).toBe(variants.length + 1)
    })
    it("ignores the order of scopes and extra parameters", () => {
      expect(TokenSource.identityKey({ ...base, scope: "b  a", extra: { k: "v" } })).toBe(TokenSource.identityKey(base))
      expect(TokenSource.identityKey({ ...base, extra: { b: "1", a: "2" } })).toBe(
        TokenSource.identityKey({ ...base, extra: { a: "2", b: "1" } })
      )
    })
  })
})
