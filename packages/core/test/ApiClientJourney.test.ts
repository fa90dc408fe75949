/**
 * The ApiClient's journey beyond its core semantics (ApiClient.test.ts): options checked where they enter,
 * the bound on a whole request, one limiter report per response, retry schedules, metrics, and deadlines
 * handed to a transport that can take them.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Fiber, FiberId, Metric, Schedule, TestClock } from "effect"
import * as fc from "fast-check"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { inspect } from "node:util"
import * as ApiClient from "../src/ApiClient.js"
import * as RateLimiter from "../src/RateLimiter.js"
import type * as RateLimitHeaders from "../src/RateLimitHeaders.js"
import * as TokenCache from "../src/TokenCache.js"
import * as FakeServer from "./utils/FakeServer.js"
import * as FakeSource from "./utils/FakeSource.js"
import * as Loopback from "./utils/Loopback.js"

const client = (
  server: FakeServer.FakeServerOptions,
  options: Partial<ApiClient.Options> = {},
  source?: FakeSource.FakeSourceOptions
) =>
  Effect.gen(function*() {
    const fake = FakeServer.make(server)
    const tokens = yield* TokenCache.make((yield* FakeSource.make(source)).source)
    const api = yield* ApiClient.make({ provider: "journey", baseUrl: "https://api.test", tokens, ...options }).pipe(
      Effect.provideService(HttpClient.HttpClient, fake.client)
    )
    return { api, arrivals: fake.arrivals }
  })

const refusal = (options: Partial<ApiClient.Options>) =>
  Effect.flip(client({ handle: () => ({}) }, options)).pipe(Effect.map((error) => error as unknown))

describe("ApiClient options are checked where they enter (issue 18)", () => {
  it.scoped("a base URL with credentials, plain http, or no scheme is an InvalidArgument, never a throw", () =>
    Effect.gen(function*() {
      for (
        const baseUrl of ["https://user:s3cret@api.test", "http://api.test", "api.test/v1", "https://api.test?x=1"]
      ) {
        const error = yield* refusal({ baseUrl })
        expect(error).toMatchObject({ _tag: "InvalidArgument", module: "ApiClient.make", argument: "baseUrl" })
        expect(String(error)).not.toContain("s3cret")
      }
      expect(yield* refusal({ baseUrl: "http://127.0.0.1:8080" })).toMatchObject({ argument: "baseUrl" })
      const { api } = yield* client({ handle: () => ({}) }, {
        baseUrl: "http://127.0.0.1:8080/",
        allowInsecureLoopback: true
      })
      expect((yield* api.get("/x")).request.url).toBe("http://127.0.0.1:8080/x")
    }))

  it.scoped("fixed headers that cannot be sent are refused by name, before any request", () =>
    Effect.gen(function*() {
      expect(yield* refusal({ headers: { ApplicationId: "42\r\nX-Injected: 1" } })).toMatchObject({
        _tag: "InvalidArgument",
        argument: "headers.ApplicationId"
      })
      expect(yield* refusal({ headers: { "Bad Name": "1" } })).toMatchObject({ argument: "headers" })
      expect(yield* refusal({ headers: { accountId: " padded" } })).toMatchObject({ argument: "headers.accountId" })
    }))

  it.scoped("bounds, counts and durations that cannot work are refused", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [Partial<ApiClient.Options>, string]> = [
        [{ timeout: Number.NaN }, "timeout"],
        [{ timeout: -1 }, "timeout"],
        [{ timeout: "soon" as Duration.DurationInput }, "timeout"],
        [{ requestTimeout: 0 }, "requestTimeout"],
        [{ permitDeadline: -5 }, "permitDeadline"],
        [{ retry: { rateLimited: 1.5 } }, "retry.rateLimited"],
        [{ retry: { transient: -1 } }, "retry.transient"],
        [{ retry: { baseDelay: Number.POSITIVE_INFINITY } }, "retry.baseDelay"],
        [{ retry: { maxWait: Number.NaN } }, "retry.maxWait"],
        [{ resetFormat: "epoch-minutes" as RateLimitHeaders.ResetFormat }, "resetFormat"],
        [{ provider: "" }, "provider"]
      ]
      for (const [options, argument] of cases) {
        expect(yield* refusal(options)).toMatchObject({ _tag: "InvalidArgument", argument })
      }
    }))

  it.scoped("per-request options are checked before the request runs", () =>
    Effect.gen(function*() {
      const { api, arrivals } = yield* client({ handle: () => ({}) })
      const cases: ReadonlyArray<readonly [ApiClient.RequestOptions, string]> = [
        [{ cost: Number.NaN }, "cost"],
        [{ cost: -1 }, "cost"],
        [{ priority: 5_000 }, "priority"],
        [{ permitDeadline: -1 }, "permitDeadline"],
        [{ retryNonIdempotent: "yes" as unknown as boolean }, "retryNonIdempotent"]
      ]
      for (const [options, argument] of cases) {
        const error = yield* Effect.flip(ApiClient.withRequestOptions(api.get("/x"), options))
        expect(error).toMatchObject({ _tag: "InvalidArgument", module: "ApiClient.withRequestOptions", argument })
      }
      expect(arrivals).toHaveLength(0)
      expect((yield* api.get("/x").pipe(ApiClient.withRequestOptions({ cost: 1, priority: 3 }))).status).toBe(200)
    }))
})

describe("the bound on a whole request (issue 18)", () => {
  it.scoped("covers the wait for a permit", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 1, window: "1 hour" }))
      const { api, arrivals } = yield* client({ handle: () => ({}) }, { limiter, requestTimeout: "1 minute" })
      yield* api.get("/x")
      const fiber = yield* Effect.fork(Effect.flip(api.get("/x")))
      yield* TestClock.adjust("59 seconds")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toMatchObject({
        _tag: "Timeout",
        operation: "API request, waits and retries included"
      })
      expect(arrivals).toHaveLength(1)
      expect((yield* limiter.stats).queued).toBe(0)
    }))

  it.scoped("covers the wait for a token", () =>
    Effect.gen(function*() {
      const { api, arrivals } = yield* client({ handle: () => ({}) }, { requestTimeout: "20 seconds" }, {
        latency: "25 seconds"
      })
      const fiber = yield* Effect.fork(Effect.flip(api.get("/x")))
      yield* TestClock.adjust(Duration.millis(19_999))
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(fiber)).toMatchObject({
        _tag: "Timeout",
        operation: "API request, waits and retries included"
      })
      expect(arrivals).toHaveLength(0)
    }))

  it.scoped("covers a permit wait and the token wait after it together, from the request's start", () =>
    Effect.gen(function*() {
      // The token cache's own limiter queues the token request behind one spent an hour ago.
      const source = yield* FakeSource.make({ latency: "10 seconds" })
      const tokenLimiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 1, window: "30 seconds" }))
      yield* tokenLimiter.withPermit({ key: "token" })(Effect.void)
      const tokens = yield* TokenCache.make(source.source, { limiter: tokenLimiter })
      const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 1, window: "15 seconds" }))
      yield* limiter.withPermit()(Effect.void)
      const fake = FakeServer.make({ handle: () => ({}) })
      const api = yield* ApiClient.make({
        provider: "journey",
        baseUrl: "https://api.test",
        tokens,
        limiter,
        requestTimeout: "35 seconds"
      }).pipe(Effect.provideService(HttpClient.HttpClient, fake.client))
      // 15 s for the permit, then 15 s more for the token limiter and 10 s for the fetch: 40 s > 35 s.
      const fiber = yield* Effect.fork(Effect.flip(api.get("/x")))
      yield* TestClock.adjust(Duration.millis(34_999))
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(fiber)).toMatchObject({
        _tag: "Timeout",
        operation: "API request, waits and retries included"
      })
      expect(fake.arrivals).toHaveLength(0)
      expect((yield* limiter.stats).queued).toBe(0)
    }))

  it.scoped("cuts an attempt short and retries no further than the bound allows", () =>
    Effect.gen(function*() {
      const { api, arrivals } = yield* client({ latency: () => [0, 3_600_000], handle: () => ({}) }, {
        requestTimeout: "45 seconds"
      })
      const fiber = yield* Effect.fork(Effect.flip(api.get("/hangs")))
      yield* TestClock.adjust("46 seconds")
      const error = yield* Fiber.join(fiber)
      expect(error).toMatchObject({ _tag: "Timeout", operation: "API request, waits and retries included" })
      // 30 s, a backoff, then the rest of the 45 s: two attempts, not three.
      expect(arrivals).toHaveLength(2)
    }))

  it.scoped("a 429 whose reset lies past the bound fails at once with RateLimited", () =>
    Effect.gen(function*() {
      const { api, arrivals } = yield* client({
        handle: () => ({ status: 429, headers: { "retry-after": "60" } })
      }, { requestTimeout: "30 seconds" })
      expect(yield* Effect.flip(api.get("/x"))).toMatchObject({ _tag: "RateLimited", reason: "server" })
      expect(arrivals).toHaveLength(1)
    }))
})

/** A limiter that records every call the client makes. */
const recording = (limiter: RateLimiter.Service) => {
  const calls: Array<string> = []
  const recorded: RateLimiter.Service = {
    ...limiter,
    withPermit: ((options?: RateLimiter.PermitOptions) => (effect: Effect.Effect<unknown, unknown>) => {
      calls.push("withPermit")
      return limiter.withPermit(options as RateLimiter.PermitOptions)(effect)
    }) as unknown as RateLimiter.Service["withPermit"],
    pauseUntil: (instant, subject) => {
      calls.push("pauseUntil")
      return limiter.pauseUntil(instant, subject)
    },
    observe: (info, report) => {
      calls.push(
        report?.throttledUntil === undefined ? "observe" : `observe until ${report.throttledUntil.epochMillis}`
      )
      return limiter.observe(info, report)
    }
  }
  return { calls, limiter: recorded }
}

describe("one report per response (issue 15)", () => {
  it.scoped("the limiter hears once per response, a 429 with the instant its gate closes until", () =>
    Effect.gen(function*() {
      const { calls, limiter } = recording(yield* RateLimiter.make(RateLimiter.unlimited))
      const { api } = yield* client({
        handle: (_, { n }) => (n === 0 ? { status: 429, headers: { "retry-after": "7" } } : {})
      }, { limiter })
      const fiber = yield* Effect.fork(api.get("/x"))
      yield* TestClock.adjust("10 seconds")
      expect((yield* Fiber.join(fiber)).status).toBe(200)
      expect(calls).toEqual(["withPermit", "observe until 7000", "withPermit", "observe"])
    }))

  it.scoped("the gate a 429 closes holds back every other request until the reset", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make(RateLimiter.unlimited)
      const { api, arrivals } = yield* client({
        handle: (_, { n }) => (n === 0 ? { status: 429, headers: { "retry-after": "7" } } : {})
      }, { limiter, retry: { rateLimited: 0 } })
      expect(yield* Effect.flip(api.get("/x"))).toMatchObject({ _tag: "RateLimited" })
      const other = yield* Effect.fork(api.get("/y"))
      yield* TestClock.adjust("6 seconds")
      expect(arrivals).toHaveLength(1)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(other)
      expect(arrivals.map((a) => a.at)).toEqual([0, 7_000])
    }))
})

describe("the fast path loses nothing (issue 16)", () => {
  it.effect.prop(
    "requests interrupted at any instant, fast or slow, leave every permit and the waiting gauge as they were",
    {
      interrupts: fc.array(fc.option(fc.nat(3_000), { nil: undefined }), { minLength: 1, maxLength: 12 }),
      latency: fc.nat(1_500),
      status: fc.constantFrom(200, 429, 503),
      abortable: fc.boolean()
    },
    ({ abortable, interrupts, latency, status }) =>
      Effect.gen(function*() {
        const provider = `loss-${Math.random()}`
        const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 3, window: "1 second" }))
        const { api } = yield* client({
          abortable,
          latency: () => [latency, latency],
          // A 429 says when to retry: a bare one would teach the limiter a smaller limit (what was admitted
          // before it), and the burst below measures what is still counted against the configured one.
          handle: (_, { n }) =>
            n % 2 !== 0 ? {} : status === 429 ? { status, headers: { "retry-after": "1" } } : { status }
        }, { provider, limiter, timeout: "2 seconds", retry: { maxWait: "10 seconds" } })
        const fibers = yield* Effect.forEach(interrupts, (after) =>
          Effect.fork(
            after === undefined ? Effect.either(api.get("/x")) : Effect.either(Effect.timeout(api.get("/x"), after))
          ))
        yield* TestClock.adjust("5 minutes")
        yield* Effect.forEach(fibers, Fiber.join)
        expect((yield* limiter.stats).queued).toBe(0)
        expect((yield* read("tollgate_requests_waiting", { provider }))?.value ?? 0).toBe(0)
        // Nothing is still counted in flight: a full window of requests passes at once.
        const fresh = yield* client({ handle: () => ({}) }, { limiter })
        const burst = yield* Effect.fork(Effect.all([fresh.api.get("/y"), fresh.api.get("/y"), fresh.api.get("/y")], {
          concurrency: "unbounded"
        }))
        yield* TestClock.adjust("1 millis")
        expect(burst.unsafePoll()?._tag).toBe("Success")
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 40 } }
  )
})

describe("retry schedules (issue 15)", () => {
  it.scoped("a schedule of the caller's decides when and how often a transient failure is retried", () =>
    Effect.gen(function*() {
      const { api, arrivals } = yield* client({ handle: () => ({ status: 503 }) }, {
        retry: { schedule: Schedule.spaced("3 seconds").pipe(Schedule.intersect(Schedule.recurs(5))) }
      })
      const fiber = yield* Effect.fork(Effect.flip(api.get("/x")))
      yield* TestClock.adjust("1 minute")
      expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "ResponseError", reason: "StatusCode" })
      expect(arrivals.map((a) => a.at)).toEqual([0, 3_000, 6_000, 9_000, 12_000, 15_000])
    }))

  it.scoped("the schedule sees what failed, and can stop on it", () =>
    Effect.gen(function*() {
      const { api, arrivals } = yield* client({ handle: (_, { n }) => ({ status: n === 0 ? 502 : 504 }) }, {
        retry: {
          schedule: Schedule.recurWhile((failure: ApiClient.Transient) => "status" in failure && failure.status === 502)
        }
      })
      expect(yield* Effect.flip(api.get("/x"))).toMatchObject({
        description: "journey answered HTTP 504 after 2 attempt(s)"
      })
      expect(arrivals).toHaveLength(2)
    }))

  it.scoped("a 429 that names no reset waits as the backoff schedule says", () =>
    Effect.gen(function*() {
      const { api, arrivals } = yield* client({ handle: (_, { n }) => (n < 2 ? { status: 429 } : {}) }, {
        retry: { backoff: Schedule.spaced("10 seconds") }
      })
      const fiber = yield* Effect.fork(api.get("/x"))
      yield* TestClock.adjust("1 minute")
      expect((yield* Fiber.join(fiber)).status).toBe(200)
      expect(arrivals.map((a) => a.at)).toEqual([0, 10_000, 20_000])
    }))

  it.effect("the default schedules keep today's numbers: two retries from 500 ms, doubling, upper half of each", () =>
    Effect.gen(function*() {
      const delays: Array<number> = []
      const driver = yield* Schedule.driver(ApiClient.transientSchedule())
      for (let i = 0; i < 3; i++) {
        const fiber = yield* Effect.fork(Effect.either(driver.next(undefined)))
        yield* Effect.yieldNow()
        const wakeAt = Chunk.toReadonlyArray(yield* TestClock.sleeps())
        yield* TestClock.adjust("1 minute")
        if ((yield* Fiber.join(fiber))._tag === "Left") break
        delays.push(wakeAt[0]! - i * 60_000)
      }
      expect(delays).toHaveLength(2)
      expect(delays[0]).toBeGreaterThanOrEqual(250)
      expect(delays[0]).toBeLessThanOrEqual(500)
      expect(delays[1]).toBeGreaterThanOrEqual(500)
      expect(delays[1]).toBeLessThanOrEqual(1_000)
    }))
})

/** The state of the metric named `name` with exactly these labels, as an exporter reads it. */
const read = (name: string, labels: Record<string, string>) =>
  Effect.map(Metric.snapshot, (pairs) => {
    const wanted = Object.entries(labels).sort().map(([key, value]) => `${key}=${value}`).join(",")
    const pair = pairs.find((pair) =>
      pair.metricKey.name === name &&
      [...pair.metricKey.tags].map((tag) => `${tag.key}=${tag.value}`).sort().join(",") === wanted
    )
    return pair?.metricState as unknown as
      | { readonly count?: number; readonly value?: number; readonly max?: number }
      | undefined
  })

describe("metrics (issue 13)", () => {
  it.scoped("responses by status class and code apart, request durations, retries, and requests waiting for a permit", () =>
    Effect.gen(function*() {
      const provider = `metrics-${Math.random()}`
      const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 1, window: "10 seconds" }))
      const { api } = yield* client({
        latency: () => [0, 250],
        handle: (request) => (request.url.endsWith("/missing") ? { status: 404 } : {})
      }, { provider, limiter })
      const fiber = yield* Effect.fork(Effect.all([api.get("/a"), api.get("/missing"), api.get("/b")], {
        concurrency: "unbounded"
      }))
      yield* TestClock.adjust("1 second")
      expect((yield* read("tollgate_requests_waiting", { provider }))?.value).toBe(2)
      yield* TestClock.adjust("30 seconds")
      yield* Fiber.join(fiber)
      expect((yield* read("tollgate_requests_total", { provider, status_class: "2xx", status_code: "200" }))?.count)
        .toBe(2)
      expect((yield* read("tollgate_requests_total", { provider, status_class: "4xx", status_code: "404" }))?.count)
        .toBe(1)
      const durations = yield* read("tollgate_request_duration_seconds", {
        provider,
        status_class: "2xx",
        status_code: "200"
      })
      expect(durations?.count).toBe(2)
      // The last one waited two windows for its permit, then 250 ms for its answer.
      expect(durations?.max).toBeGreaterThanOrEqual(20.25)
      expect((yield* read("tollgate_requests_waiting", { provider }))?.value).toBe(0)
    }))

  it.scoped("retries are counted by reason; a failed request's duration is labelled by its error", () =>
    Effect.gen(function*() {
      const provider = `metrics-${Math.random()}`
      const { api } = yield* client({ handle: () => ({ status: 503 }) }, { provider })
      const fiber = yield* Effect.fork(Effect.flip(api.get("/x")))
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(fiber)
      expect((yield* read("tollgate_retries_total", { provider, reason: "transient" }))?.count).toBe(2)
      expect((yield* read("tollgate_requests_total", { provider, status_class: "5xx", status_code: "503" }))?.count)
        .toBe(3)
      expect((yield* read("tollgate_request_duration_seconds", { provider, error_type: "ResponseError" }))?.count)
        .toBe(1)
    }))
})

/** A loopback server that never answers, counting the requests it got and the connections that went away. */
const silent = Effect.gen(function*() {
  const counts = { url: "", received: 0, closed: 0 }
  const server = Http.createServer((req) => {
    counts.received++
    req.on("close", () => counts.closed++)
  })
  yield* Effect.acquireRelease(
    Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
    () => Effect.sync(() => server.close())
  )
  counts.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return counts
})

/** Polls `condition` on the live clock until it holds (a loaded machine needs no fixed sleep). */
const eventually = (condition: () => boolean) =>
  Effect.repeat(Effect.sync(condition), { until: (done) => done, schedule: Schedule.spaced("10 millis") }).pipe(
    Effect.timeout("5 seconds")
  )

describe("deadlines handed to the transport (issue 16)", () => {
  // The name of the fiber each attempt ran on, and of the caller's, over a transport that listens or not.
  const fibersOf = (listens: boolean) =>
    Effect.gen(function*() {
      const ran: Array<string> = []
      const transport = HttpClient.make((request, _url, signal, fiber) => {
        if (listens) signal.addEventListener("abort", () => {})
        ran.push(FiberId.threadName(fiber.id()))
        return Effect.succeed(HttpClientResponse.fromWeb(request, new Response("{}")))
      })
      const api = yield* ApiClient.make({ provider: "fiber", baseUrl: "https://api.test" }).pipe(
        Effect.provideService(HttpClient.HttpClient, transport)
      )
      for (let i = 0; i < 3; i++) yield* api.get("/x")
      return { ran, caller: FiberId.threadName(yield* Effect.fiberId) }
    })

  it.scoped("once a transport has listened to its abort signal, attempts run on the caller's fiber", () =>
    Effect.gen(function*() {
      const { caller, ran } = yield* fibersOf(true)
      // The first attempt runs in a child fiber (the transport is not known yet), the others do not.
      expect(ran[0]).not.toBe(caller)
      expect(ran.slice(1)).toEqual([caller, caller])
    }))

  it.scoped("a transport that never listens keeps its attempts in a child fiber the deadline can interrupt", () =>
    Effect.gen(function*() {
      const { caller, ran } = yield* fibersOf(false)
      expect(ran.filter((name) => name === caller)).toEqual([])
    }))

  it.live(
    "an attempt past its bound is aborted on the wire, then fails with Timeout; the next one too",
    () =>
      Effect.gen(function*() {
        const server = yield* silent
        const api = yield* ApiClient.make({
          provider: "socket",
          baseUrl: server.url,
          allowInsecureLoopback: true,
          timeout: "150 millis",
          retry: { transient: 0 }
        })
        for (let i = 1; i <= 3; i++) {
          const error = yield* Effect.flip(api.get("/hangs"))
          expect(error).toMatchObject({ _tag: "Timeout", operation: "API request" })
          // The server saw the connection of this attempt go away: the attempt ended before `Timeout`.
          yield* eventually(() => server.closed >= i)
        }
        expect(server.closed).toBe(3)
      }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici)),
    20_000
  )

  it.live(
    "over a real socket nothing handed back prints the bearer token: responses, errors, failed bodies",
    () =>
      Effect.gen(function*() {
        const server = yield* Loopback.serve((request) =>
          request.path === "/ok"
            ? { status: 200, body: { ok: true } }
            : request.path === "/missing"
            ? { status: 404, body: { error: "missing" } }
            : request.path === "/down"
            ? { status: 503, body: "down" }
            : request.path === "/cut"
            ? "stall-body"
            : "destroy"
        )
        const { source } = yield* FakeSource.make()
        const tokens = yield* TokenCache.make(source)
        const api = yield* ApiClient.make({
          provider: "socket",
          baseUrl: server.url,
          allowInsecureLoopback: true,
          tokens,
          timeout: "2 seconds",
          retry: { transient: 0 }
        })
        const cut = yield* api.get("/cut")
        const values: Array<unknown> = [
          yield* api.get("/ok"),
          yield* api.get("/missing"),
          yield* Effect.flip(api.get("/down")),
          yield* Effect.flip(api.get("/drop")),
          cut,
          yield* Effect.flip(Effect.timeout(cut.text, "300 millis"))
        ]
        expect(server.requests.every((r) => r.headers.authorization === "Bearer secret-token-fetch-1")).toBe(true)
        for (const value of values) {
          for (const text of [JSON.stringify(value), String(value), inspect(value, { depth: 20, showHidden: true })]) {
            expect(text).not.toContain("secret-token-fetch-1")
          }
        }
      }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici)),
    20_000
  )

  it.live("interrupting the caller aborts its request on the wire", () =>
    Effect.gen(function*() {
      const server = yield* silent
      const api = yield* ApiClient.make({ provider: "socket", baseUrl: server.url, allowInsecureLoopback: true })
      for (let i = 1; i <= 2; i++) {
        const fiber = yield* Effect.fork(api.get("/hangs"))
        yield* eventually(() => server.received >= i)
        yield* Fiber.interrupt(fiber)
        yield* eventually(() => server.closed >= i)
      }
    }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici)), 20_000)
})
