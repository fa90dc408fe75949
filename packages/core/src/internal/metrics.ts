/**
 * Tollgate's metrics, each named once here. They are updated synchronously on the metric's own hook (a
 * number added to a counter, a bucket counted in a histogram): no Effect step, no allocation, so a
 * request pays a few additions for its metrics. Effect's metric registry reads the hooks whenever a
 * snapshot is taken (an exporter's interval, `Metric.value`), so what is published is always current.
 * Labels set around the caller with `Effect.tagMetrics` are added, as `Metric.update` adds them.
 */
import { Metric, MetricBoundaries, MetricKey, MetricLabel } from "effect"
import type { MetricKeyType, MetricState } from "effect"

type Labels = ReadonlyArray<MetricLabel.MetricLabel>

const noLabels: Labels = []

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

/** A gauge with its tags fixed up front (see `counter`). */
export const gauge = (name: string, description: string, tags: Readonly<Record<string, string>>) =>
  Metric.fromMetricKey(MetricKey.taggedWithLabels(MetricKey.gauge(name, { description }), labels(tags)))

type Counter = Metric.Metric<
  MetricKeyType.MetricKeyType.Counter<number>,
  number,
  MetricState.MetricState.Counter<number>
>
type Histogram = Metric.Metric<MetricKeyType.MetricKeyType.Histogram, number, MetricState.MetricState.Histogram>

/** The names, for documentation and tests. */
export const names = {
  requests: "tollgate_requests_total",
  retries: "tollgate_retries_total",
  duration: "tollgate_request_duration_seconds",
  permitWait: "tollgate_permit_wait_seconds",
  waiting: "tollgate_requests_waiting"
} as const

/**
 * The buckets of the OpenTelemetry HTTP client duration (`http.client.request.duration`), extended to
 * five minutes: a request through Tollgate includes its waits for a permit and for the server's reset.
 */
export const durationBoundaries = MetricBoundaries.fromIterable([
  0.005,
  0.01,
  0.025,
  0.05,
  0.075,
  0.1,
  0.25,
  0.5,
  0.75,
  1,
  2.5,
  5,
  7.5,
  10,
  30,
  60,
  300
])

const permitWaitBoundaries = MetricBoundaries.exponential({ start: 0.001, factor: 4, count: 12 })

const statusClass = (status: number): string =>
  status >= 500 ? "5xx" : status >= 400 ? "4xx" : status >= 300 ? "3xx" : status >= 200 ? "2xx" : "1xx"

/** Why a retry happened: the label of `tollgate_retries_total`. */
export type RetryReason = "401" | "429" | "transient"

/** The metrics of one client, labelled with its provider. */
export class ClientMetrics {
  private readonly responses = new Map<number, Counter>()
  private readonly durations = new Map<string | number, Histogram>()
  private readonly retryCounters: Record<RetryReason, Counter>
  private readonly waitHistogram: Histogram
  private readonly waitingGauge: Metric.Metric.Gauge<number>

  constructor(private readonly provider: string) {
    const retries = (reason: RetryReason) => counter(names.retries, "Requests retried, by reason", { provider, reason })
    this.retryCounters = { "401": retries("401"), "429": retries("429"), transient: retries("transient") }
    this.waitHistogram = histogram(
      names.permitWait,
      permitWaitBoundaries,
      "Time requests that queued spent waiting for a rate-limit permit",
      { provider }
    )
    this.waitingGauge = gauge(names.waiting, "Requests waiting for a rate-limit permit now", { provider })
  }

  /** One response, of any attempt. */
  response(status: number, tags: Labels): void {
    let metric = this.responses.get(status)
    if (metric === undefined) {
      metric = counter(names.requests, "Responses to requests sent through Tollgate, each attempt counted", {
        provider: this.provider,
        status_class: statusClass(status),
        status_code: String(status)
      })
      this.responses.set(status, metric)
    }
    metric.unsafeUpdate(1, tags)
  }

  /** A request ended, with its final response's status or its error's tag, after `millis`. */
  finished(outcome: number | string, millis: number, tags: Labels): void {
    let metric = this.durations.get(outcome)
    if (metric === undefined) {
      const tagged: Record<string, string> = typeof outcome === "number"
        ? { provider: this.provider, status_class: statusClass(outcome), status_code: String(outcome) }
        : { provider: this.provider, error_type: outcome }
      metric = histogram(
        names.duration,
        durationBoundaries,
        "Requests through Tollgate from the call to the response or error, waits and retries included",
        tagged
      )
      this.durations.set(outcome, metric)
    }
    metric.unsafeUpdate(Math.max(0, millis) / 1000, tags)
  }

  retried(reason: RetryReason, tags: Labels): void {
    this.retryCounters[reason].unsafeUpdate(1, tags)
  }

  /** A request that queued got its permit after `millis`. */
  waited(millis: number, tags: Labels): void {
    this.waitHistogram.unsafeUpdate(millis / 1000, tags)
  }

  /**
   * A request started (`+1`) or stopped (`-1`) waiting for a permit. The gauge is moved, not set, so
   * clients of one provider add up; it takes no caller labels, which would split one count in two.
   */
  queued(delta: 1 | -1): void {
    this.waitingGauge.unsafeModify(delta, noLabels)
  }
}
