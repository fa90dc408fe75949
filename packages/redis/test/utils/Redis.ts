import { Duration, Effect, Schedule } from "effect"
import type { Scope } from "effect"
import { Redis } from "ioredis"
import { randomBytes } from "node:crypto"
import * as RedisConnection from "../../src/RedisConnection.js"

/** A fresh prefix, so tests sharing one server never see each other's keys. */
export const uniquePrefix = (name: string): string => `t.${name}.${randomBytes(4).toString("hex")}`

/** A connection for the current scope: each one stands for a separate process. */
export const connect = (
  url: string,
  prefix: string,
  options?: Omit<RedisConnection.Options, "url" | "prefix">
): Effect.Effect<RedisConnection.Service, RedisConnection.RedisError, Scope.Scope> =>
  RedisConnection.make({ url, prefix, connectTimeout: "500 millis", commandTimeout: "1 second", ...options })

/** A plain ioredis client for inspecting the server from a test. */
export const inspector = (url: string): Effect.Effect<Redis, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: true, lazyConnect: false })),
    (client) => Effect.sync(() => client.disconnect())
  )

export const promise = <A>(f: () => Promise<A>): Effect.Effect<A> => Effect.promise(f)

/** Every key under `prefix` with its TTL in milliseconds. */
export const ttls = (client: Redis, prefix: string): Effect.Effect<ReadonlyArray<readonly [string, number]>> =>
  promise(async () => {
    const keys = await client.keys(`${prefix}:*`)
    return Promise.all(keys.map(async (key) => [key, await client.pttl(key)] as const))
  })

/** Every value stored under `prefix`, whatever its type, as text. */
export const dump = (client: Redis, prefix: string): Effect.Effect<string> =>
  promise(async () => {
    const keys = await client.keys(`${prefix}:*`)
    const values = await Promise.all(keys.map(async (key) => {
      const type = await client.type(key)
      switch (type) {
        case "string":
          return `${key}=${await client.get(key)}`
        case "hash":
          return `${key}=${JSON.stringify(await client.hgetall(key))}`
        case "zset":
          return `${key}=${JSON.stringify(await client.zrange(key, 0, -1, "WITHSCORES"))}`
        default:
          return `${key}:${type}`
      }
    }))
    return values.join("\n")
  })

/** The most entries of a list of instants inside any half-open interval of length `window`. */
export const maxInWindow = (times: ReadonlyArray<number>, window: number): number => {
  const sorted = [...times].sort((a, b) => a - b)
  let max = 0
  let start = 0
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= window) start++
    max = Math.max(max, end - start + 1)
  }
  return max
}

/** Wall-clock milliseconds with sub-millisecond precision. */
export const preciseNow = (): number => performance.timeOrigin + performance.now()

/**
 * Waits until `condition` holds, checking every 20 ms for at most `within`; then the test's own
 * assertion says what was expected. For background work whose finish time a loaded machine can delay.
 */
export const eventually = (
  condition: () => boolean,
  within: Duration.DurationInput = "3 seconds"
): Effect.Effect<void> =>
  Effect.suspend(() => (condition() ? Effect.void : Effect.fail("not yet"))).pipe(
    Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo(within))),
    Effect.ignore
  )
