/**
 * The policy compiler: a validated policy becomes a tree whose leaves are lanes opened on a store.
 * `keyed` opens one lane per key on demand, `all` runs a request through each of its parts (plain
 * budgets together in one atomic lane), and a server's named quota is routed to the parts enforcing it.
 */
import { Effect, FiberId, Runtime } from "effect"
import type { Fiber } from "effect"
import type { LaneSpec, Learning, Store } from "../RateLimiterStore.js"
import type * as RateLimiterStore from "../RateLimiterStore.js"
import type * as TollgateError from "../TollgateError.js"
import type { Observation } from "./budget.js"
import * as Local from "./lane.js"
import type { Environment, Request, Stats } from "./queue.js"
import * as Shared from "./sharedLane.js"
import { sleepUntil } from "./time.js"

/** The compiler's view of a policy (the public `Policy` type, validated). */
export type Plan =
  | {
    readonly _tag: "Lane"
    readonly budgets: ReadonlyArray<RateLimiterStore.Budget>
    readonly learning: Learning | undefined
    readonly limits: ReadonlyArray<number>
  }
  | {
    readonly _tag: "Keyed"
    readonly keyOf: (subject: Subject) => string
    readonly lane: Extract<Plan, { _tag: "Lane" }>
    readonly maxKeys: number
  }
  | { readonly _tag: "All"; readonly parts: ReadonlyArray<Plan> }

export interface Subject {
  readonly key?: string | undefined
  readonly limit?: number | undefined
}

export interface Counters extends Stats {
  queued: number
  lanes: number
}

export interface CompileEnvironment extends Environment {
  readonly store: Store
}

export interface Node {
  readonly limits: ReadonlyArray<number>
  withPermit<A, E, R>(
    effect: Effect.Effect<A, E, R>,
    subject: Subject,
    request: Request
  ): Effect.Effect<A, E | TollgateError.RateLimited, R>
  pauseUntil(at: number, subject: Subject): Effect.Effect<void>
  observe(observation: Observation & { readonly cost: number }, subject: Subject): Effect.Effect<void>
  awaitGate(subject: Subject): Effect.Effect<void>
  /**
   * The permits of `subject` taken synchronously, when every lane on its path is local, has them free and
   * has nobody waiting; otherwise `undefined` (the caller then goes through `withPermit`).
   */
  tryHold(subject: Subject, cost: number): Local.Hold | undefined
  /** Whether a permit of `subject` taken now must be released when its request ends. */
  settles(subject: Subject): boolean
  close(): void
  collect(counters: Counters): void
}

interface LaneNode extends Node {
  idle(now: number): boolean
}

const addStats = (counters: Counters, lane: Local.Lane | Shared.SharedLane): void => {
  counters.granted += lane.stats.granted
  counters.waited += lane.stats.waited
  counters.totalWaitMillis += lane.stats.totalWaitMillis
  counters.maxWaitMillis = Math.max(counters.maxWaitMillis, lane.stats.maxWaitMillis)
  counters.refunded += lane.stats.refunded
  counters.rejected += lane.stats.rejected
  counters.timedOut += lane.stats.timedOut
  counters.queued += lane.queueLength
  counters.lanes += 1
}

const laneNode = (
  spec: Omit<LaneSpec, "name">,
  limits: ReadonlyArray<number>,
  env: CompileEnvironment
): LaneNode => {
  const opened = env.store.open({ ...spec, name: env.provider })
  if (opened._tag === "Local") {
    const lane = new Local.Lane(opened, env, spec.key)
    return {
      limits,
      withPermit: (effect, _subject, request) => Local.withPermit(lane, effect, request),
      pauseUntil: (at) => {
        lane.pauseUntil(at)
        return Effect.void
      },
      observe: (observation) => {
        lane.observe(observation)
        return Effect.void
      },
      awaitGate: () => lane.awaitGate(),
      tryHold: (_subject, cost) => Local.tryHold(lane, cost),
      settles: () => opened.settles,
      close: () => lane.close(),
      collect: (counters) => addStats(counters, lane),
      idle: (now) => lane.idle(now)
    }
  }
  const lane = new Shared.SharedLane(opened, env, spec.key)
  return {
    limits,
    withPermit: (effect, _subject, request) => Shared.withPermit(lane, effect, request),
    pauseUntil: (at) => lane.pauseUntil(at),
    observe: (observation) => lane.observe(observation),
    awaitGate: () => lane.awaitGate(),
    tryHold: () => undefined,
    settles: () => true,
    close: () => lane.close(),
    collect: (counters) => addStats(counters, lane),
    idle: () => lane.idle()
  }
}

/** How many lanes a new key may look at for an idle one to replace: O(1) per new key, whatever the stream. */
const EVICTION_SCAN = 8

const keyedNode = (plan: Extract<Plan, { _tag: "Keyed" }>, path: string, env: CompileEnvironment): Node => {
  const lanes = new Map<string, LaneNode>()
  const { budgets, learning, limits } = plan.lane
  const open = (key: string | undefined, lanePath: string) =>
    laneNode({ path: lanePath, key, budgets, learning }, limits, env)
  // Keys that find the map full of busy lanes share one lane of the same policy (each of them then gets
  // at most the budget of one key), and keep doing so until it is idle: a key it served may not get a lane
  // of its own that does not know what it spent.
  let overflow: LaneNode | undefined
  let cursor: Iterator<[string, LaneNode]> | undefined
  let closed = false
  const period = Math.min(
    3_600_000,
    Math.max(1_000, ...budgets.map((b) => (b._tag === "TokenBucket" ? Math.ceil(b.burst / b.perMillis) : b.window)))
  )
  let sweepAt = Number.POSITIVE_INFINITY
  let sweepFiber: Fiber.RuntimeFiber<void> | undefined
  const now = () => env.clock.unsafeCurrentTimeMillis()

  const evict = (key: string, node: LaneNode) => {
    lanes.delete(key)
    node.close()
  }
  const scan = (at: number, budget: number) => {
    for (let i = 0; i < budget && lanes.size > 0; i++) {
      cursor ??= lanes.entries()
      const next = cursor.next()
      if (next.done === true) {
        cursor = undefined
        continue
      }
      if (next.value[1].idle(at)) evict(next.value[0], next.value[1])
    }
  }
  // Idle lanes also go when traffic stops: a sweep every period while any lane is left.
  const scheduleSweep = () => {
    if (closed || sweepAt !== Number.POSITIVE_INFINITY || lanes.size === 0) return
    sweepAt = now() + period
    sweepFiber = Runtime.runFork(env.runtime)(Effect.zipRight(
      sleepUntil(sweepAt),
      Effect.sync(() => {
        sweepAt = Number.POSITIVE_INFINITY
        sweepFiber = undefined
        if (closed) return
        const at = now()
        for (const [key, node] of lanes) if (node.idle(at)) evict(key, node)
        cursor = undefined
        if (overflow !== undefined && overflow.idle(at)) {
          overflow.close()
          overflow = undefined
        }
        scheduleSweep()
      })
    ))
  }
  const nodeFor = (subject: Subject): LaneNode => {
    const key = plan.keyOf(subject)
    const found = lanes.get(key)
    if (found !== undefined) return found
    const at = now()
    if (overflow !== undefined) {
      if (!overflow.idle(at)) return overflow
      overflow.close()
      overflow = undefined
    }
    if (lanes.size >= plan.maxKeys) scan(at, EVICTION_SCAN)
    if (lanes.size >= plan.maxKeys) {
      overflow = open(undefined, `${path}!`)
      if (closed) overflow.close()
      return overflow
    }
    const node = open(key, path)
    if (closed) node.close()
    lanes.set(key, node)
    scheduleSweep()
    return node
  }
  return {
    limits,
    // The lane is found when the request runs: one found earlier may have been dropped as idle since.
    withPermit: (effect, subject, request) =>
      Effect.suspend(() => nodeFor(subject).withPermit(effect, subject, request)),
    pauseUntil: (at, subject) => nodeFor(subject).pauseUntil(at, subject),
    observe: (observation, subject) => nodeFor(subject).observe(observation, subject),
    awaitGate: (subject) => nodeFor(subject).awaitGate(subject),
    tryHold: (subject, cost) => nodeFor(subject).tryHold(subject, cost),
    settles: (subject) => nodeFor(subject).settles(subject),
    close: () => {
      closed = true
      sweepFiber?.unsafeInterruptAsFork(FiberId.none)
      for (const node of lanes.values()) node.close()
      overflow?.close()
    },
    collect: (counters) => {
      for (const node of lanes.values()) node.collect(counters)
      overflow?.collect(counters)
    }
  }
}

const all = (effects: ReadonlyArray<Effect.Effect<void>>): Effect.Effect<void> =>
  effects.every((effect) => effect === Effect.void) ? Effect.void : Effect.all(effects, { discard: true })

const sequenceNode = (nodes: ReadonlyArray<Node>): Node => {
  // A server names the quota it counted against; only the matching parts learn from it, unless none
  // matches, when all do.
  const route = (limit: number | undefined): ReadonlyArray<Node> => {
    if (limit === undefined) return nodes
    const matching = nodes.filter((node) => node.limits.includes(limit))
    return matching.length > 0 ? matching : nodes
  }
  return {
    limits: nodes.flatMap((node) => node.limits),
    withPermit: (effect, subject, request) =>
      nodes.reduceRight<Effect.Effect<any, any, any>>(
        (inner, node) => node.withPermit(inner, subject, request),
        effect
      ),
    pauseUntil: (at, subject) => all(route(subject.limit).map((node) => node.pauseUntil(at, subject))),
    observe: (observation, subject) => all(route(observation.limit).map((node) => node.observe(observation, subject))),
    awaitGate: (subject) => Effect.forEach(nodes, (node) => node.awaitGate(subject), { discard: true }),
    tryHold: (subject, cost) => {
      // All or nothing: the parts taken so far go back untouched when one part has no permit free.
      const holds: Array<Local.Hold> = []
      for (const node of nodes) {
        const hold = node.tryHold(subject, cost)
        if (hold === undefined) {
          for (const taken of holds) taken.refund()
          return undefined
        }
        holds.push(hold)
      }
      return {
        settle: () => holds.forEach((hold) => hold.settle()),
        refund: () => holds.forEach((hold) => hold.refund()),
        settleUnanswered: () => holds.forEach((hold) => hold.settleUnanswered())
      }
    },
    settles: (subject) => nodes.some((node) => node.settles(subject)),
    close: () => nodes.forEach((node) => node.close()),
    collect: (counters) => nodes.forEach((node) => node.collect(counters))
  }
}

/** Compiles `plan` under `path` (the store's name for its lanes). */
export const compile = (plan: Plan, env: CompileEnvironment, path = ""): Node => {
  switch (plan._tag) {
    case "Lane":
      return laneNode({ path, key: undefined, budgets: plan.budgets, learning: plan.learning }, plan.limits, env)
    case "Keyed":
      return keyedNode(plan, path, env)
    case "All":
      return sequenceNode(plan.parts.map((part, i) => compile(part, env, `${path}.${i}`)))
  }
}
