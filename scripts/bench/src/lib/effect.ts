/**
 * Bridges from the promise-driven harness to Effect programs.
 */
import { Effect, Exit, Scope } from "effect"

export interface Scoped<A> {
  readonly value: A
  readonly close: () => Promise<void>
}

/** Builds `effect` in a fresh scope that stays open until `close`. */
export const acquire = async <A, E>(effect: Effect.Effect<A, E, Scope.Scope>): Promise<Scoped<A>> => {
  const scope = Effect.runSync(Scope.make())
  try {
    const value = await Effect.runPromise(Scope.extend(effect, scope))
    return { value, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
  } catch (error) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  }
}

/** `n` sequential runs of `body` in one fiber, with as little loop machinery as Effect allows. */
export const repeat = <E, R>(n: number, body: () => Effect.Effect<unknown, E, R>): Effect.Effect<void, E, R> =>
  Effect.loop(0, { while: (i) => i < n, step: (i) => i + 1, body, discard: true })

/** `callers` fibers, each running `perCaller` sequential runs of `body`. */
export const repeatConcurrently = <E, R>(
  callers: number,
  perCaller: number,
  body: () => Effect.Effect<unknown, E, R>
): Effect.Effect<void, E, R> =>
  Effect.forEach(Array.from({ length: callers }), () => repeat(perCaller, body), {
    concurrency: "unbounded",
    discard: true
  })
