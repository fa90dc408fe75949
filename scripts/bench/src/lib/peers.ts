/**
 * Every limiter measured, each configured for the same budget and used the way its README shows, behind
 * one of two small interfaces: an Effect combinator or a promise-returning wrapper. The scenarios decide
 * what the guarded task is (a counter increment, an HTTP request) and how it is driven.
 */
import * as Experimental from "@effect/experimental/RateLimiter"
import * as Tollgate from "@tollgate/core/RateLimiter"
import Bottleneck from "bottleneck"
import { Duration, Effect, Layer } from "effect"
import type { Scope } from "effect"
import * as EffectRateLimiter from "effect/RateLimiter"
import { RateLimiter as LimiterRateLimiter, TokenBucket as LimiterTokenBucket } from "limiter"
import pThrottle from "p-throttle"
import { RateLimiterMemory, RateLimiterQueue, RateLimiterRes } from "rate-limiter-flexible"
import { sleep } from "./context.js"

/** `limit` admissions per `windowMillis`, the one budget every limiter in a scenario is given. */
export interface Budget {
  readonly limit: number
  readonly windowMillis: number
}

export interface EffectLimiter {
  readonly guard: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, unknown, R>
}

export interface EffectPeer {
  readonly name: string
  readonly make: (budget: Budget) => Effect.Effect<EffectLimiter, never, Scope.Scope>
}

export interface JsLimiter {
  /** `task` guarded by the limiter: each call of the result waits for admission, then runs `task`. */
  readonly wrap: <A>(task: () => A | Promise<A>) => () => Promise<A>
  readonly close: () => Promise<void>
}

export interface JsPeer {
  readonly name: string
  readonly make: (budget: Budget) => JsLimiter
}

// --- Effect ---

export const tollgate: EffectPeer = {
  name: "Tollgate slidingWindow",
  make: (budget) =>
    Effect.map(
      Tollgate.make(Tollgate.slidingWindow({ limit: budget.limit, window: Duration.millis(budget.windowMillis) })),
      (limiter) => ({ guard: (effect) => effect.pipe(limiter.withPermit()) })
    )
}

const effectOwn = (algorithm: "token-bucket" | "fixed-window"): EffectPeer => ({
  name: `effect/RateLimiter ${algorithm}`,
  make: (budget) =>
    Effect.map(
      EffectRateLimiter.make({ limit: budget.limit, interval: Duration.millis(budget.windowMillis), algorithm }),
      (limiter) => ({ guard: (effect) => limiter(effect) })
    )
})

export const effectTokenBucket = effectOwn("token-bucket")
export const effectFixedWindow = effectOwn("fixed-window")

const experimental = (algorithm: "fixed-window" | "token-bucket"): EffectPeer => ({
  name: `@effect/experimental ${algorithm}`,
  make: (budget) =>
    Effect.map(
      Effect.provide(
        Experimental.makeWithRateLimiter,
        Experimental.layer.pipe(Layer.provide(Experimental.layerStoreMemory))
      ),
      (withLimiter) => {
        // `delay` waits for the window instead of failing: the behaviour comparable to a queueing limiter.
        const options = {
          key: "bench",
          limit: budget.limit,
          window: Duration.millis(budget.windowMillis),
          onExceeded: "delay",
          algorithm
        } as const
        return { guard: (effect) => withLimiter(options)(effect) }
      }
    )
})

export const experimentalFixedWindow = experimental("fixed-window")
export const experimentalTokenBucket = experimental("token-bucket")

// --- plain JS ---

export const bottleneckReservoir: JsPeer = {
  name: "bottleneck reservoir",
  make: (budget) => {
    // README, "Reservoir intervals": refill the reservoir to `limit` every window.
    const limiter = new Bottleneck({
      reservoir: budget.limit,
      reservoirRefreshAmount: budget.limit,
      reservoirRefreshInterval: budget.windowMillis
    })
    return {
      wrap: (task) => limiter.wrap(async () => task()),
      close: async () => {
        await limiter.stop({ dropWaitingJobs: true }).catch(() => undefined)
        await limiter.disconnect()
      }
    }
  }
}

export const bottleneckMinTime: JsPeer = {
  name: "bottleneck minTime",
  make: (budget) => {
    // README: "minTime: how long to wait after launching a job before launching another one".
    const limiter = new Bottleneck({ minTime: Math.ceil(budget.windowMillis / budget.limit) })
    return {
      wrap: (task) => limiter.wrap(async () => task()),
      close: async () => {
        await limiter.stop({ dropWaitingJobs: true }).catch(() => undefined)
        await limiter.disconnect()
      }
    }
  }
}

const pThrottlePeer = (strict: boolean): JsPeer => ({
  name: strict ? "p-throttle strict" : "p-throttle windowed",
  make: (budget) => {
    const controller = new AbortController()
    const throttle = pThrottle({
      limit: budget.limit,
      interval: budget.windowMillis,
      strict,
      signal: controller.signal
    })
    return {
      wrap: <A>(task: () => A | Promise<A>) => throttle(task) as () => Promise<A>,
      close: async () => controller.abort(new Error("closed"))
    }
  }
})

export const pThrottleWindowed = pThrottlePeer(false)
export const pThrottleStrict = pThrottlePeer(true)

export const limiterRateLimiter: JsPeer = {
  name: "limiter RateLimiter",
  make: (budget) => {
    const limiter = new LimiterRateLimiter({ tokensPerInterval: budget.limit, interval: budget.windowMillis })
    return {
      wrap: (task) => async () => {
        await limiter.removeTokens(1)
        return task()
      },
      close: async () => {}
    }
  }
}

export const limiterTokenBucket: JsPeer = {
  name: "limiter TokenBucket",
  make: (budget) => {
    const bucket = new LimiterTokenBucket({
      bucketSize: budget.limit,
      tokensPerInterval: budget.limit,
      interval: budget.windowMillis
    })
    return {
      wrap: (task) => async () => {
        await bucket.removeTokens(1)
        return task()
      },
      close: async () => {}
    }
  }
}

const flexible = (execEvenly: boolean): JsPeer => ({
  name: execEvenly ? "rate-limiter-flexible execEvenly" : "rate-limiter-flexible",
  make: (budget) => {
    const limiter = new RateLimiterMemory({ points: budget.limit, duration: budget.windowMillis / 1000, execEvenly })
    // README: `consume` rejects with a RateLimiterRes when the points are spent; wait `msBeforeNext`, retry.
    const admit = async (): Promise<void> => {
      while (true) {
        try {
          await limiter.consume("bench")
          return
        } catch (rejection) {
          if (!(rejection instanceof RateLimiterRes)) throw rejection
          await sleep(Math.max(1, rejection.msBeforeNext))
        }
      }
    }
    return {
      wrap: (task) => async () => {
        await admit()
        return task()
      },
      close: async () => {}
    }
  }
})

export const rateLimiterFlexible = flexible(false)
export const rateLimiterFlexibleEvenly = flexible(true)

/** rate-limiter-flexible's own queueing wrapper, for the memory scenario (consume itself never queues). */
export const rateLimiterFlexibleQueue: JsPeer = {
  name: "rate-limiter-flexible RateLimiterQueue",
  make: (budget) => {
    const queue = new RateLimiterQueue(
      new RateLimiterMemory({ points: budget.limit, duration: budget.windowMillis / 1000 })
    )
    return {
      wrap: (task) => async () => {
        await queue.removeTokens(1)
        return task()
      },
      close: async () => {}
    }
  }
}
