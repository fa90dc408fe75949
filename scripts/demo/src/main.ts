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
import { RateLimiter } from "@tollgate/core"
import type { ApiClient, TokenCache } from "@tollgate/core"
import * as Nomba from "@tollgate/providers/nomba"
import * as Nora from "@tollgate/providers/nora"
import * as Norce from "@tollgate/providers/norce"
import * as TokenProject from "@tollgate/providers/token-project"
import { NombaSandbox, NoraSandbox, NorceSandbox, Sandbox, TokenProjectSandbox } from "@tollgate/testing"
import type { Emulator } from "@tollgate/testing"
import { Clock, Console, Duration, Effect, Exit, Layer, Option, Redacted } from "effect"
import * as Table from "./Table.js"

const SCALE = 60
const RUN = Duration.seconds(Number(process.env["TOLLGATE_DEMO_SECONDS"] ?? 30))
const scaled = (duration: Duration.DurationInput) => Duration.millis(Duration.toMillis(duration) / SCALE)

// Every duration in the providers' contracts, divided by the same scale as the sandboxes'.
const tokenCache = { refreshBefore: scaled("5 minutes"), safetyMargin: scaled("30 seconds") }
const timeouts = { timeout: scaled("30 seconds") } as const

/** The documented limits, scaled: what the summary checks the servers' arrivals against. */
const limits = {
  nora: { limit: 60, window: scaled("1 minute") },
  nomba: { limit: 40, window: scaled("1 minute") },
  tokenProject: { limit: 10, window: scaled("2 minutes") }
}

// The whole program's wiring: four APIs, declared as Layers over the sandbox and one HTTP client.
const Providers = Layer.unwrapEffect(Effect.map(Sandbox.Sandbox, (sandbox) =>
  Layer.mergeAll(
    Nora.layer({
      clientId: NoraSandbox.defaultCredentials.clientId,
      clientSecret: Redacted.make(NoraSandbox.defaultCredentials.clientSecret),
      organizationId: NoraSandbox.defaultCredentials.organizationId,
      baseUrl: sandbox.nora.baseUrl,
      allowInsecureLoopback: true,
      limits: RateLimiter.slidingWindow(limits.nora),
      tokenCache,
      client: timeouts
    }),
    Norce.layer({
      clientId: NorceSandbox.defaultCredentials.clientId,
      clientSecret: Redacted.make(NorceSandbox.defaultCredentials.clientSecret),
      applicationId: NorceSandbox.defaultCredentials.applicationId,
      baseUrl: sandbox.norce.baseUrl,
      allowInsecureLoopback: true,
      tokenLimits: RateLimiter.tokenBucket({ rate: 3, interval: scaled("1 minute"), burst: 20 }),
      tokenCache,
      client: timeouts
    }),
    Nomba.layer({
      clientId: NombaSandbox.defaultCredentials.clientId,
      clientSecret: Redacted.make(NombaSandbox.defaultCredentials.clientSecret),
      accountId: NombaSandbox.defaultCredentials.accountId,
      baseUrl: sandbox.nomba.baseUrl,
      allowInsecureLoopback: true,
      limits: RateLimiter.slidingWindow(limits.nomba),
      tokenCache,
      client: timeouts
    }),
    TokenProject.layer({
      key: TokenProjectSandbox.defaultCredentials.key,
      secret: Redacted.make(TokenProjectSandbox.defaultCredentials.secret),
      baseUrl: sandbox.tokenProject.baseUrl,
      allowInsecureLoopback: true,
      limits: RateLimiter.keyed(RateLimiter.slidingWindow(limits.tokenProject)),
      tokenCache,
      client: timeouts
    })
  )))

// Nomba documents no limit; the sandbox enforces the one the demo configures for it.
const SandboxLayer = Sandbox.layer({
  timeScale: SCALE,
  nomba: { rateLimit: { limit: limits.nomba.limit, windowMillis: 60_000 } }
})

type ProviderServices = Layer.Layer.Success<typeof Providers>

interface Tally {
  sent: number
  succeeded: number
  failed: number
  readonly errors: Map<string, number>
}

interface Lane {
  readonly name: string
  readonly paths: ReadonlyArray<string>
  readonly fibers: number
  /** Pause between a worker's requests; undefined saturates the limit. */
  readonly think?: Duration.Duration | undefined
  readonly services: Effect.Effect<
    {
      readonly client: ApiClient.Service
      readonly tokens: TokenCache.Service
      readonly limiter: RateLimiter.Service
    },
    never,
    ProviderServices
  >
  readonly emulator: (sandbox: Sandbox.Service) => Emulator.Emulator
  readonly limit:
    | { readonly limit: number; readonly window: Duration.Duration; readonly perRoute?: boolean }
    | undefined
}

const lanes: ReadonlyArray<Lane> = [
  {
    name: "Nora",
    paths: ["/api/forms"],
    fibers: 16,
    services: Effect.all({ client: Nora.NoraClient, tokens: Nora.NoraTokens, limiter: Nora.NoraLimiter }),
    emulator: (s) => s.nora,
    limit: limits.nora
  },
  {
    name: "Norce",
    paths: ["/commerce/metadata/1.1/GetApplication?format=json"],
    fibers: 8,
    // Norce's API documents no limit (its token endpoint is the limited one): a steady pace is enough.
    think: Duration.millis(40),
    services: Effect.all({ client: Norce.NorceClient, tokens: Norce.NorceTokens, limiter: Norce.NorceLimiter }),
    emulator: (s) => s.norce,
    limit: undefined
  },
  {
    name: "Nomba",
    paths: ["/v1/accounts", "/v1/accounts/balance"],
    fibers: 12,
    services: Effect.all({ client: Nomba.NombaClient, tokens: Nomba.NombaTokens, limiter: Nomba.NombaLimiter }),
    emulator: (s) => s.nomba,
    limit: limits.nomba
  },
  {
    name: "Token project",
    paths: ["/notarizations/stamps", "/storage/files"],
    fibers: 12,
    services: Effect.all({
      client: TokenProject.TokenProjectClient,
      tokens: TokenProject.TokenProjectTokens,
      limiter: TokenProject.TokenProjectLimiter
    }),
    emulator: (s) => s.tokenProject,
    limit: { ...limits.tokenProject, perRoute: true }
  }
]

const drive = (lane: Lane, tally: Tally, until: number) =>
  Effect.gen(function*() {
    const { client } = yield* lane.services
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
  `${lane.name.padEnd(14)} ${String(tally.sent).padStart(6)} sent ${String(tally.succeeded).padStart(6)} ok ` +
  `${String(tally.failed).padStart(4)} failed  ${(tally.succeeded / Math.max(0.001, elapsed / 1000)).toFixed(1)} req/s`

const program = Effect.gen(function*() {
  const sandbox = yield* Sandbox.Sandbox
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
    const services = yield* Effect.all(lanes.map((lane) => lane.services))
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
    yield* Effect.all(lanes.map((lane, i) => drive(lane, tallies[i]!, until)), { concurrency: "unbounded" })
    yield* reporter.await.pipe(Effect.timeout("100 millis"), Effect.ignore)
    yield* progress
    return yield* Effect.all(services.map((s) => Effect.all({ tokens: s.tokens.stats, limiter: s.limiter.stats })))
  })).pipe(Effect.provide(Providers))

  const elapsed = (yield* Clock.currentTimeMillis) - started
  const recordings = yield* Effect.all(lanes.map((lane) => lane.emulator(sandbox).recording))

  let ok = true
  const rows = lanes.map((lane, i) => {
    const tally = tallies[i]!
    const recording = recordings[i]!
    const { limiter, tokens } = clientSide[i]!
    const window = lane.limit === undefined
      ? undefined
      : (() => {
        const windowMillis = Duration.toMillis(lane.limit.window)
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
