import { Clock, Duration, Effect } from "effect"

/**
 * The longest single sleep asked of the clock. Effect's live clock treats anything above 2^31 - 1 ms
 * (about 24.8 days) as "never" because `setTimeout` cannot hold it, so longer waits are taken in chunks;
 * a chunk boundary also re-reads the clock, which absorbs clock jumps. (The same rule as core's.)
 */
export const MAX_SLEEP_CHUNK_MILLIS = 24 * 60 * 60 * 1000

/** Sleeps until the clock reads at least `targetMillis`, however far away that is. */
export const sleepUntil = (targetMillis: number): Effect.Effect<void> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const remaining = Math.ceil(targetMillis - now)
    if (remaining <= 0) return Effect.void
    return Effect.zipRight(
      Effect.sleep(Duration.millis(Math.min(remaining, MAX_SLEEP_CHUNK_MILLIS))),
      sleepUntil(targetMillis)
    )
  })

/** Sleeps for `millis`, chunked like `sleepUntil`. */
export const sleepFor = (millis: number): Effect.Effect<void> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => sleepUntil(now + millis))
