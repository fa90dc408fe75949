/**
 * The store protocol of a `TokenCache`: read the store until it yields a token, stored by anyone or
 * fetched here under the store's lock (renewed while the request runs, written only if the fence is still
 * current), waiting for another cache's fetch, and turning cooldowns, store failures and tokens this
 * process cannot use into typed errors.
 */
import { Cause, Duration, Effect, Exit, Fiber, Option } from "effect"
import type * as AccessToken from "../AccessToken.js"
import type * as TokenStore from "../TokenStore.js"
import * as TollgateError from "../TollgateError.js"

export interface Context {
  readonly provider: string
  readonly store: TokenStore.Store
  readonly grants: (
    base: Effect.Effect<Option.Option<AccessToken.AccessToken>>
  ) => Effect.Effect<readonly [AccessToken.AccessToken, "fetch" | "refresh"], TollgateError.TokenError>
  readonly schedule: (token: AccessToken.AccessToken) => { readonly refreshAt: number; readonly usableUntil: number }
  readonly cooldown: { readonly base: number; readonly max: number }
  /** The bound on one `obtain`, waiting and retries included. */
  readonly timeout: Duration.Duration
  readonly now: () => number
  /** The token this cache holds, the base of a refresh when the store has none. */
  readonly held: () => AccessToken.AccessToken | undefined
  /** Makes a token the one this cache hands out. */
  readonly install: (entry: TokenStore.Entry) => void
  /** Whether this process saw `token` refused (a 401): it is never adopted again. */
  readonly isRefused: (token: AccessToken.AccessToken) => boolean
  readonly onGrant: (grant: "fetch" | "refresh") => void
  /** The end of a cooldown the store reported. */
  readonly onCooldown: (until: number) => void
}

/** `obtain(mode, deadline)`: a token, or the typed error of the store, the source or the deadline. */
export const make = (context: Context) => {
  const { cooldown, now, provider, store, timeout } = context
  const grants = context.grants
  const unreadable = new Set<string>()

  const storeFailed = (error: TokenStore.TokenStoreError) =>
    new TollgateError.TokenEndpointUnavailable({
      provider,
      reason: `the shared token store (${error.store}) ${error.summary}`
    })
  const timedOut = () => new TollgateError.Timeout({ provider, operation: "token request", after: timeout })

  // Runs the grant while holding the store's lock, then writes the token if the fence is still current.
  // `None`: another cache took over meanwhile; read its token instead.
  const fetchUnderLock = (
    lease: TokenStore.Lease,
    base: Option.Option<AccessToken.AccessToken>,
    deadline: number
  ): Effect.Effect<Option.Option<AccessToken.AccessToken>, TollgateError.TokenError> =>
    Effect.gen(function*() {
      const renewal = store.keepAlive === undefined
        ? undefined
        : yield* Effect.fork(Effect.interruptible(store.keepAlive(lease)))
      const budget = Duration.millis(Math.max(0, deadline - now()))
      const exit = yield* Effect.exit(
        grants(Effect.succeed(base)).pipe(Effect.timeoutFail({ duration: budget, onTimeout: timedOut }))
      )
      if (renewal !== undefined) yield* Fiber.interrupt(renewal)
      if (Exit.isFailure(exit)) {
        const failure = Cause.failureOption(exit.cause)
        if (Option.isNone(failure)) {
          yield* store.release(lease)
          return yield* Effect.failCause(exit.cause as Cause.Cause<never>)
        }
        const error = failure.value
        context.onCooldown(yield* store.fail(lease, error, cooldown).pipe(Effect.orElseSucceed(() => 0)))
        yield* Effect.logWarning("Tollgate could not obtain a token").pipe(
          Effect.annotateLogs({ provider, error: error.message })
        )
        return yield* Effect.fail(error)
      }
      const [token, grant] = exit.value
      context.onGrant(grant)
      const entry: TokenStore.Entry = { token, ...context.schedule(token) }
      const stored = yield* Effect.either(store.commit(lease, entry))
      if (stored._tag === "Left") {
        // The token is good; serve it here. The store's lock lapses and another cache fetches.
        yield* Effect.logWarning("Tollgate obtained a token but could not share it through its store").pipe(
          Effect.annotateLogs({ provider, reason: stored.left.message })
        )
      } else if (stored.right !== "stored") {
        yield* Effect.logDebug("Tollgate's token request was superseded by another process").pipe(
          Effect.annotateLogs({ provider, outcome: stored.right })
        )
        return Option.none()
      }
      context.install(entry)
      return Option.some(token)
    }).pipe(Effect.onInterrupt(() => store.release(lease)))

  // Reads the store until it yields a token (stored by anyone, or fetched here under its lock).
  const obtain = (
    mode: "get" | "refresh",
    deadline: number,
    polls: number = 0
  ): Effect.Effect<AccessToken.AccessToken, TollgateError.TokenError> =>
    Effect.flatMap(Effect.mapError(store.read(mode), storeFailed), (read) => {
      switch (read._tag) {
        case "Token": {
          const token = read.entry.token
          if (!context.isRefused(token)) {
            // Installed even when it is the token held: the store's instants are the fleet's.
            context.install(read.entry)
            return Effect.succeed(token)
          }
          // A token this process saw refused: drop it from the store (compare-and-set) and read again.
          if (polls > 8) {
            return Effect.fail(
              new TollgateError.TokenEndpointUnavailable({
                provider,
                reason: "the shared token store keeps holding a token the provider refused"
              })
            )
          }
          return Effect.zipRight(Effect.ignore(store.invalidate(token)), obtain(mode, deadline, polls + 1))
        }
        case "Cooldown":
          context.onCooldown(read.retryAt)
          return Effect.fail(read.error)
        case "Busy": {
          const left = deadline - now()
          if (left <= 0) return Effect.fail(timedOut())
          return read.wait(polls).pipe(
            Effect.timeout(Duration.millis(left)),
            Effect.ignore,
            Effect.zipRight(Effect.suspend(() => obtain(mode, deadline, polls + 1)))
          )
        }
        case "Locked": {
          const base = Option.orElse(read.stored, () => Option.fromNullable(context.held()))
          return Effect.flatMap(
            fetchUnderLock(read.lease, base, deadline),
            Option.match({ onNone: () => obtain(mode, deadline, 0), onSome: Effect.succeed })
          )
        }
        case "Unreadable": {
          const log = unreadable.has(read.reason) ? Effect.void : Effect.logError(
            "Tollgate cannot use the token in its shared store, and leaves it in place"
          ).pipe(Effect.annotateLogs({ provider, reason: read.reason }))
          unreadable.add(read.reason)
          return Effect.zipRight(
            log,
            Effect.fail(new TollgateError.TokenEndpointUnavailable({ provider, reason: read.reason }))
          )
        }
      }
    })

  return obtain
}
