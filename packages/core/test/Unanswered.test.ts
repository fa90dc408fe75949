/**
 * Attempts that were sent and never answered (issue 18, from the demo): the client gave up (its timeout,
 * or the caller was interrupted) after the bytes may have left, so the server may still count the request
 * at any instant after that. Its permit is kept, never refunded, and kept counted for one more period of
 * the policy, so a request that reaches the server late cannot share a window with the permits that
 * follow it.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Fiber, TestClock } from "effect"
import * as fc from "fast-check"
import * as ApiClient from "../src/ApiClient.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as Transport from "../src/Transport.js"
import { maxInWindow } from "./utils/FakeServer.js"

const LIMIT = 4
const WINDOW = 1_000
const TIMEOUT = 100

/**
 * A server behind a slow network: request `n` reaches it `up(n)` ms after it was sent, whatever the
 * client does meanwhile (the bytes have left), and it answers `down(n)` ms after that.
 */
const lateServer = (up: (n: number) => number, down: (n: number) => number, abortable: boolean) => {
  const arrivals: Array<number> = []
  let sent = 0
  const client = HttpClient.make((request, _url, signal) =>
    Effect.gen(function*() {
      const n = sent++
      const arrived = yield* Effect.forkDaemon(
        Effect.zipRight(
          Effect.sleep(Duration.millis(up(n))),
          Effect.flatMap(Clock.currentTimeMillis, (at) =>
            Effect.sync(() => {
              arrivals.push(at)
            }))
        )
      )
      const answer = Effect.zipRight(
        Effect.zipRight(Fiber.await(arrived), Effect.sleep(Duration.millis(down(n)))),
        Effect.succeed(HttpClientResponse.fromWeb(request, new Response("{}", { status: 200 })))
      )
      if (!abortable) return yield* answer
      return yield* Effect.raceFirst(
        answer,
        Effect.async<never, Error>((resume) => {
          const abort = () => resume(Effect.die(new Error("aborted")))
          if (signal.aborted) return abort()
          signal.addEventListener("abort", abort, { once: true })
        })
      )
    }).pipe(Effect.orDie)
  )
  return { client: abortable ? Transport.abortable(client) : client, arrivals }
}

const run = (up: (n: number) => number, down: (n: number) => number, abortable: boolean, policy: RateLimiter.Policy) =>
  Effect.gen(function*() {
    const server = lateServer(up, down, abortable)
    const limiter = yield* RateLimiter.make(policy, { provider: "late" })
    const api = yield* ApiClient.make({
      provider: "late",
      baseUrl: "https://api.test",
      limiter,
      timeout: Duration.millis(TIMEOUT),
      retry: { transient: 0 }
    }).pipe(Effect.provideService(HttpClient.HttpClient, server.client))
    const workers = yield* Effect.fork(Effect.all(
      Array.from({ length: 8 }, () => Effect.forever(Effect.ignore(api.get("/x")))),
      { concurrency: "unbounded", discard: true }
    ))
    yield* TestClock.adjust(Duration.seconds(12))
    yield* Fiber.interrupt(workers)
    return server.arrivals
  })

describe("an attempt sent and never answered keeps its permit (issue 18)", () => {
  for (const abortable of [false, true]) {
    it.scoped(
      `${
        abortable ? "abortable" : "plain"
      } transport: a request reaching the server after the client timed out cannot overdraw a window`,
      () =>
        Effect.gen(function*() {
          // The first burst is slow to arrive (300 ms, past the client's 100 ms timeout), the rest prompt.
          const arrivals = yield* run(
            (n) => (n < LIMIT ? 300 : 0),
            () => 0,
            abortable,
            RateLimiter.slidingWindow({
              limit: LIMIT,
              window: Duration.millis(WINDOW)
            })
          )
          expect(arrivals.length).toBeGreaterThan(LIMIT * 4)
          expect(maxInWindow(arrivals, WINDOW)).toBeLessThanOrEqual(LIMIT)
        })
    )
  }

  it.scoped("a fixed window counts a late request in the window it may reach", () =>
    Effect.gen(function*() {
      // Sent at the end of a window, reaching the server in the next one after the client gave up.
      const arrivals = yield* run(
        (n) => (n < LIMIT ? 300 : 0),
        () => 0,
        true,
        RateLimiter.fixedWindow({
          limit: LIMIT,
          window: Duration.millis(WINDOW),
          offset: Duration.millis(200)
        })
      )
      const counts = new Map<number, number>()
      for (const at of arrivals) {
        const index = Math.floor((at - 200) / WINDOW)
        counts.set(index, (counts.get(index) ?? 0) + 1)
      }
      expect(Math.max(...counts.values())).toBeLessThanOrEqual(LIMIT)
    }))

  it.effect.prop(
    "any mix of late arrivals and slow answers never lets more than the limit reach the server in a window",
    [
      fc.array(fc.integer({ min: 0, max: 900 }), { minLength: 1, maxLength: 40 }),
      fc.array(fc.integer({ min: 0, max: 400 }), { minLength: 1, maxLength: 40 }),
      fc.boolean()
    ],
    ([ups, downs, abortable]) =>
      Effect.scoped(Effect.gen(function*() {
        const arrivals = yield* run(
          (n) => ups[n % ups.length]!,
          (n) => downs[n % downs.length]!,
          abortable,
          RateLimiter.slidingWindow({ limit: LIMIT, window: Duration.millis(WINDOW) })
        )
        expect(maxInWindow(arrivals, WINDOW)).toBeLessThanOrEqual(LIMIT)
      })),
    { fastCheck: { numRuns: 15 } }
  )
})
