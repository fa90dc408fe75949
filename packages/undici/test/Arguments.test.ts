/**
 * Issue #18's argument property for the undici client: `makeDispatcher` (and so `layerWithOptions`)
 * fed arbitrary numbers in its own option and in undici's Agent options answers with a typed
 * `InvalidArgument` or a working dispatcher: never a defect, never a synchronous throw.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import * as fc from "fast-check"
import * as UndiciHttpClient from "../src/UndiciHttpClient.js"

const anyNumber = fc.oneof(
  fc.double(),
  fc.constantFrom(Number.NaN, Infinity, -Infinity, Number.MIN_VALUE, -Number.MIN_VALUE, 0, -0, 1e300, 2 ** 53, 0.5),
  fc.integer({ min: -5, max: 50 })
)
const anyValue = fc.oneof(anyNumber, fc.string(), fc.constantFrom(undefined, null, "a\r\nb", {}))

describe("UndiciHttpClient options (issue 18)", () => {
  it.effect.prop(
    "makeDispatcher: a typed InvalidArgument or a dispatcher, whatever the numbers",
    {
      connections: fc.oneof(anyNumber, fc.constant(undefined)),
      keepAliveTimeout: anyValue,
      keepAliveMaxTimeout: anyValue,
      headersTimeout: anyValue,
      bodyTimeout: anyValue,
      pipelining: anyValue,
      maxHeaderSize: anyValue
    },
    ({ connections, ...agent }) =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(Effect.suspend(() =>
          UndiciHttpClient.makeDispatcher({
            connections,
            agent: agent as unknown as NonNullable<UndiciHttpClient.Options["agent"]>
          })
        ))
        if (Exit.isFailure(exit)) {
          const failure = Cause.failureOption(exit.cause)
          expect(failure._tag === "Some" ? failure.value._tag : Cause.pretty(exit.cause)).toBe("InvalidArgument")
        } else {
          expect(typeof exit.value.dispatch).toBe("function")
        }
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 200 } }
  )
})
