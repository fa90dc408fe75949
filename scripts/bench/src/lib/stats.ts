/**
 * Summaries of repeated measurements. The machine is shared, so a single run proves nothing: every
 * figure is the median of several rounds, shown with its spread (the smallest and largest round).
 */

export interface Summary {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly samples: ReadonlyArray<number>
}

export const median = (values: ReadonlyArray<number>): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

export const summarize = (values: ReadonlyArray<number>): Summary => ({
  median: median(values),
  min: values.length === 0 ? Number.NaN : Math.min(...values),
  max: values.length === 0 ? Number.NaN : Math.max(...values),
  samples: values
})

/**
 * Ratios of two series measured side by side: round i of `a` against round i of `b`. Pairing the rounds
 * cancels most of the drift of a shared machine (a slow round is slow for both).
 */
export const pairedRatios = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): Summary => {
  const ratios: Array<number> = []
  for (let i = 0; i < Math.min(a.length, b.length); i++) ratios.push(a[i]! / b[i]!)
  return summarize(ratios)
}
