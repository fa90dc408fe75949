import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { MinHeap } from "../../src/internal/heap.js"

describe("MinHeap (the timers of lanes and attempt deadlines)", () => {
  it.prop(
    "pops in time order whatever the pushes, and keeps only what retain accepts",
    [fc.array(fc.integer({ min: -1_000, max: 1_000 }), { maxLength: 200 }), fc.integer({ min: 2, max: 5 })],
    ([times, modulus]) => {
      const heap = new MinHeap<{ readonly at: number }>((item) => item.at)
      for (const at of times) heap.push({ at })
      expect(heap.size).toBe(times.length)
      heap.retain((item) => Math.abs(item.at) % modulus !== 0)
      const expected = times.filter((at) => Math.abs(at) % modulus !== 0).sort((a, b) => a - b)
      expect(heap.peek()?.at).toBe(expected[0])
      const popped: Array<number> = []
      for (let item = heap.pop(); item !== undefined; item = heap.pop()) popped.push(item.at)
      expect(popped).toEqual(expected)
      expect(heap.size).toBe(0)
    }
  )
})
