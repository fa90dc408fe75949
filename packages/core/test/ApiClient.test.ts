import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Either, Exit, Fiber, Option, Random, Redacted, Stream, TestClock } from "effect"
import * as fc from "fast-check"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { inspect } from "node:util"
import * as ApiClient from "../src/ApiClient.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as TokenCache from "../src/TokenCache.js"
import * as TollgateError from "../src/TollgateError.js"
import * as FakeServer from "./utils/FakeServer.js"
import * as FakeSource from "./utils/FakeSource.js"
import * as Recording from "./utils/Recording.js"

interface SetupOptions extends Omit<ApiClient.Options, "provider" | "tokens" | "limiter"> {
  readonly policy?: RateLimiter.Policy
  readonly source?: FakeSource.FakeSourceOptions
  readonly withoutTokens?: boolean
}

const setup = (server: FakeServer.FakeServerOptions, options: SetupOptions = {}) =>
  Effect.gen(function*() {
    const fake = FakeServer.make(server)
    const { calls, source } = yield* FakeSource.make(options.source)
    const tokens = yield* TokenCache.make(source)
    const limiter = options.policy === undefined ? undefined : yield* RateLimiter.make(options.policy)
    const { policy: _, source: __, withoutTokens, ...clientOptions } = options
    const client = yield* ApiClient.make({
      provider: "test",
      baseUrl: "https://api.test/v1",
      ...clientOptions,
      tokens: withoutTokens ? undefined : tokens,
      limiter
    }).pipe(Effect.provideService(HttpClient.HttpClient, fake.client))
    return { client, arrivals: fake.arrivals, calls, tokens, limiter }
  })

const status = (effect: Effect.Effect<{ readonly status: number }, unknown>) => Effect.map(effect, (r) => r.status)

describe("ApiClient", () => {
  describe("composition", () => {
    it.scoped("prepends the base URL, adds fixed headers without overriding the caller's, and sends the bearer token", () =>
      Effect.gen(function*() {
        const { arrivals, client } = yield* setup({ handle: () => ({}) }, {
          headers: { ApplicationId: "42", "X-Fixed": "fixed" }
        })
        yield* client.get("/forms", { headers: { "x-fixed": "mine" } })
        yield* client.get("https://elsewhere.test/absolute")
        expect(arrivals[0]).toMatchObject({
          url: "https://api.test/v1/forms",
          authorization: "Bearer secret-token-fetch-1",
          headers: { applicationid: "42", "x-fixed": "mine" }
        })
        expect(arrivals[1]!.url).toBe("https://elsewhere.test/absolute")
      }))

    it.scoped("never sends a request without a token: the token error is the request's error", () =>
      Effect.gen(function*() {
        const { arrivals, client } = yield* setup({ handle: () => ({}) }, {
          source: { fail: () => new TollgateError.InvalidCredentials({ provider: "fake", status: 401 }) }
        })
        const error = yield* Effect.flip(client.get("/forms"))
        expect(error._tag).toBe("InvalidCredentials")
        expect(arrivals).toHaveLength(0)
      }))

    it.scoped("leaves authentication out when no token cache is given", () =>
      Effect.gen(function*() {
        const { arrivals, client } = yield* setup({ handle: () => ({}) }, { withoutTokens: true })
        yield* client.get("/open")
        expect(arrivals[0]!.authorization).toBeUndefined()
      }))
  })

  describe("401", () => {
    it.scoped("renews exactly the refused token and retries once", () =>
      Effect.gen(function*() {
        const { arrivals, calls, client } = yield* setup({
          handle: (
            _,
            { n }
          ) => (n === 0 ? { status: 401, headers: { "www-authenticate": "Bearer error=\"invalid_token\"" } } : {})
        })
        expect(yield* status(client.get("/forms"))).toBe(200)
        expect(arrivals.map((a) => a.authorization)).toEqual([
          "Bearer secret-token-fetch-1",
          "Bearer secret-token-fetch-2"
        ])
        expect(calls.fetch).toBe(2)
      }))

    it.scoped("a second 401 with a fresh token is a typed error, not a loop", () =>
      Effect.gen(function*() {
        const { arrivals, calls, client } = yield* setup({ handle: () => ({ status: 401 }) })
        const error = yield* Effect.flip(client.get("/forms"))
        expect(error).toMatchObject({ _tag: "Unauthorized", status: 401 })
        expect(arrivals).toHaveLength(2)
        expect(calls.fetch).toBe(2)
      }))

    it.scoped("insufficient_scope is not fixed by renewal", () =>
      Effect.gen(function*() {
        const { arrivals, client, tokens } = yield* setup({
          handle: () => ({
            status: 401,
            headers: { "www-authenticate": "Bearer realm=\"api\", error=\"insufficient_scope\"" }
          })
        })
        const error = yield* Effect.flip(client.get("/admin"))
        expect(error).toMatchObject({ _tag: "Unauthorized", challenge: "insufficient_scope" })
        expect(arrivals).toHaveLength(1)
        expect(Option.isSome(yield* tokens.current)).toBe(true)
      }))

    it.scoped("does not retry a request whose body cannot be replayed", () =>
      Effect.gen(function*() {
        const { arrivals, client } = yield* setup({ handle: () => ({ status: 401 }) })
        const body = HttpBody.stream(Stream.make(new TextEncoder().encode("{}")), "application/json")
        const error = yield* Effect.flip(
          client.execute(HttpClientRequest.post("/upload").pipe(HttpClientRequest.setBody(body)))
        )
        expect(error._tag).toBe("Unauthorized")
        expect(arrivals).toHaveLength(1)
      }))

    it.scoped("a stale 401 for an old token never drops the newer one", () =>
      Effect.gen(function*() {
        let refuse: string | undefined
        const { arrivals, calls, client, tokens } = yield* setup({
          latency: (n) => (n === 0 ? [0, 10 * 60_000] : [0, 0]),
          handle: (request) => (request.headers["authorization"] === refuse ? { status: 401 } : {})
        }, { source: { lifetime: "10 minutes" }, timeout: Duration.infinity })
        const first = yield* tokens.get
        refuse = `Bearer ${Redacted.value(first.value)}`
        // The request goes out with the first token; its 401 comes back only after the refresh at
        // 9 minutes (the token in use) has installed a second token, which must survive the stale 401.
        const fiber = yield* Effect.fork(client.get("/slow"))
        yield* TestClock.adjust("510 seconds")
        yield* tokens.get
        yield* TestClock.adjust("30 seconds")
        const second = yield* tokens.get
        expect(Redacted.value(second.value)).not.toBe(Redacted.value(first.value))
        yield* TestClock.adjust("2 minutes")
        expect((yield* Fiber.join(fiber)).status).toBe(200)
        expect(arrivals.at(-1)!.authorization).toBe(`Bearer ${Redacted.value(second.value)}`)
        expect(Redacted.value(Option.getOrThrow(yield* tokens.current).value)).toBe(Redacted.value(second.value))
        expect(calls.fetch).toBe(2)
      }))
  })

  describe("429 and the gate (invariant 6)", () => {
    const resets = {
      "Retry-After seconds": (now: number) => ({ "retry-after": "7" }),
      "Retry-After HTTP date": (now: number) => ({ "retry-after": new Date(now + 7_000).toUTCString() }),
      "epoch X-RateLimit-Reset": (now: number) => ({
        "x-ratelimit-limit": "10",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": String(Math.ceil((now + 7_000) / 1000))
      }),
      "delta X-RateLimit-Reset": (_: number) => ({ "x-ratelimit-remaining": "0", "x-ratelimit-reset": "7" }),
      "IETF RateLimit": (_: number) => ({
        ratelimit: "\"default\";r=0;t=7",
        "ratelimit-policy": "\"default\";q=10;w=60"
      })
    } as const

    for (const [name, headers] of Object.entries(resets)) {
      it.scoped(`pauses every fiber until the reset announced by ${name}`, () =>
        Effect.gen(function*() {
          let limitedAt: number | undefined
          const { arrivals, client } = yield* setup({
            handle: (_, { n, now }) => {
              if (n !== 3) return {}
              limitedAt = now
              return { status: 429, headers: headers(now), body: "{\"errors\":[{\"code\":88}]}" }
            }
          })
          const fibers = yield* Effect.forEach(Array.from({ length: 10 }), (_, i) =>
            Effect.fork(Effect.zipRight(Effect.sleep(Duration.millis(i * 100)), client.get("/stamps"))))
          yield* TestClock.adjust("20 seconds")
          const statuses = yield* Effect.forEach(fibers, (f) =>
            Effect.map(Fiber.join(f), (r) => r.status))
          expect(statuses.every((s) => s === 200)).toBe(true)
          const resetAt = limitedAt! + 7_000
          const during = arrivals.filter((a) => a.at > limitedAt! && a.at < resetAt - 1_000)
          expect(during).toHaveLength(0)
          expect(arrivals.filter((a) => a.at >= resetAt - 1_000).length).toBeGreaterThan(0)
        }))
    }

    it.scoped("backs off when the 429 announces no reset, pausing the others too", () =>
      Effect.gen(function*() {
        let limitedAt = -1
        const { arrivals, client } = yield* setup({
          handle: (_, { n, now }) => (n === 0 ? ((limitedAt = now), { status: 429 }) : {})
        }, { retry: { baseDelay: "2 seconds" } })
        const fibers = yield* Effect.forEach(Array.from({ length: 3 }), (_, i) =>
          Effect.fork(Effect.zipRight(Effect.sleep(Duration.millis(i * 10)), client.get("/x"))))
        yield* TestClock.adjust("10 seconds")
        yield* Effect.forEach(fibers, Fiber.join)
        expect(arrivals.filter((a) =>
          a.at > limitedAt && a.at < limitedAt + 1_000
        )).toHaveLength(0)
      }))

    it.scoped("a 429 storm is retried a bounded number of times, then fails with RateLimited; recovery follows", () =>
      Effect.gen(function*() {
        let stormUntil = 60_000
        const { arrivals, client } = yield* setup({
          handle: (_, { now }) => (now < stormUntil ? { status: 429, headers: { "retry-after": "5" } } : {})
        })
        const fiber = yield* Effect.fork(Effect.either(client.get("/x")))
        yield* TestClock.adjust("30 seconds")
        const result = yield* Fiber.join(fiber)
        expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "RateLimited", reason: "server" })
        expect(arrivals).toHaveLength(4)
        stormUntil = 0
        yield* TestClock.adjust("10 seconds")
        expect(yield* status(client.get("/x"))).toBe(200)
      }))

    it.scoped("fails at once when the reset is further away than the caller will wait", () =>
      Effect.gen(function*() {
        const { arrivals, client } = yield* setup({
          handle: () => ({ status: 429, headers: { "retry-after": "3600" } })
        })
        const error = yield* Effect.flip(client.get("/x"))
        expect(error).toMatchObject({ _tag: "RateLimited", reason: "server" })
        expect((error as TollgateError.RateLimited).retryAt?.epochMillis).toBe(3_600_000)
        expect(arrivals).toHaveLength(1)
      }))

    it.scoped("Remaining: 0 on a success pauses before a 429 ever happens", () =>
      Effect.gen(function*() {
        // A server with fixed 10-second windows of 5 requests that reports its budget on every response,
        // its reset in epoch seconds, at a realistic date.
        yield* TestClock.setTime(Date.UTC(2026, 10, 23))
        const windowOf = (now: number) => Math.floor(now / 10_000)
        const counts = new Map<number, number>()
        const { arrivals, client } = yield* setup({
          latency: () => [50, 50],
          handle: (_, { now }) => {
            const w = windowOf(now)
            const used = (counts.get(w) ?? 0) + 1
            counts.set(w, used)
            const headers = {
              "x-ratelimit-limit": "5",
              "x-ratelimit-remaining": String(Math.max(0, 5 - used)),
              "x-ratelimit-reset": String((w + 1) * 10)
            }
            return used > 5 ? { status: 429, headers } : { headers }
          }
        })
        const fiber = yield* Effect.fork(Effect.forEach(Array.from({ length: 20 }), () => client.get("/x")))
        yield* TestClock.adjust("60 seconds")
        const responses = yield* Fiber.join(fiber)
        expect(responses.every((r) => r.status === 200)).toBe(true)
        expect(arrivals).toHaveLength(20)
      }))
  })

  describe("transient failures", () => {
    it.scoped("retries a GET after 5xx with backoff, then fails with a typed error carrying the response", () =>
      Effect.gen(function*() {
        const { arrivals, client } = yield* setup({ handle: () => ({ status: 503, body: "<html>down</html>" }) })
        const fiber = yield* Effect.fork(Effect.flip(client.get("/x")))
        yield* TestClock.adjust("10 seconds")
        const error = yield* Fiber.join(fiber)
        expect(error).toMatchObject({ _tag: "ResponseError", reason: "StatusCode" })
        expect(arrivals).toHaveLength(3)
        expect(arrivals[1]!.at - arrivals[0]!.at).toBeGreaterThanOrEqual(250)
      }))

    it.scoped("does not retry a POST unless the caller opts in", () =>
      Effect.gen(function*() {
        const { arrivals, client } = yield* setup({ handle: (_, { n }) => (n < 2 ? { status: 502 } : {}) })
        const error = yield* Effect.flip(client.post("/transfers"))
        expect(error._tag).toBe("ResponseError")
        expect(arrivals).toHaveLength(1)
        const fiber = yield* Effect.fork(
          ApiClient.withRequestOptions(client.post("/transfers"), { retryNonIdempotent: true })
        )
        yield* TestClock.adjust("10 seconds")
        expect((yield* Fiber.join(fiber)).status).toBe(200)
        expect(arrivals).toHaveLength(3)
      }))

    it.scoped("bounds every attempt by 30 seconds unless told otherwise", () =>
      Effect.gen(function*() {
        const { arrivals, client } = yield* setup({ latency: () => [0, 3_600_000], handle: () => ({}) })
        const fiber = yield* Effect.fork(Effect.flip(client.get("/hangs")))
        yield* TestClock.adjust("29 seconds")
        expect(arrivals).toHaveLength(1)
        yield* TestClock.adjust("5 minutes")
        const error = yield* Fiber.join(fiber)
        expect(error).toMatchObject({ _tag: "Timeout", operation: "API request" })
        // A GET is retried twice after a timeout, each attempt bounded the same way.
        expect(arrivals).toHaveLength(3)
      }))

    it.scoped("retries transport errors of idempotent requests and times out slow attempts", () =>
      Effect.gen(function*() {
        const { arrivals, client } = yield* setup({
          latency: (n) => (n === 1 ? [0, 60_000] : [0, 0]),
          handle: (_, { n }) => (n === 0 ? { transportError: true } : {})
        }, { timeout: "5 seconds" })
        const fiber = yield* Effect.fork(client.get("/x"))
        yield* TestClock.adjust("30 seconds")
        expect((yield* Fiber.join(fiber)).status).toBe(200)
        expect(arrivals).toHaveLength(3)
        const slow = yield* setup({ latency: () => [0, 60_000], handle: () => ({}) }, { timeout: "1 second" })
        const failing = yield* Effect.fork(Effect.flip(slow.client.get("/x")))
        yield* TestClock.adjust("30 seconds")
        expect((yield* Fiber.join(failing))._tag).toBe("Timeout")
        expect(slow.arrivals).toHaveLength(3)
      }))

    // Attempts are bounded by one shared timer (internal/deadlines) rather than a race per attempt: these
    // pin down what `Effect.timeoutFail` gave for free.
    const hanging = (log: { started: number; interrupted: number }) =>
      HttpClient.make((request) =>
        request.url.endsWith("/hang")
          ? Effect.sync(() => log.started++).pipe(
            Effect.zipRight(Effect.never),
            Effect.onInterrupt(() => Effect.sync(() => log.interrupted++))
          )
          : Effect.succeed(HttpClientResponse.fromWeb(request, new Response("{}", { status: 200 })))
      )

    it.live("on the live clock, only the attempts past their deadline time out, each interrupted first", () =>
      Effect.scoped(Effect.gen(function*() {
        const log = { started: 0, interrupted: 0 }
        const client = yield* ApiClient.make({
          provider: "test",
          baseUrl: "https://api.test",
          timeout: "150 millis",
          retry: { transient: 0 }
        }).pipe(Effect.provideService(HttpClient.HttpClient, hanging(log)))
        const started = Date.now()
        const results = yield* Effect.forEach(
          Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? "/hang" : "/ok")),
          (path) => Effect.either(client.get(path)),
          { concurrency: "unbounded" }
        )
        const elapsed = Date.now() - started
        results.forEach((result, i) => {
          if (i % 2 === 0) {
            expect(Either.getLeft(result).pipe(Option.map((e) => e._tag))).toEqual(Option.some("Timeout"))
          } else expect(Either.isRight(result)).toBe(true)
        })
        expect(log).toEqual({ started: 20, interrupted: 20 })
        expect(elapsed).toBeGreaterThanOrEqual(140)
      })))

    it.scoped("an interrupted caller interrupts its attempt and waits for it to stop; the bound still holds after thousands of attempts", () =>
      Effect.gen(function*() {
        const log = { started: 0, interrupted: 0 }
        const client = yield* ApiClient.make({ provider: "test", baseUrl: "https://api.test", retry: { transient: 0 } })
          .pipe(Effect.provideService(HttpClient.HttpClient, hanging(log)))
        const caller = yield* Effect.fork(client.get("/hang"))
        yield* TestClock.adjust("1 second")
        expect(log.started).toBe(1)
        yield* Fiber.interrupt(caller)
        expect(log.interrupted).toBe(1)
        // The interrupted attempt may still reach the server: its probe permit is held one period more.
        yield* TestClock.adjust("1 second")
        // Finished deadlines are dropped lazily; thousands of them must neither fire nor hide a live one.
        for (let i = 0; i < 5_000; i++) yield* client.get("/ok")
        const late = yield* Effect.fork(Effect.flip(client.get("/hang")))
        yield* TestClock.adjust("29 seconds")
        expect(log.interrupted).toBe(1)
        yield* TestClock.adjust("2 seconds")
        expect((yield* Fiber.join(late))._tag).toBe("Timeout")
        expect(log).toEqual({ started: 2, interrupted: 2 })
      }))
  })

  describe("limits through the client", () => {
    it.effect.prop(
      "invariant 4 end to end: the server never sees more than the limit in any window",
      {
        limit: fc.integer({ min: 1, max: 6 }),
        concurrency: fc.integer({ min: 1, max: 30 }),
        latencies: fc.array(fc.tuple(fc.nat(3_000), fc.nat(3_000)), { minLength: 1, maxLength: 10 })
      },
      ({ concurrency, latencies, limit }) =>
        Effect.gen(function*() {
          const window = 10_000
          const { arrivals, client } = yield* setup({
            latency: (n) => latencies[n % latencies.length]!,
            handle: () => ({})
          }, { policy: RateLimiter.slidingWindow({ limit, window: Duration.millis(window) }) })
          const total = 30
          const fiber = yield* Effect.fork(
            Effect.forEach(Array.from({ length: total }), () => client.get("/x"), { concurrency })
          )
          yield* TestClock.adjust(
            Duration.millis((window + 6_000) * (Math.ceil(total / Math.min(limit, concurrency)) + 1))
          )
          yield* Fiber.join(fiber)
          expect(arrivals).toHaveLength(total)
          expect(FakeServer.maxInWindow(arrivals.map((a) => a.at), window)).toBeLessThanOrEqual(limit)
        }).pipe(Effect.scoped),
      { fastCheck: { numRuns: 12 } }
    )

    it.scoped("interrupted queued requests are never sent; 10,000 queued requests drain with no leak", () =>
      Effect.gen(function*() {
        // No timeout: TestClock keeps every abandoned sleep and re-sorts them at each step, which would
        // make 10,000 timed requests slow to simulate without testing anything more.
        const { arrivals, client, limiter } = yield* setup({ handle: () => ({}) }, {
          policy: RateLimiter.slidingWindow({ limit: 100, window: "1 second" }),
          timeout: Duration.infinity
        })
        const victims = yield* Effect.forEach(Array.from({ length: 500 }), () => Effect.fork(client.get("/victim")))
        yield* TestClock.adjust("1 millis")
        yield* Effect.forEach(victims, Fiber.interrupt)
        const sentVictims = arrivals.length
        expect(sentVictims).toBe(100)
        const fiber = yield* Effect.fork(
          Effect.forEach(Array.from({ length: 10_000 }), () => client.get("/x"), { concurrency: "unbounded" })
        )
        yield* TestClock.adjust("101 seconds")
        const responses = yield* Fiber.join(fiber)
        expect(responses).toHaveLength(10_000)
        expect(arrivals).toHaveLength(10_100)
        expect(FakeServer.maxInWindow(arrivals.map((a) => a.at), 1000)).toBeLessThanOrEqual(100)
        expect((yield* limiter!.stats).queued).toBe(0)
      }))

    it.scoped("a predicted wait past the permit deadline fails at once", () =>
      Effect.gen(function*() {
        const { arrivals, client } = yield* setup({ handle: () => ({}) }, {
          policy: RateLimiter.slidingWindow({ limit: 1, window: "1 minute" }),
          permitDeadline: "10 seconds"
        })
        yield* client.get("/x")
        const error = yield* Effect.flip(client.get("/x"))
        expect(error).toMatchObject({ _tag: "RateLimited", reason: "deadline" })
        expect(arrivals).toHaveLength(1)
      }))

    it.live(
      "against a real loopback server enforcing its own sliding window: zero 429s at saturating demand",
      () =>
        Effect.gen(function*() {
          const limit = 5
          const window = 400
          const admitted: Array<number> = []
          let rejected = 0
          const server = Http.createServer((req, res) => {
            const now = Date.now()
            const recent = admitted.filter((t) => now - t < window)
            const headers = {
              "x-ratelimit-limit": String(limit),
              "x-ratelimit-remaining": String(Math.max(0, limit - recent.length - 1)),
              "x-ratelimit-reset": String(Math.ceil(((recent[0] ?? now) + window) / 1000))
            }
            if (recent.length >= limit) {
              rejected++
              res.writeHead(429, { ...headers, "content-type": "application/json" })
              res.end("{\"errors\":[{\"code\":88,\"message\":\"Rate limit exceeded\"}]}")
              return
            }
            admitted.push(now)
            setTimeout(() => {
              res.writeHead(200, { ...headers, "content-type": "application/json" })
              res.end("{\"ok\":true}")
            }, Math.floor(Math.random() * 20))
          })
          yield* Effect.acquireRelease(
            Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
            () => Effect.sync(() => server.close())
          )
          const port = (server.address() as AddressInfo).port
          const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit, window: Duration.millis(window) }))
          const client = yield* ApiClient.make({
            provider: "loopback",
            baseUrl: `http://127.0.0.1:${port}`,
            allowInsecureLoopback: true,
            limiter
          })
          const started = Date.now()
          yield* Effect.forEach(Array.from({ length: 20 }), () => client.get("/x"), { concurrency: 20 })
          const elapsed = Date.now() - started
          expect(rejected).toBe(0)
          expect(FakeServer.maxInWindow(admitted, window)).toBeLessThanOrEqual(limit)
          // 20 requests at 5 per 400 ms need at least 3 windows.
          expect(elapsed).toBeGreaterThanOrEqual(3 * window)
        }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici)),
      10_000
    )
  })

  it.scoped("nothing it hands back prints the bearer token: responses and errors, outside any fiber", () =>
    Effect.gen(function*() {
      const { arrivals, client } = yield* setup({
        handle: (request) =>
          request.url.endsWith("/down")
            ? { status: 503 }
            : request.url.endsWith("/drop")
            ? { transportError: true }
            : request.url.endsWith("/limited")
            ? { status: 429, headers: { "retry-after": "86400" } }
            : { status: request.url.endsWith("/missing") ? 404 : 200, body: "{\"ok\":true}" }
      }, { retry: { transient: 0 } })
      const values: Array<unknown> = [
        yield* client.get("/ok"),
        yield* client.get("/missing"),
        yield* Effect.flip(client.get("/down")),
        yield* Effect.flip(client.get("/drop")),
        yield* Effect.flip(client.get("/limited"))
      ]
      expect(arrivals.every((a) => a.authorization === "Bearer secret-token-fetch-1")).toBe(true)
      for (const value of values) {
        const printed = [JSON.stringify(value), String(value), inspect(value, { depth: 20 })]
        for (const text of printed) expect(text).not.toContain("secret-token-fetch-1")
      }
      const ok = values[0] as { readonly status: number; readonly json: Effect.Effect<unknown> }
      expect(ok.status).toBe(200)
      expect(yield* ok.json).toEqual({ ok: true })
    }))

  // Regression (chaos suite): a body cut mid-way failed with the platform's ResponseError, which holds the
  // request as sent and printed `authorization: Bearer …` outside a fiber.
  it.scoped("a body that fails mid-way fails with an error that does not print the bearer token", () =>
    Effect.gen(function*() {
      const { source } = yield* FakeSource.make()
      const tokens = yield* TokenCache.make(source)
      const cut = HttpClient.make((request) =>
        Effect.succeed(HttpClientResponse.fromWeb(
          request,
          new Response(
            new ReadableStream<Uint8Array>({
              start(controller) {
                controller.enqueue(new TextEncoder().encode("{\"partial\":"))
                controller.error(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }))
              }
            }),
            { status: 200, headers: { "content-type": "application/json" } }
          )
        ))
      )
      const client = yield* ApiClient.make({ provider: "test", baseUrl: "https://api.test", tokens }).pipe(
        Effect.provideService(HttpClient.HttpClient, cut)
      )
      // A body is read once: each way of reading it gets a response of its own.
      const readers: ReadonlyArray<
        (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<unknown, HttpClientError.ResponseError>
      > = [
        (response) => response.json,
        (response) => response.text,
        (response) => response.arrayBuffer,
        (response) => Stream.runDrain(response.stream)
      ]
      for (const read of readers) {
        const response = yield* client.get("/forms")
        const error = yield* Effect.flip(read(response))
        expect(error._tag).toBe("ResponseError")
        expect(error.request.headers["authorization"]).toBeUndefined()
        expect(error.response).toBe(response)
        for (const text of [JSON.stringify(error), String(error), inspect(error, { depth: 20, showHidden: true })]) {
          expect(text).not.toContain("secret-token-fetch-1")
        }
      }
    }))

  // Regression (chaos suite): the platform's `http.client` span around each attempt ended holding the
  // request as sent (its response's and its errors' `request`), which a tracer printing span exits outside a
  // fiber showed with the bearer token.
  it.scoped("no span ends holding the bearer token; the trace context travels when the user opts in", () =>
    Effect.gen(function*() {
      const { spans, tracer } = yield* Recording.tracer
      const { arrivals, client } = yield* setup({
        handle: (request) => (request.url.endsWith("/drop") ? { transportError: true } : { status: 200 })
      }, { retry: { transient: 0 }, propagateTraceContext: true })
      yield* client.get("/ok").pipe(Effect.withTracer(tracer))
      yield* Effect.flip(client.get("/drop")).pipe(Effect.withTracer(tracer))
      expect(spans.map((span) => span.name)).toEqual(["tollgate.request", "tollgate.token.fetch", "tollgate.request"])
      for (const span of spans) {
        const exit = span.status._tag === "Ended" ? span.status.exit : undefined
        const printed = [inspect([...span.attributes]), inspect(exit, { depth: 20 }), JSON.stringify(exit)]
        for (const text of printed) expect(text).not.toContain("secret-token-fetch-1")
      }
      expect(spans[0]!.attributes.get("http.response.status_code")).toBe(200)
      expect(arrivals[0]!.headers["traceparent"]).toContain(spans[0]!.spanId)
    }))

  // Issue 17: a third-party API is outside the user's trust boundary.
  it.scoped("sends no trace context to the API unless told to; the span is recorded all the same", () =>
    Effect.gen(function*() {
      const { spans, tracer } = yield* Recording.tracer
      const { arrivals, client } = yield* setup({ handle: () => ({}) })
      yield* client.get("/ok").pipe(Effect.withTracer(tracer))
      expect(spans.map((span) => span.name)).toContain("tollgate.request")
      expect(Object.keys(arrivals[0]!.headers).filter((name) => name === "traceparent" || name.startsWith("b3")))
        .toEqual([])
    }))

  it.scoped("reads only the request options of its own fiber", () =>
    Effect.gen(function*() {
      const { client } = yield* setup({ handle: () => ({}) }, {
        policy: RateLimiter.slidingWindow({ limit: 3, window: "1 second" })
      })
      const error = yield* Effect.flip(ApiClient.withRequestOptions(client.get("/x"), { cost: 4 }))
      expect(error).toMatchObject({ _tag: "RateLimited", reason: "cost" })
      expect(yield* status(client.get("/x"))).toBe(200)
      expect(Exit.isSuccess(yield* Effect.exit(Random.next))).toBe(true)
      expect(yield* Clock.currentTimeMillis).toBe(0)
    }))
})
