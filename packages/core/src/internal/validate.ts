/**
 * The one path every number a limiter is given goes through: policy settings and per-request options
 * alike. A value it cannot work with becomes a `TollgateError.InvalidArgument` naming the function, the
 * argument and what was expected; nothing here throws. The bounds keep every instant a limiter computes
 * (now + a few windows, a refill of one permit) inside the range a `DateTime` can hold.
 */
import { Duration } from "effect"
import * as TollgateError from "../TollgateError.js"
import { kindOf } from "./describe.js"

/** The longest window, interval or refill a limiter accepts: 10 years (far beyond any quota). */
export const MAX_PERIOD_MILLIS = 10 * 366 * 24 * 60 * 60 * 1000

/** The largest limit, burst or cost: past this a budget is as good as unlimited anyway. */
export const MAX_COUNT = 2 ** 31 - 1

/** Priorities range over ±this; a priority is worth `priority × aging` of waiting. */
export const MAX_PRIORITY = 1_000

/** The range of instants a `DateTime` holds, in epoch milliseconds. */
export const MAX_INSTANT_MILLIS = 8.64e15

const shown = (value: unknown): string =>
  typeof value === "number" && Number.isFinite(value) ? String(value) : kindOf(value)

export const invalid = (module: string, argument: string, expected: string, received: unknown) =>
  new TollgateError.InvalidArgument({ module, argument, expected, received: shown(received) })

/** Where a checked value goes: the first problem found wins, later checks are skipped. */
export class Checker {
  issue: TollgateError.InvalidArgument | undefined = undefined
  constructor(readonly module: string) {}

  fail(argument: string, expected: string, received: unknown): void {
    if (this.issue === undefined) this.issue = invalid(this.module, argument, expected, received)
  }

  /** A whole number in `[min, MAX_COUNT]`. */
  count(argument: string, value: unknown, min = 1): number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > MAX_COUNT) {
      this.fail(argument, `a whole number from ${min} to ${MAX_COUNT}`, value)
      return min
    }
    return value
  }

  /** A finite number in `[min, max]`. */
  number(argument: string, value: unknown, min: number, max: number): number {
    if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
      this.fail(argument, `a finite number from ${min} to ${max}`, value)
      return Math.min(Math.max(typeof value === "number" && !Number.isNaN(value) ? value : min, min), max)
    }
    return value
  }

  /**
   * A duration in milliseconds. `positive` refuses zero; `infinite` accepts `Duration.infinity` (and
   * `Infinity`), answered as `Infinity`. Bare numbers are milliseconds, as `Duration.decode` reads them,
   * but NaN and negatives are refused here instead of silently becoming zero.
   */
  duration(
    argument: string,
    value: unknown,
    options: { readonly positive: boolean; readonly infinite: boolean; readonly max?: number | undefined }
  ): number {
    const max = options.max ?? MAX_PERIOD_MILLIS
    const expected = `${options.positive ? "a positive" : "a non-negative"} duration${
      options.infinite ? " (or infinity)" : ` of at most ${max} ms`
    }`
    if (typeof value === "number" && (Number.isNaN(value) || value < 0)) {
      this.fail(argument, expected, value)
      return options.positive ? 1 : 0
    }
    let millis: number
    try {
      millis = Duration.toMillis(Duration.decode(value as Duration.DurationInput))
    } catch {
      this.fail(argument, expected, value)
      return options.positive ? 1 : 0
    }
    if (millis === Number.POSITIVE_INFINITY && options.infinite) return millis
    if (Number.isNaN(millis) || millis < 0 || (options.positive && millis <= 0) || millis > max) {
      this.fail(argument, expected, typeof value === "number" ? value : millis)
      return options.positive ? 1 : 0
    }
    return millis
  }
}

/** A millisecond instant made safe for `DateTime.unsafeMake`, or `undefined` when it is not a number. */
export const clampInstant = (millis: number | undefined): number | undefined =>
  millis === undefined || Number.isNaN(millis)
    ? undefined
    : Math.max(-MAX_INSTANT_MILLIS, Math.min(MAX_INSTANT_MILLIS, millis))
