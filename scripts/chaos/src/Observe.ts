/**
 * Everything a program under test shows the world, kept for the secret scan: every log line (through a
 * logger that replaces the default one), every span with its attributes, events and end value (through
 * a recording tracer), and every value and error handed back to a caller, each rendered the ways a
 * person or a pipeline would print it. The scan looks for every secret, token and refresh token issued
 * during the run, in every form it travels in.
 */
import type { Effect as EffectType } from "effect"
import { Cause, Effect, Exit, Logger, LogLevel, Tracer } from "effect"
import { inspect } from "node:util"

/** Every way an error can be shown: message, `String()`, `JSON.stringify`, `util.inspect`, `Cause.pretty`. */
export const renderError = (error: unknown): ReadonlyArray<string> => [
  error instanceof Error ? error.message : "",
  safely(() => String(error)),
  safely(() => JSON.stringify(error) ?? ""),
  safely(() => inspect(error, { depth: Infinity, showHidden: true })),
  safely(() => Cause.pretty(Cause.fail(error), { renderErrorCause: true }))
]

/** Every way a value handed back can be shown: `String()`, `JSON.stringify`, `util.inspect`. */
export const renderValue = (value: unknown): ReadonlyArray<string> => [
  safely(() => String(value)),
  safely(() => JSON.stringify(value) ?? ""),
  safely(() => inspect(value, { depth: Infinity }))
]

function safely(render: () => string): string {
  try {
    return render()
  } catch (error) {
    return `(could not render: ${error instanceof Error ? error.message : "?"})`
  }
}

/** What a span exporter or a tracer that prints could see: name, attributes, events and how it ended. */
export const renderSpan = (span: Tracer.Span): string => {
  const parts = [span.name, inspect([...span.attributes], { depth: Infinity })]
  const events: unknown = (span as unknown as { readonly events?: unknown }).events
  if (events !== undefined) parts.push(inspect(events, { depth: Infinity }))
  if (span.status._tag === "Ended") {
    const exit = span.status.exit
    parts.push(safely(() => inspect(exit, { depth: Infinity })))
    parts.push(safely(() => JSON.stringify(exit) ?? ""))
    if (Exit.isFailure(exit)) parts.push(safely(() => Cause.pretty(exit.cause, { renderErrorCause: true })))
  }
  return parts.join("\n")
}

/** A recorder of one program's output. */
export class Observer {
  readonly spans: Array<Tracer.Span> = []
  readonly lines: Array<string> = []
  readonly texts: Array<string> = []

  /** Runs `effect` with the recording logger (replacing the default one, all levels) and tracer. */
  observe<A, E, R>(effect: EffectType.Effect<A, E, R>): EffectType.Effect<A, E, R> {
    const lines = this.lines
    const spans = this.spans
    const logger = Logger.make<unknown, void>((options) => {
      lines.push(Logger.logfmtLogger.log(options))
      lines.push(safely(() => JSON.stringify(Logger.structuredLogger.log(options))))
      if (!Cause.isEmpty(options.cause)) lines.push(Cause.pretty(options.cause, { renderErrorCause: true }))
    })
    return Effect.flatMap(Effect.tracer, (base) => {
      const tracer = Tracer.make({
        span: (name, parent, context, links, startTime, kind, options) => {
          const span = base.span(name, parent, context, links, startTime, kind, options)
          spans.push(span)
          return span
        },
        context: (f, fiber) => base.context(f, fiber)
      })
      return effect.pipe(
        Effect.withTracer(tracer),
        Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
        Logger.withMinimumLogLevel(LogLevel.All)
      )
    })
  }

  value(value: unknown): void {
    this.texts.push(...renderValue(value))
  }

  error(error: unknown): void {
    this.texts.push(...renderError(error))
  }

  /** Everything observed, spans rendered now (outside any fiber, where nothing redacts for them). */
  rendered(): ReadonlyArray<string> {
    return [...this.texts, ...this.lines, ...this.spans.map(renderSpan)]
  }
}

/** Every character of `value` as a JSON `\\u00xx` escape (lowercase hex, as most encoders write). */
const jsonEscaped = (value: string): string =>
  [...value].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`).join("")

/** Percent-encoding with lowercase hex digits (`%2b%2f`, as .NET's `UrlEncode` writes). */
const lowerPercent = (value: string): string =>
  encodeURIComponent(value).replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase())

/**
 * The secrets, tokens and refresh tokens to look for. A secret is searched as it is, percent-encoded
 * (upper and lower hex), form-encoded, JSON-escaped (as needed and every character), base64-encoded,
 * and with its client id as HTTP Basic credentials (the ways it travels, and the ways a server echoes
 * it); a token as it is.
 */
export class Needles {
  private readonly forms = new Set<string>()
  readonly secrets = new Set<string>()
  readonly tokens = new Set<string>()

  secret(value: string): void {
    this.secrets.add(value)
    for (
      const form of [
        value,
        encodeURIComponent(value),
        new URLSearchParams([["", value]]).toString().slice(1),
        JSON.stringify(value).slice(1, -1),
        Buffer.from(value).toString("base64"),
        lowerPercent(value),
        lowerPercent(value).replace(/%20/g, "+"),
        jsonEscaped(value),
        jsonEscaped(value).toUpperCase().replace(/\\U/g, "\\u")
      ]
    ) if (form.length >= 8) this.forms.add(form)
  }

  /** A secret with the client id it goes with: also searched as HTTP Basic credentials, raw and form-encoded. */
  credentials(id: string, secret: string): void {
    this.secret(secret)
    const form = (v: string) => new URLSearchParams([["", v]]).toString().slice(1)
    this.forms.add(Buffer.from(`${id}:${secret}`).toString("base64"))
    this.forms.add(Buffer.from(`${form(id)}:${form(secret)}`).toString("base64"))
  }

  token(value: string): void {
    if (value.length < 12 || this.tokens.has(value)) return
    this.tokens.add(value)
    this.forms.add(value)
  }

  get size(): number {
    return this.forms.size
  }

  /** How many (text, needle) pairs hit, and the first few, shortened. */
  scan(texts: ReadonlyArray<string>): { readonly leaks: number; readonly examples: ReadonlyArray<string> } {
    // Joined in chunks of bounded size: one search per needle per chunk, a text search only on a hit.
    const chunks: Array<{ readonly joined: string; readonly texts: ReadonlyArray<string> }> = []
    let current: Array<string> = []
    let size = 0
    for (const text of texts) {
      current.push(text)
      size += text.length
      if (size > 16_000_000) {
        chunks.push({ joined: current.join("\u0000"), texts: current })
        current = []
        size = 0
      }
    }
    chunks.push({ joined: current.join("\u0000"), texts: current })
    let leaks = 0
    const examples: Array<string> = []
    for (const form of this.forms) {
      for (const chunk of chunks) {
        if (!chunk.joined.includes(form)) continue
        for (const text of chunk.texts) {
          if (!text.includes(form)) continue
          leaks++
          if (examples.length < 3) {
            const at = text.indexOf(form)
            examples.push(`${form.slice(0, 12)}… in: ${text.slice(Math.max(0, at - 200), at + 60)}`)
          }
        }
      }
    }
    return { leaks, examples }
  }
}

const tokenKey = /token$/i
const jwtLike = /[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/g

/** Collects every token-named string of a JSON text (and any JWT in it, JSON or not). */
export const harvestText = (text: string, sink: (token: string) => void): void => {
  for (const match of text.match(jwtLike) ?? []) sink(match)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return
  }
  const walk = (value: unknown, key: string | undefined): void => {
    if (typeof value === "string") {
      if (key !== undefined && tokenKey.test(key)) sink(value)
    } else if (Array.isArray(value)) {
      for (const item of value) walk(item, key)
    } else if (typeof value === "object" && value !== null) {
      for (const [k, v] of Object.entries(value)) walk(v, k)
    }
  }
  walk(parsed, undefined)
}
