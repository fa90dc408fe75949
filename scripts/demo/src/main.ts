/**
 * `pnpm demo`: Tollgate doing its whole job, with nothing to configure.
 *
 * It starts the four provider sandboxes on loopback, sixty times faster than real time (Nora's 60 per
 * minute becomes 60 per second, Norce's 600-second tokens last 10 seconds), and runs one worker that
 * calls all four APIs at once through Tollgate with demand well above every limit. While it runs it
 * shows a progress line per provider; at the end, a summary of what the client did and what the
 * servers saw. It exits with 0 only when every request succeeded and no limit was overdrawn.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import type * as HttpClient from "@effect/platform/HttpClient"
import { RateLimiter } from "@tollgate/core"
import type { Provider } from "@tollgate/providers"
import { Providers } from "@tollgate/providers"
import { Sandbox } from "@tollgate/testing"
import type { ConfigError, Scope } from "effect"
import { Clock, Console, Duration, Effect, Exit, Option } from "effect"
import * as Table from "./Table.js"

const SCALE = 60
const RUN = Duration.seconds(Number(process.env["TOLLGATE_DEMO_SECONDS"] ?? 30))
const scaled = (duration: Duration.DurationInput) => Duration.millis(Duration.toMillis(duration) / SCALE)

// Every duration in the providers' contracts, divided by the same scale as the sandboxes'.
const tokenCache = { refreshBefore: scaled("5 minutes"), safetyMargin: scaled("30 seconds") }
const timeouts = { timeout: scaled("30 seconds") } as const

/** What the demo asks of each provider: the routes its workers call, how many workers, how fast. */
const demand: Readonly<
  Record<Providers.Name, {
    readonly paths: ReadonlyArray<string>
    readonly fibers: number
    /** Pause between a worker's requests; undefined saturates the limit. */
    readonly think?: Duration.Duration | undefined
  }>
> = {
  nora: { paths: ["/api/forms"], fibers: 16 },
  // Norce's API documents no limit (its token endpoint is the limited one): a steady pace is enough.
  norce: { paths: ["/commerce/metadata/1.1/GetApplication?format=json"], fibers: 8, think: Duration.millis(40) },
  nomba: { paths: ["/v1/accounts", "/v1/accounts/balance"], fibers: 12 },
  "token-project": { paths: ["/notarizations/stamps", "/storage/files"], fibers: 12 }
}

/**
 * A provider's client over its sandbox emulator: the emulator's test credentials read by the definition
 * (`parse`), and the limits the emulator enforces, on its clock (the API's in the definition's own shape,
 * the token endpoint's where it has one): what the summary checks the servers' arrivals against.
 */
const againstEmulator = (definition: Provider.Any, sandbox: Sandbox.Service) => {
  const served: ReadonlyArray<Sandbox.Service[keyof Sandbox.Service]> = Object.values(sandbox)
  const emulator = served.find((emulator) => emulator.provider === definition.name)!
  const limit = emulator.rateLimit
  const bucket = "tokenRateLimit" in emulator ? emulator.tokenRateLimit : undefined
  const make = Effect.flatMap(
    definition.parse({ ...emulator.credentials, baseUrl: emulator.baseUrl, allowInsecureLoopback: true }),
    (options) =>
      definition.make({
        ...options,
        limits: limit === undefined
          ? undefined
          : definition.limitsFor({ ...limit, window: Duration.millis(limit.windowMillis) }),
        tokenLimits: bucket === undefined ? undefined : RateLimiter.tokenBucket({
          rate: 1,
          interval: Duration.millis(bucket.refillIntervalMillis),
          burst: bucket.capacity
        }),
        tokenCache,
        client: timeouts
      })
  ) as Effect.Effect<Provider.Services, ConfigError.ConfigError, HttpClient.HttpClient | Scope.Scope>
  return {
    make,
    emulator,
    limit: limit === undefined ? undefined : { ...limit, perRoute: definition.limit?.keyed === true }
  }
}

// Nomba documents no limit; the sandbox enforces the one the demo sets for it (40 a minute), and so does
// the client, which takes every limit from the emulator it talks to.
const SandboxLayer = Sandbox.layer({ timeScale: SCALE, nomba: { rateLimit: { limit: 40, windowMillis: 60_000 } } })

interface Tally {
  sent: number
  succeeded: number
  failed: number
  readonly errors: Map<string, number>
}

interface Lane extends ReturnType<typeof againstEmulator> {
  readonly name: string
  readonly definition: Provider.Any
  readonly paths: ReadonlyArray<string>
  readonly fibers: number
  readonly think?: Duration.Duration | undefined
}

// One lane per provider definition.
const lanesOf = (sandbox: Sandbox.Service): ReadonlyArray<Lane> =>
  Providers.all.map((definition) => ({
    name: definition.title,
    definition,
    ...demand[definition.name],
    ...againstEmulator(definition, sandbox)
  }))

const drive = (lane: Lane, client: Provider.Services["client"], tally: Tally, until: number) =>
  Effect.gen(function*() {
    const worker = (id: number) =>
      Effect.gen(function*() {
        let n = id
        while ((yield* Clock.currentTimeMillis) < until) {
          tally.sent++
          const exit = yield* Effect.exit(client.get(lane.paths[n++ % lane.paths.length]!))
          if (Exit.isSuccess(exit) && exit.value.status >= 200 && exit.value.status < 300) {
            tally.succeeded++
          } else {
            tally.failed++
            const key = Exit.isSuccess(exit)
              ? `HTTP ${exit.value.status}`
              : Option.match(Exit.causeOption(exit).pipe(Option.flatMap((c) => Option.fromNullable(c))), {
                onNone: () => "lost",
                onSome: (cause) => String((cause as { failure?: { _tag?: string } }).failure?._tag ?? "defect")
              })
            tally.errors.set(key, (tally.errors.get(key) ?? 0) + 1)
          }
          if (lane.think !== undefined) yield* Effect.sleep(lane.think)
        }
      })
    yield* Effect.all(Array.from({ length: lane.fibers }, (_, i) => worker(i)), { concurrency: "unbounded" })
  })

const progressLine = (lane: Lane, tally: Tally, elapsed: number) =>
  `${lane.name.padEnd(24)} ${String(tally.sent).padStart(6)} sent ${String(tally.succeeded).padStart(6)} ok ` +
  `${String(tally.failed).padStart(4)} failed  ${(tally.succeeded / Math.max(0.001, elapsed / 1000)).toFixed(1)} req/s`

const program = Effect.gen(function*() {
  const sandbox = yield* Sandbox.Sandbox
  const lanes = lanesOf(sandbox)
  const tallies = lanes.map((): Tally => ({ sent: 0, succeeded: 0, failed: 0, errors: new Map() }))
  const started = yield* Clock.currentTimeMillis
  const until = started + Duration.toMillis(RUN)
  const interactive = process.stdout.isTTY === true

  yield* Console.log(
    `Tollgate demo: four provider sandboxes on loopback at ${SCALE}× real time, ` +
      `${Duration.format(RUN)} of traffic above every limit.\n`
  )

  // The clients live in this scope; closing it revokes Nomba's token, which the summary then shows.
  const clientSide = yield* Effect.scoped(Effect.gen(function*() {
    const services = yield* Effect.all(lanes.map((lane) => lane.make))
    const progress = Effect.gen(function*() {
      const elapsed = (yield* Clock.currentTimeMillis) - started
      const lines = lanes.map((lane, i) => progressLine(lane, tallies[i]!, elapsed))
      if (interactive) yield* Effect.sync(() => process.stdout.write(`\x1b[${lanes.length}A\x1b[0J`))
      yield* Console.log(lines.join("\n"))
    })
    if (interactive) yield* Console.log(lanes.map(() => "").join("\n"))
    const reporter = yield* Effect.forkScoped(
      Effect.repeat(Effect.zipRight(Effect.sleep(interactive ? "500 millis" : "5 seconds"), progress), {
        until: () => Date.now() >= until
      })
    )
    yield* Effect.all(lanes.map((lane, i) => drive(lane, services[i]!.client, tallies[i]!, until)), {
      concurrency: "unbounded"
    })
    yield* reporter.await.pipe(Effect.timeout("100 millis"), Effect.ignore)
    yield* progress
    return yield* Effect.all(services.map((s) => Effect.all({ tokens: s.tokens.stats, limiter: s.limiter.stats })))
  }))

  const elapsed = (yield* Clock.currentTimeMillis) - started
  const recordings = yield* Effect.all(lanes.map((lane) => lane.emulator.recording))

  let ok = true
  const rows = lanes.map((lane, i) => {
    const tally = tallies[i]!
    const recording = recordings[i]!
    const { limiter, tokens } = clientSide[i]!
    const window = lane.limit === undefined
      ? undefined
      : (() => {
        const windowMillis = lane.limit.windowMillis
        const admitted = recording.arrivals.filter((a) => a.admitted)
        // The Token project limits each endpoint on its own; the others count every request together.
        const keys = lane.limit.perRoute === true ? [...new Set(admitted.map((a) => a.route))] : [undefined]
        const max = Math.max(
          0,
          ...keys.map((route) =>
            recording.maxArrivalsInWindow(windowMillis, (a) => route === undefined || a.route === route).admitted
          )
        )
        const perWindow = admitted.length / keys.length / (elapsed / windowMillis)
        return { max, perWindow, limit: lane.limit.limit }
      })()
    const overdrawn = window !== undefined && window.max > window.limit
    const rateLimited = recording.rateLimited.api + recording.rateLimited.token
    if (tally.failed > 0 || overdrawn || rateLimited > 0) ok = false
    return {
      provider: lane.name,
      sent: tally.sent,
      succeeded: tally.succeeded,
      tokenFetches: tokens.fetches,
      refreshes: tokens.refreshes,
      revocations: recording.tokenCounts.revoke,
      unauthorized: recording.unauthorized.api,
      rateLimited,
      window: window === undefined
        ? "no limit"
        : `max ${window.max} / ${window.limit} (avg ${window.perWindow.toFixed(1)})`,
      permitWait: `${(limiter.granted === 0 ? 0 : limiter.totalWaitMillis / limiter.granted).toFixed(0)} ms mean, ` +
        `${limiter.maxWaitMillis.toFixed(0)} ms max`
    }
  })

  yield* Console.log("\n" + Table.render(rows))
  yield* Console.log(
    `\nRequests per window: the most the server admitted in any window of the documented length (scaled ` +
      `${SCALE}×), against the limit; Token project per endpoint. Its X-RateLimit-Reset comes in whole ` +
      `seconds and Tollgate waits for it after Remaining: 0, which at ${SCALE}× (2-second windows) costs up ` +
      `to half a window; with the real 2-minute windows it is under 1%.`
  )
  const failures = lanes.flatMap((lane, i) =>
    [...tallies[i]!.errors].map(([error, count]) => `${lane.name}: ${count} × ${error}`)
  )
  if (failures.length > 0) yield* Console.log(`\nFailures: ${failures.join("; ")}`)
  yield* Console.log(ok ? "\nEvery request succeeded and no limit was overdrawn." : "\nThe demo did not meet its bar.")
  if (!ok) return yield* Effect.fail(new Error("demo failed"))
})

program.pipe(
  Effect.provide(SandboxLayer),
  Effect.provide(NodeHttpClient.layerUndici),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
