/**
 * Fuzzing every response decoder: arbitrary bytes, arbitrary JSON and near-valid answers (the documented
 * shape with fields dropped, retyped or replaced) under arbitrary statuses, content types and rate-limit
 * headers, fed to
 * - every provider's token source (and the generic OAuth2 one), issue and Nomba's refresh;
 * - every provider's authenticated client and the way a caller reads its answers (Nomba's envelope, JSON);
 * - the rate-limit header parser.
 * Only a success or a typed error may come out: never a defect, an untyped failure or a hang (each case is
 * bounded by the live clock), and no rendering of any outcome may hold the client secret or a token the
 * answer carried, nor may any log line or span written meanwhile.
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as OAuth2 from "@tollgate/core/OAuth2"
import * as RateLimitHeaders from "@tollgate/core/RateLimitHeaders"
import type * as TokenSource from "@tollgate/core/TokenSource"
import * as Nomba from "@tollgate/providers/nomba"
import * as Nora from "@tollgate/providers/nora"
import * as Norce from "@tollgate/providers/norce"
import * as TokenProject from "@tollgate/providers/token-project"
import { Cause, DateTime, Effect, Exit, Option, Redacted } from "effect"
import * as fc from "fast-check"
import { inject } from "vitest"
import * as Kits from "../src/Kits.js"
import { Needles, Observer, renderError, renderValue } from "../src/Observe.js"
import { Report } from "../src/Report.js"
import * as Traffic from "../src/Traffic.js"

const report = new Report()
afterAll(() => report.write(inject("chaosResults")))

const numRuns = 150
const bound = "3 seconds"

// ---------------------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------------------

interface Answer {
  readonly status: number
  readonly contentType: string | undefined
  readonly headers: Readonly<Record<string, string>>
  readonly body: Uint8Array | string
  /** Tokens the answer carries, which nothing the client shows may hold. */
  readonly tokens: ReadonlyArray<string>
}

// Statuses a Response can carry a body with.
// Half of them 200, so that near-valid bodies reach the decoders past the status check.
const status = fc.oneof(
  { weight: 2, arbitrary: fc.constant(200) },
  { weight: 1, arbitrary: fc.constantFrom(201, 400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504) },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 599 }).filter((n) => n !== 204 && n !== 205 && n !== 304) }
)

const contentType = fc.option(
  fc.constantFrom(
    "application/json",
    "application/json; charset=utf-8",
    "text/html",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/octet-stream",
    "application/problem+json",
    "garbage/;;;"
  ),
  { nil: undefined }
)

const headerValue = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.integer().map(String),
  fc.double().map(String),
  fc.date({ noInvalidDate: true }).map((date) => date.toUTCString()),
  fc.constantFrom("0", "-1", "1e309", "NaN", "Infinity", "9999999999999", "1.5", " 30 ", "30, 60", "")
)

const rateLimitHeaders = fc.dictionary(
  fc.constantFrom(
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "x-rate-limit-reset"
  ),
  headerValue,
  { maxKeys: 4 }
).map((headers) => {
  // Header values cannot hold control characters; an HTTP stack would have refused them before us.
  const clean: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) clean[name] = value.replace(/[\u0000-\u001f\u007f-\uffff]/g, "")
  return clean
})

let serial = 0
const distinctToken = () => `fuzz-token-${++serial}-${Math.random().toString(36).slice(2, 12)}`

const jsonValue = fc.jsonValue({ maxDepth: 3 })

/** A JWT-shaped string whose payload is arbitrary JSON, arbitrary bytes, or claims with arbitrary `exp`. */
const jwtLike = fc.oneof(
  jsonValue.map((payload) => JSON.stringify(payload)),
  fc.uint8Array({ maxLength: 40 }).map((bytes) => Buffer.from(bytes).toString("latin1")),
  fc.record({ sub: fc.string(), iat: jsonValue, exp: jsonValue }, { requiredKeys: [] }).map((c) => JSON.stringify(c))
).map((payload) =>
  `${Buffer.from("{\"alg\":\"HS256\"}").toString("base64url")}.${
    Buffer.from(payload).toString("base64url")
  }.${distinctToken()}`
)

/**
 * A documented answer with some fields dropped, some replaced by arbitrary JSON, and extra fields added;
 * nested objects (Nomba's `data`) mutated the same way.
 */
const mutate = (valid: unknown): fc.Arbitrary<unknown> => {
  if (typeof valid !== "object" || valid === null || Array.isArray(valid)) {
    return fc.oneof({ weight: 4, arbitrary: fc.constant(valid) }, { weight: 1, arbitrary: jsonValue })
  }
  const entries = Object.entries(valid as Record<string, unknown>)
  return fc.tuple(
    fc.tuple(...entries.map(([, value]) =>
      fc.oneof(
        { weight: 4, arbitrary: mutate(value).map((v) => ({ keep: true, value: v })) },
        { weight: 1, arbitrary: fc.constant({ keep: false, value: undefined as unknown }) },
        { weight: 1, arbitrary: jwtLike.map((v) => ({ keep: true, value: v as unknown })) }
      )
    )),
    fc.dictionary(fc.string({ maxLength: 8 }), jsonValue, { maxKeys: 2 })
  ).map(([values, extra]) => {
    const out: Record<string, unknown> = { ...extra }
    entries.forEach(([key], i) => {
      const v = values[i]!
      if (v.keep) out[key] = v.value
    })
    return out
  })
}

const stringsIn = (value: unknown, sink: Array<string>): void => {
  if (typeof value === "string") {
    if (value.length >= 12) sink.push(value)
  } else if (Array.isArray(value)) {
    for (const item of value) stringsIn(item, sink)
  } else if (typeof value === "object" && value !== null) {
    for (const item of Object.values(value)) stringsIn(item, sink)
  }
}

/** An answer of one of three kinds, for a provider whose documented answer is `valid(token)`. */
const answer = (valid: (token: string) => unknown): fc.Arbitrary<readonly [kind: string, Answer]> =>
  fc.tuple(
    status,
    contentType,
    rateLimitHeaders,
    fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((bytes) => ["arbitrary bytes", bytes as Uint8Array | string, []] as const),
      jsonValue.map((json) => ["arbitrary JSON", JSON.stringify(json), []] as const),
      fc.constant(null).chain(() => {
        const token = distinctToken()
        return mutate(valid(token)).chain((body) => {
          const text = JSON.stringify(body) ?? "null"
          // The near-valid answer, or the same cut at a random point.
          return fc.oneof(
            { weight: 3, arbitrary: fc.constant(text) },
            { weight: 1, arbitrary: fc.nat({ max: text.length }).map((at) => text.slice(0, at)) }
          ).map((cut) => {
            const tokens = [token]
            stringsIn(body, tokens)
            return ["near-valid JSON", cut as Uint8Array | string, tokens.filter((t) => t.startsWith("fuzz-"))] as const
          })
        })
      })
    )
  ).map((
    [status, contentType, headers, [kind, body, tokens]]
  ) => [kind, { status, contentType, headers, body, tokens }])

const respond = (answer: Answer, request: Parameters<typeof HttpClientResponse.fromWeb>[0]) =>
  HttpClientResponse.fromWeb(
    request,
    new Response(typeof answer.body === "string" ? answer.body : Buffer.from(answer.body), {
      status: answer.status,
      headers: {
        ...answer.headers,
        ...(answer.contentType === undefined ? {} : { "content-type": answer.contentType })
      }
    })
  )

// ---------------------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------------------

const secret = `fuzz-S3cr3t/+&=%€ "q"\\${Math.random().toString(36).slice(2)}`

/**
 * Runs one case bounded by the live clock, classifies how it ended, scans its renderings for the secret
 * and the answer's tokens, adds it to the matrix row and asserts it.
 */
const check = <A, E>(
  fault: string,
  provider: string,
  tokens: ReadonlyArray<string>,
  effect: Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    const observer = new Observer()
    const exit = yield* Effect.exit(
      observer.observe(
        Effect.timeoutFail(effect, { duration: bound, onTimeout: () => ({ _tag: "FuzzHang" as const }) })
      )
    )
    const outcome = Traffic.classify(exit)
    const rendered = Exit.match(exit, {
      onSuccess: renderValue,
      onFailure: (cause) => [...renderError(Cause.squash(cause)), Cause.pretty(cause, { renderErrorCause: true })]
    })
    const needles = new Needles()
    needles.secret(secret)
    for (const token of tokens) needles.token(token)
    const scan = needles.scan([...rendered, ...observer.rendered()])
    report.add(fault, "fuzz", "memory", provider, {
      injected: 1,
      touched: 1,
      success: outcome.kind === "success" ? 1 : 0,
      typed: outcome.kind === "typed" ? 1 : 0,
      lost: outcome.kind === "lost" ? 1 : 0,
      leaked: scan.leaks
    })
    const context = `${provider} / ${fault}: ${outcome.tag}${
      Exit.isFailure(exit) ? ` ${Cause.pretty(exit.cause)}` : ""
    }`
    expect(outcome.kind, context).not.toBe("lost")
    expect(scan.examples, context).toEqual([])
  })

/** The kits' Nomba answers expire 30 minutes after the virtual clock's start; here the clock is live. */
const live = (body: unknown): unknown => {
  if (Array.isArray(body)) return body.map(live)
  if (typeof body !== "object" || body === null) return body
  return Object.fromEntries(
    Object.entries(body).map(([key, value]) => [
      key,
      key === "expiresAt" ? new Date(Date.now() + 30 * 60_000).toISOString() : live(value)
    ])
  )
}

interface SourceCase {
  readonly name: string
  readonly valid: (token: string) => unknown
  readonly make: Effect.Effect<TokenSource.Service, never, HttpClient.HttpClient>
}

const base = "https://fuzz.test"
const redactedSecret = Redacted.make(secret)

const sources: ReadonlyArray<SourceCase> = [
  {
    name: "nora",
    valid: Kits.nora().tokenBody,
    make: Nora.tokenSource({ clientId: "nora-id", clientSecret: redactedSecret, organizationId: "org", baseUrl: base })
      .pipe(Effect.orDie)
  },
  {
    name: "norce",
    valid: Kits.norce().tokenBody,
    make: Norce.tokenSource({ clientId: "norce-id", clientSecret: redactedSecret, baseUrl: base, scope: "prod" })
      .pipe(Effect.orDie)
  },
  {
    name: "nomba",
    valid: (token) => live(Kits.nomba().tokenBody(token)),
    make: Nomba.tokenSource({ clientId: "nomba-id", clientSecret: redactedSecret, accountId: "acc", baseUrl: base })
      .pipe(Effect.orDie)
  },
  {
    name: "token-project",
    valid: Kits.tokenProject().tokenBody,
    make: TokenProject.tokenSource({ key: "tp-key", secret: redactedSecret, baseUrl: base }).pipe(Effect.orDie)
  },
  {
    name: "oauth2",
    valid: Kits.norce().tokenBody,
    make: OAuth2.make({ tokenUrl: `${base}/oauth/token`, clientId: "oauth-id", clientSecret: redactedSecret })
      .pipe(Effect.orDie)
  }
]

/** A transport answering the n-th request with `answers[n]` (the last one after that). */
const scripted = (
  answers: ReadonlyArray<(request: Parameters<typeof respond>[1]) => HttpClientResponse.HttpClientResponse>
) => {
  let n = 0
  return HttpClient.make((request) => Effect.sync(() => answers[Math.min(n++, answers.length - 1)]!(request)))
}

describe("fuzz: every response decoder gives a success or a typed error, never a defect or a hang", () => {
  for (const source of sources) {
    it.live.prop(
      `${source.name} token issue`,
      [answer(source.valid)],
      ([[kind, fuzzed]]) =>
        check(
          `fuzz token response: ${kind}`,
          source.name,
          fuzzed.tokens,
          Effect.flatMap(source.make, (tokens) => tokens.fetch).pipe(
            Effect.provideService(HttpClient.HttpClient, scripted([(request) => respond(fuzzed, request)]))
          )
        ),
      { timeout: 120_000, fastCheck: { numRuns } }
    )
  }

  const nomba = sources.find((source) => source.name === "nomba")!
  it.live.prop(
    "nomba token refresh",
    [answer(nomba.valid)],
    ([[kind, fuzzed]]) => {
      const issued = distinctToken()
      const valid: Answer = {
        status: 200,
        contentType: "application/json",
        headers: {},
        body: JSON.stringify(nomba.valid(issued)),
        tokens: [issued]
      }
      return check(
        `fuzz token refresh response: ${kind}`,
        "nomba",
        [issued, ...fuzzed.tokens],
        Effect.gen(function*() {
          const tokens = yield* nomba.make
          const token = yield* tokens.fetch
          const refresh = Option.getOrThrow(tokens.refresh)
          return yield* refresh(token)
        }).pipe(
          Effect.provideService(
            HttpClient.HttpClient,
            scripted([(request) => respond(valid, request), (request) => respond(fuzzed, request)])
          )
        )
      )
    },
    { timeout: 120_000, fastCheck: { numRuns } }
  )

  for (const kit of Kits.all()) {
    it.live.prop(
      `${kit.name} API answers, read as a caller reads them`,
      [answer(() => kit.okBody)],
      ([[kind, fuzzed]]) => {
        const issued = kit.name === "token-project" ? Kits.jwt({ sub: "fuzz" }) : distinctToken()
        const token: Answer = {
          status: 200,
          contentType: "application/json",
          headers: {},
          body: JSON.stringify(live(kit.tokenBody(issued))),
          tokens: [issued]
        }
        const transport = HttpClient.make((request) =>
          Effect.sync(() => respond(new URL(request.url).pathname.includes("/token") ? token : fuzzed, request))
        )
        return check(
          `fuzz API response: ${kind}`,
          kit.name,
          [issued, ...fuzzed.tokens, ...kit.secrets],
          Effect.scoped(Effect.gen(function*() {
            // No retries and no waiting: one answer, decoded once.
            const services = yield* kit.make(`https://${kit.host}`, {
              client: { retry: { rateLimited: 0, transient: 0, maxWait: 0 }, permitDeadline: 0 },
              tokenCache: { retry: { attempts: 1 } }
            })
            const response = yield* services.client.execute(kit.request(0))
            return yield* kit.read(response)
          })).pipe(Effect.provideService(HttpClient.HttpClient, transport))
        )
      },
      { timeout: 120_000, fastCheck: { numRuns } }
    )
  }

  // Found by the fuzz above: where token requests spend the API's permits (Nora), a 401 announcing a budget
  // of 1 taught the limiter that budget and the token renewal it triggered waited out the learned window
  // (a minute), past the request's `permitDeadline: 0`. Every provider ends such a request at once.
  for (const kit of Kits.all()) {
    it.live(`${kit.name}: a 401 announcing a budget of 1 ends a request allowed no wait at once`, () =>
      Effect.gen(function*() {
        const issued = kit.name === "token-project" ? Kits.jwt({ sub: "budget" }) : distinctToken()
        const transport = HttpClient.make((request) =>
          Effect.sync(() =>
            HttpClientResponse.fromWeb(
              request,
              new URL(request.url).pathname.includes("/token")
                ? new Response(JSON.stringify(live(kit.tokenBody(issued))), {
                  status: 200,
                  headers: { "content-type": "application/json" }
                })
                : new Response("\"\"", { status: 401, headers: { "ratelimit-policy": "1" } })
            )
          )
        )
        const exit = yield* Effect.exit(
          Effect.scoped(Effect.gen(function*() {
            const services = yield* kit.make(`https://${kit.host}`, {
              client: { retry: { rateLimited: 0, transient: 0, maxWait: 0 }, permitDeadline: 0 },
              tokenCache: { retry: { attempts: 1 } }
            })
            return yield* services.client.execute(kit.request(0))
          })).pipe(Effect.provideService(HttpClient.HttpClient, transport), Effect.timeout(bound))
        )
        // A typed error (Unauthorized, or RateLimited where the renewal waits for a permit), not the bound's timeout.
        const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
        expect(Option.map(error, (e) => (e as { readonly _tag: string })._tag)).toSatisfy(
          (tag: Option.Option<string>) => Option.isSome(tag) && ["Unauthorized", "RateLimited"].includes(tag.value)
        )
      }))
  }

  it.live.prop(
    "rate-limit headers",
    [rateLimitHeaders, fc.constantFrom<RateLimitHeaders.ResetFormat>("auto", "epoch-seconds", "delta-seconds")],
    ([headers, format]) =>
      check(
        "fuzz rate-limit headers",
        "all",
        [],
        Effect.sync(() => {
          const now = DateTime.unsafeMake(Date.UTC(2026, 10, 23, 12))
          const info = RateLimitHeaders.parse(Headers.fromInput(headers), now, { resetFormat: format })
          const until = RateLimitHeaders.waitUntil(info)
          if (Option.isSome(until) && !Number.isFinite(DateTime.toEpochMillis(until.value))) {
            throw new Error(`a wait until a non-finite instant from ${JSON.stringify(headers)}`)
          }
          return info
        })
      ),
    { timeout: 60_000, fastCheck: { numRuns: 1_000 } }
  )
})
