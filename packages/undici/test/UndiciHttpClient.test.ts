import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import * as TollgateError from "@tollgate/core/TollgateError"
import { Effect, Exit, Layer, Scope, Stream } from "effect"
import { Pool } from "undici"
import type { Dispatcher } from "undici"
import * as UndiciHttpClient from "../src/UndiciHttpClient.js"
import * as Server from "./utils/Server.js"

const waitUntil = (condition: () => boolean) =>
  Effect.gen(function*() {
    while (!condition()) yield* Effect.sleep("5 millis")
  }).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("condition not met in 5 s") }))

const getJson = (url: string) => Effect.flatMap(HttpClient.get(url), (response) => response.json)

describe("UndiciHttpClient", () => {
  describe("layers", () => {
    it.scopedLive("layer: a drop-in for NodeHttpClient.layerUndici, its Agent closed with the layer", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(UndiciHttpClient.layer, scope)
        const echo = yield* Effect.provide(getJson(server.url("/echo")), context)
        expect(echo).toMatchObject({ method: "GET", url: "/echo" })
        expect(server.open()).toBe(1)
        yield* Scope.close(scope, Exit.void)
        yield* waitUntil(() => server.open() === 0)
      }))

    for (const connections of [1, 3]) {
      it.scopedLive(`layerWithOptions: at most ${connections} connection(s) per origin`, () =>
        Effect.gen(function*() {
          const server = yield* Server.make
          const bodies = yield* Effect.forEach(
            Array.from({ length: 6 }),
            () => Effect.flatMap(HttpClient.get(server.url("/chunked")), (response) => response.text),
            { concurrency: "unbounded" }
          ).pipe(Effect.provide(UndiciHttpClient.layerWithOptions({ connections })))
          expect(bodies).toStrictEqual(Array(6).fill("alpha beta gamma"))
          expect(server.accepted()).toBe(connections)
          expect(server.peak()).toBe(connections)
        }))
    }

    it.effect("layerWithOptions: connections must be a positive integer", () =>
      Effect.gen(function*() {
        for (const connections of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
          const error = yield* Effect.flip(
            Layer.build(UndiciHttpClient.layerWithOptions({ connections })).pipe(Effect.scoped)
          )
          expect(error).toBeInstanceOf(TollgateError.InvalidArgument)
          expect(error).toMatchObject({
            module: "UndiciHttpClient",
            argument: "connections",
            received: String(connections)
          })
          expect(error.message).toBe(
            `UndiciHttpClient: connections must be a positive integer, but was ${connections}.`
          )
        }
      }))

    it.effect("layerWithOptions: Agent options undici refuses are an InvalidArgument", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          Layer.build(UndiciHttpClient.layerWithOptions({ agent: { maxOrigins: 0 } })).pipe(Effect.scoped)
        )
        expect(error).toMatchObject({
          _tag: "InvalidArgument",
          argument: "agent",
          expected: "valid undici Agent options"
        })
        expect(error.received).toContain("maxOrigins")
      }))

    it.scopedLive("layerWithoutDispatcher: over a dispatcher of the caller's, e.g. a Pool", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const pool = yield* Effect.acquireRelease(
          Effect.sync(() => new Pool(server.origin, { connections: 2 })),
          (pool) => Effect.promise(() => pool.close())
        )
        const layer = UndiciHttpClient.layerWithoutDispatcher.pipe(
          Layer.provide(Layer.succeed(UndiciHttpClient.Dispatcher, pool))
        )
        const echo = yield* Effect.provide(getJson(server.url("/echo?via=pool")), layer)
        expect(echo).toMatchObject({ url: "/echo?via=pool" })
      }))
  })

  describe("RequestOptions", () => {
    it.scopedLive("hands a headers timeout to undici: RequestError Transport", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const error = yield* HttpClient.get(server.url("/hang")).pipe(
          Effect.provideService(UndiciHttpClient.RequestOptions, { headersTimeout: 50 }),
          Effect.provide(UndiciHttpClient.layer),
          Effect.flip
        )
        expect(error).toBeInstanceOf(HttpClientError.RequestError)
        expect(error).toMatchObject({ reason: "Transport", cause: { code: "UND_ERR_HEADERS_TIMEOUT" } })
      }))

    it.scopedLive("hands a body timeout to undici: ResponseError Decode", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const error = yield* HttpClient.get(server.url("/hang-body")).pipe(
          Effect.flatMap((response) => response.text),
          Effect.provideService(UndiciHttpClient.RequestOptions, { bodyTimeout: 50 }),
          Effect.provide(UndiciHttpClient.layer),
          Effect.flip
        )
        expect(error).toBeInstanceOf(HttpClientError.ResponseError)
        expect(error).toMatchObject({ reason: "Decode", cause: { code: "UND_ERR_BODY_TIMEOUT" } })
      }))

    it.scopedLive("without it both undici timeouts are off (timeouts are the caller's); a layer's apply to all its requests", () =>
      Effect.gen(function*() {
        const server = yield* Server.make
        const pool = yield* Effect.acquireRelease(
          Effect.sync(() => new Pool(server.origin)),
          (pool) => Effect.promise(() => pool.close())
        )
        const seen: Array<Dispatcher.DispatchOptions> = []
        const recording = {
          dispatch: (options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) => {
            seen.push(options)
            return pool.dispatch(options, handler)
          }
        } as unknown as Dispatcher
        const client = UndiciHttpClient.make(recording)
        yield* Effect.flatMap(client.get(server.url("/echo")), (response) => response.text)
        yield* Effect.flatMap(client.get(server.url("/echo")), (response) => response.text).pipe(
          Effect.provideService(UndiciHttpClient.RequestOptions, { headersTimeout: 1000, reset: true })
        )
        // Given to the layer, they apply to every request; around a request, they override those.
        const layered = yield* HttpClient.HttpClient.pipe(
          Effect.provide(
            UndiciHttpClient.layerWithoutDispatcher.pipe(
              Layer.provide(Layer.succeed(UndiciHttpClient.Dispatcher, recording)),
              Layer.provide(Layer.succeed(UndiciHttpClient.RequestOptions, { bodyTimeout: 5000, reset: false }))
            )
          )
        )
        yield* Effect.flatMap(layered.get(server.url("/echo")), (response) => response.text)
        yield* Effect.flatMap(layered.get(server.url("/echo")), (response) => response.text).pipe(
          Effect.provideService(UndiciHttpClient.RequestOptions, { reset: true })
        )
        expect(seen.map(({ bodyTimeout, headersTimeout, reset }) => ({ bodyTimeout, headersTimeout, reset })))
          .toStrictEqual([
            { bodyTimeout: 0, headersTimeout: 0, reset: undefined },
            { bodyTimeout: 0, headersTimeout: 1000, reset: true },
            { bodyTimeout: 5000, headersTimeout: 0, reset: false },
            { bodyTimeout: 5000, headersTimeout: 0, reset: true }
          ])
      }))
  })

  it.scopedLive("the platform's client combinators work on it", () =>
    Effect.gen(function*() {
      const server = yield* Server.make
      const client = (yield* HttpClient.HttpClient).pipe(
        HttpClient.mapRequest(HttpClientRequest.prependUrl(server.origin)),
        HttpClient.filterStatusOk
      )
      expect(yield* Effect.flatMap(client.get("/echo"), (response) => response.json)).toMatchObject({ url: "/echo" })
      const error = yield* Effect.flip(client.get("/status?code=503"))
      expect(error).toMatchObject({ _tag: "ResponseError", reason: "StatusCode" })
    }).pipe(Effect.provide(UndiciHttpClient.layer)))

  it.scopedLive("a response inspects like the platform's", () =>
    Effect.gen(function*() {
      const server = yield* Server.make
      const response = yield* HttpClient.get(server.url("/text?body=%7B%22a%22%3A1%7D&type=application/json")).pipe(
        Effect.provide(UndiciHttpClient.layer)
      )
      expect(response.toJSON()).toMatchObject({
        _id: "@effect/platform/HttpClientResponse",
        status: 200,
        body: { a: 1 },
        request: { _id: "@effect/platform/HttpClientRequest", method: "GET" }
      })
    }))

  it.scopedLive("inspecting a response whose body is in flight does not read it", () =>
    Effect.gen(function*() {
      const server = yield* Server.make
      const response = yield* HttpClient.get(server.url("/gated"))
      const shown = response.toJSON() as Record<string, unknown>
      expect(shown).toMatchObject({ status: 200, headers: { "content-type": "text/plain" } })
      expect(shown).not.toHaveProperty("body")
      // Still a stream: its first chunk arrives before the rest is released.
      const text = yield* response.stream.pipe(
        Stream.decodeText(),
        Stream.tap((chunk) => Effect.sync(() => chunk.startsWith("first") && server.release())),
        Stream.mkString
      )
      expect(text).toBe("first;rest")
    }).pipe(Effect.provide(UndiciHttpClient.layer)))
})
