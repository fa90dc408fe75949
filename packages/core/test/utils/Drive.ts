import { Effect, Exit } from "effect"
import type * as ApiClient from "../../src/ApiClient.js"

/** `total` GETs by `concurrency` callers, each taking the next request when its last one is done: the failures. */
export const drive = (client: ApiClient.Service, total: number, concurrency: number) =>
  Effect.gen(function*() {
    let next = 0
    const failures: Array<unknown> = []
    const caller = Effect.gen(function*() {
      while (next < total) {
        next++
        const exit = yield* Effect.exit(Effect.flatMap(client.get("/x"), (response) => response.text))
        if (Exit.isFailure(exit)) failures.push(exit.cause)
      }
    })
    yield* Effect.all(Array.from({ length: concurrency }, () => caller), { concurrency: "unbounded", discard: true })
    return failures
  })
