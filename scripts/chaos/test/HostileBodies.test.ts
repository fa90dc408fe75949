/**
 * Hostile answers over real sockets, for all four providers: a server in front of each emulator answers
 * the next few token (or API) requests itself before passing traffic through again, with
 * - bodies beyond the token body cap (`maxBodyBytes`, 1 MiB): a 2 MiB "token", a 2 MiB error page;
 * - bodies that trickle one byte at a time past the client's timeout;
 * - the request echoed back in every encoding a server can write: the raw form body and `Authorization`
 *   header, the client secret percent-encoded in upper and lower hex, form-encoded, as JSON `\u00xx`
 *   escapes, base64 of `id:secret` and inside a URL's user-info, under 200, 400, 401 and 500.
 * Every request must end in success or a typed error, none lost, the client recovering once the server
 * behaves; the secret (every form above) and every token must appear in no error rendering (message,
 * `String`, JSON, `inspect` with causes, `Cause.pretty`), log line or span.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import type { Scope } from "effect"
import type { Tracer } from "effect"
import { Duration, Effect, Exit, Predicate } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { inject } from "vitest"
import * as Kits from "../src/Kits.js"
import type { Needles } from "../src/Observe.js"
import { Observer, renderSpan } from "../src/Observe.js"
import { Report } from "../src/Report.js"
import * as Traffic from "../src/Traffic.js"

const kits = Kits.all()
const report = new Report()
for (const kit of kits) report.needles.credentials(kit.clientId, kit.secrets[0]!)
afterAll(() => report.write(inject("chaosResults")))

const MiB = 1024 * 1024

interface Received {
  readonly method: string
  readonly url: string
  readonly headers: Http.IncomingHttpHeaders
  readonly body: string
}

/** A hostile answer, written straight to the socket. */
type Answer = (kit: Kits.Kit, request: Received, response: Http.ServerResponse) => void

/**
 * Every encoding of what the server received a server might echo back: the secret a token endpoint was
 * sent (with its client id), or the bearer token an API was sent.
 */
const echoes = (id: string, secret: string, request: Received): Record<string, string> => {
  const form = (v: string) => new URLSearchParams([["", v]]).toString().slice(1)
  return {
    raw: secret,
    body: request.body,
    authorization: String(request.headers.authorization ?? ""),
    headers: JSON.stringify(request.headers),
    upperPercent: encodeURIComponent(secret),
    lowerPercent: encodeURIComponent(secret).replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()),
    formPlus: form(secret),
    jsonEscapes: [...secret].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`).join(""),
    basic: Buffer.from(`${id}:${secret}`).toString("base64"),
    basicForm: Buffer.from(`${form(id)}:${form(secret)}`).toString("base64"),
    userInfo: `https://${encodeURIComponent(id)}:${encodeURIComponent(secret)}@example.com/`,
    userInfoRaw: `https://${id}:${secret}@example.com/`
  }
}

let echoed = 0
/** Echoes under `statuses` in turn. An API's 2xx is left out: its body is the caller's own to read. */
const echo = (statuses: ReadonlyArray<number>): Answer => (kit, request, response) => {
  const bearer = /^bearer (.*)$/i.exec(String(request.headers.authorization ?? ""))?.[1]
  const all = bearer === undefined ? echoes(kit.clientId, kit.secrets[0]!, request) : echoes("bearer", bearer, request)
  const status = statuses[echoed++ % statuses.length]!
  const body = JSON.stringify({
    error: "invalid_request",
    error_description: `bad request: ${request.body} ${all.authorization} ${all.lowerPercent} ${all.userInfoRaw}`,
    message: `You sent ${all.upperPercent} / ${all.formPlus} / ${all.basic}`,
    code: "99",
    description: `echo ${all.userInfo}`,
    token: all.basicForm,
    access_token: `${all.raw}`,
    received: all
  }).slice(0, -1) + `,"escaped":"${all.jsonEscapes}"}`
  response.writeHead(status, {
    "content-type": "application/json",
    "www-authenticate": `Basic realm="${all.basic}"`,
    "x-echo": all.formPlus
  })
  response.end(body)
}

const huge = (status: number, contentType: string, prefix: string, suffix: string): Answer => (_, __, response) => {
  response.writeHead(status, { "content-type": contentType })
  const chunk = "A".repeat(64 * 1024)
  response.write(prefix)
  for (let written = 0; written < 2 * MiB; written += chunk.length) response.write(chunk)
  response.end(suffix)
}

/** Headers at once, then one byte every 100 ms for 6 s (or until the client hangs up). */
const trickle = (status: number, body: string): Answer => (_, __, response) => {
  response.writeHead(status, { "content-type": "application/json" })
  let i = 0
  const timer = setInterval(() => {
    if (response.destroyed || i >= 60) {
      clearInterval(timer)
      if (!response.destroyed) response.end()
      return
    }
    response.write(body[i % body.length] ?? " ")
    i++
  }, 100)
  response.on("close", () => clearInterval(timer))
}

/**
 * An observer of what Tollgate shows, for an API that echoes: the responses the client hands back (the
 * server's own status, headers and body) and the caller's own `ResponseError`s (`filterStatusOk` builds
 * them in the caller's code from such a response) hold what the server wrote, which is the caller's to
 * print or not. Tollgate's own errors, its logs and its spans are scanned.
 */
class TollgateObserver extends Observer {
  callerErrors = 0
  override value(): void {}
  /**
   * Spans without the value a successful one ended with: `tollgate.request` ends with the response it
   * hands back, the same object the caller gets (no exporter we know of sends it; see `echoedInSpans`).
   */
  override rendered(): ReadonlyArray<string> {
    return [
      ...this.texts,
      ...this.lines,
      ...this.spans.map((span) =>
        span.status._tag === "Ended" && Exit.isSuccess(span.status.exit)
          ? renderSpan({ ...span, status: { ...span.status, exit: Exit.void } } as Tracer.Span)
          : renderSpan(span)
      )
    ]
  }
  /** Renderings of whole spans, success values included, that hold an echoed secret or token. */
  echoedInSpans(needles: Needles): number {
    return needles.scan(this.spans.map(renderSpan)).leaks
  }
  override error(error: unknown): void {
    if (Predicate.isTagged(error, "ResponseError") && !Predicate.hasProperty(error, "provider")) {
      this.callerErrors++
      return
    }
    super.error(error)
  }
}

interface Row {
  readonly fault: string
  readonly target: "token" | "api"
  readonly answers: ReadonlyArray<Answer>
  /**
   * The client answers again within this row's few seconds. Not after a token endpoint that called the
   * credentials wrong or its answer malformed: the token cache then cools down for longer than a loopback
   * row lasts (recovery from those is checked in virtual time by the token rows).
   */
  readonly recovers: boolean
  /** The answers carry what the client sent: scanned as Tollgate shows them (`TollgateObserver`). */
  readonly echoes?: boolean | undefined
}

const rows: ReadonlyArray<Row> = [
  {
    fault: "token body huge (2 MiB, past maxBodyBytes)",
    target: "token",
    answers: [
      huge(200, "application/json", "{\"access_token\":\"", "\",\"token\":\"x\",\"expires_in\":3600}"),
      huge(500, "text/html", "<html><body>", "</body></html>"),
      huge(200, "application/json", "{\"padding\":\"", "\"}")
    ],
    recovers: false
  },
  {
    fault: "api body huge (2 MiB error page)",
    target: "api",
    answers: [huge(503, "text/html", "<html><body>", "</body></html>"), huge(500, "text/html", "<html>", "</html>")],
    recovers: true
  },
  {
    fault: "token body trickles past the timeout",
    target: "token",
    answers: [trickle(200, "{\"access_token\":\"trickle"), trickle(500, "<html>slow</html>")],
    recovers: true
  },
  {
    fault: "api body trickles past the timeout",
    target: "api",
    answers: [trickle(200, "{\"data\":[]}"), trickle(503, "<html>slow</html>")],
    recovers: true
  },
  {
    fault: "token endpoint echoes the request in every encoding",
    target: "token",
    answers: [400, 401, 500, 200].map(() => echo([400, 401, 500, 200])),
    recovers: false
  },
  {
    fault: "api echoes the request in every encoding",
    target: "api",
    answers: [400, 401, 500, 502].map(() => echo([400, 401, 500, 502])),
    recovers: true,
    echoes: true
  }
]

/** A token request carries no bearer token (Nomba's refresh aside, which the emulator answers). */
const isToken = (request: Http.IncomingMessage): boolean =>
  !String(request.headers.authorization ?? "").toLowerCase().startsWith("bearer ")

/** A server in front of `upstream` that answers the next hostile answers of `row`, then passes through. */
const front = (kit: Kits.Kit, row: Row, injected: { count: number }) => (upstream: string) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Http.Server; readonly url: string }>((resume) => {
      const queue = [...row.answers]
      const server = Http.createServer((request, response) => {
        const chunks: Array<Buffer> = []
        request.on("data", (chunk: Buffer) => chunks.push(chunk))
        request.on("end", () => {
          const received: Received = {
            method: request.method ?? "GET",
            url: request.url ?? "/",
            headers: request.headers,
            body: Buffer.concat(chunks).toString("utf8")
          }
          const hostile = (row.target === "token") === isToken(request) ? queue.shift() : undefined
          if (hostile !== undefined) {
            injected.count++
            return hostile(kit, received, response)
          }
          const headers: Record<string, string> = {}
          for (const [name, value] of Object.entries(request.headers)) {
            if (value === undefined || ["host", "connection", "content-length"].includes(name)) continue
            headers[name] = Array.isArray(value) ? value.join(", ") : value
          }
          fetch(`${upstream}${received.url}`, {
            method: received.method,
            headers,
            ...(chunks.length > 0 ? { body: Buffer.concat(chunks) } : {})
          }).then(async (answer) => {
            const body = Buffer.from(await answer.arrayBuffer())
            const out: Record<string, string> = {}
            answer.headers.forEach((value, name) => {
              if (!["content-length", "transfer-encoding", "connection", "content-encoding"].includes(name)) {
                out[name] = value
              }
            })
            response.writeHead(answer.status, out)
            response.end(body)
          }, () => response.destroy())
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ server, url: `http://127.0.0.1:${port}` }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ url }) => url)) as Effect.Effect<string, never, Scope.Scope>

const tuning = (kit: Kits.Kit): Kits.Tuning => ({
  // Limits well above this traffic, on the emulators' default clock: the rows are about bodies.
  limits: kit.definition.limit === undefined ? undefined : kit.definition.limitsFor({
    limit: 1_000,
    window: Duration.seconds(1)
  }),
  tokenTimeout: "500 millis",
  tokenCache: {
    retry: { baseDelay: "20 millis", maxDelay: "200 millis", maxRetryAfter: "1 second" },
    cooldown: { base: "50 millis", max: "300 millis" },
    closeTimeout: "1 second"
  },
  client: { timeout: "800 millis", retry: { baseDelay: "20 millis", maxDelay: "200 millis", maxWait: "5 seconds" } }
})

describe("hostile bodies (loopback, undici)", () => {
  for (const kit of kits) {
    it(kit.name, async () => {
      for (const row of rows) {
        const injected = { count: 0 }
        const observer = row.target === "api" && row.echoes === true ? new TollgateObserver() : new Observer()
        const result = await Traffic.loopback(
          {
            kit,
            tuning: tuning(kit),
            // The emulator's own limits far away: a 2 MiB answer costs the client nothing it would count.
            emulator: { rateLimit: { limit: 100_000, windowMillis: 60_000 } },
            callers: 8,
            concurrency: 2,
            think: 10,
            bound: "20 seconds",
            front: front(kit, row, injected),
            after: (context) =>
              row.recovers ?
                Effect.gen(function*() {
                  // Once the hostile answers are spent (and the token cache's cooldown is over) the client recovers.
                  yield* Effect.sleep("1 second")
                  const exit = yield* Traffic.call(context.kit, context.services, 0, context.observer, "10 seconds")
                  context.outcomes.push(Traffic.classify(exit))
                }) :
                Effect.void
          },
          observer,
          report.needles
        )
        const { context, counts, violations } = report.record({
          fault: row.fault,
          group: row.target,
          where: "loopback",
          provider: kit.name,
          outcomes: result.outcomes,
          observer,
          injected: injected.count
        })
        if (observer instanceof TollgateObserver) {
          report.note(
            row.fault,
            `${kit.name}: the echoed token was in ${observer.echoedInSpans(report.needles)} tollgate.request ` +
              `span's success value (the server's response); ${observer.callerErrors} caller ResponseError(s) ` +
              `not scanned`
          )
        }
        expect(violations, context).toEqual([])
        // A cooling-down token cache may ask no more before the row ends.
        if (row.recovers) expect(injected.count, `${context}: every hostile answer was given`).toBe(row.answers.length)
        else expect(injected.count, context).toBeGreaterThan(0)
        expect(counts.typed + counts.success, context).toBe(counts.touched)
        if (row.recovers) expect(result.outcomes.at(-1)?.kind, `${context}: recovers`).toBe("success")
      }
    }, 120_000)
  }
})
