/**
 * Instruments what a provider's client does, without changing it: a transport wrapper that records
 * every request that reaches the wire (token endpoint and API, retries included) with its status, and a
 * `RateLimiterBackend` whose limiters record how long each permit was waited for.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import { Effect } from "effect"

export interface WireEvent {
  /** Milliseconds (epoch) when the request was handed to the transport. */
  readonly at: number
  readonly method: string
  /** The URL's path, without query (which may carry credentials) or host. */
  readonly path: string
  /** 0 when no response arrived (transport error, interruption). */
  readonly status: number
}

export interface Wire {
  readonly client: HttpClient.HttpClient
  readonly events: ReadonlyArray<WireEvent>
}

const pathOf = (url: string): string => {
  try {
    return new URL(url).pathname
  } catch {
    return url.replace(/[?#].*$/, "")
  }
}

/** Wraps `client` so every request it sends is recorded. */
export const record = (client: HttpClient.HttpClient): Wire => {
  const events: Array<WireEvent> = []
  const wrapped = HttpClient.transform(client, (effect, request) =>
    Effect.suspend(() => {
      const at = Date.now()
      const path = pathOf(request.url)
      return effect.pipe(
        Effect.onExit((exit) =>
          Effect.sync(() => {
            events.push({ at, method: request.method, path, status: exit._tag === "Success" ? exit.value.status : 0 })
          })
        )
      )
    }))
  return { client: wrapped, events }
}

export interface PermitWaits {
  readonly backend: RateLimiter.Backend
  /** Wait of every permit granted, in milliseconds, by the limiter's provider name. */
  readonly samples: ReadonlyMap<string, ReadonlyArray<number>>
}

/** A limiter backend that builds ordinary in-process limiters and times every permit. */
export const permitWaits = (): PermitWaits => {
  const samples = new Map<string, Array<number>>()
  const backend: RateLimiter.Backend = {
    make: (policy, options) =>
      Effect.map(RateLimiter.make(policy, options), (limiter): RateLimiter.Service => {
        const name = options?.provider ?? limiter.provider
        const bucket = samples.get(name) ?? []
        samples.set(name, bucket)
        return {
          ...limiter,
          withPermit: ((permit?: RateLimiter.PermitOptions) => {
            const take = limiter.withPermit(permit as RateLimiter.PermitOptions)
            return <A, E, R>(effect: Effect.Effect<A, E, R>) =>
              Effect.suspend(() => {
                const queuedAt = performance.now()
                return take(Effect.suspend(() => {
                  bucket.push(performance.now() - queuedAt)
                  return effect
                }))
              })
          }) as RateLimiter.Service["withPermit"]
        }
      })
  }
  return { backend, samples }
}
