/**
 * What every scenario receives: the run mode and a way to report progress.
 */

export interface Context {
  /** `--quick`: tiny sizes, one measured round, for CI. */
  readonly quick: boolean
  /** Progress for the person waiting (stderr, so stdout stays the tables). */
  readonly log: (message: string) => void
}

/**
 * A full collection when Node runs with --expose-gc (the memory children do). `twice` for heap
 * measurements: the first collection may only schedule finalizers.
 */
export const collectGarbage = (twice = false): void => {
  if (typeof globalThis.gc === "function") {
    globalThis.gc()
    if (twice) globalThis.gc()
  }
}

export const sleep = (millis: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, millis))

export const errorMessage = (error: unknown): string => {
  if (error instanceof Error) return error.message.split("\n")[0]!.slice(0, 160)
  return String(error).slice(0, 160)
}
