/**
 * What every sandbox emulator has in common: an `HttpApp` to serve (on loopback with `Sandbox.serve`, or
 * in memory with `Sandbox.layerMemory`), its test credentials, its recording and its fault controls.
 * Emulators read time only from Effect's `Clock` and randomness only from Effect's `Random`, so the same
 * emulator runs in real time on loopback and in virtual time under `TestClock` in memory.
 *
 * @since 0.1.0
 */
import type { HttpApp } from "@effect/platform"
import type { Effect, Scope } from "effect"
import type * as Faults from "./Faults.js"
import type * as Recording from "./Recording.js"

/**
 * The emulated providers.
 *
 * @since 0.1.0
 * @category models
 */
export type Provider = "nora" | "norce" | "nomba" | "token-project"

/**
 * The interface shared by all emulators; each provider module extends it with its own controls.
 *
 * @since 0.1.0
 * @category models
 */
export interface Emulator<Credentials = unknown> {
  readonly provider: Provider
  /**
   * The emulator as an `HttpApp`. It fails with `ConnectionDropped` only when told to drop a connection
   * while running without a socket (in memory).
   */
  readonly app: HttpApp.Default<Faults.ConnectionDropped>
  /** The credentials the emulator accepts (the first client when several are configured). */
  readonly credentials: Credentials
  /** Every documented duration (token lifetimes, rate windows, refill rates, Retry-After) is divided by it. */
  readonly timeScale: number
  /** A snapshot of what the emulator has seen so far. */
  readonly recording: Effect.Effect<Recording.Snapshot>
  /** Forgets everything recorded so far (limiter state and tokens are kept). */
  readonly resetRecording: Effect.Effect<void>
  /**
   * Hands every API arrival to `observer` as it is recorded, until the scope closes, so that a check over
   * a long run can stream (e.g. with `Recording.windowTracker`) instead of reading every arrival back from
   * a snapshot. With `keep: false` the recording keeps no arrivals meanwhile (its counters and token
   * requests are still kept), so a run of any length records in constant memory; default `true`.
   */
  readonly observeArrivals: (
    observer: Recording.Observer,
    options?: { readonly keep?: boolean | undefined }
  ) => Effect.Effect<void, never, Scope.Scope>
  readonly faults: Faults.Controls
  /** Revokes every live token now (and refresh tokens where the provider has them); returns how many. */
  readonly revokeAll: Effect.Effect<number>
}

/**
 * Options every emulator accepts.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Divides every documented duration; 60 turns "60 per minute" into "60 per second". Default 1. */
  readonly timeScale?: number | undefined
  /** Initial clock skew of issued timestamps, in milliseconds (see `Faults.Controls.setClockSkew`). */
  readonly clockSkewMillis?: number | undefined
  /** Keep every token request and API arrival (default true); counters are always kept. */
  readonly recordArrivals?: boolean | undefined
}
