import { DateTime, Duration, Effect, Option, Redacted } from "effect"
import * as AccessToken from "../../src/AccessToken.js"
import * as TokenSource from "../../src/TokenSource.js"
import type * as TollgateError from "../../src/TollgateError.js"

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
  readonly fail?: (call: number, grant: "fetch" | "refresh", now: number) => TollgateError.TokenError | undefined
  readonly refresh?: boolean
  readonly revoke?: boolean
  readonly revokeLatency?: Duration.DurationInput
  readonly identity?: Partial<TokenSource.Identity>
}

/** A token source driven by the clock, recording every call it receives. */
export const make = (options: FakeSourceOptions = {}) =>
  Effect.sync(() => {
    const calls: Calls = { fetch: 0, refresh: 0, revoke: 0, inFlight: 0, maxInFlight: 0, revoked: [], issued: [] }
    const lifetime = options.lifetime === undefined ? Duration.hours(1) : options.lifetime
    const issue = (grant: "fetch" | "refresh") =>
      Effect.gen(function*() {
        const n = grant === "fetch" ? ++calls.fetch : ++calls.refresh
        calls.inFlight++
        calls.maxInFlight = Math.max(calls.maxInFlight, calls.inFlight)
        yield* Effect.sleep(options.latency ?? Duration.zero).pipe(Effect.ensuring(Effect.sync(() => calls.inFlight--)))
        const now = yield* DateTime.now
        const error = options.fail?.(n, grant, now.epochMillis)
        if (error !== undefined) return yield* Effect.fail(error)
        const token = new AccessToken.AccessToken({
          value: Redacted.make(`secret-token-${grant}-${n}`),
          type: "Bearer",
          obtainedAt: now,
          expiresAt: lifetime === null ? Option.none() : Option.some(DateTime.addDuration(now, lifetime)),
          refreshToken: options.refresh ? Option.some(Redacted.make(`secret-refresh-${grant}-${n}`)) : Option.none(),
          scope: Option.none()
        })
        calls.issued.push(token)
        return token
      })
    const source = TokenSource.make({
      identity: { provider: "fake", endpoint: "https://fake.test/token", clientId: "client", ...options.identity },
      fetch: issue("fetch"),
      refresh: options.refresh ? () => issue("refresh") : undefined,
      revoke: options.revoke
        ? (token) =>
          Effect.sleep(options.revokeLatency ?? Duration.zero).pipe(
            Effect.zipRight(Effect.sync(() => {
              calls.revoke++
              calls.revoked.push(Redacted.value(token.value))
            }))
          )
        : undefined
    })
    return { source, calls }
  })
