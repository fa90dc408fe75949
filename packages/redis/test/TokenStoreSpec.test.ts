/**
 * The Redis token store against the shared token-store specification (the same suite core's memory
 * store runs in @tollgate/testing): each "process" is a connection of its own to one private
 * redis-server, under a prefix fresh for each test.
 */
import { afterAll } from "@effect/vitest"
import * as TokenStoreSpec from "@tollgate/testing/TokenStoreSpec"
import { Effect } from "effect"
import * as RedisTokenCache from "../src/RedisTokenCache.js"
import { connect, uniquePrefix } from "./utils/Redis.js"
import * as RedisServer from "./utils/RedisServer.js"

const available = await RedisServer.requireRedis("TokenStoreSpec")
const server = available ? await RedisServer.start() : undefined
afterAll(async () => {
  await server?.stop()
})

TokenStoreSpec.run({
  name: "Redis",
  skip: server === undefined ? "no redis-server on this machine" : undefined,
  namespace: Effect.sync(() => {
    const prefix = uniquePrefix("spec")
    return {
      process: Effect.map(Effect.orDie(connect(server!.url, prefix)), (connection) => RedisTokenCache.store(connection))
    }
  })
})
