/**
 * Core's memory store against the shared token-store specification: every cache given the same
 * `TokenStore.memory()` factory is one "process".
 */
import { TokenStore } from "@tollgate/core"
import { Effect } from "effect"
import * as TokenStoreSpec from "../src/TokenStoreSpec.js"

TokenStoreSpec.run({
  name: "memory",
  namespace: Effect.sync(() => {
    const factory = TokenStore.memory()
    return { process: Effect.succeed(factory) }
  })
})
