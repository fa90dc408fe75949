import * as RateLimiterStore from "@tollgate/core/RateLimiterStore"
import { Effect } from "effect"
import * as RateLimiterStoreSpec from "../src/RateLimiterStoreSpec.js"

RateLimiterStoreSpec.run({ name: "memory", store: Effect.succeed(RateLimiterStore.memory) })
