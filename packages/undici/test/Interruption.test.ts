/**
 * Interrupting a request, at any point, aborts it in undici and frees its connection: with one connection
 * per origin, a leaked connection would leave every later request queued forever, and the server's count
 * of open connections says whether each aborted one was closed.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Scope, Stream } from "effect"
import * as fc from "fast-check"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import * as UndiciHttpClient from "../src/UndiciHttpClient.js"
import * as Server from "./utils/Server.js"

/** Our client over an Agent with `connections` per origin. */
const client = (connections: number) =>
  Effect.map(UndiciHttpClient.makeDispatcher({ connections }), UndiciHttpClient.make)

const waitUntil = (condition: () => boolean) =>
  Effect.gen(function*() {
    while (!condition()) yield* Effect.sleep("5 millis")
  }).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("condition not met in 5 s") }))

/** A full collection, so a test can watch an abandoned response's finalizer run (vitest's workers have no --expose-gc). */
v8.setFlagsFromString("--expose-gc")
const gc: () => void = vm.runInNewContext("gc")

/** A request that must complete: fails the test (instead of hanging) if the connection was never freed. */
const echo = (http: HttpClient.HttpClient, server: Server.Server) =>
  http.get(server.url("/echo")).pipe(
    Effect.flatMap((response) => response.json),
    Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("request still queued after 5 s") })
  )

describe("interruption", () => {
  it.scopedLive("while waiting for the headers: the request is aborted and its connection closed", () =>
    Effect.gen(function*() {
      const server = yield* Server.make
      const http = yield* client(1)
      for (let i = 0; i < 3; i++) {
        const exit = yield* Effect.exit(Effect.timeout(http.get(server.url("/hang")), "20 millis"))
        expect(Exit.isFailure(exit)).toBe(true)
        yield* waitUntil(() => server.open() === 0)
      }
      expect(yield* echo(http, server)).toMatchObject({ method: "GET" })
    }))

  it.scopedLive("while reading the body, whole or streamed: the request is aborted and its connection closed", () =>
    Effect.gen(function*() {
      const server = yield* Server.make
      const http = yield* client(1)
      const response = yield* http.get(server.url("/hang-body"))
      expect(Exit.isFailure(yield* Effect.exit(Effect.timeout(response.text, "20 millis")))).toBe(true)
      yield* waitUntil(() => server.open() === 0)
      const streamed = yield* http.get(server.url("/hang-body"))
      const fiber = yield* Effect.fork(Stream.runDrain(streamed.stream))
      yield* Effect.sleep("20 millis")
      yield* Fiber.interrupt(fiber)
      yield* waitUntil(() => server.open() === 0)
      expect(yield* echo(http, server)).toMatchObject({ method: "GET" })
    }))

  it.scopedLive("while queued behind a busy connection: the request never reaches the server", () =>
    Effect.gen(function*() {
      const server = yield* Server.make
      const http = yield* client(1)
      const busy = yield* Effect.fork(http.get(server.url("/hang")))
      yield* waitUntil(() => server.hits("/hang") === 1)
      const queued = yield* Effect.exit(Effect.timeout(http.get(server.url("/echo?queued")), "20 millis"))
      expect(Exit.isFailure(queued)).toBe(true)
      yield* Fiber.interrupt(busy)
      expect(yield* echo(http, server)).toMatchObject({ url: "/echo" })
      expect(server.hits("/echo")).toBe(1)
    }))

  it.scopedLive("while sending a streamed body: the body's stream is interrupted too", () =>
    Effect.gen(function*() {
      const server = yield* Server.make
      const http = yield* client(1)
      let stopped = false
      const endless = Stream.repeatEffect(Effect.as(Effect.sleep("1 millis"), new Uint8Array(1024))).pipe(
        Stream.ensuring(Effect.sync(() => (stopped = true)))
      )
      const request = HttpClientRequest.post(server.url("/upload-gated")).pipe(HttpClientRequest.bodyStream(endless))
      const sending = yield* Effect.fork(http.execute(request))
      yield* waitUntil(() => server.gatedBytes() > 0)
      yield* Fiber.interrupt(sending)
      yield* waitUntil(() => stopped && server.open() === 0)
      expect(yield* echo(http, server)).toMatchObject({ method: "GET" })
    }))

  it.scopedLive("a reader that stops early aborts the rest of a large body", () =>
    Effect.gen(function*() {
      const server = yield* Server.make
      const http = yield* client(1)
      const response = yield* http.get(server.url(`/bytes?size=${16 * 1024 * 1024}`))
      const first = yield* Stream.runCollect(Stream.take(response.stream, 1))
      expect(first.length).toBe(1)
      yield* waitUntil(() => server.open() === 0)
      expect(yield* echo(http, server)).toMatchObject({ method: "GET" })
    }))

  it.scopedLive("HttpClient.withScope: closing the scope aborts a body still in flight", () =>
    Effect.gen(function*() {
      const server = yield* Server.make
      const base = yield* client(1)
      const http = HttpClient.withScope(base)
      const scope = yield* Scope.make()
      const response = yield* Scope.extend(http.get(server.url("/hang-body")), scope)
      expect(response.status).toBe(200)
      yield* Scope.close(scope, Exit.void)
      yield* waitUntil(() => server.open() === 0)
      expect(yield* echo(base, server)).toMatchObject({ method: "GET" })
    }))

  it.scopedLive("an abandoned response with its body in flight is aborted once collected", () =>
    Effect.gen(function*() {
      const server = yield* Server.make
      const http = yield* client(1)
      // 16 MiB: far beyond what is buffered before undici is paused, so the body holds the connection.
      yield* Effect.asVoid(http.get(server.url(`/bytes?size=${16 * 1024 * 1024}`)))
      yield* Effect.sleep("20 millis")
      expect(server.open()).toBe(1)
      yield* Effect.gen(function*() {
        while (server.open() > 0) {
          gc()
          yield* Effect.sleep("10 millis")
        }
      }).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("never collected") }))
      expect(yield* echo(http, server)).toMatchObject({ method: "GET" })
    }))

  it.scopedLive("an unread small response holds nothing: its connection is reused", () =>
    Effect.gen(function*() {
      const server = yield* Server.make
      const http = yield* client(1)
      for (let i = 0; i < 5; i++) yield* http.get(server.url("/echo"))
      expect(yield* echo(http, server)).toMatchObject({ method: "GET" })
      expect(server.accepted()).toBe(1)
    }))

  it.scopedLive.prop(
    "any mix of requests interrupted at random points leaks no connection",
    [fc.array(
      fc.record({
        path: fc.constantFrom("/hang", "/hang-body", "/chunked", "/echo", `/bytes?size=${1024 * 1024}`),
        read: fc.constantFrom("text", "stream", "none"),
        after: fc.integer({ min: 0, max: 15 })
      }),
      { minLength: 1, maxLength: 12 }
    )],
    ([plan]) =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const http = yield* client(2)
        yield* Effect.forEach(plan, ({ after, path, read }) =>
          http.get(server.url(path)).pipe(
            Effect.flatMap((response) =>
              read === "text" ? response.text : read === "stream" ? Stream.runDrain(response.stream) : Effect.void
            ),
            Effect.timeout(Duration.millis(after)),
            Effect.exit
          ), { concurrency: 4 })
        // Every request has ended or been interrupted, or its response was dropped unread (released once
        // collected, as the platform client's are): none may still hold a connection. A dropped response whose
        // body the server finished writing holds its connection on our side only until it is collected, so
        // collections go on while the last request waits for a connection.
        const collecting = yield* Effect.fork(
          Effect.forever(Effect.zipRight(Effect.sync(gc), Effect.sleep("5 millis")))
        )
        yield* Effect.gen(function*() {
          while (server.busy() > 0) yield* Effect.sleep("5 millis")
        }).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("a connection is still held") }))
        expect(yield* echo(http, server)).toMatchObject({ method: "GET" })
        yield* Fiber.interrupt(collecting)
      }),
    // Fifteen plans with forced collections take a few seconds on an idle machine; a loaded one needs more time.
    { fastCheck: { numRuns: 15 }, timeout: 90_000 }
  )
})
