/**
 * Attempts sent and never answered. A request the client gave up on (its timeout, or its fiber was
 * interrupted) after its bytes may have left can still reach the server at any later instant, and the
 * server counts it then. Its permit must not come back on the usual schedule (one window after the
 * request ended): the lanes keep it in flight for one more period of the policy before settling it, so a
 * request that arrives late cannot share a server window with the permits that follow it.
 *
 * The ApiClient turns a timed-out attempt into a value before the limiter sees how it ended; it wraps
 * that value in `Unanswered` so the permit's exit says what happened, and unwraps it outside.
 */
import { Cause } from "effect"
import type { Exit } from "effect"

/** The result of an attempt that was sent and not answered, carried through the permit as a failure. */
export class Unanswered<A> {
  constructor(readonly value: A) {}
}

/**
 * Whether an effect that held a permit ended without an answer after it started: interrupted, timed out
 * (a `Timeout` of Tollgate's or a user's own with that tag), or marked `Unanswered`.
 */
export const isUnanswered = (exit: Exit.Exit<unknown, unknown>): boolean => {
  if (exit._tag === "Success") return false
  if (Cause.isInterrupted(exit.cause)) return true
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "None") return false
  const error = failure.value
  return error instanceof Unanswered ||
    (typeof error === "object" && error !== null && (error as { readonly _tag?: unknown })._tag === "Timeout")
}
