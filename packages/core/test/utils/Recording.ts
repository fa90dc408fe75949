import { Cause, Effect, Exit, Logger, LogLevel, Tracer } from "effect"
import { inspect } from "node:util"

/** Every span started while the tracer is in use, recorded as the real tracer builds it. */
export const tracer = Effect.map(Effect.tracer, (base) => {
  const spans: Array<Tracer.Span> = []
  const recording = Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = base.span(name, parent, context, links, startTime, kind, options)
      spans.push(span)
      return span
    },
    context: (f, fiber) => base.context(f, fiber)
  })
  return { tracer: recording, spans }
})

/**
 * Everything a span exporter ships: name, attributes, events, and for a failed span its cause (exporters
 * record it as the exception and status message). A successful exit's value is never exported.
 */
export const renderSpan = (span: Tracer.Span): string => {
  const parts = [span.name, inspect([...span.attributes], { depth: Infinity })]
  const events: unknown = (span as unknown as { readonly events?: unknown }).events
  if (events !== undefined) parts.push(inspect(events, { depth: Infinity }))
  if (span.status._tag === "Ended" && Exit.isFailure(span.status.exit)) {
    parts.push(inspect(span.status.exit, { depth: Infinity }))
    parts.push(Cause.pretty(span.status.exit.cause, { renderErrorCause: true }))
  }
  return parts.join("\n")
}

/** A logger that keeps every line in three renderings (logfmt, structured JSON, the pretty cause). */
export const logger = Effect.sync(() => {
  const lines: Array<string> = []
  const recording = Logger.make<unknown, void>((options) => {
    lines.push(Logger.logfmtLogger.log(options))
    lines.push(JSON.stringify(Logger.structuredLogger.log(options)))
    if (!Cause.isEmpty(options.cause)) lines.push(Cause.pretty(options.cause, { renderErrorCause: true }))
  })
  const provide = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    effect.pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, recording)),
      Logger.withMinimumLogLevel(LogLevel.All)
    )
  return { lines, provide }
})

/** Every way an error can be shown to a person or a log pipeline. */
export const renderError = (error: unknown): ReadonlyArray<string> => [
  error instanceof Error ? error.message : "",
  String(error),
  JSON.stringify(error),
  inspect(error, { depth: Infinity, showHidden: true }),
  Cause.pretty(Cause.fail(error), { renderErrorCause: true })
]
