/**
 * A scripted `TokenSource` for unit tests: tokens with the lifetime you choose, after the latency you
 * choose, failing exactly when your script says, with every call recorded. It runs on the Effect
 * `Clock`, so `TestClock` and `VirtualTime` drive it.
 *
 * @since 0.1.0
 */
import { AccessToken, TokenSource } from "@tollgate/core"
import type { TollgateError } from "@tollgate/core"
import { Context, DateTime, Duration, Effect, Layer, Option, Redacted } from "effect"

/**
 * One call the source received.
 *
 * @since 0.1.0
 * @category models
 */
export interface Call {
  readonly grant: "fetch" | "refresh" | "revoke"
  /** Calls of this grant so far, this one included. */
  readonly n: number
  readonly at: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Recording {
  readonly calls: ReadonlyArray<Call>
  readonly fetches: number
  readonly refreshes: number
  readonly revocations: number
  /** Tokens handed out, in order. */
  readonly issued: ReadonlyArray<AccessToken.AccessToken>
  /** Tokens revoked, in order. */
  readonly revoked: ReadonlyArray<AccessToken.AccessToken>
  /** The most calls that were in progress at once. */
  readonly maxConcurrent: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Default: "fake". */
  readonly provider?: string | undefined
  /** Lifetime of issued tokens; `null` issues tokens without expiry. Default: 1 hour. */
  readonly lifetime?: Duration.DurationInput | null | undefined
  /** Time each call takes. Default: none. */
  readonly latency?: Duration.DurationInput | undefined
  /** Issue refresh tokens and support the refresh grant. Default: false. */
  readonly refresh?: boolean | undefined
  /** Support revocation. Default: false. */
  readonly revoke?: boolean | undefined
  /** Outcomes of successive fetch and refresh calls, in order; after the list runs out, calls succeed. */
  readonly script?: ReadonlyArray<"ok" | TollgateError.TokenError> | undefined
  /** Decides any call's outcome: return an error to fail it. Consulted after `script`. */
  readonly fail?: ((call: Call) => TollgateError.TokenError | undefined) | undefined
  readonly identity?: Partial<TokenSource.Identity> | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface FakeTokenSource {
  readonly source: TokenSource.Service
  readonly recording: Effect.Effect<Recording>
}

/**
 * Gives a test the recording of the fake source its Layer installed.
 *
 * @since 0.1.0
 * @category tags
 */
export class FakeTokenSourceRecorder
  extends Context.Tag("@tollgate/testing/FakeTokenSource/Recorder")<FakeTokenSourceRecorder, FakeTokenSource>()
{}

/**
 * @example
 * ```ts
 * import { TokenCache, TollgateError } from "@tollgate/core"
 * import { FakeTokenSource } from "@tollgate/testing"
 * import { Effect } from "effect"
 *
 * Effect.gen(function*() {
 *   // The first token request fails with a 503-like error, the second succeeds.
 *   const fake = yield* FakeTokenSource.make({
 *     lifetime: "10 minutes",
 *     script: [new TollgateError.TokenEndpointUnavailable({ provider: "fake", reason: "503" }), "ok"]
 *   })
 *   const tokens = yield* TokenCache.make(fake.source, { retry: { baseDelay: "1 millis" } })
 *   yield* tokens.get
 *   console.log((yield* fake.recording).fetches) // 2: the cache retried
 * }).pipe(Effect.scoped, Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<FakeTokenSource> =>
  Effect.sync(() => {
    const provider = options.provider ?? "fake"
    const lifetime = options.lifetime === undefined ? Duration.hours(1) : options.lifetime
    const latency = options.latency ?? Duration.zero
    const script = [...(options.script ?? [])]
    const calls: Array<Call> = []
    const issued: Array<AccessToken.AccessToken> = []
    const revoked: Array<AccessToken.AccessToken> = []
    const counts = { fetch: 0, refresh: 0, revoke: 0 }
    let inFlight = 0
    let maxConcurrent = 0

    const track = <A, E>(grant: Call["grant"], body: (call: Call) => Effect.Effect<A, E>) =>
      Effect.gen(function*() {
        const call: Call = { grant, n: ++counts[grant], at: (yield* DateTime.now).epochMillis }
        calls.push(call)
        inFlight++
        maxConcurrent = Math.max(maxConcurrent, inFlight)
        return yield* Effect.zipRight(Effect.sleep(latency), body(call)).pipe(
          Effect.ensuring(Effect.sync(() => inFlight--))
        )
      })

    const issue = (grant: "fetch" | "refresh") =>
      track(grant, (call) =>
        Effect.gen(function*() {
          const scripted = script.shift()
          const error = scripted !== undefined && scripted !== "ok" ? scripted : options.fail?.(call)
          if (error !== undefined) return yield* Effect.fail(error)
          const now = yield* DateTime.now
          const token = new AccessToken.AccessToken({
            value: Redacted.make(`${provider}-${grant}-token-${call.n}`),
            type: "Bearer",
            obtainedAt: now,
            expiresAt: lifetime === null ? Option.none() : Option.some(DateTime.addDuration(now, lifetime)),
            refreshToken: options.refresh === true
              ? Option.some(Redacted.make(`${provider}-${grant}-refresh-${call.n}`))
              : Option.none(),
            scope: Option.none()
          })
          issued.push(token)
          return token
        }))

    const source = TokenSource.make({
      identity: {
        provider,
        endpoint: `https://${provider}.fake/token`,
        clientId: `${provider}-client`,
        ...options.identity
      },
      fetch: issue("fetch"),
      refresh: options.refresh === true ? () => issue("refresh") : undefined,
      revoke: options.revoke === true
        ? (token) => track("revoke", () => Effect.sync(() => void revoked.push(token)))
        : undefined
    })

    return {
      source,
      recording: Effect.sync((): Recording => ({
        calls: [...calls],
        fetches: counts.fetch,
        refreshes: counts.refresh,
        revocations: counts.revoke,
        issued: [...issued],
        revoked: [...revoked],
        maxConcurrent
      }))
    }
  })

/**
 * Installs a fake source as the `TokenSource`, and its recording as `FakeTokenSourceRecorder`.
 *
 * @example
 * ```ts
 * import { TokenCache } from "@tollgate/core"
 * import { FakeTokenSource } from "@tollgate/testing"
 * import { Effect, Layer } from "effect"
 *
 * // The fake as the program's `TokenSource`, and its recording for the test.
 * const TestTokens = TokenCache.layer().pipe(Layer.provideMerge(FakeTokenSource.layer({ revoke: true })))
 *
 * Effect.gen(function*() {
 *   const tokens = yield* TokenCache.TokenCache
 *   const token = yield* tokens.get
 *   const recording = yield* (yield* FakeTokenSource.FakeTokenSourceRecorder).recording
 *   console.log(String(token.value), recording.fetches) // "<redacted>" 1
 * }).pipe(Effect.provide(TestTokens), Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<TokenSource.TokenSource | FakeTokenSourceRecorder> =>
  Layer.effectContext(
    Effect.map(
      make(options),
      (fake) => Context.make(TokenSource.TokenSource, fake.source).pipe(Context.add(FakeTokenSourceRecorder, fake))
    )
  )
