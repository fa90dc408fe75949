/** The shared limiter specification over the Redis store, each store on its own connection (process). */
import { afterAll, beforeAll } from "@effect/vitest"
import * as RateLimiterStoreSpec from "@tollgate/testing/RateLimiterStoreSpec"
import { Effect } from "effect"
import * as RedisConnection from "../src/RedisConnection.js"
import * as RedisRateLimiter from "../src/RedisRateLimiter.js"
import { connect, uniquePrefix } from "./utils/Redis.js"
import * as RedisServer from "./utils/RedisServer.js"

const available = await RedisServer.requireRedis("RateLimiterStoreSpec")
let server: RedisServer.Server | undefined
beforeAll(async () => {
  if (available) server = await RedisServer.start()
})
afterAll(async () => {
  await server?.stop()
})
const prefix = uniquePrefix("spec")

RateLimiterStoreSpec.run({
  name: "redis",
  skip: !available,
  shared: true,
  store: Effect.flatMap(
    Effect.suspend(() => Effect.orDie(connect(server!.url, prefix))),
    (connection) =>
      RedisRateLimiter.makeStore({ maxPoll: "100 millis" }).pipe(
        Effect.provideService(RedisConnection.RedisConnection, connection)
      )
  )
})
