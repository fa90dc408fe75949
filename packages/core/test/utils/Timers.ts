import { Effect } from "effect"

/** Timers alive in this process, ref'd or not. */
export const count = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length

/**
 * The timer count to compare against, taken once the test runner's own timer (a throttled report of the
 * test having started, about 100 ms) has fired: otherwise it may fire mid-test and look like one of ours.
 */
export const baseline: Effect.Effect<number> = Effect.zipRight(Effect.sleep("150 millis"), Effect.sync(count))
