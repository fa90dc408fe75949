/**
 * Scenario 6's measurement, one limiter per process (run with --expose-gc): the heap a queued request
 * costs. Closes the limiter's gate, starts N requests that all wait for a permit (each in its own fiber,
 * or its own async function for the plain-JS limiters), and compares the heap after a full GC with the
 * heap before. Prints one JSON line.
 *
 * Usage: node --expose-gc --import tsx queued-memory.ts <limiter name> <requests>
 */
import * as Tollgate from "@tollgate/core/RateLimiter"
import { DateTime, Deferred, Duration, Effect, Fiber } from "effect"
import type { Scope } from "effect"
import { collectGarbage, sleep } from "../lib/context.js"
import * as Peers from "../lib/peers.js"

const [name = "", countArg = "100000"] = process.argv.slice(2)
const count = Number(countArg)

// One admission per 15 s: after the first admission every request waits. (Not longer: p-throttle sets
// one timer per waiter, k windows ahead, and Node fires timers beyond 2^31 ms at once.)
const budget: Peers.Budget = { limit: 1, windowMillis: 15_000 }

const heap = () => {
  collectGarbage(true)
  return process.memoryUsage().heapUsed
}

interface Measurement {
  readonly name: string
  readonly requests: number
  readonly waiting: number
  readonly bytesPerRequest: number
  readonly heapBefore: number
  readonly heapAfter: number
}

/** Waits until every started request has run up to its wait (started counts them). */
const settle = async (started: () => number) => {
  for (let i = 0; i < 600 && started() < count; i++) await sleep(10)
  // A fiber runs from its start to its first suspension in one go; a few more turns let the last ones get there.
  await sleep(50)
}

const effectPeers: Record<string, Peers.EffectPeer | "fibers only"> = {
  [Peers.tollgate.name]: Peers.tollgate,
  [Peers.effectTokenBucket.name]: Peers.effectTokenBucket,
  [Peers.experimentalFixedWindow.name]: Peers.experimentalFixedWindow,
  "(floor) parked fiber, no limiter": "fibers only"
}

const jsPeers: Record<string, Peers.JsPeer | "promises only"> = {
  [Peers.pThrottleWindowed.name]: Peers.pThrottleWindowed,
  [Peers.bottleneckReservoir.name]: Peers.bottleneckReservoir,
  [Peers.limiterRateLimiter.name]: Peers.limiterRateLimiter,
  [Peers.rateLimiterFlexibleQueue.name]: Peers.rateLimiterFlexibleQueue,
  "(floor) pending async function, no limiter": "promises only"
}

export const names = [...Object.keys(effectPeers), ...Object.keys(jsPeers)]

const measureEffect = (peer: Peers.EffectPeer | "fibers only"): Effect.Effect<Measurement, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    // The floor: a fiber parked on a shared Deferred that is never completed (`Effect.never` would add a
    // timer per fiber).
    const never = yield* Deferred.make<never>()
    let guard: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, unknown, R> = () => Deferred.await(never)
    if (peer === Peers.tollgate) {
      const limiter = yield* Tollgate.make(
        Tollgate.slidingWindow({ limit: budget.limit, window: Duration.millis(budget.windowMillis) })
      )
      // Tollgate's gate, closed for an hour as a 429 would close it.
      yield* limiter.pauseUntil(DateTime.add(yield* DateTime.now, { hours: 1 }))
      guard = (effect) => effect.pipe(limiter.withPermit())
    } else if (peer !== "fibers only") {
      const limiter = yield* peer.make(budget)
      guard = limiter.guard
      // Spend the budget, so every later request waits.
      yield* guard(Effect.void)
    }
    let started = 0
    const request = Effect.suspend(() => {
      started++
      return guard(Effect.void)
    })
    // Warm up: the same path once per 1,000 requests, then interrupted, so lazily built structures and
    // compiled code exist before the baseline is read.
    const warm = yield* Effect.forEach(Array.from({ length: 1000 }), () => Effect.forkDaemon(request))
    yield* Effect.promise(() => sleep(50))
    yield* Fiber.interruptAll(warm)
    const fibers: Array<Fiber.RuntimeFiber<unknown, unknown> | undefined> = new Array(count).fill(undefined)
    started = 0
    const before = heap()
    for (let i = 0; i < count; i++) fibers[i] = yield* Effect.forkDaemon(request)
    yield* Effect.promise(() => settle(() => started))
    const after = heap()
    const waiting = fibers.filter((fiber) => fiber !== undefined && fiber.unsafePoll() === null).length
    return {
      name: peer === "fibers only" ? "(floor) parked fiber, no limiter" : peer.name,
      requests: count,
      waiting,
      bytesPerRequest: (after - before) / count,
      heapBefore: before,
      heapAfter: after
    }
  })

const measureJs = async (peer: Peers.JsPeer | "promises only"): Promise<Measurement> => {
  // The floor: an async function awaiting a shared promise that never settles.
  const never = new Promise<never>(() => {})
  let wait: () => Promise<unknown> = () => never
  let close = async () => {}
  if (peer !== "promises only") {
    const limiter = peer.make(budget)
    wait = limiter.wrap(() => undefined)
    close = limiter.close
    await wait()
  }
  let started = 0
  let done = 0
  // A request is an async function awaiting its admission, as application code would be.
  const request = async () => {
    started++
    await wait()
    done++
  }
  const warm = Array.from({ length: 1000 }, request)
  await sleep(50)
  void warm
  const pending: Array<Promise<void> | undefined> = new Array(count).fill(undefined)
  started = 0
  done = 0
  const before = heap()
  for (let i = 0; i < count; i++) pending[i] = request()
  await settle(() => started)
  const after = heap()
  const waiting = count - done
  void close
  return {
    name: peer === "promises only" ? "(floor) pending async function, no limiter" : peer.name,
    requests: count,
    waiting,
    bytesPerRequest: (after - before) / count,
    heapBefore: before,
    heapAfter: after
  }
}

const main = async () => {
  const effectPeer = effectPeers[name]
  const jsPeer = jsPeers[name]
  let result: Measurement
  if (effectPeer !== undefined) result = await Effect.runPromise(Effect.scoped(measureEffect(effectPeer)))
  else if (jsPeer !== undefined) result = await measureJs(jsPeer)
  else throw new Error(`unknown limiter "${name}"; one of: ${names.join(", ")}`)
  process.stdout.write(`${JSON.stringify(result)}\n`)
  // Timers of the waiting requests would keep the process alive for hours.
  process.exit(0)
}

if (process.argv[1]?.endsWith("queued-memory.ts")) void main()
