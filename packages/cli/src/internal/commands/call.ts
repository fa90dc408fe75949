/**
 * `tollgate call <provider> <METHOD> <path>`: one authenticated, rate-limited request. The body goes to
 * stdout and the status line to stderr, or everything as one JSON document on stdout with `--json`.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Headers from "@effect/platform/Headers"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import type * as HttpMethod from "@effect/platform/HttpMethod"
import { Console, Effect, FiberRef, Option, Redacted } from "effect"
import { STATUS_CODES } from "node:http"
import * as Report from "../../Report.js"
import * as Errors from "../errors.js"
import * as Flags from "../flags.js"
import * as Help from "../help.js"
import * as Session from "../session.js"
import * as Stdio from "../stdio.js"

const defaultTimeScale = 1

const methods: ReadonlyArray<HttpMethod.HttpMethod> = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

// Case-insensitive (`get` works), so a text argument checked here rather than a choice.
const method = Args.text({ name: "METHOD" }).pipe(
  Args.withDescription(`The HTTP method: ${methods.join(", ")} (in any case).`),
  Args.mapEffect((value) => {
    const upper = value.toUpperCase() as HttpMethod.HttpMethod
    return methods.includes(upper)
      ? Effect.succeed(upper)
      : Effect.fail(
        HelpDoc.p(`<METHOD> must be one of ${methods.join(", ")}, got ${JSON.stringify(value.slice(0, 20))}`)
      )
  })
)

const headerName = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

const headers = Options.text("header").pipe(
  Options.withAlias("H"),
  Options.repeated,
  Options.mapEffect((values) =>
    Effect.forEach(values, (value) => {
      const colon = value.indexOf(":")
      const name = colon === -1 ? "" : value.slice(0, colon).trim()
      return colon === -1 || !headerName.test(name)
        ? Flags.invalid("--header expects name:value, like --header 'Accept: application/json'")
        : Effect.succeed([name, value.slice(colon + 1).trim()] as const)
    })
  ),
  Options.withDescription("A request header, name:value. Repeat it for several.")
)

const data = Options.text("data").pipe(
  Options.withAlias("d"),
  Options.optional,
  Options.withDescription(
    "A request body: the text itself, @file to send a file's bytes, or - to read standard input. " +
      "Content-Type defaults to application/json when the body parses as JSON, text/plain otherwise."
  )
)

const readBody = (
  data: string,
  secretStdin: boolean
): Effect.Effect<Uint8Array, Errors.UsageError, Session.Environment> =>
  Effect.gen(function*() {
    const usage = (message: string) => new Errors.UsageError({ message })
    if (data === "-") {
      if (secretStdin) return yield* usage("--data - and --secret-stdin cannot both read standard input")
      const stdio = yield* Stdio.Stdio
      const text = yield* stdio.readStdin.pipe(
        Effect.mapError((error) => usage(`--data -: could not read standard input (${error.reason})`))
      )
      return new TextEncoder().encode(text)
    }
    if (!data.startsWith("@")) return new TextEncoder().encode(data)
    const file = data.slice(1)
    const fs = yield* FileSystem.FileSystem
    return yield* fs.readFile(file).pipe(
      Effect.mapError((error) =>
        usage(
          `--data @${file}: cannot read the file (${
            error._tag === "SystemError" ? error.reason : error.message.split("\n")[0]
          })`
        )
      )
    )
  })

const decodeUtf8 = (bytes: Uint8Array): string | undefined => {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes)
  } catch {
    return undefined
  }
}

const parseJson = (text: string | undefined): { readonly value: unknown } | undefined => {
  if (text === undefined) return undefined
  try {
    return { value: JSON.parse(text) }
  } catch {
    return undefined
  }
}

// Milliseconds to a tenth: finer would be noise.
const round = (millis: number): number => Math.round(millis * 10) / 10

const guessContentType = (body: Uint8Array): string =>
  parseJson(decodeUtf8(body)) === undefined ? "text/plain; charset=utf-8" : "application/json"

/** The response as JSON: the body parsed when it is JSON, as text when it is text, base64 otherwise. */
export const responseJson = (
  response: HttpClientResponse.HttpClientResponse,
  bytes: Uint8Array
): Effect.Effect<Record<string, unknown>> =>
  Effect.map(FiberRef.get(Headers.currentRedactedNames), (redacted) => {
    const text = decodeUtf8(bytes)
    const json = parseJson(text)
    const body = bytes.length === 0
      ? { bodyFormat: "empty", body: null }
      : json !== undefined
      ? { bodyFormat: "json", body: json.value }
      : text !== undefined
      ? { bodyFormat: "text", body: text }
      : { bodyFormat: "base64", body: Buffer.from(bytes).toString("base64") }
    const shown = Object.fromEntries(
      Object.entries(Headers.redact(response.headers, redacted)).map(([name, value]) => [
        name,
        Redacted.isRedacted(value) ? "<redacted>" : value
      ])
    )
    return { status: response.status, statusText: STATUS_CODES[response.status] ?? "", headers: shown, ...body }
  })

export const command = Command.make(
  "call",
  {
    provider: Flags.provider,
    method,
    path: Flags.path("The path on the provider's base URL, with any query string, e.g. /api/forms."),
    headers,
    data,
    json: Options.boolean("json").pipe(
      Options.withDescription(
        "Print one JSON document on stdout: provider, request, status, response headers (credentials " +
          "redacted), body (parsed when it is JSON), timing and retries. Nothing goes to stderr unless it fails."
      )
    ),
    target: Flags.target(defaultTimeScale),
    oauth2: Flags.oauth2({ baseUrl: true })
  },
  (input) =>
    Effect.gen(function*() {
      const body = Option.isSome(input.data) ? yield* readBody(input.data.value, input.oauth2.secretStdin) : undefined
      const session = yield* Session.open({ ...input, command: "call", defaultTimeScale }, "api")

      const tokenStart = performance.now()
      yield* session.built.tokens.get
      const tokenMillis = performance.now() - tokenStart

      let request = HttpClientRequest.make(input.method)(input.path)
      for (const [name, value] of input.headers) request = HttpClientRequest.setHeader(request, name, value)
      if (body !== undefined) {
        const contentType = input.headers.find(([name]) => name.toLowerCase() === "content-type")?.[1] ??
          guessContentType(body)
        request = HttpClientRequest.bodyUint8Array(request, body, contentType)
      }
      const wireBefore = session.wire.events.length
      const requestStart = performance.now()
      const response = yield* session.built.client.execute(request)
      const bytes = new Uint8Array(yield* response.arrayBuffer)
      const requestMillis = performance.now() - requestStart
      // Token renewals after a 401 and waits after a 429 are retries the client made; nothing else is.
      const retriedAfter = session.wire.events.slice(wireBefore)
        .filter((event) => event.status === 401 || event.status === 429)
        .map((event) => event.status)

      if (input.json) {
        yield* Console.log(JSON.stringify(
          {
            provider: input.provider,
            sandbox: session.sandbox,
            request: { method: input.method, path: input.path },
            ...(yield* responseJson(response, bytes)),
            timing: { tokenMillis: round(tokenMillis), requestMillis: round(requestMillis) },
            retriedAfter
          },
          null,
          2
        ))
      } else {
        if (bytes.length > 0) {
          const text = new TextDecoder().decode(bytes)
          yield* Console.log(text.endsWith("\n") ? text.slice(0, -1) : text)
        }
        const notes = [
          `token ${Report.formatDuration(tokenMillis)}`,
          ...(retriedAfter.length > 0 ? [`retried after ${retriedAfter.join(", ")}`] : [])
        ]
        yield* Console.error(
          `${response.status} ${STATUS_CODES[response.status] ?? ""}`.trim() +
            `  ${input.method} ${input.path}  ${Report.formatDuration(requestMillis)} (${notes.join(", ")})`
        )
      }
      if (response.status < 200 || response.status >= 300) {
        return yield* new Errors.Reported({ exitCode: Errors.exitCodes.failure })
      }
    }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(Help.describe([
    "Send one request through the provider's client: base URL and fixed headers, a rate-limit permit, a " +
    "bearer token (renewed and retried once on 401), 429 handling.",
    "The response body goes to stdout; the status and timing to stderr (with --json, one JSON document on " +
    "stdout). The exit code is 1 unless the status is 2xx."
  ], [
    "tollgate call --sandbox nora GET /api/forms",
    "tollgate call --sandbox nora POST /api/forms/frm_motor_quote/submissions --data '{\"driverAge\": 42}'",
    "tollgate call --sandbox nomba GET /v1/accounts --json",
    "tollgate call oauth2 --token-url https://auth.example.com/token --client-id me --base-url https://api.example.com GET /v1/me"
  ]))
)
