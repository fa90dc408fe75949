/**
 * A fleet of worker PROCESSES (`test/fixtures/worker.ts`) against one private redis-server and one
 * Nora emulator served on loopback by the test, sped up 60× (60 requests per second per client, tokens
 * of 60 s). What the fleet did is read from the emulator's own recording.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Faults from "@tollgate/testing/Faults"
import * as NoraSandbox from "@tollgate/testing/NoraSandbox"
import * as Sandbox from "@tollgate/testing/Sandbox"
import { Effect } from "effect"
import { Redis } from "ioredis"
import { dump, promise, uniquePrefix } from "./utils/Redis.js"
import * as RedisServer from "./utils/RedisServer.js"
import * as Workers from "./utils/Workers.js"

const available = await RedisServer.requireRedis("Fleet")

const TIME_SCALE = 60

const sum = (values: ReadonlyArray<number>) => values.reduce((a, b) => a + b, 0)

const merge = (records: ReadonlyArray<Readonly<Record<string, number>>>) => {
  const merged: Record<string, number> = {}
  for (const record of records) for (const [key, n] of Object.entries(record)) merged[key] = (merged[key] ?? 0) + n
  return merged
}

describe.skipIf(!available)("a fleet of worker processes", () => {
  let redis: RedisServer.Server
  const running: Array<Workers.Worker> = []
  beforeAll(async () => {
    redis = await RedisServer.start()
  })
  afterAll(async () => {
    Workers.killAll(running)
    await redis?.stop()
  })

  const fleetEnv = (nora: Sandbox.Served<NoraSandbox.NoraSandbox>, prefix: string, extra: Record<string, string>) => ({
    REDIS_URL: redis.url,
    TOLLGATE_REDIS_PREFIX: prefix,
    NORA_BASE_URL: nora.baseUrl,
    NORA_CLIENT_ID: nora.credentials.clientId,
    NORA_CLIENT_SECRET: nora.credentials.clientSecret,
    NORA_ORGANIZATION_ID: nora.credentials.organizationId,
    LIMIT: String(nora.rateLimit.limit),
    WINDOW_MS: String(nora.rateLimit.windowMillis),
    ...extra
  })

  const launch = (env: Record<string, string>) => {
    const worker = Workers.start(env)
    running.push(worker)
    return worker
  }

  // The workers are core's ApiClient over a token source of their own, which does not count its token
  // requests against the API's limit as Nora's provider module does: the emulator is told not to either.
  const serveNora = Effect.flatMap(
    NoraSandbox.make({ timeScale: TIME_SCALE, countTokenRequests: false }),
    (emulator) => Sandbox.serve(emulator)
  )

  it.scopedLive(
    "4 workers at saturating demand: one token fetch, zero 429s, every window within the limit",
    () =>
      Effect.gen(function*() {
        const nora = yield* serveNora
        const prefix = uniquePrefix("fleet")
        const duration = 4_000
        const workers = Array.from({ length: 4 }, (_, i) =>
          launch(fleetEnv(nora, prefix, {
            WORKER: `w${i}`,
            DURATION_MS: String(duration),
            CONCURRENCY: "8",
            TOLLGATE_REDIS_ENCRYPTION_KEY: "fleet-test-key-0123456789abcdefghij"
          })))
        yield* promise(() => Workers.startTogether(workers))
        const results = yield* promise(() => Promise.all(workers.map((w) => w.done)))
        for (const [i, result] of results.entries()) {
          expect(result, workers[i]!.output()).toBeDefined()
        }
        const done = results as ReadonlyArray<Workers.WorkerResult>
        const recording = yield* nora.recording
        const window = nora.rateLimit.windowMillis
        const limit = nora.rateLimit.limit
        const max = recording.maxArrivalsInWindow(window)

        // One token request for the whole fleet, during a run much shorter than the token's lifetime.
        expect(recording.tokenCounts.issue).toBe(1)
        expect(sum(done.map((r) => r.tokenStats.fetches))).toBe(1)
        expect(new Set(done.flatMap((r) => r.tokens)).size).toBe(1)
        // The shared budget held: no 429 at all, no window above the limit.
        expect(recording.rateLimited.api).toBe(0)
        expect(max.all).toBeLessThanOrEqual(limit)
        expect(merge(done.map((r) => r.errors))).toEqual({})
        // And it was used: saturating demand kept close to the limit (the first and last windows are
        // partial, and every worker took part).
        const succeeded = sum(done.map((r) => r.succeeded))
        expect(succeeded).toBe(recording.arrivals.length)
        expect(succeeded).toBeGreaterThanOrEqual(Math.floor(limit * (duration / window - 1) * 0.9))
        for (const result of done) expect(result.succeeded).toBeGreaterThan(0)
        // Nothing secret in the workers' output or in Redis (tokens are sealed: no JWT, no secret).
        const stored = yield* Effect.acquireUseRelease(
          Effect.sync(() => new Redis(redis.url)),
          (client) => dump(client, prefix),
          (client) => Effect.sync(() => client.disconnect())
        )
        expect(stored).toContain("v1.")
        // A JWT's header and payload (`eyJ….eyJ…`); a bare "eyJ" turns up in random ciphertext once in a few
        // hundred runs.
        expect(stored).not.toMatch(/eyJ[\w-]*\.eyJ/)
        for (const worker of workers) {
          expect(worker.output()).not.toContain(nora.credentials.clientSecret)
          expect(worker.output()).not.toContain("eyJ")
        }
        expect(stored).not.toContain(nora.credentials.clientSecret)
        console.log(
          `fleet: ${succeeded} requests in ${duration} ms by ${done.length} workers (${
            done.map((r) => r.succeeded).join("/")
          }), token requests ${recording.tokenCounts.issue}, 429s ${recording.rateLimited.api}, max arrivals per ${window} ms ${max.all}/${limit}`
        )
      }),
    30_000
  )

  it.scopedLive(
    "tokens of 2 s over a 4 s run: the fleet renews each token once, ahead of expiry (invariant 3, fleet-wide)",
    () =>
      Effect.gen(function*() {
        // 120 s before the time scale: tokens of 2 s, in use; the refresh starts a sixth of the lifetime before
        // expiry.
        const nora = yield* Effect.flatMap(
          NoraSandbox.make({ timeScale: TIME_SCALE, tokenLifetimeSeconds: 120, countTokenRequests: false }),
          (emulator) => Sandbox.serve(emulator)
        )
        const prefix = uniquePrefix("refresh")
        const duration = 4_000
        const workers = Array.from(
          { length: 3 },
          (_, i) => launch(fleetEnv(nora, prefix, { WORKER: `w${i}`, DURATION_MS: String(duration), CONCURRENCY: "4" }))
        )
        yield* promise(() => Workers.startTogether(workers))
        const results = yield* promise(() => Promise.all(workers.map((w) => w.done)))
        for (const [i, result] of results.entries()) expect(result, workers[i]!.output()).toBeDefined()
        const done = results as ReadonlyArray<Workers.WorkerResult>
        const recording = yield* nora.recording
        const lifetime = nora.tokenLifetimeSeconds * 1000
        const issued = recording.tokenCounts.issue
        // Invariant 3 for the fleet: ⌈T / (L − refreshBefore)⌉ + 1 with refreshBefore = L / 6 (short tokens) ...
        expect(issued).toBeLessThanOrEqual(Math.ceil(duration / (lifetime * 5 / 6)) + 1)
        // ... and the tokens were renewed ahead of expiry, not after a 401.
        expect(issued).toBeGreaterThanOrEqual(3)
        expect(recording.unauthorized.api).toBe(0)
        expect(recording.rateLimited.api).toBe(0)
        // Each token request is counted by the one worker that made it. The workers keep serving queued
        // requests past the run, so a renewal may start after a worker has read its stats: only the requests
        // answered well before the first worker read them must be counted.
        const counted = sum(done.map((r) => r.tokenStats.fetches + r.tokenStats.refreshes))
        const firstRead = Math.min(...done.map((r) => r.statsAt))
        expect(counted).toBeLessThanOrEqual(issued)
        expect(counted).toBeGreaterThanOrEqual(
          recording.tokenRequests.filter((r) => r.kind === "issue" && r.at < firstRead - 200).length
        )
        // Every token the provider issued was shared: the workers used no more tokens than were issued,
        // and each worker used more than one (it adopted the fleet's renewals).
        expect(new Set(done.flatMap((r) => r.tokens)).size).toBeLessThanOrEqual(issued)
        for (const result of done) expect(result.tokens.length).toBeGreaterThan(1)
        console.log(
          `refresh: ${issued} token requests in ${duration} ms with tokens of ${lifetime} ms, by ${
            done.map((r) => r.tokenStats.fetches + r.tokenStats.refreshes).join("/")
          } worker(s); tokens used ${new Set(done.flatMap((r) => r.tokens)).size}; 401s ${recording.unauthorized.api}`
        )
      }),
    30_000
  )

  it.scopedLive(
    "Redis killed and restarted mid-run: typed failures while down, never overdrawn, recovery after",
    () =>
      Effect.gen(function*() {
        const nora = yield* serveNora
        const prefix = uniquePrefix("outage")
        // Long enough past the restart for a full window of recovery on a loaded machine.
        const duration = 7_000
        const workers = Array.from({ length: 3 }, (_, i) =>
          launch(fleetEnv(nora, prefix, {
            WORKER: `w${i}`,
            DURATION_MS: String(duration),
            CONCURRENCY: "6"
          })))
        const startAt = yield* promise(() => Workers.startTogether(workers))
        // Down from 1.5 s to 3 s into the run.
        yield* Effect.sleep(`${startAt + 1_500 - Date.now()} millis`)
        yield* promise(() => redis.kill("SIGKILL"))
        const killedAt = Date.now()
        yield* Effect.sleep("1500 millis")
        yield* promise(() => redis.restart())
        const restartedAt = Date.now()
        const results = yield* promise(() => Promise.all(workers.map((w) => w.done)))
        for (const [i, result] of results.entries()) expect(result, workers[i]!.output()).toBeDefined()
        const done = results as ReadonlyArray<Workers.WorkerResult>
        const recording = yield* nora.recording
        const window = nora.rateLimit.windowMillis
        const limit = nora.rateLimit.limit
        const errors = merge(done.map((r) => r.errors))
        // While down: typed failures, all of them "the limiter cannot reach its store".
        expect(errors["RateLimited:unavailable"] ?? 0).toBeGreaterThan(0)
        expect(Object.keys(errors).filter((key) => key !== "RateLimited:unavailable")).toEqual([])
        // Never overdrawn, before, during or after.
        expect(recording.rateLimited.api).toBe(0)
        expect(recording.maxArrivalsInWindow(window).all).toBeLessThanOrEqual(limit)
        // No permit was granted while Redis was down. A request granted just before the kill may still land
        // a little after it: its last look at the shared gate waits for the dead connection to fail, which
        // the worker bounds at 500 ms (its command timeout).
        const down = recording.arrivals.filter((a) => a.at > killedAt + 600 && a.at < restartedAt)
        expect(down.map((a) => a.at - killedAt), `restarted ${restartedAt - killedAt}`).toEqual([])
        // Recovery: requests succeeded again after the restart (past one quarantine window).
        const timeline = done.map((r) => r.timeline)
        const after = sum(timeline.flatMap((t) => t.slice(Math.ceil((restartedAt - startAt + window) / 250))))
        expect(after).toBeGreaterThan(limit)
        // Each worker kept its valid local token through the outage: still one token request.
        expect(recording.tokenCounts.issue).toBe(1)
        console.log(
          `outage: ${sum(done.map((r) => r.succeeded))} succeeded, ${
            errors["RateLimited:unavailable"]
          } failed closed while Redis was down, ${after} after recovery, 429s ${recording.rateLimited.api}, max arrivals per window ${
            recording.maxArrivalsInWindow(window).all
          }/${limit}`
        )
      }),
    30_000
  )

  it.scopedLive(
    "a worker killed (SIGKILL) while holding the fetch lock: the lock expires, another fetches, one token in use",
    () =>
      Effect.gen(function*() {
        const nora = yield* serveNora
        const prefix = uniquePrefix("killed")
        // The first token request takes 5 s to answer: its worker is killed while holding the lock.
        yield* nora.faults.script("token", Faults.passThrough({ delay: "5 seconds" }))
        const env = (name: string, extra: Record<string, string>) =>
          fleetEnv(nora, prefix, { WORKER: name, LOCK_TTL_MS: "800", CONCURRENCY: "4", ...extra })
        const victim = launch(env("victim", { DURATION_MS: "10000" }))
        yield* promise(() => Workers.startTogether([victim], 0))
        const client = new Redis(redis.url)
        yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
        // Wait until the victim holds the lock and its token request reached the emulator.
        let lockKey: string | undefined
        for (let i = 0; i < 200 && lockKey === undefined; i++) {
          const keys = yield* promise(() => client.keys(`${prefix}:*:lock`))
          // The scripted (slow) step is consumed when the request reaches the emulator.
          const reached = (yield* nora.faults.pending("token")) === 0
          lockKey = keys.length > 0 && reached ? keys[0] : undefined
          if (lockKey === undefined) yield* Effect.sleep("50 millis")
        }
        expect(lockKey, `${victim.output()}\n${(yield* promise(() => client.keys("*"))).join("\n")}`).toBeDefined()
        victim.child.kill("SIGKILL")
        const killedAt = Date.now()
        expect(yield* promise(() => victim.done)).toBeUndefined()
        const survivors = ["a", "b"].map((name) => launch(env(name, { DURATION_MS: "2000" })))
        yield* promise(() => Workers.startTogether(survivors))
        const results = yield* promise(() => Promise.all(survivors.map((w) => w.done)))
        for (const [i, result] of results.entries()) expect(result, survivors[i]!.output()).toBeDefined()
        const done = results as ReadonlyArray<Workers.WorkerResult>
        const recording = yield* nora.recording
        // The survivors used exactly one token, fetched once between them after the dead lock expired.
        expect(new Set(done.flatMap((r) => r.tokens)).size).toBe(1)
        expect(sum(done.map((r) => r.tokenStats.fetches))).toBe(1)
        const granted = recording.tokenRequests.filter((r) => r.kind === "issue" && r.at >= killedAt)
        expect(granted.length).toBeGreaterThanOrEqual(1)
        expect(recording.rateLimited.api).toBe(0)
        expect(sum(done.map((r) => r.succeeded))).toBeGreaterThan(0)
        console.log(
          `killed holder: token requests recorded after the kill ${granted.length}, by the survivors ${
            sum(done.map((r) => r.tokenStats.fetches))
          }, tokens in use by survivors ${new Set(done.flatMap((r) => r.tokens)).size}`
        )
      }),
    30_000
  )
})
