/**
 * Hours of traffic in seconds of wall time: run a workload against one or more sandbox emulators in
 * memory, through the Tollgate clients you configure, in virtual time, and get a report of what the
 * client did and what the server saw.
 *
 * The server side is the same emulator the loopback sandbox serves, so the limits and token lifetimes
 * are the documented ones; the client side is whatever you build (a provider module's `make`, or core
 * directly), so a simulation tests your own configuration.
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type { ApiClient, RateLimiter, TokenCache } from "@tollgate/core"
import { Cause, Clock, Duration, Effect, Exit, Option } from "effect"
import type { Scope } from "effect"
import type * as Arbitraries from "./Arbitraries.js"
import type * as Emulator from "./Emulator.js"
import * as Recording from "./Recording.js"
import * as Sandbox from "./Sandbox.js"
import * as VirtualTime from "./VirtualTime.js"

/**
 * The services a simulation drives and reads.
 *
 * @since 0.1.0
 * @category models
 */
export interface Subject {
  readonly client: ApiClient.Service
  readonly tokens?: TokenCache.Service | undefined
  readonly limiter?: RateLimiter.Service | undefined
}

/**
 * One provider in a simulation: its emulator, the client under test, and the demand on it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Target<E = unknown> {
  /** Names the provider in the report. */
  readonly name: string
  /** The server, run in memory. Build it inside the simulation (it reads the virtual clock). */
  readonly emulator: Effect.Effect<Emulator.Emulator>
  /** The client under test, over `http`, an in-memory transport to the emulator. */
  readonly client: (http: HttpClient.HttpClient, emulator: Emulator.Emulator) => Effect.Effect<Subject, E, Scope.Scope>
  /** The n-th request a worker sends (relative URLs resolve against the client's base URL). */
  readonly request: (n: number) => HttpClientRequest.HttpClientRequest
  /** Concurrent workers; each sends its next request as soon as the last one ends. */
  readonly fibers: number
  /** Pause between a worker's requests. Default: none, which saturates any limit. */
  readonly think?: Duration.DurationInput | undefined
  /**
   * Pause after a request that failed, as a real worker would back off. Default: 1 second. A typed error
   * can come back at once (a token cooldown, a refused permit), and a worker retrying instantly would
   * spin at one virtual instant.
   */
  readonly pauseAfterFailure?: Duration.DurationInput | undefined
  /**
   * The documented limit to check the server's arrivals against: at most `limit` admitted arrivals in
   * any interval of length `window`, for each key `per` gives (default: all arrivals together).
   */
  readonly limit?: {
    readonly limit: number
    readonly window: Duration.DurationInput
    readonly per?: ((arrival: Recording.Arrival) => string) | undefined
  } | undefined
  /**
   * Latency the emulator adds to every answer. Default: 5 to 30 milliseconds. Zero would let a worker
   * against an unlimited API send without end at a single instant, since nothing would move the clock.
   */
  readonly latency?: { readonly min: Duration.DurationInput; readonly max: Duration.DurationInput } | undefined
  /** Faults to inject while the workload runs (see `Arbitraries.faultSchedule`). */
  readonly faults?: ReadonlyArray<Arbitraries.FaultEvent> | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Percentiles {
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
}

/**
 * What happened to one target.
 *
 * @since 0.1.0
 * @category models
 */
export interface Report {
  readonly name: string
  /** Requests the workers issued. */
  readonly requests: number
  /** Requests answered with a 2xx. */
  readonly succeeded: number
  /** Requests that ended otherwise, by error tag or `HTTP <status>`. */
  readonly failed: Readonly<Record<string, number>>
  /** Requests that neither succeeded nor failed with a typed error (defects). Must be zero. */
  readonly lost: number
  /** What the server saw. */
  readonly server: {
    readonly tokenRequests: Recording.Snapshot["tokenCounts"]
    readonly apiArrivals: number
    readonly unauthorized: number
    readonly rateLimited: number
    readonly tokensIssued: number
    readonly tokensRevoked: number
  }
  /** The client's own token cache, when the subject exposes it. */
  readonly tokens: Option.Option<{ readonly fetches: number; readonly refreshes: number; readonly revocations: number }>
  /**
   * The most arrivals the server admitted in any window of the documented length, the limit, and
   * whether it was overdrawn (per key when the limit is per key: the worst key is reported).
   */
  readonly window: Option.Option<{ readonly limit: number; readonly maxAdmitted: number; readonly maxAll: number }>
  /** Admitted arrivals per window of the documented length, on average over the run. */
  readonly perWindow: Option.Option<number>
  /** Time from issuing a request to its outcome, in milliseconds of virtual time. */
  readonly latency: Percentiles
  /** Time requests waited for a rate-limit permit, from the limiter's counters. */
  readonly permitWait: Option.Option<{ readonly mean: number; readonly max: number }>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Result {
  readonly reports: ReadonlyArray<Report>
  /** Virtual milliseconds simulated. */
  readonly virtualMillis: number
  readonly wallMillis: number
  /** How many times the virtual clock moved. */
  readonly steps: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly targets: ReadonlyArray<Target<any>>
  /** How long the workers keep sending. */
  readonly duration: Duration.DurationInput
  /** Where virtual time starts. Default: 2026-01-01T00:00:00Z. */
  readonly start?: number | Date | undefined
}

const percentiles = (latencies: Array<number>): Percentiles => {
  if (latencies.length === 0) return { p50: 0, p90: 0, p99: 0, max: 0 }
  // A typed array sorts numerically without a comparator call per comparison.
  const values = Float64Array.from(latencies).sort()
  const at = (q: number) => values[Math.min(values.length - 1, Math.floor(q * values.length))]!
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: values[values.length - 1]! }
}

const defaultLatency = { min: Duration.millis(5), max: Duration.millis(30) }

interface Tally {
  requests: number
  succeeded: number
  lost: number
  readonly failed: Record<string, number>
  readonly latencies: Array<number>
}

/**
 * What the server saw, counted as arrivals come in: the emulator keeps none of them, so a simulation of
 * any length checks its windows in memory bounded by the busiest window, not by the number of requests.
 */
interface Arrivals {
  count: number
  /** One tracker per key of the target's limit (a single one without `per`). */
  readonly windows: Map<string, Recording.WindowTracker>
  /** The first arrival the trackers could not count (out of order), which voids the window check. */
  error: unknown
}

const observeArrivals = (target: Target<any>, emulator: Emulator.Emulator) =>
  Effect.gen(function*() {
    const arrivals: Arrivals = { count: 0, windows: new Map(), error: undefined }
    const limit = target.limit
    const windowMillis = limit === undefined ? 0 : Duration.toMillis(limit.window)
    const per = limit?.per
    yield* emulator.observeArrivals((arrival) => {
      arrivals.count++
      if (limit === undefined || arrivals.error !== undefined) return
      const key = per === undefined ? "" : per(arrival)
      let tracker = arrivals.windows.get(key)
      if (tracker === undefined) arrivals.windows.set(key, tracker = Recording.windowTracker(windowMillis))
      try {
        tracker.add(arrival.at, arrival.admitted)
      } catch (error) {
        arrivals.error = error
      }
    }, { keep: false })
    return arrivals
  })

const runTarget = (target: Target<any>, end: number) =>
  Effect.gen(function*() {
    const emulator = yield* target.emulator
    const latency = target.latency ?? defaultLatency
    yield* emulator.faults.set("all", { latency })
    const arrivals = yield* observeArrivals(target, emulator)
    const http = Sandbox.makeClient(() => emulator.app)
    const subject = yield* target.client(http, emulator)
    const tally: Tally = { requests: 0, succeeded: 0, lost: 0, failed: {}, latencies: [] }
    const think = target.think === undefined ? undefined : Duration.decode(target.think)
    const pauseAfterFailure = Duration.decode(target.pauseAfterFailure ?? Duration.seconds(1))
    const count = (key: string) => {
      tally.failed[key] = (tally.failed[key] ?? 0) + 1
    }
    // Each fault switches on at its instant and, unless it is a revocation, off again after it lasts
    // (when faults on one target overlap, the first to end clears that target).
    yield* Effect.forEach(target.faults ?? [], (event) =>
      Effect.forkScoped(
        Effect.zipRight(
          Effect.sleep(Duration.millis(event.at)),
          event._tag === "RevokeAll"
            ? Effect.asVoid(emulator.revokeAll)
            : Effect.zipRight(
              emulator.faults.set(event.target, event.options),
              Effect.zipRight(
                Effect.sleep(Duration.millis(event.lasting)),
                emulator.faults.set(event.target, {
                  latency: null,
                  errorRate: 0,
                  timeoutRate: 0,
                  dropRate: 0
                })
              )
            )
        )
      ), { discard: true })
    // A loop of plain Effects, not a generator: it runs once per simulated request.
    const worker = Effect.clockWith((clock) => {
      const next = (): Effect.Effect<void> => {
        if (clock.unsafeCurrentTimeMillis() >= end) return Effect.void
        const n = tally.requests++
        const started = clock.unsafeCurrentTimeMillis()
        const after = (ok: boolean): Effect.Effect<void> => {
          tally.latencies.push(clock.unsafeCurrentTimeMillis() - started)
          if (!ok) return Effect.zipRight(Effect.sleep(pauseAfterFailure), Effect.suspend(next))
          return think === undefined ? next() : Effect.zipRight(Effect.sleep(think), Effect.suspend(next))
        }
        return Effect.matchCauseEffect(subject.client.execute(target.request(n)), {
          onFailure: (cause) => {
            const failure = Cause.failureOption(cause)
            if (Option.isSome(failure)) count((failure.value as { readonly _tag?: string })._tag ?? "Error")
            else tally.lost++
            return after(false)
          },
          onSuccess: (response) => {
            const status = response.status
            const ok = status >= 200 && status < 300
            if (ok) tally.succeeded++
            else count(`HTTP ${status}`)
            return after(ok)
          }
        })
      }
      return Effect.suspend(next)
    })
    yield* Effect.all(Array.from({ length: target.fibers }, () => worker), { concurrency: "unbounded", discard: true })
    const tokens = subject.tokens === undefined ? Option.none() : Option.some(yield* subject.tokens.stats)
    const limiterStats = subject.limiter === undefined ? Option.none() : Option.some(yield* subject.limiter.stats)
    return { emulator, tally, tokens, limiterStats, arrivals }
  })

const report = (
  target: Target<any>,
  outcome: Effect.Effect.Success<ReturnType<typeof runTarget>>,
  snapshot: Recording.Snapshot,
  elapsed: number
): Report => {
  const { arrivals, limiterStats, tally, tokens } = outcome
  let window: Report["window"] = Option.none()
  let perWindow: Report["perWindow"] = Option.none()
  if (target.limit !== undefined) {
    if (arrivals.error !== undefined) {
      throw new Error(`${target.name}: the window check could not count every arrival`, { cause: arrivals.error })
    }
    const windowMillis = Duration.toMillis(target.limit.window)
    let maxAdmitted = 0
    let maxAll = 0
    let admitted = 0
    for (const tracker of arrivals.windows.values()) {
      const counted = tracker.result()
      maxAdmitted = Math.max(maxAdmitted, counted.admitted)
      maxAll = Math.max(maxAll, counted.all)
      admitted += tracker.admitted()
    }
    window = Option.some({ limit: target.limit.limit, maxAdmitted, maxAll })
    perWindow = Option.some(admitted / Math.max(1, arrivals.windows.size) / Math.max(1, elapsed / windowMillis))
  }
  return {
    name: target.name,
    requests: tally.requests,
    succeeded: tally.succeeded,
    failed: { ...tally.failed },
    lost: tally.lost,
    server: {
      tokenRequests: snapshot.tokenCounts,
      apiArrivals: arrivals.count,
      unauthorized: snapshot.unauthorized.api,
      rateLimited: snapshot.rateLimited.api + snapshot.rateLimited.token,
      tokensIssued: snapshot.tokensIssued,
      tokensRevoked: snapshot.tokensRevoked
    },
    tokens: Option.map(tokens, (t) => ({ fetches: t.fetches, refreshes: t.refreshes, revocations: t.revocations })),
    window,
    perWindow,
    latency: percentiles(tally.latencies),
    permitWait: Option.map(limiterStats, (s) => ({
      mean: s.granted === 0 ? 0 : s.totalWaitMillis / s.granted,
      max: s.maxWaitMillis
    }))
  }
}

/**
 * Runs every target at once for `duration` of virtual time, then closes the clients (so revocations
 * happen and are counted) and reports.
 *
 * Memory does not grow with the length of the run: while it runs, the emulators keep counters but no
 * arrivals (see `Emulator.observeArrivals`), and each target's windows are checked as arrivals come in.
 *
 * @since 0.1.0
 * @category running
 */
export const run = async (options: Options): Promise<Result> => {
  const duration = Duration.toMillis(options.duration)
  const program = Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const end = start + duration
    const outcomes = yield* Effect.scoped(
      Effect.all(options.targets.map((target) => runTarget(target, end)), { concurrency: "unbounded" })
    )
    const elapsed = (yield* Clock.currentTimeMillis) - start
    const snapshots = yield* Effect.all(outcomes.map((outcome) => outcome.emulator.recording))
    return options.targets.map((target, i) => report(target, outcomes[i]!, snapshots[i]!, Math.min(elapsed, duration)))
  })
  const started = performance.now()
  const result = await VirtualTime.run(program, { start: options.start, settlePromises: false })
  const wallMillis = performance.now() - started
  if (Exit.isFailure(result.exit)) {
    throw new Error(`simulation failed: ${Cause.pretty(result.exit.cause)}`)
  }
  return { reports: result.exit.value, virtualMillis: result.elapsed, wallMillis, steps: result.steps }
}

/**
 * `run` as an Effect, for tests.
 *
 * @since 0.1.0
 * @category running
 */
export const simulate = (options: Options): Effect.Effect<Result> => Effect.promise(() => run(options))

/**
 * A GET of `path` for every request (one request value, built once: requests are immutable).
 *
 * @since 0.1.0
 * @category constructors
 */
export const get = (path: string): (n: number) => HttpClientRequest.HttpClientRequest => {
  const request = HttpClientRequest.get(path)
  return () => request
}
