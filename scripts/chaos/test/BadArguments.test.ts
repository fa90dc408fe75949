/**
 * Bad arguments to every public constructor and per-request option, drawn by fast-check: NaN, ±∞,
 * negatives, zero, subnormals, huge and fractional numbers for costs, priorities, timeouts, deadlines,
 * limits, windows, rates, bursts, offsets and key caps; base URLs with user-info, without a scheme or
 * plain http to a remote host; header values with CR/LF. Each case must end in a typed error
 * (`InvalidArgument`, `ConfigError`) or a working value: never a synchronous throw, a defect or a hang.
 * A limiter that accepted a bad per-request option must not admit more than its limit (10 per second,
 * counted in the cost it was granted), nor may a provider's client send more than its documented limit.
 * The secret a case carries (in a URL's user-info) appears in no rendering of its error.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as ApiClient from "@tollgate/core/ApiClient"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import { Cause, Clock, ConfigError, Effect, Exit, Fiber, Option, Predicate } from "effect"
import * as fc from "fast-check"
import { inject } from "vitest"
import * as Kits from "../src/Kits.js"
import { Observer } from "../src/Observe.js"
import { Report } from "../src/Report.js"
import * as Traffic from "../src/Traffic.js"

const kits = Kits.all()
const urlSecret = `Url-S3cret/${Math.random().toString(36).slice(2, 10)}`
const report = new Report([urlSecret, ...kits.flatMap((kit) => kit.secrets)])
afterAll(() => report.write(inject("chaosResults")))

const numRuns = 60

const badNumber = fc.oneof(
  fc.constantFrom(
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    -1,
    -0,
    0,
    Number.MIN_VALUE,
    2.2e-308,
    0.5,
    1e-9,
    1e308,
    Number.MAX_VALUE,
    2 ** 53 + 2,
    -(2 ** 31)
  ),
  fc.double(),
  fc.integer({ min: -1_000_000, max: 1_000_000 })
)
/** A bad number, or (sometimes) a good one, or nothing: options are mixed in practice. */
const option = (good: fc.Arbitrary<number>) =>
  fc.oneof(
    { weight: 3, arbitrary: badNumber },
    { weight: 1, arbitrary: good },
    { weight: 1, arbitrary: fc.constant(undefined) }
  )

const badUrl = fc.constantFrom(
  `https://client:${urlSecret}@api.example.com`,
  `https://client:${encodeURIComponent(urlSecret)}@api.example.com/v1`,
  `https://client:${urlSecret}@exa mple.com`,
  `http://api.example.com`,
  `api.example.com`,
  `ftp://api.example.com`,
  ``,
  ` `,
  `https://`,
  `https://api.example.com/%ZZ`,
  `javascript:alert(1)`
)
const crlf = fc.constantFrom("a\r\nX-Injected: 1", "a\nb", "a\rb", "\u0000", "ok\u007f", "é\u2028")

type Verdict = "typed" | "success" | "lost"

/** How one case ended: a throw, a defect or a hang is lost; only Tollgate's argument errors are typed. */
const verdict = (exit: Exit.Exit<unknown, unknown>, observer: Observer): Verdict => {
  if (Exit.isSuccess(exit)) return "success"
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) return "lost"
  observer.error(failure.value)
  const error = failure.value
  if (ConfigError.isConfigError(error)) return "typed"
  const tag = Predicate.hasProperty(error, "_tag") ? String(error._tag) : ""
  return tag === "InvalidArgument" || Traffic.typedTags.has(tag) ? "typed" : "lost"
}

/** Runs a constructor that may throw synchronously: a throw is a defect in the Effect channel. */
const guarded = <A, E, R>(build: () => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    try {
      return build()
    } catch (error) {
      return Effect.die(error)
    }
  })

const bounded = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.exit(Effect.timeoutFail(effect, { duration: "10 minutes", onTimeout: () => ({ _tag: "Hang" }) }))

interface Tally {
  typed: number
  success: number
  lost: number
  overLimit: number
  cases: number
}

const tally = (): Tally => ({ typed: 0, success: 0, lost: 0, overLimit: 0, cases: 0 })

const record = (fault: string, provider: string, observer: Observer, t: Tally) => {
  const outcomes: Array<Traffic.Outcome> = [
    ...Array.from({ length: t.success }, () => ({ kind: "success" as const, tag: "ok" })),
    ...Array.from({ length: t.typed }, () => ({ kind: "typed" as const, tag: "InvalidArgument" })),
    ...Array.from({ length: t.lost }, () => ({ kind: "lost" as const, tag: "defect, throw or hang" }))
  ]
  return report.record({
    fault,
    group: "config",
    where: "virtual",
    provider,
    outcomes,
    observer,
    injected: t.cases,
    overLimit: t.overLimit
  })
}

describe("bad arguments (virtual time)", () => {
  it("policies: every constructor and RateLimiter.make", async () => {
    const observer = new Observer()
    const t = tally()
    const policy = fc.oneof(
      fc.record({ limit: option(fc.integer({ min: 1, max: 20 })), window: option(fc.integer({ min: 1, max: 5000 })) })
        .map((o) => () => RateLimiter.slidingWindow(o as never)),
      fc.record({
        rate: option(fc.integer({ min: 1, max: 20 })),
        interval: option(fc.integer({ min: 1, max: 5000 })),
        burst: option(fc.integer({ min: 1, max: 20 }))
      }).map((o) => () => RateLimiter.tokenBucket(o as never)),
      fc.record({
        limit: option(fc.integer({ min: 1, max: 20 })),
        window: option(fc.integer({ min: 1, max: 5000 })),
        offset: option(fc.integer({ min: 0, max: 5000 }))
      }).map((o) => () => RateLimiter.fixedWindow(o as never)),
      fc.record({ probe: option(fc.integer({ min: 1, max: 5 })), window: option(fc.integer({ min: 1, max: 5000 })) })
        .map((o) => () => RateLimiter.learned(o)),
      fc.record({ maxKeys: option(fc.integer({ min: 1, max: 100 })) }).map((o) => () =>
        RateLimiter.keyed(RateLimiter.slidingWindow({ limit: 5, window: "1 second" }), o)
      )
    )
    const priorityAging = option(fc.integer({ min: 1, max: 60_000 }))
    await fc.assert(
      fc.asyncProperty(policy, priorityAging, async (build, aging) => {
        t.cases++
        // Each case on its own virtual clock: a working limiter must admit one request in bounded time.
        const exit = await Traffic.simulate(
          observer,
          Effect.exit(Effect.scoped(Effect.flatMap(
            guarded(() => RateLimiter.make(build(), { priorityAging: aging as never })),
            (limiter) => Effect.flatten(bounded(limiter.withPermit()(Effect.void)))
          )))
        )
        t[verdict(exit, observer)]++
      }),
      { numRuns }
    )
    const { context, violations } = record(
      "arguments: policy numbers (limits, windows, rates, offsets)",
      "core",
      observer,
      t
    )
    expect(violations, context).toEqual([])
    expect(t.typed, context).toBeGreaterThan(0)
  }, 60_000)

  it("per-permit options: cost, priority, timeout, deadline", async () => {
    const observer = new Observer()
    const t = tally()
    const options = fc.record({
      cost: option(fc.integer({ min: 1, max: 3 })),
      priority: option(fc.integer({ min: -5, max: 5 })),
      timeout: option(fc.integer({ min: 1, max: 5000 })),
      deadline: option(fc.integer({ min: 1, max: 5000 }))
    })
    await fc.assert(
      fc.asyncProperty(fc.array(options, { minLength: 1, maxLength: 6 }), async (cases) => {
        // A 10 per second limiter: a crowd of bad and good permits, then the cost granted per second.
        const result = await Traffic.simulate(
          observer,
          Effect.scoped(Effect.gen(function*() {
            const limiter = yield* RateLimiter.make(RateLimiter.slidingWindow({ limit: 10, window: "1 second" }))
            const grants: Array<{ at: number; cost: number }> = []
            const grant = (cost: number) =>
              Effect.flatMap(Clock.currentTimeMillis, (at) => Effect.sync(() => grants.push({ at, cost })))
            const crowd = [
              ...cases.flatMap((o) => [o, o, o]).map((o) =>
                guarded(() => limiter.withPermit(o as RateLimiter.PermitOptions)(grant(o.cost ?? 1)))
              ),
              ...Array.from({ length: 15 }, () => limiter.withPermit()(grant(1)))
            ]
            const fibers = yield* Effect.forEach(crowd, (e) => Effect.fork(bounded(e)))
            const exits = yield* Effect.forEach(fibers, Fiber.join)
            // A permit granted for a cost that is not a whole positive number overdrew by itself.
            const invalid = grants.filter((g) => !(Number.isSafeInteger(g.cost) && g.cost > 0)).length
            const counted = grants.map((g) => ({ at: g.at, cost: invalid > 0 && !(g.cost > 0) ? 1 : g.cost }))
            return { exits, over: invalid + Math.max(0, Traffic.maxInWindow(counted, 1000) - 10) }
          }))
        )
        for (const exit of result.exits) {
          t.cases++
          t[verdict(exit, observer)]++
        }
        t.overLimit += result.over
      }),
      { numRuns }
    )
    const { context, violations } = record(
      "arguments: per-permit cost, priority, timeout, deadline",
      "core",
      observer,
      t
    )
    expect(violations, context).toEqual([])
    expect(t.typed, context).toBeGreaterThan(0)
  }, 60_000)

  it("ApiClient.make: base URLs, headers, timeouts", async () => {
    const observer = new Observer()
    const t = tally()
    const http = HttpClient.make((request) => Effect.die(`no request may be sent: ${request.url}`))
    const options = fc.record({
      baseUrl: fc.oneof(badUrl, fc.constant("https://api.example.com")),
      header: fc.oneof(crlf, fc.constant("fine")),
      timeout: option(fc.integer({ min: 1, max: 5000 })),
      requestTimeout: option(fc.integer({ min: 1, max: 5000 })),
      permitDeadline: option(fc.integer({ min: 1, max: 5000 }))
    })
    await fc.assert(
      fc.asyncProperty(options, async (o) => {
        t.cases++
        const exit = await Traffic.simulate(
          observer,
          Effect.exit(Effect.scoped(
            guarded(() =>
              ApiClient.make({
                provider: "chaos",
                baseUrl: o.baseUrl,
                headers: { "x-chaos": o.header },
                timeout: o.timeout as never,
                requestTimeout: o.requestTimeout as never,
                permitDeadline: o.permitDeadline as never
              })
            ).pipe(Effect.provideService(HttpClient.HttpClient, http))
          ))
        )
        t[verdict(exit, observer)]++
      }),
      { numRuns }
    )
    const { context, violations } = record(
      "arguments: ApiClient.make URLs, CR/LF headers, timeouts",
      "core",
      observer,
      t
    )
    expect(violations, context).toEqual([])
    expect(t.typed, context).toBeGreaterThan(0)
  }, 60_000)

  for (const kit of kits) {
    it(`${kit.name}: per-request options and constructor options through the provider`, async () => {
      const observer = new Observer()
      const t = tally()
      const requestOptions = fc.record({
        cost: option(fc.integer({ min: 1, max: 2 })),
        priority: option(fc.integer({ min: -5, max: 5 })),
        permitDeadline: option(fc.integer({ min: 1, max: 60_000 }))
      })
      const result = await Traffic.simulate(
        observer,
        Effect.scoped(Effect.gen(function*() {
          const { emulator, http } = yield* Traffic.inMemory(kit, report.needles)
          const services = yield* Effect.orDie(kit.make(`https://${kit.host}`)).pipe(
            Effect.provideService(HttpClient.HttpClient, http)
          )
          const cases = fc.sample(fc.array(requestOptions, { minLength: 20, maxLength: 20 }), 1)[0]!
          const exits = yield* Effect.forEach(cases, (o, n) =>
            bounded(
              guarded(() =>
                services.client.execute(kit.request(n)).pipe(
                  Effect.flatMap(kit.read),
                  ApiClient.withRequestOptions(o as ApiClient.RequestOptions)
                )
              )
            ), { concurrency: 5 })
          // Constructor options through the provider: a base URL with the secret in its user-info, a
          // fixed header with CR/LF, a timeout that is not a duration.
          const built = yield* Effect.forEach(
            [
              { baseUrl: `https://client:${urlSecret}@${kit.host}` },
              { tuning: { client: { headers: { "x-chaos": "a\r\nX-Injected: 1" } } } },
              { tuning: { client: { timeout: Number.NaN } } },
              { tuning: { tokenTimeout: -1 } },
              { tuning: { limits: RateLimiter.slidingWindow({ limit: Number.NaN, window: "1 second" }) } }
            ] as const,
            (c) =>
              Effect.exit(Effect.scoped(
                guarded(() =>
                  kit.make(
                    "baseUrl" in c ? c.baseUrl : `https://${kit.host}`,
                    ("tuning" in c ? c.tuning : undefined) as Kits.Tuning
                  )
                ).pipe(Effect.provideService(HttpClient.HttpClient, http))
              ))
          )
          return { exits: [...exits, ...built], recording: yield* emulator.recording }
        }))
      )
      for (const exit of result.exits) {
        t.cases++
        t[verdict(exit, observer)]++
      }
      t.overLimit += Traffic.overLimit(result.recording, kit)
      const { context, violations } = record(
        "arguments: per-request options and provider options",
        kit.name,
        observer,
        t
      )
      expect(violations, context).toEqual([])
      expect(t.typed, context).toBeGreaterThan(0)
    }, 60_000)
  }
})
