/**
 * Core's `RateLimiter`, shared by a fleet through Redis: every process that builds a limiter with the
 * same `name` spends one budget. This module is only a store (atomic Lua scripts on the server's clock);
 * core compiles the policy. Fails closed when Redis is unreachable.
 *
 * The design: `docs/redis.md` in the repository.
 *
 * @since 0.1.0
 */
import * as RateLimiter from "@tollgate/core/RateLimiter"
import type * as RateLimiterStore from "@tollgate/core/RateLimiterStore"
import type * as TollgateError from "@tollgate/core/TollgateError"
import { Duration, Effect, Layer } from "effect"
import type { ConfigError, Scope } from "effect"
import * as Durations from "./internal/durations.js"
import * as Scripts from "./internal/limiterScripts.js"
import * as RedisConnection from "./RedisConnection.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options extends RateLimiter.Options {
  /**
   * Names the shared budget in Redis: every process whose limiter has this name spends the same budget.
   * Default: the provider.
   */
  readonly name?: string | undefined
  /**
   * How long a permit in flight stays counted after its process stops renewing it (it crashed). Renewed
   * every third of it. Default: 30 seconds.
   */
  readonly lease?: Duration.DurationInput | undefined
  /** The longest a waiting process sleeps before asking Redis again. Default: 1 second. */
  readonly maxPoll?: Duration.DurationInput | undefined
  /**
   * How long after sending it a take may still run on the server; later, it takes nothing. Keep it at
   * the connection's command timeout. Default: 2 seconds.
   */
  readonly fence?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  lease: Duration.seconds(30),
  maxPoll: Duration.seconds(1),
  fence: Duration.seconds(2)
} as const

/**
 * The hash tag of a limiter's lanes starts with this, followed by the limiter's name.
 *
 * @since 0.1.0
 * @category keys
 */
export const tagPrefix = (name: string): string => `rl.${RedisConnection.tagOf(name)}`

interface Permit extends RateLimiterStore.SharedPermit {
  readonly id: string
  readonly windows: string
  readonly viaConfigured: boolean
}

interface Environment {
  readonly connection: RedisConnection.Service
  readonly now: () => number
  readonly lease: number
  readonly maxPoll: number
  readonly fence: number
  /** The budget's name in Redis; by default each limiter's own. */
  readonly name: string | undefined
}

const str = (value: unknown): string =>
  typeof value === "string" ? value : value instanceof Buffer ? value.toString("utf8") : String(value ?? "")

const parts = (reply: unknown): ReadonlyArray<string> => (Array.isArray(reply) ? reply.map(str) : [])

let permitCounter = 0
const epochTtl = 24 * 60 * 60 * 1000

const budgetSpec = (budget: RateLimiterStore.Budget): string =>
  budget._tag === "SlidingWindow"
    ? `sw:${budget.limit}:${budget.window}`
    : budget._tag === "TokenBucket"
    ? `tb:${budget.perMillis}:${budget.burst}`
    : `fw:${budget.limit}:${budget.window}:${budget.offset}`

/** What a response was, for the learning lane: admitted, a bare 429 (it teaches a limit), another 429. */
const answerOf = (observation: RateLimiterStore.Observation): string =>
  observation.throttled !== true
    ? "a"
    : observation.limit === undefined && observation.remaining === undefined && observation.resetAt === undefined &&
        observation.retryAfter === undefined
    ? "b"
    : "r"

const budgetKeys = (budget: RateLimiterStore.Budget, i: number): ReadonlyArray<string> =>
  budget._tag === "SlidingWindow"
    ? [`sw${i}:held`, `sw${i}:ret`, `sw${i}:ext`]
    : budget._tag === "TokenBucket"
    ? [`tb${i}`]
    : [`fw${i}`, `fw${i}:held`]

/** One shared budget (a limiter, or one key of a keyed limiter) as this process reaches it. */
class Lane implements RateLimiterStore.SharedLane {
  readonly _tag = "Shared"
  readonly settles: boolean
  readonly period: number
  readonly limit: number
  readonly maxPoll: number
  private readonly spec: string
  private readonly learning: string
  private readonly keys: ReadonlyArray<string>
  private readonly queueKeys: ReadonlyArray<string>
  private readonly configuredCapacity: number
  private learnedCapacity = Number.POSITIVE_INFINITY
  private readonly quarantine: number
  private readonly ticket: string
  /** The lane's epoch in Redis when this process last asked; a change means Redis lost the state. */
  private epoch = ""
  /** The server's clock minus ours, from the last reply. */
  private offset: number | undefined = undefined
  readonly held = new Set<Permit>()

  constructor(lane: RateLimiterStore.LaneSpec, private readonly env: Environment) {
    const tag = `${tagPrefix(env.name ?? lane.name)}${lane.path}:${
      lane.key === undefined ? "" : RedisConnection.tagOf(lane.key)
    }`
    const key = (name: string) => RedisConnection.key(env.connection, tag, name)
    const budgets = lane.budgets
    this.spec = budgets.map(budgetSpec).join("|")
    this.learning = lane.learning === undefined
      ? ""
      : `${lane.learning.replace ? 1 : 0}:${lane.learning.probe}:${lane.learning.window}`
    this.queueKeys = [key("q"), key("qe")]
    this.keys = [
      key("gate"),
      key("epoch"),
      ...budgets.flatMap((b, i) => budgetKeys(b, i).map(key)),
      ...this.queueKeys,
      ...(lane.learning === undefined
        ? []
        : ["lh", "lq", "l1:ret", "l1:ext", "l2:ret", "l2:ext", "l3:ret", "l3:ext", "la"].map(key))
    ]
    this.configuredCapacity = Math.min(
      Number.POSITIVE_INFINITY,
      ...budgets.map((b) => (b._tag === "TokenBucket" ? b.burst : b.limit))
    )
    this.limit = this.configuredCapacity
    // How long a server's "no requests left" lasts when it does not say: core's rule.
    this.period = budgets.length === 0
      ? 1000
      : Math.max(...budgets.map((b) => (b._tag === "TokenBucket" ? Math.ceil(1 / b.perMillis) : b.window)))
    this.settles = lane.learning !== undefined || budgets.some((b) => b._tag !== "TokenBucket")
    this.quarantine = Math.max(
      0,
      ...budgets.map((b) => (b._tag === "TokenBucket" ? Math.ceil(b.burst / b.perMillis) : b.window))
    )
    this.maxPoll = env.maxPoll
    this.ticket = env.connection.instanceId
  }

  get capacity(): number {
    return Math.min(this.configuredCapacity, this.learnedCapacity)
  }

  private run(script: RedisConnection.Script, args: ReadonlyArray<string | number>) {
    return this.env.connection.run(script, this.keys, args)
  }

  /** Learns the server's clock from a reply's `now`, then converts `serverInstant` to ours. */
  private local(serverNow: number, serverInstant: number): number {
    const now = this.env.now()
    this.offset = serverNow - now
    return now + (serverInstant - serverNow)
  }

  private gateOf(reply: unknown): number {
    const [serverNow, gate] = parts(reply)
    return this.local(Number(serverNow), Number(gate))
  }

  take(request: Parameters<RateLimiterStore.SharedLane["take"]>[0]) {
    return Effect.suspend(() => {
      const id = `${this.ticket}.${(permitCounter++).toString(36)}`
      const offset = this.offset
      const sentAt = this.env.now()
      return Effect.map(
        this.run(Scripts.acquire, [
          this.spec,
          id,
          request.cost,
          this.env.lease,
          request.ahead,
          request.take ? "1" : "0",
          this.epoch,
          `${this.ticket}.${(permitCounter++).toString(36)}`,
          epochTtl,
          this.quarantine,
          // The place and the fence are on the server's clock, as far as this process knows it.
          Math.round(request.order + (offset ?? 0)),
          this.ticket,
          request.next === undefined ? "" : Math.round(request.next + (offset ?? 0)),
          offset === undefined ? "" : Math.ceil(sentAt + offset + this.env.fence),
          this.env.maxPoll * 3,
          this.learning
        ]),
        (reply): RateLimiterStore.TakeReply => {
          const [granted, serverNow, gate, detail, epoch, via, capacity] = parts(reply)
          if (epoch !== undefined && epoch !== "") this.epoch = epoch
          const sNow = Number(serverNow)
          this.learnedCapacity = capacity === undefined || capacity === "inf" || capacity === ""
            ? Number.POSITIVE_INFINITY
            : Number(capacity)
          const localGate = this.local(sNow, Number(gate))
          if (granted === "1") {
            const permit: Permit = { id, cost: request.cost, windows: detail ?? "", viaConfigured: via !== "0" }
            if (this.settles) this.held.add(permit)
            return { granted: true, permit, gate: localGate }
          }
          return { granted: false, retryAt: Math.ceil(this.local(sNow, Number(detail))), gate: localGate }
        }
      )
    })
  }

  withdraw(): Effect.Effect<void> {
    return Effect.ignore(this.env.connection.run(Scripts.withdraw, this.queueKeys, [this.ticket]))
  }

  settle(shared: RateLimiterStore.SharedPermit): Effect.Effect<void> {
    const permit = shared as Permit
    return Effect.suspend(() => {
      if (!this.held.delete(permit)) return Effect.void
      // If this fails, the permit stays counted until its lease ends: late, never early.
      return Effect.ignore(
        this.run(Scripts.settle, [this.spec, permit.id, permit.cost, permit.viaConfigured ? "1" : "0", this.learning])
      )
    })
  }

  refund(shared: RateLimiterStore.SharedPermit): Effect.Effect<void> {
    const permit = shared as Permit
    return Effect.suspend(() => {
      this.held.delete(permit)
      return Effect.ignore(
        this.run(Scripts.refund, [
          this.spec,
          permit.id,
          permit.cost,
          permit.windows,
          permit.viaConfigured ? "1" : "0",
          this.learning
        ])
      )
    })
  }

  renew(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.held.size === 0) return Effect.void
      const ids = [...this.held].map((permit) => `${permit.id}:${permit.cost}`)
      return Effect.ignore(this.run(Scripts.renew, [this.spec, this.env.lease, this.learning, ...ids]))
    })
  }

  observe(observation: RateLimiterStore.Observation) {
    return Effect.suspend(() => {
      const now = this.env.now()
      const budgets = this.spec === "" ? [] : this.spec.split("|")
      const limits = budgets.map((b) => Number(b.split(":")[b.startsWith("tb") ? 2 : 1]))
      const matching = budgets.map((_, i) => observation.limit === undefined || limits[i] === observation.limit)
      const mask = (matching.some((m) => m) ? matching : budgets.map(() => true)).map((m) => (m ? "1" : "0")).join("")
      return Effect.map(
        this.run(Scripts.observe, [
          this.spec,
          mask,
          observation.remaining === undefined ? "" : observation.remaining,
          observation.resetAt === undefined ? "" : Math.max(0, Math.ceil(observation.resetAt - now)),
          this.period,
          this.learning,
          observation.limit === undefined ? "" : observation.limit,
          observation.window === undefined ? "" : Math.ceil(observation.window),
          observation.cost,
          answerOf(observation),
          `${this.ticket}.${(permitCounter++).toString(36)}`
        ]),
        (reply) => this.gateOf(reply)
      )
    })
  }

  pause(until: number) {
    return Effect.suspend(() =>
      Effect.map(
        this.env.connection.run(Scripts.pauseUntil, [this.keys[0]!, this.keys[1]!], [
          Math.max(1, Math.ceil(until - this.env.now()))
        ]),
        (reply) => this.gateOf(reply)
      )
    )
  }

  get gate() {
    return Effect.map(
      this.env.connection.run(Scripts.readGate, [this.keys[0]!, this.keys[1]!], []),
      (reply) => this.gateOf(reply)
    )
  }

  idle(): boolean {
    return this.held.size === 0
  }

  close(): void {}
}

/**
 * The Redis store: lanes that live under `name` (default: each limiter's own name, its provider), and
 * the fiber that renews the leases of this process's permits in flight, both in the current scope.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "@tollgate/core"
 * import { RedisConnection, RedisRateLimiter } from "@tollgate/redis"
 * import { Effect } from "effect"
 *
 * // Core compiles the policy; the Redis store keeps its lanes, shared by every process using the name "acme".
 * const program = Effect.gen(function*() {
 *   const store = yield* RedisRateLimiter.makeStore({ name: "acme" })
 *   const policy = RateLimiter.slidingWindow({ limit: 60, window: "1 minute" })
 *   const limiter = yield* RateLimiter.makeWithStore(policy, store)
 *   return yield* limiter.withPermit()(Effect.succeed("sent"))
 * }).pipe(Effect.scoped, Effect.provide(RedisConnection.layerFromEnv))
 *
 * // Effect.runPromise(program) with REDIS_URL pointing at a Redis
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeStore = (
  options?: Omit<Options, "provider" | "priorityAging"> & { readonly name?: string | undefined }
): Effect.Effect<RateLimiterStore.Store, never, Scope.Scope | RedisConnection.RedisConnection> =>
  Effect.gen(function*() {
    const connection = yield* RedisConnection.RedisConnection
    const clock = yield* Effect.clock
    const lease = Math.max(100, Duration.toMillis(options?.lease ?? defaults.lease))
    const env: Environment = {
      connection,
      now: () => clock.unsafeCurrentTimeMillis(),
      lease,
      maxPoll: Math.max(1, Duration.toMillis(options?.maxPoll ?? defaults.maxPoll)),
      fence: Math.max(1, Duration.toMillis(options?.fence ?? defaults.fence)),
      name: options?.name
    }
    const lanes = new Set<Lane>()
    yield* Effect.forkScoped(
      Effect.interruptible(Effect.forever(Effect.zipRight(
        Effect.sleep(Duration.millis(lease / 3)),
        Effect.suspend(() => Effect.forEach([...lanes], (lane) => lane.renew(), { discard: true }))
      )))
    )
    return {
      name: "redis",
      open: (spec) => {
        const lane = new Lane(spec, env)
        lanes.add(lane)
        const close = lane.close.bind(lane)
        // A closed lane's permits still in flight keep being renewed until they settle.
        lane.close = () => {
          close()
          if (lane.held.size === 0) lanes.delete(lane)
        }
        return lane
      }
    }
  })

/**
 * Builds a shared limiter for `policy`. Its timers and lease renewal live in the current scope:
 * closing the scope fails every waiting request with `RateLimited` (reason "closed").
 *
 * @example
 * ```ts
 * import { RateLimiter } from "@tollgate/core"
 * import { RedisConnection, RedisRateLimiter } from "@tollgate/redis"
 * import { Effect } from "effect"
 *
 * // One budget of 10 requests per 2 minutes for every process of the fleet.
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RedisRateLimiter.make(RateLimiter.slidingWindow({ limit: 10, window: "2 minutes" }), {
 *     provider: "acme"
 *   })
 *   return yield* limiter.withPermit()(Effect.succeed("sent"))
 * }).pipe(Effect.scoped, Effect.provide(RedisConnection.layer({ url: "redis://127.0.0.1:6379" })))
 *
 * // Effect.runPromise(program) with a Redis at 127.0.0.1:6379
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  policy: RateLimiter.Policy,
  options?: Options
): Effect.Effect<
  RateLimiter.Service,
  TollgateError.InvalidArgument,
  Scope.Scope | RedisConnection.RedisConnection
> =>
  Effect.gen(function*() {
    const invalid = Durations.firstInvalid("RedisRateLimiter.make", {
      lease: options?.lease,
      maxPoll: options?.maxPoll,
      fence: options?.fence
    })
    if (invalid !== undefined) return yield* Effect.fail(invalid)
    const provider = options?.provider ?? "api"
    const store = yield* makeStore({ ...options, name: options?.name ?? provider })
    return yield* RateLimiter.makeWithStore(policy, store, { provider, priorityAging: options?.priorityAging })
  })

/**
 * A shared limiter under core's `RateLimiter` Tag: swap `RateLimiter.layer(policy, options)` for this
 * and the program spends the fleet's budget.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "@tollgate/core"
 * import { RedisConnection, RedisRateLimiter } from "@tollgate/redis"
 * import { Layer } from "effect"
 *
 * // In place of `RateLimiter.layer(policy)`: the same Tag, the fleet's budget.
 * const LimiterLive = RedisRateLimiter.layer(RateLimiter.slidingWindow({ limit: 60, window: "1 minute" }), {
 *   provider: "acme"
 * }).pipe(Layer.provide(RedisConnection.layer({ url: "redis://127.0.0.1:6379" })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  policy: RateLimiter.Policy,
  options?: Options
): Layer.Layer<RateLimiter.RateLimiter, TollgateError.InvalidArgument, RedisConnection.RedisConnection> =>
  Layer.scoped(RateLimiter.RateLimiter, make(policy, options))

/**
 * `layer` over the connection from the environment (`RedisConnection.layerFromEnv`, `REDIS_URL`): the
 * one-line replacement for `RateLimiter.layer(policy, options)`.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "@tollgate/core"
 * import { RedisRateLimiter } from "@tollgate/redis"
 *
 * // In place of `RateLimiter.layer(policy)`, with the connection from REDIS_URL.
 * const LimiterLive = RedisRateLimiter.layerConfig(RateLimiter.slidingWindow({ limit: 60, window: "1 minute" }), {
 *   provider: "acme"
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  policy: RateLimiter.Policy,
  options?: Options
): Layer.Layer<
  RateLimiter.RateLimiter,
  TollgateError.InvalidArgument | RedisConnection.RedisError | ConfigError.ConfigError
> => layer(policy, options).pipe(Layer.provide(RedisConnection.layerFromEnv))

/**
 * Makes every limiter built through `RateLimiter.makeWithBackend` a Redis one: provider modules and
 * `RateLimiter.layer` then spend one budget with the whole fleet, named after their provider.
 *
 * @example
 * ```ts
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Nora } from "@tollgate/providers"
 * import { RedisConnection, RedisRateLimiter } from "@tollgate/redis"
 * import { Layer } from "effect"
 *
 * // Every limiter built through `RateLimiter.makeWithBackend` (provider Layers included) is now shared.
 * const NoraLive = Nora.layerConfig().pipe(
 *   Layer.provide(RedisRateLimiter.layerBackend({ lease: "30 seconds" })),
 *   Layer.provide(RedisConnection.layerFromEnv),
 *   Layer.provide(NodeHttpClient.layerUndici)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerBackend = (
  options?: Omit<Options, "provider" | "name">
): Layer.Layer<RateLimiter.RateLimiterBackend, never, RedisConnection.RedisConnection> =>
  Layer.effect(
    RateLimiter.RateLimiterBackend,
    Effect.map(RedisConnection.RedisConnection, (connection): RateLimiter.Backend => ({
      make: (policy, limiterOptions) =>
        make(policy, { ...options, ...limiterOptions }).pipe(
          Effect.provideService(RedisConnection.RedisConnection, connection)
        )
    }))
  )
