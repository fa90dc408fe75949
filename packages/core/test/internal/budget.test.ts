import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { TokenBucket } from "../../src/internal/budget.js"

describe("TokenBucket (the arithmetic under tokenBucket)", () => {
  it("a clock that steps back refills nothing until it passes the later instant again", () => {
    const bucket = new TokenBucket(1 / 1000, 5)
    for (let i = 0; i < 5; i++) expect(bucket.tryTake(10_000, 1)).toBe(true)
    expect(bucket.tryTake(5_000, 1)).toBe(false)
    // Restarting the refill from 5 s would grant five more here: the same five seconds counted twice.
    expect(bucket.tryTake(10_000, 1)).toBe(false)
    expect(bucket.tryTake(11_000, 1)).toBe(true)
    expect(bucket.tryTake(11_000, 1)).toBe(false)
  })

  it.prop(
    "never grants more than burst + rate × (latest reading − first reading), however the clock jumps",
    [
      fc.integer({ min: 1, max: 10 }),
      fc.integer({ min: 1, max: 1_000 }),
      fc.array(fc.integer({ min: -5_000, max: 2_000 }), { minLength: 1, maxLength: 300 })
    ],
    ([burst, intervalMillis, steps]) => {
      const perMillis = 1 / intervalMillis
      const bucket = new TokenBucket(perMillis, burst)
      let now = 100_000
      let first: number | undefined
      let latest = Number.NEGATIVE_INFINITY
      let granted = 0
      for (const step of steps) {
        now += step
        first ??= now
        latest = Math.max(latest, now)
        while (bucket.tryTake(now, 1)) granted++
      }
      expect(granted).toBeLessThanOrEqual(burst + perMillis * (latest - first!) + 1e-6)
    }
  )
})
