/**
 * Issue #18's argument property for the Redis package, against a real Redis: `RedisConnection.make`,
 * `RedisRateLimiter.make` and `RedisTokenCache.make` fed arbitrary numbers, strings and URLs answer with
 * a typed error in the Effect channel (`RedisError`, `InvalidArgument`) or work, and a limiter that was
 * built never over-admits: never a defect, never a synchronous throw.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as TokenSource from "@tollgate/core/TokenSource"
import * as Arbitraries from "@tollgate/testing/Arbitraries"
import { Cause, Duration, Effect, Exit, Fiber, Redacted } from "effect"
import * as fc from "fast-check"
import * as RedisConnection from "../src/RedisConnection.js"
import * as RedisRateLimiter from "../src/RedisRateLimiter.js"
import * as RedisTokenCache from "../src/RedisTokenCache.js"
import { connect, uniquePrefix } from "./utils/Redis.js"
import * as RedisServer from "./utils/RedisServer.js"

const available = await RedisServer.requireRedis("Arguments")

/** A typed failure (or success); the tag of what came back. */
const outcome = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "Success"
  const failure = Cause.failureOption(exit.cause)
  return failure._tag === "Some" ? (failure.value as { readonly _tag: string })._tag : Cause.pretty(exit.cause)
}

const source = TokenSource.make({
  identity: { provider: "arguments", endpoint: "https://idp.test/token", clientId: "client" },
  fetch: Effect.dieMessage("not called in this test")
})

describe.skipIf(!available)("Redis options (issue 18)", () => {
  let server: RedisServer.Server
  beforeAll(async () => {
    server = await RedisServer.start()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it.live.prop(
    "RedisConnection.make: URLs, prefixes and timeouts",
    {
      url: fc.oneof(
        Arbitraries.hostileString,
        fc.constantFrom("redis://127.0.0.1:1", "redis://:%ZZ@127.0.0.1:1", "http://127.0.0.1:1", "redis://exa mple")
      ),
      prefix: Arbitraries.hostileString,
      commandTimeout: Arbitraries.hostileDuration,
      connectTimeout: Arbitraries.hostileDuration
    },
    (o) =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(
          Effect.suspend(() =>
            RedisConnection.make({
              url: o.url,
              prefix: o.prefix,
              commandTimeout: o.commandTimeout as Duration.DurationInput,
              connectTimeout: o.connectTimeout as Duration.DurationInput,
              failIfUnreachable: true,
              reconnect: { base: "10 millis", max: "10 millis" }
            })
          ).pipe(Effect.timeout("3 seconds"))
        )
        expect(outcome(exit)).toMatch(/^(Success|RedisError|InvalidArgument|TimeoutException)$/)
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 60 } }
  )

  it.live.prop(
    "RedisRateLimiter.make and RedisTokenCache.make: durations and keys",
    {
      lease: Arbitraries.hostileDuration,
      maxPoll: Arbitraries.hostileDuration,
      name: Arbitraries.hostileString,
      ttl: Arbitraries.hostileDuration,
      pollInitial: Arbitraries.hostileDuration,
      pollMax: Arbitraries.hostileDuration,
      membershipLease: Arbitraries.hostileDuration,
      noExpiryTtl: Arbitraries.hostileDuration,
      encryptionKey: Arbitraries.hostileString
    },
    (o) =>
      Effect.gen(function*() {
        const connection = yield* connect(server.url, uniquePrefix("arguments"))
        const limiter = yield* Effect.exit(
          Effect.suspend(() =>
            RedisRateLimiter.make(RateLimiter.slidingWindow({ limit: 2, window: "10 seconds" }), {
              name: o.name,
              lease: o.lease as Duration.DurationInput,
              maxPoll: o.maxPoll as Duration.DurationInput
            })
          ).pipe(Effect.provideService(RedisConnection.RedisConnection, connection))
        )
        expect(outcome(limiter)).toMatch(/^(Success|InvalidArgument)$/)
        if (Exit.isSuccess(limiter)) {
          let admitted = 0
          const fibers = yield* Effect.forEach(
            Array.from({ length: 4 }),
            () => Effect.fork(limiter.value.withPermit()(Effect.zipRight(Effect.sync(() => admitted++), Effect.never)))
          )
          yield* Effect.sleep("150 millis")
          expect(admitted).toBeLessThanOrEqual(2)
          yield* Effect.forEach(fibers, Fiber.interrupt)
        }
        const cache = yield* Effect.exit(
          Effect.suspend(() =>
            RedisTokenCache.make(source, {
              encryptionKey: Redacted.make(o.encryptionKey),
              lock: {
                ttl: o.ttl as Duration.DurationInput,
                pollInitial: o.pollInitial as Duration.DurationInput,
                pollMax: o.pollMax as Duration.DurationInput
              },
              membershipLease: o.membershipLease as Duration.DurationInput,
              noExpiryTtl: o.noExpiryTtl as Duration.DurationInput
            })
          ).pipe(Effect.provideService(RedisConnection.RedisConnection, connection))
        )
        expect(outcome(cache)).toMatch(/^(Success|InvalidArgument)$/)
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 60 } }
  )
})
