/**
 * Waits of an emulator answering in memory that end when the client aborts the request, as a server stops
 * answering a request whose connection the client closed.
 */
import { Effect } from "effect"
import { VirtualClock } from "../VirtualTime.js"

/**
 * Why an emulator's wait ended before its time: the client aborted the request (see `sleep`). Only an
 * app's direct entry fails with it, and `dispatch` turns it into the transport error a client sees.
 */
export class Aborted {
  readonly _tag = "Aborted"
}

const aborted = new Aborted()

/** Fails with `Aborted` once `signal` aborts. */
export const whenAborted = (signal: AbortSignal): Effect.Effect<never, Aborted> =>
  Effect.async((resume) => {
    if (signal.aborted) return resume(Effect.fail(aborted))
    const abort = () => resume(Effect.fail(aborted))
    signal.addEventListener("abort", abort, { once: true })
    return Effect.sync(() => signal.removeEventListener("abort", abort))
  })

/**
 * Waits `millis` (positive) on the current clock, or until `signal` aborts: then the wait is over and
 * fails with `Aborted`, as a server stops answering a request whose connection the client closed. On the
 * virtual clock the wait is one entry in its queue, taken out on abort; on any other (`TestClock`, the
 * live one) the sleep races the signal. Without a signal (a loopback request) it is a plain sleep.
 */
export const sleep = (millis: number, signal: AbortSignal | undefined): Effect.Effect<void, Aborted> =>
  signal === undefined
    ? Effect.sleep(millis)
    : !Number.isFinite(millis)
    ? hang(signal)
    : Effect.clockWith((clock) =>
      clock instanceof VirtualClock
        ? Effect.async<void, Aborted>((resume) => {
          if (signal.aborted) return resume(Effect.fail(aborted))
          const abort = () => {
            clock.cancel(scheduled)
            resume(Effect.fail(aborted))
          }
          const scheduled = clock.schedule(millis, () => {
            signal.removeEventListener("abort", abort)
            resume(Effect.void)
          })
          signal.addEventListener("abort", abort, { once: true })
          return Effect.sync(() => {
            clock.cancel(scheduled)
            signal.removeEventListener("abort", abort)
          })
        })
        : Effect.raceFirst(Effect.sleep(millis), whenAborted(signal))
    )

/** Waits for ever, or until `signal` aborts (then fails with `Aborted`): a request never answered. */
export const hang = (signal: AbortSignal | undefined): Effect.Effect<never, Aborted> =>
  signal === undefined ? Effect.never : whenAborted(signal)
