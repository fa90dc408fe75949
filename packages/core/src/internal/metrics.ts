import type { MetricBoundaries } from "effect"
import { Metric, MetricKey, MetricLabel } from "effect"

const labels = (tags: Readonly<Record<string, string>>) =>
  Object.entries(tags).map(([key, value]) => MetricLabel.make(key, value))

/**
 * A counter with its tags fixed up front. `Metric.tagged` merges labels into a new array on every
 * update, which defeats Effect's hook cache and builds a new metric key per request; a key tagged once
 * is looked up once.
 */
export const counter = (name: string, description: string, tags: Readonly<Record<string, string>>) =>
  Metric.fromMetricKey(
    MetricKey.taggedWithLabels(MetricKey.counter(name, { description, incremental: true }), labels(tags))
  )

/** A histogram with its tags fixed up front (see `counter`). */
export const histogram = (
  name: string,
  boundaries: MetricBoundaries.MetricBoundaries,
  description: string,
  tags: Readonly<Record<string, string>>
) => Metric.fromMetricKey(MetricKey.taggedWithLabels(MetricKey.histogram(name, boundaries, description), labels(tags)))
