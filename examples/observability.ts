/**
 * What Tollgate shows an OpenTelemetry backend: `@effect/opentelemetry`'s `NodeSdk` plugged into a
 * program that calls Nora's emulator in memory (no sockets, no credentials), with in-memory exporters in
 * place of an OTLP endpoint, then a print of every span and metric it recorded. The emulator is scripted
 * to throttle one request and fail another, and the client's budget is tightened so requests queue: the
 * retries, the permit waits and the error paths all show. Run it with `pnpm tsx examples/observability.ts`.
 *
 * In a service, replace the exporters with OTLP ones (`@opentelemetry/exporter-trace-otlp-http`, ...) or
 * use `@effect/opentelemetry/Otlp`; nothing else changes. docs/observability.md lists every name.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import * as HttpClient from "@effect/platform/HttpClient"
import type { ResourceMetrics } from "@opentelemetry/sdk-metrics"
import { AggregationTemporality, DataPointType, MetricReader } from "@opentelemetry/sdk-metrics"
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { RateLimiter } from "@tollgate/core"
import * as Nora from "@tollgate/providers/nora"
import { Faults, NoraSandbox, Sandbox } from "@tollgate/testing"
import { Console, Effect, Redacted } from "effect"

/** A metric reader the program collects from when it wants, instead of on an interval. */
class OnDemandReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE })
  }
  protected override onForceFlush() {
    return Promise.resolve()
  }
  protected override onShutdown() {
    return Promise.resolve()
  }
}

/** One data point of a metric, flattened for printing and tests. */
export interface Point {
  readonly name: string
  readonly kind: "counter" | "histogram" | "gauge"
  readonly attributes: Readonly<Record<string, unknown>>
  /** The counter's or gauge's value, or the histogram's count. */
  readonly value: number
  /** A histogram's sum, in its unit (seconds). */
  readonly sum?: number
}

/** What the program recorded. */
export interface Observed {
  readonly spans: ReadonlyArray<ReadableSpan>
  readonly points: ReadonlyArray<Point>
  /** The points of a collection taken while the requests were queued for their permits. */
  readonly midRun: ReadonlyArray<Point>
}

const flatten = (metrics: ResourceMetrics): Array<Point> =>
  metrics.scopeMetrics.flatMap((scope) =>
    scope.metrics.flatMap((metric) =>
      metric.dataPoints.map((point): Point => {
        const name = metric.descriptor.name
        const attributes = point.attributes
        if (metric.dataPointType === DataPointType.HISTOGRAM) {
          const histogram = point.value as { readonly count: number; readonly sum?: number }
          return { name, kind: "histogram", attributes, value: histogram.count, sum: histogram.sum ?? 0 }
        }
        const kind = metric.dataPointType === DataPointType.GAUGE ? "gauge" : "counter"
        return { name, kind, attributes, value: point.value as number }
      })
    )
  )

/** Twelve requests to Nora's emulator through Tollgate, with telemetry exported to memory. */
export const observe = Effect.gen(function*() {
  const spanExporter = new InMemorySpanExporter()
  const reader = new OnDemandReader()
  const Telemetry = NodeSdk.layer(() => ({
    resource: { serviceName: "tollgate-observability-example" },
    spanProcessor: new SimpleSpanProcessor(spanExporter),
    metricReader: reader
  }))

  const program = Effect.gen(function*() {
    const emulator = yield* NoraSandbox.make()
    // The next two API answers are scripted: a 429 that asks for a one-second pause, then a 503.
    yield* emulator.faults.script(
      "api",
      Faults.respond({ status: 429, headers: { "retry-after": "1" } }),
      Faults.respond({ status: 503 })
    )
    const credentials = emulator.credentials
    const nora = yield* Nora.make({
      clientId: credentials.clientId,
      clientSecret: Redacted.make(credentials.clientSecret),
      organizationId: credentials.organizationId,
      baseUrl: "https://nora.sandbox.test",
      // Tighter than Nora's 60 a minute, so that twelve requests at once queue for their permits.
      limits: RateLimiter.slidingWindow({ limit: 4, window: "200 millis" })
    }).pipe(Effect.provideService(HttpClient.HttpClient, Sandbox.makeClient(() => emulator.app)))
    yield* Effect.forEach(
      Array.from({ length: 12 }, (_, i) => i),
      (i) =>
        nora.client.get(i % 2 === 0 ? "/api/forms" : "/api/forms/unknown").pipe(
          Effect.flatMap((response) => response.text),
          // Labels set around a request are added to its metrics (not to the gauge, a single count).
          Effect.tagMetrics("workload", "example")
        ),
      { concurrency: "unbounded", discard: true }
    )
  }).pipe(Effect.scoped, Effect.withSpan("example.batch"))

  // Read inside the SDK's Layer: shutting it down empties the in-memory exporter.
  const collect = Effect.map(Effect.promise(() => reader.collect()), (collected) => flatten(collected.resourceMetrics))
  return yield* Effect.gen(function*() {
    const midRun = yield* Effect.fork(Effect.delay(collect, "50 millis"))
    yield* program
    const observed: Observed = {
      spans: [...spanExporter.getFinishedSpans()],
      points: yield* collect,
      midRun: yield* midRun
    }
    return observed
  }).pipe(Effect.provide(Telemetry))
})

const describeAttributes = (attributes: Readonly<Record<string, unknown>>) =>
  Object.entries(attributes).map(([key, value]) => `${key}=${String(value)}`).join(" ")

const isTollgate = (name: string) => name.startsWith("tollgate")

/** Prints what an OpenTelemetry backend would show of Tollgate. */
export const print = (observed: Observed) =>
  Effect.gen(function*() {
    const byId = new Map(observed.spans.map((span) => [span.spanContext().spanId, span]))
    yield* Console.log(`Spans (${observed.spans.length}, the program's own "example.batch" included):`)
    for (const span of observed.spans) {
      const parent = span.parentSpanContext?.spanId
      const under = parent === undefined ? "" : ` (under ${byId.get(parent)?.name ?? "an outside span"})`
      const millis = span.duration[0] * 1000 + span.duration[1] / 1e6
      yield* Console.log(`  ${span.name}${under} ${millis.toFixed(1)} ms ${describeAttributes(span.attributes)}`)
    }
    const points = observed.points.filter((point) => isTollgate(point.name))
    yield* Console.log(`\nTollgate's metrics (${points.length} data points; Effect's own fiber metrics left out):`)
    for (const point of points) {
      const sum = point.sum === undefined ? "" : ` sum=${point.sum.toFixed(3)} s`
      yield* Console.log(
        `  ${point.name} (${point.kind}) ${describeAttributes(point.attributes)} -> ${point.value}${sum}`
      )
    }
    const waiting = observed.midRun.find((point) => point.name === "tollgate_requests_waiting")
    yield* Console.log(`\ntollgate_requests_waiting 50 ms into the batch: ${waiting?.value ?? "not yet recorded"}`)
  })

// Run as a program (not when a test imports it).
if (process.argv[1]?.endsWith("observability.ts")) {
  Effect.runPromise(Effect.flatMap(observe, print)).catch((error) => {
    console.error(error)
    process.exitCode = 1
  })
}
