import * as AccessToken from "@tollgate/core/AccessToken"
import * as TokenSource from "@tollgate/core/TokenSource"
import type * as TollgateError from "@tollgate/core/TollgateError"
import { DateTime, Duration, Effect, Option, Redacted } from "effect"

export interface Calls {
  fetch: number
  refresh: number
  revoke: number
  inFlight: number
  maxInFlight: number
  readonly revoked: Array<string>
  readonly issued: Array<AccessToken.AccessToken>
}

export interface FakeSourceOptions {
  /** Lifetime of issued tokens; `null` issues tokens without expiry. Default: 1 hour. */
  readonly lifetime?: Duration.DurationInput | null
  readonly latency?: Duration.DurationInput
  /** Return an error to fail the n-th call of that grant. */
  readonly fail?: (call: number, grant: "fetch" | "refresh") => TollgateError.TokenError | undefined
  readonly refresh?: boolean
  readonly revoke?: boolean
  readonly identity?: Partial<TokenSource.Identity>
}

/**
 * A token source on the live clock, shared by every "process" of a test (each cache on its own Redis
 * connection), so its counters are the fleet's: what the provider would have seen.
 */
export const make = (options: FakeSourceOptions = {}) =>
  Effect.sync(() => {
    const calls: Calls = { fetch: 0, refresh: 0, revoke: 0, inFlight: 0, maxInFlight: 0, revoked: [], issued: [] }
    const lifetime = options.lifetime === undefined ? Duration.hours(1) : options.lifetime
    const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
    const issue = (grant: "fetch" | "refresh") =>
      Effect.gen(function*() {
        const n = grant === "fetch" ? ++calls.fetch : ++calls.refresh
        calls.inFlight++
        calls.maxInFlight = Math.max(calls.maxInFlight, calls.inFlight)
        yield* Effect.sleep(options.latency ?? Duration.zero).pipe(Effect.ensuring(Effect.sync(() => calls.inFlight--)))
        const error = options.fail?.(n, grant)
        if (error !== undefined) return yield* Effect.fail(error)
        const now = yield* DateTime.now
        const token = new AccessToken.AccessToken({
          value: Redacted.make(`secret-token-${run}-${grant}-${n}`),
          type: "Bearer",
          obtainedAt: now,
          expiresAt: lifetime === null ? Option.none() : Option.some(DateTime.addDuration(now, lifetime)),
          refreshToken: options.refresh
            ? Option.some(Redacted.make(`secret-refresh-${run}-${grant}-${n}`))
            : Option.none(),
          scope: Option.none()
        })
        calls.issued.push(token)
        return token
      })
    const source = TokenSource.make({
      identity: {
        provider: "fake",
        endpoint: "https://fake.test/token",
        clientId: `client-${run}`,
        ...options.identity
      },
      fetch: issue("fetch"),
      refresh: options.refresh ? () => issue("refresh") : undefined,
      revoke: options.revoke
        ? (token) =>
          Effect.sync(() => {
            calls.revoke++
            calls.revoked.push(Redacted.value(token.value))
          })
        : undefined
    })
    return { source, calls }
  })
