/**
 * Drives one provider's client against its emulator under a fault, and accounts for every request: each
 * caller's request ends in success (a 2xx whose body was read), a typed error, a cancellation the test
 * asked for, or it is lost (a defect, an unexpected interruption, or no end within its bound). What the
 * server saw is checked against the documented limit and against the gates the client was told to
 * close; everything the client showed is kept for the secret scan.
 *
 * The same program runs in virtual time over the in-memory emulator (`virtual`) and in real time over a
 * loopback server and undici (`loopback`).
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as Nora from "@tollgate/providers/nora"
import type { Emulator } from "@tollgate/testing"
import { Recording, Sandbox, VirtualTime } from "@tollgate/testing"
import type { Scope } from "effect"
import { Cause, Clock, Duration, Effect, Exit, Fiber, Option, Predicate } from "effect"
import type * as Kits from "./Kits.js"
import type * as Matrix from "./Matrix.js"
import type { Needles } from "./Observe.js"
import { harvestText, Observer } from "./Observe.js"

/** The error tags a caller may legitimately see. */
export const typedTags: ReadonlySet<string> = new Set([
  "InvalidCredentials",
  "MalformedTokenResponse",
  "TokenEndpointUnavailable",
  "ProviderError",
  "Timeout",
  "RateLimited",
  "Unauthorized",
  "RequestError",
  "ResponseError"
])

export type Kind = "success" | "typed" | "cancelled" | "lost"

export interface Outcome {
  readonly kind: Kind
  /** The error tag, `ok`, `interrupted`, `defect` or `hang`. */
  readonly tag: string
}

class Hang {
  readonly _tag = "Hang"
}

/** Classifies how one request ended. `cancelled` says the test interrupted it on purpose. */
export const classify = (exit: Exit.Exit<unknown, unknown>, cancelled = false): Outcome => {
  if (Exit.isSuccess(exit)) return { kind: "success", tag: "ok" }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (error instanceof Hang) return { kind: "lost", tag: "hang" }
    const tag = Predicate.hasProperty(error, "_tag") && typeof error._tag === "string" ? error._tag : "unknown"
    return typedTags.has(tag) ? { kind: "typed", tag } : { kind: "lost", tag: `untyped ${tag}` }
  }
  if (Cause.isInterruptedOnly(exit.cause)) {
    return cancelled ? { kind: "cancelled", tag: "interrupted" } : { kind: "lost", tag: "interrupted" }
  }
  return { kind: "lost", tag: "defect" }
}

/** Tallies outcomes into matrix counts. */
export const tally = (outcomes: ReadonlyArray<Outcome>): Pick<
  Matrix.Counts,
  "touched" | "success" | "typed" | "cancelled" | "lost"
> => ({
  touched: outcomes.length,
  success: outcomes.filter((o) => o.kind === "success").length,
  typed: outcomes.filter((o) => o.kind === "typed").length,
  cancelled: outcomes.filter((o) => o.kind === "cancelled").length,
  lost: outcomes.filter((o) => o.kind === "lost").length
})

export const tags = (outcomes: ReadonlyArray<Outcome>): Readonly<Record<string, number>> => {
  const counts: Record<string, number> = {}
  for (const outcome of outcomes) counts[outcome.tag] = (counts[outcome.tag] ?? 0) + 1
  return counts
}

/**
 * The emulator, with every token it answers (issued, refreshed, or scripted by the test) added to
 * `needles` before the client sees it.
 */
export const harvest = <A extends Emulator.Emulator>(emulator: A, needles: Needles): A => ({
  ...emulator,
  app: Effect.tap(emulator.app, (response) =>
    Effect.sync(() => {
      if (response.body._tag === "Uint8Array") {
        harvestText(new TextDecoder().decode(response.body.body), (token) => needles.token(token))
      }
    }))
})

/**
 * One caller's request: send, check for a 2xx, read the body the provider's way; the response, the body
 * and any error go to the observer. Bounded by `bound`: past it the request counts as lost.
 */
export const call = (
  kit: Kits.Kit,
  services: Nora.Services,
  n: number,
  observer: Observer,
  bound: Duration.DurationInput,
  /** Keep the successful response and body for the scan (errors are always kept). Default true. */
  keepValues = true
): Effect.Effect<Exit.Exit<unknown, unknown>> =>
  services.client.execute(kit.request(n)).pipe(
    Effect.tap((response) => keepValues ? Effect.sync(() => observer.value(response)) : Effect.void),
    Effect.flatMap(kit.read),
    Effect.tap((body) => keepValues ? Effect.sync(() => observer.value(body)) : Effect.void),
    Effect.tapError((error) => Effect.sync(() => observer.error(error))),
    Effect.timeoutFail({ duration: bound, onTimeout: () => new Hang() }),
    Effect.exit
  )

/**
 * An `after` step: once every script is spent and any cooldown or announced retry instant has passed (five
 * virtual minutes), one more request, whose outcome joins the run's. A client that recovers by itself
 * makes it a success.
 */
export const callOnceRecovered = (context: Context): Effect.Effect<void> =>
  Effect.gen(function*() {
    yield* Effect.sleep("5 minutes")
    const exit = yield* call(context.kit, context.services, 0, context.observer, "5 minutes")
    context.outcomes.push(classify(exit))
  })

/** A gate the client was told to close: no arrival of `key` may be sent between `from` and `until`. */
export interface Gate {
  readonly from: number
  readonly until: number
  readonly key?: string | undefined
}

/**
 * Arrivals inside a closed gate. With a fixed latency `latency` every arrival reached the server exactly
 * `latency` after it was sent, and the client learned of the gate the instant the server answered, so a
 * request sent while the gate was closed is one that arrives strictly between `from + latency` and
 * `until + latency`.
 */
export const gateViolations = (
  arrivals: ReadonlyArray<Recording.Arrival>,
  gates: ReadonlyArray<Gate>,
  latency: number,
  keyOf: (arrival: Recording.Arrival) => string
): number =>
  arrivals.filter((arrival) =>
    gates.some((gate) =>
      (gate.key === undefined || gate.key === keyOf(arrival)) &&
      arrival.at > gate.from + latency && arrival.at < gate.until + latency
    )
  ).length

/**
 * Arrivals beyond what the server allows: those its own limiter refused (429s the test did not script)
 * and, for a documented sliding window, how far any window of that length holds more arrivals than the
 * limit (every arrival took a permit of the client's, answered or not).
 */
export const overLimit = (recording: Recording.Snapshot, kit: Kits.Kit, timeScale = 1): number => {
  let over = recording.arrivals.filter((a) => a.status === 429 && a.fault === undefined).length +
    recording.tokenRequests.filter((r) => r.status === 429 && r.outcome === "refused").length
  const limit = kit.limit
  if (limit !== undefined) {
    for (const key of new Set(recording.arrivals.map(limit.per))) {
      const most = Recording.maxArrivalsInWindow(
        recording.arrivals,
        limit.windowMillis / timeScale,
        (arrival) => limit.per(arrival) === key
      ).all
      over += Math.max(0, most - limit.limit)
    }
  }
  return over
}

/**
 * The most cost granted inside any half-open interval of `window` milliseconds (for instants counted by
 * the test rather than recorded by an emulator: `Recording.maxArrivalsInWindow` counts arrivals).
 */
export const maxInWindow = (
  grants: ReadonlyArray<{ readonly at: number; readonly cost: number }>,
  window: number
): number => {
  const sorted = [...grants].sort((a, b) => a.at - b.at)
  let most = 0
  let start = 0
  let sum = 0
  for (let end = 0; end < sorted.length; end++) {
    sum += sorted[end]!.cost
    while (sorted[end]!.at - sorted[start]!.at >= window) sum -= sorted[start++]!.cost
    most = Math.max(most, sum)
  }
  return most
}

/** Faults the emulator injected (random or scripted), on both targets. */
export const injectedFaults = (recording: Recording.Snapshot): number =>
  recording.tokenRequests.filter((r) => r.outcome === "fault").length +
  recording.arrivals.filter((a) => a.fault !== undefined).length

export interface Context {
  readonly kit: Kits.Kit
  readonly emulator: Emulator.Emulator
  readonly services: Nora.Services
  readonly observer: Observer
  readonly needles: Needles
  readonly outcomes: Array<Outcome>
}

export interface Plan {
  readonly kit: Kits.Kit
  readonly tuning?: Kits.Tuning | undefined
  readonly emulator?: Kits.EmulatorOptions | undefined
  /** Fixed latency of every answer, in milliseconds (virtual runs). Default 20. */
  readonly latency?: number | undefined
  readonly callers: number
  /** Workers sharing the callers. Default 4. */
  readonly concurrency?: number | undefined
  /** Pause of a worker between requests, in milliseconds. Default 2000. */
  readonly think?: number | undefined
  /** Bound on one request. Default 30 minutes (virtual) or 20 seconds (loopback). */
  readonly bound?: Duration.DurationInput | undefined
  /** Runs before the traffic: scripts, fault settings. */
  readonly setup?: ((context: Context) => Effect.Effect<void>) | undefined
  /** Runs alongside the traffic, interrupted when it ends. */
  readonly during?: ((context: Context) => Effect.Effect<void>) | undefined
  /** Runs after the traffic, before the client's scope closes. */
  readonly after?: ((context: Context) => Effect.Effect<void>) | undefined
  /** Loopback runs: a server put in front of the emulator's, given its base URL; the client talks to it. */
  readonly front?: ((baseUrl: string) => Effect.Effect<string, never, Scope.Scope>) | undefined
}

export interface Result {
  readonly outcomes: ReadonlyArray<Outcome>
  readonly recording: Recording.Snapshot
  /** Scripted steps left unconsumed on the token and API targets. */
  readonly pending: number
  readonly stats: { readonly fetches: number; readonly refreshes: number; readonly revocations: number }
  /** Permits the API limiter granted: one per attempt sent, retries included. */
  readonly attempts: number
  readonly elapsed: number
}

const workload = (context: Context, plan: Plan, bound: Duration.DurationInput) =>
  Effect.gen(function*() {
    let next = 0
    const worker = Effect.gen(function*() {
      while (next < plan.callers) {
        const n = next++
        const exit = yield* call(context.kit, context.services, n, context.observer, bound)
        context.outcomes.push(classify(exit))
        if (next < plan.callers) yield* Effect.sleep(Duration.millis(plan.think ?? 2000))
      }
    })
    yield* Effect.all(Array.from({ length: plan.concurrency ?? 4 }, () => worker), {
      concurrency: "unbounded",
      discard: true
    })
  })

/** The client program over a given transport, in the current scope. */
const program = (
  plan: Plan,
  emulator: Emulator.Emulator,
  baseUrl: string,
  observer: Observer,
  needles: Needles,
  bound: Duration.DurationInput
): Effect.Effect<Omit<Result, "recording" | "pending">, never, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const started = yield* Clock.currentTimeMillis
    const services = yield* Effect.orDie(plan.kit.make(baseUrl, plan.tuning))
    const context: Context = { kit: plan.kit, emulator, services, observer, needles, outcomes: [] }
    if (plan.setup !== undefined) yield* plan.setup(context)
    const during = plan.during === undefined ? undefined : yield* Effect.fork(plan.during(context))
    yield* workload(context, plan, bound)
    if (during !== undefined) yield* Fiber.interrupt(during)
    if (plan.after !== undefined) yield* plan.after(context)
    const stats = yield* services.tokens.stats
    const limiter = yield* services.limiter.stats
    return {
      outcomes: context.outcomes,
      stats,
      attempts: limiter.granted,
      elapsed: (yield* Clock.currentTimeMillis) - started
    }
  })

const finish = (
  emulator: Emulator.Emulator,
  result: Omit<Result, "recording" | "pending">
): Effect.Effect<Result> =>
  Effect.gen(function*() {
    const recording = yield* emulator.recording
    const pending = (yield* emulator.faults.pending("token")) + (yield* emulator.faults.pending("api"))
    return { ...result, recording, pending }
  })

/** Runs `plan` in virtual time over the in-memory emulator. */
export const virtual = (plan: Plan, observer: Observer, needles: Needles): Promise<Result> => {
  const run = Effect.gen(function*() {
    const emulator = harvest(yield* plan.kit.emulator(plan.emulator), needles)
    yield* emulator.faults.set("all", { latency: Duration.millis(plan.latency ?? 20) })
    const http = Sandbox.makeClient(() => emulator.app)
    const result = yield* Effect.scoped(
      program(plan, emulator, `https://${plan.kit.host}`, observer, needles, plan.bound ?? "30 minutes").pipe(
        Effect.provideService(HttpClient.HttpClient, http)
      )
    )
    return yield* finish(emulator, result)
  })
  return VirtualTime.run(observer.observe(run), { settlePromises: false }).then((result) => {
    if (Exit.isFailure(result.exit)) throw new Error(`virtual run failed: ${Cause.pretty(result.exit.cause)}`)
    return result.exit.value
  })
}

/**
 * Runs `plan` in real time: the emulator on a loopback port (outside the observer: a server's own spans
 * and logs are not the client's), the client over undici.
 */
export const loopback = (plan: Plan, observer: Observer, needles: Needles): Promise<Result> =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const emulator = harvest(yield* plan.kit.emulator(plan.emulator), needles)
    const served = yield* Sandbox.serve(emulator)
    const baseUrl = plan.front === undefined ? served.baseUrl : yield* plan.front(served.baseUrl)
    const result = yield* observer.observe(
      Effect.scoped(
        program(plan, emulator, baseUrl, observer, needles, plan.bound ?? "20 seconds").pipe(
          Effect.provide(NodeHttpClient.layerUndici)
        )
      )
    )
    return yield* finish(emulator, result)
  })))

/** The kit's emulator in memory, harvested, with a fixed latency on both targets, and a client reaching it. */
export const inMemory = (kit: Kits.Kit, needles: Needles, latency = 20, options?: Kits.EmulatorOptions) =>
  Effect.gen(function*() {
    const emulator = harvest(yield* kit.emulator(options), needles)
    yield* emulator.faults.set("all", { latency: Duration.millis(latency) })
    return { emulator, http: Sandbox.makeClient(() => emulator.app) }
  })

/** Runs an observed program in virtual time; a failure of the program fails the promise. */
export const simulate = <A, E>(observer: Observer, effect: Effect.Effect<A, E>): Promise<A> =>
  VirtualTime.run(observer.observe(effect), { settlePromises: false }).then((result) => {
    if (Exit.isFailure(result.exit)) throw new Error(`virtual run failed: ${Cause.pretty(result.exit.cause)}`)
    return result.exit.value
  })
