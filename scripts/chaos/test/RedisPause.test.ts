/**
 * Redis paused, not killed (issue 18): a fleet of two workers, each with its own connection (command
 * timeout 1 s), shares a 10 per second limiter (`RedisRateLimiter`) and Nora's token (`RedisTokenCache`
 * over Nora's token source and emulator). Callers take a permit and then the token, without pause, while
 * the redis-server is stopped (SIGSTOP) for 10 s, far past the command timeout, then resumed (SIGCONT);
 * during the pause one worker drops its token (as after a 401), so after the resume a `get` has to go
 * through the shared fetch lock.
 *
 * Each caller's attempt ends in success or a typed error (none lost, none hanging); the fleet never
 * admits more than 10 in any second; from 2 s after the resume it is back to its full rate, and a token
 * `get` succeeds within 2 s of the resume (no fetch lock or permit was left behind by a command that
 * timed out on the client but ran when the server resumed); afterwards a full second's worth of permits
 * is admitted at once (none leaked); and nothing shown holds the secret or a token.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as RedisConnection from "@tollgate/redis/RedisConnection"
import * as RedisRateLimiter from "@tollgate/redis/RedisRateLimiter"
import * as RedisTokenCache from "@tollgate/redis/RedisTokenCache"
import { Duration, Effect, Exit, Fiber, Option } from "effect"
import { inject } from "vitest"
import * as Kits from "../src/Kits.js"
import { Observer } from "../src/Observe.js"
import * as RedisServer from "../src/RedisServer.js"
import { Report } from "../src/Report.js"
import * as Traffic from "../src/Traffic.js"

const kit = Kits.nora()
const report = new Report()
report.needles.credentials(kit.clientId, kit.secrets[0]!)
afterAll(() => report.write(inject("chaosResults")))

const fault = "redis paused 10 s past the command timeout (SIGSTOP, SIGCONT), fleet of 2"
const limit = 10
const pauseMillis = 10_000

class Hang {
  readonly _tag = "Hang"
}

const bounded = <A, E>(effect: Effect.Effect<A, E>, bound: Duration.DurationInput) =>
  Effect.exit(Effect.timeoutFail(effect, { duration: bound, onTimeout: () => new Hang() }))

const run = (observer: Observer) =>
  Effect.gen(function*() {
    const server = yield* RedisServer.scoped
    const { http } = yield* Traffic.inMemory(kit, report.needles, 5)
    const source = yield* Effect.orDie(kit.source(`https://${kit.host}`)).pipe(
      Effect.provideService(HttpClient.HttpClient, http)
    )
    const prefix = `chaos.${Math.random().toString(36).slice(2, 10)}`
    const worker = Effect.gen(function*() {
      const connection = yield* RedisConnection.make({
        url: server.url,
        prefix,
        commandTimeout: "1 second",
        connectTimeout: "500 millis"
      })
      const limiter = yield* RedisRateLimiter.make(RateLimiter.slidingWindow({ limit, window: "1 second" }), {
        name: "fleet",
        fence: "1 second"
      }).pipe(Effect.provideService(RedisConnection.RedisConnection, connection))
      const tokens = yield* RedisTokenCache.make(source).pipe(
        Effect.provideService(RedisConnection.RedisConnection, connection)
      )
      return { limiter, tokens }
    })
    const workers = [yield* Effect.orDie(worker), yield* Effect.orDie(worker)]

    const admitted: Array<number> = []
    const outcomes: Array<Traffic.Outcome> = []
    let stop = false
    const caller = (w: (typeof workers)[number]) =>
      Effect.gen(function*() {
        while (!stop) {
          const exit = yield* bounded(
            w.limiter.withPermit()(Effect.zipRight(Effect.sync(() => admitted.push(Date.now())), w.tokens.get)),
            "15 seconds"
          )
          if (Exit.isFailure(exit)) {
            for (const error of Option.toArray(Exit.causeOption(exit))) observer.error(error)
            yield* Effect.sleep("100 millis")
          }
          outcomes.push(Traffic.classify(exit))
        }
      })
    const callers = yield* Effect.fork(
      Effect.all(workers.flatMap((w) => Array.from({ length: 8 }, () => caller(w))), {
        concurrency: "unbounded",
        discard: true
      })
    )
    yield* Effect.sleep("1500 millis")
    const token = yield* Effect.orDie(workers[0]!.tokens.get)

    server.signal("SIGSTOP")
    yield* Effect.sleep(Duration.millis(pauseMillis / 2))
    // A 401 while Redis hangs: the local copy goes at once, the shared one when Redis answers again.
    yield* workers[0]!.tokens.invalidate(token)
    yield* Effect.sleep(Duration.millis(pauseMillis / 2))
    const pausedAdmissions = admitted.length
    server.signal("SIGCONT")
    const resumed = Date.now()

    // The first token `get` through the dropped local copy, polled from the resume.
    let tokenBack: number | undefined
    while (tokenBack === undefined && Date.now() - resumed < 8_000) {
      const exit = yield* bounded(workers[0]!.tokens.get, "8 seconds")
      outcomes.push(Traffic.classify(exit))
      if (Exit.isSuccess(exit)) tokenBack = Date.now() - resumed
      else yield* Effect.sleep("50 millis")
    }
    yield* Effect.sleep(Duration.millis(Math.max(0, resumed + 3_000 - Date.now())))
    stop = true
    // Every caller ends its attempt by itself (each is bounded): none may be left behind.
    const joined = yield* Effect.timeout(Fiber.join(callers), "20 seconds").pipe(Effect.option)

    // No permit leaked: a second later, a full second's worth is admitted at once, by the other worker.
    yield* Effect.sleep("1100 millis")
    const burst = yield* Effect.forEach(
      Array.from({ length: limit }),
      () =>
        bounded(
          workers[1]!.limiter.withPermit()(Effect.sync(() => admitted.push(Date.now()))),
          "500 millis"
        ),
      { concurrency: "unbounded" }
    )
    const heldBack = burst.filter(Exit.isFailure).length

    const second = (from: number) => admitted.filter((t) => t >= resumed + from && t < resumed + from + 1_000).length
    return {
      outcomes,
      lostCallers: Option.isNone(joined) ? 1 : 0,
      heldBack,
      overLimit: Math.max(0, Traffic.maxInWindow(admitted.map((at) => ({ at, cost: 1 })), 1_000) - limit),
      pausedAdmissions,
      total: admitted.length,
      afterResume: [second(0), second(1000), second(2000)],
      tokenBack
    }
  })

describe("Redis paused (loopback redis-server, real time)", () => {
  it("nora's token and a 10/s limiter shared by two workers", async () => {
    const observer = new Observer()
    const result = await Effect.runPromise(observer.observe(Effect.scoped(run(observer))))
    const { context, counts, violations } = report.record({
      fault,
      group: "program",
      where: "loopback",
      provider: kit.name,
      outcomes: result.outcomes,
      observer,
      injected: 1,
      overLimit: result.overLimit,
      alsoLost: result.lostCallers + result.heldBack
    })
    report.note(
      fault,
      `admitted per second after the resume: ${result.afterResume.join(", ")} (limit ${limit}); ` +
        `token get back ${result.tokenBack ?? "never"} ms after the resume; ${result.heldBack} of ${limit} ` +
        `permits held back a second later`
    )
    expect(violations, context).toEqual([])
    expect(counts.typed, `${context}: callers saw the pause as typed errors`).toBeGreaterThan(0)
    expect(result.afterResume[2], `${context}: back to ${limit}/s within 2 s`).toBeGreaterThanOrEqual(limit - 2)
    expect(result.tokenBack, `${context}: a token get within 2 s of the resume`).toBeLessThan(2_000)
  }, 60_000)
})
