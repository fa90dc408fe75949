/**
 * The program side misbehaving, for all four providers over the in-memory emulators: callers interrupted
 * while they wait for a permit or a token and while their request is in flight, the client's scope
 * closed while a token request or a refresh is in flight, 10,000 callers at once on a cold cache, and
 * the clock jumping forward and backward (TestClock, and a true jump of the virtual clock with sleepers
 * pending).
 *
 * Afterwards nothing is left behind: no permit leaked or stolen (a full window's worth of requests is
 * admitted at once), no waiter left queued, one token request for a crowd, no request sent with an
 * expired token, no hang after the scope closed.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Faults, VirtualTime } from "@tollgate/testing"
import { Clock, Duration, Effect, Exit, Fiber, Option, Scope, TestClock } from "effect"
import { inject } from "vitest"
import * as Kits from "../src/Kits.js"
import { Observer } from "../src/Observe.js"
import { Report } from "../src/Report.js"
import * as Traffic from "../src/Traffic.js"

const kits = Kits.all()
const report = new Report(kits.flatMap((kit) => kit.secrets))
afterAll(() => report.write(inject("chaosResults")))

const base = (kit: Kits.Kit) => `https://${kit.host}`

/** The outcome of a forked caller: its own exit when it ran to the end, a cancellation when interrupted. */
const outcomeOf = (exit: Exit.Exit<Exit.Exit<unknown, unknown>>, cancelled: boolean): Traffic.Outcome =>
  Exit.isSuccess(exit) ? Traffic.classify(exit.value) : Traffic.classify(exit, cancelled)

/**
 * After the crowd: once two windows have passed, a full window's worth of requests to one key must all
 * be admitted at once (a leaked permit would hold one back, a stolen one would let one more through).
 * Two, because a request interrupted in flight may still reach the server: its permit is kept one window
 * more before its own window starts (core's internal/unanswered.ts). Returns how many had to wait.
 */
const permitsIntact = (kit: Kits.Kit, services: Traffic.Context["services"], observer: Observer) =>
  Effect.gen(function*() {
    if (kit.limit === undefined) return 0
    yield* Effect.sleep(Duration.millis(2 * kit.limit.windowMillis + 10_000))
    const started = yield* Clock.currentTimeMillis
    const ended = yield* Effect.forEach(
      Array.from({ length: kit.limit.limit }, () => 0),
      (n) => Effect.zipRight(Traffic.call(kit, services, n, observer, "1 hour"), Clock.currentTimeMillis),
      { concurrency: "unbounded" }
    )
    return ended.filter((at) => at - started > 1_000).length
  })

describe("program faults", () => {
  for (const mode of ["queued", "in flight"] as const) {
    it(`callers interrupted while ${mode}`, async () => {
      for (const kit of kits) {
        const observer = new Observer()
        const { held, outcomes, recording, stats } = await Traffic.simulate(
          observer,
          Effect.gen(function*() {
            const { emulator, http } = yield* Traffic.inMemory(kit, report.needles)
            // Where no limit binds, callers queue behind the one token request instead.
            if (mode === "queued" && kit.limit === undefined) {
              yield* emulator.faults.set("token", { latency: "5 seconds" })
            }
            if (mode === "in flight") yield* emulator.faults.set("api", { latency: "10 seconds" })
            return yield* Effect.scoped(Effect.gen(function*() {
              const services = yield* Effect.orDie(kit.make(base(kit))).pipe(
                Effect.provideService(HttpClient.HttpClient, http)
              )
              const crowd = mode === "queued" ? 200 : 40
              const fibers = yield* Effect.forEach(
                Array.from({ length: crowd }, (_, n) => n),
                (n) => Effect.fork(Traffic.call(kit, services, n, observer, "10 hours"))
              )
              yield* Effect.sleep(mode === "queued" ? "2 seconds" : "3 seconds")
              yield* Effect.forEach(fibers.filter((_, i) => i % 2 === 1), Fiber.interruptFork)
              const exits = yield* Effect.forEach(fibers, Fiber.await)
              const outcomes = exits.map((exit, i) => outcomeOf(exit, i % 2 === 1))
              yield* emulator.faults.set("all", { latency: "20 millis" })
              const held = yield* permitsIntact(kit, services, observer)
              const stats = yield* services.limiter.stats
              return { held, outcomes, recording: yield* emulator.recording, stats }
            }))
          })
        )
        const { context, counts, violations } = report.record({
          fault: `callers interrupted while ${mode}`,
          group: "program",
          where: "virtual",
          provider: kit.name,
          outcomes,
          observer,
          injected: outcomes.filter((o) => o.kind === "cancelled").length,
          overLimit: Traffic.overLimit(recording, kit),
          alsoLost: held + stats.queued
        })
        expect(violations, context).toEqual([])
        expect(counts.cancelled, context).toBeGreaterThan(0)
        expect(held, `${context}: permits held back after the crowd`).toBe(0)
        expect(stats.queued, context).toBe(0)
        expect(recording.tokenCounts.issue, `${context}: one token request for the crowd`).toBe(1)
      }
    })
  }

  it("scope closed while a token request or refresh is in flight", async () => {
    for (const kit of kits) {
      const observer = new Observer()
      const result = await Traffic.simulate(
        observer,
        Effect.gen(function*() {
          const { emulator, http } = yield* Traffic.inMemory(kit, report.needles)
          const scope = yield* Scope.make()
          const services = yield* Effect.orDie(kit.make(base(kit))).pipe(
            Effect.provideService(HttpClient.HttpClient, http),
            Scope.extend(scope)
          )
          const warm = Traffic.classify(yield* Traffic.call(kit, services, 0, observer, "1 hour"))
          // The next token request answers only after 10 seconds. Nomba's is the refresh the cache starts
          // 5 minutes before its 30-minute token expires; for the others, a revocation forces a renewal.
          yield* emulator.faults.script("token", Faults.passThrough({ delay: "10 seconds" }))
          if (kit.name === "nomba") yield* Effect.sleep(Duration.millis(25 * 60_000 + 2_000))
          else yield* emulator.revokeAll
          const callers = yield* Effect.forEach(
            Array.from({ length: 10 }, (_, n) => n),
            (n) => Effect.fork(Traffic.call(kit, services, n, observer, "1 hour"))
          )
          yield* Effect.sleep("3 seconds")
          const before = yield* Clock.currentTimeMillis
          const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
          const closed = yield* Fiber.await(closing).pipe(Effect.timeout("1 minute"), Effect.option)
          const closeMillis = (yield* Clock.currentTimeMillis) - before
          const exits = yield* Effect.forEach(callers, (fiber) => Fiber.await(fiber))
          // After the close, the client answers at once with a typed error; it never hangs.
          const late = yield* Traffic.call(kit, services, 0, observer, "1 minute")
          return {
            outcomes: [warm, ...exits.map((exit) => outcomeOf(exit, false)), Traffic.classify(late)],
            closed: Option.isSome(closed),
            closeMillis,
            recording: yield* emulator.recording
          }
        })
      )
      const { context, violations } = report.record({
        fault: "scope closed during a token request / refresh",
        group: "program",
        where: "virtual",
        provider: kit.name,
        outcomes: result.outcomes,
        observer,
        injected: 1,
        overLimit: Traffic.overLimit(result.recording, kit),
        alsoLost: result.closed ? 0 : 1
      })
      expect(violations, context).toEqual([])
      expect(result.closed, `${context}: the scope closes`).toBe(true)
      expect(result.closeMillis, context).toBeLessThanOrEqual(5_000)
      expect(result.outcomes[0]?.kind, context).toBe("success")
      expect(result.outcomes.at(-1)?.kind, `${context}: a request after the close`).toBe("typed")
      if (kit.name === "nomba") expect(result.recording.tokenCounts.revoke, context).toBe(1)
    }
  })

  it("10,000 concurrent callers on a cold cache", async () => {
    for (const kit of kits) {
      const observer = new Observer()
      const crowd = 10_000
      const result = await Traffic.simulate(
        observer,
        Effect.gen(function*() {
          const { emulator, http } = yield* Traffic.inMemory(kit, report.needles)
          return yield* Effect.scoped(Effect.gen(function*() {
            const services = yield* Effect.orDie(kit.make(base(kit))).pipe(
              Effect.provideService(HttpClient.HttpClient, http)
            )
            // The token cache alone: 10,000 fibers ask a cold cache at once.
            const tokens = yield* Effect.forEach(
              Array.from({ length: crowd }, () => 0),
              () => Effect.exit(services.tokens.get),
              { concurrency: "unbounded" }
            )
            const direct = (yield* emulator.recording).tokenCounts.issue
            yield* services.tokens.invalidate(Option.getOrThrow(yield* services.tokens.current))
            // Then 10,000 API requests at once on a cold cache, at the provider's documented limits.
            const started = yield* Clock.currentTimeMillis
            const exits = yield* Effect.forEach(
              Array.from({ length: crowd }, (_, n) => n),
              // Every error and one success in a hundred are kept for the scan (spans and logs all are).
              (n) => Traffic.call(kit, services, n, observer, "48 hours", n % 100 === 0),
              { concurrency: "unbounded" }
            )
            const recording = yield* emulator.recording
            const firstWave = recording.tokenRequests.slice(direct).filter((r) => r.at - started < 60_000).length
            return {
              outcomes: exits.map((exit) => Traffic.classify(exit)),
              tokenFailures: tokens.filter(Exit.isFailure).length,
              direct,
              firstWave,
              elapsed: (yield* Clock.currentTimeMillis) - started,
              recording
            }
          }))
        })
      )
      const { context, counts, violations } = report.record({
        fault: "10,000 concurrent callers on a cold cache",
        group: "program",
        where: "virtual",
        provider: kit.name,
        outcomes: result.outcomes,
        observer,
        injected: 2,
        overLimit: Traffic.overLimit(result.recording, kit)
      })
      expect(violations, context).toEqual([])
      expect(result.tokenFailures, context).toBe(0)
      expect(result.direct, `${context}: 10,000 fibers on a cold cache, one token request`).toBe(1)
      expect(result.firstWave, `${context}: 10,000 requests on a cold cache, one token request`).toBe(1)
      expect(counts.success, context).toBe(crowd)
    }
  })

  it.effect("clock jumps forward and backward (TestClock.adjust / setTime)", () =>
    Effect.gen(function*() {
      // A realistic present: the Token project emulator sends `X-RateLimit-Reset` in epoch seconds, which a
      // client reads as seconds-until below 1e9 (`auto`), so near the TestClock's epoch 0 a reset it sends
      // after the clock went back would close the gate for a day.
      yield* TestClock.setTime(Date.UTC(2026, 0, 1))
      for (const kit of kits) {
        const observer = new Observer()
        const outcomes: Array<Traffic.Outcome> = []
        // Runs `effect`, stepping the test clock a second at a time until it is done (or an hour passed).
        const drive = <A>(effect: Effect.Effect<A>) =>
          Effect.gen(function*() {
            const fiber = yield* Effect.fork(effect)
            for (let step = 0; step < 3_600; step++) {
              const exit = yield* Fiber.poll(fiber)
              if (Option.isSome(exit)) return exit
              yield* TestClock.adjust("1 second")
            }
            yield* Fiber.interrupt(fiber)
            return Option.none()
          })
        const run = Effect.gen(function*() {
          const { emulator, http } = yield* Traffic.inMemory(kit, report.needles)
          const scope = yield* Scope.make()
          const services = yield* Effect.orDie(kit.make(base(kit))).pipe(
            Effect.provideService(HttpClient.HttpClient, http),
            Scope.extend(scope)
          )
          const burst = Effect.forEach(Array.from({ length: 10 }, (_, n) => n), (n) =>
            Effect.map(drive(Traffic.call(kit, services, n, observer, "1 hour")), (exit) => {
              outcomes.push(Option.isSome(exit) ? outcomeOf(exit.value, false) : { kind: "lost", tag: "hang" })
            }), { discard: true })
          yield* burst
          yield* TestClock.adjust("3 hours")
          yield* burst
          yield* TestClock.setTime((yield* Clock.currentTimeMillis) - 2 * 3_600_000)
          yield* burst
          yield* TestClock.setTime((yield* Clock.currentTimeMillis) + 5 * 3_600_000)
          yield* burst
          // Closing revokes Nomba's token over the emulator, whose latency runs on the test clock too.
          const closed = yield* drive(Scope.close(scope, Exit.void))
          if (Option.isNone(closed)) {
            outcomes.push({ kind: "lost", tag: "scope close hangs" })
          }
          return yield* emulator.recording
        })
        const recording = yield* observer.observe(run)
        const { context, counts, violations } = report.record({
          fault: "clock jumps forward and backward (TestClock)",
          group: "program",
          where: "virtual",
          provider: kit.name,
          outcomes,
          observer,
          injected: 3,
          overLimit: Traffic.overLimit(recording, kit)
        })
        expect(violations, context).toEqual([])
        expect(counts.success, context).toBe(40)
        // No request ever went out with a token the server considered expired.
        expect(recording.unauthorized.api, context).toBe(0)
      }
    }))

  it("clock jumps forward and backward (virtual clock, sleepers pending)", async () => {
    for (const kit of kits) {
      const observer = new Observer()
      const result = await Traffic.simulate(
        observer,
        Effect.gen(function*() {
          const { emulator, http } = yield* Traffic.inMemory(kit, report.needles)
          const clock = (yield* Effect.clock) as VirtualTime.VirtualClock
          return yield* Effect.scoped(Effect.gen(function*() {
            const services = yield* Effect.orDie(kit.make(base(kit))).pipe(
              Effect.provideService(HttpClient.HttpClient, http)
            )
            const outcomes: Array<Traffic.Outcome> = []
            const worker = (offset: number) =>
              Effect.forEach(Array.from({ length: 12 }, (_, i) => offset + i * 3), (n) =>
                Effect.zipRight(
                  Effect.map(Traffic.call(kit, services, n, observer, "4 hours"), (exit) => {
                    outcomes.push(Traffic.classify(exit))
                  }),
                  Effect.sleep("7 seconds")
                ), { discard: true })
            const workers = yield* Effect.fork(Effect.all([worker(0), worker(1), worker(2)], { concurrency: 3 }))
            // The clock leaps while every worker sleeps or waits: timers due in between fire late at once.
            yield* Effect.sleep("20 seconds")
            yield* Effect.sync(() => clock.time += 3 * 3_600_000)
            yield* Effect.sleep("20 seconds")
            yield* Effect.sync(() => clock.time -= 2 * 3_600_000)
            yield* Fiber.join(workers)
            return { outcomes, recording: yield* emulator.recording }
          }))
        })
      )
      const { context, counts, violations } = report.record({
        fault: "clock jumps forward and backward (virtual clock)",
        group: "program",
        where: "virtual",
        provider: kit.name,
        outcomes: result.outcomes,
        observer,
        injected: 2,
        overLimit: Traffic.overLimit(result.recording, kit)
      })
      expect(violations, context).toEqual([])
      expect(counts.touched, context).toBe(36)
      expect(result.outcomes.at(-1)?.kind, context).toBe("success")
    }
  })
})
