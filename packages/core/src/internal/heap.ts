/**
 * A binary min-heap ordered by a comparison, for queues whose order is not a single number (the limiter's
 * waiters: by place, then by arrival). Items are dropped lazily, like `MinHeap`'s.
 */
export class OrderedHeap<T> {
  private items: Array<T> = []

  constructor(private readonly before: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length
  }

  peek(): T | undefined {
    return this.items[0]
  }

  /** The item at position `i` of the underlying array (not in order), for scans. */
  at(i: number): T | undefined {
    return this.items[i]
  }

  push(item: T): void {
    const items = this.items
    items.push(item)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(item, items[parent]!)) break
      items[i] = items[parent]!
      i = parent
    }
    items[i] = item
  }

  pop(): T | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (items.length > 0 && last !== undefined) {
      let i = 0
      while (true) {
        const left = 2 * i + 1
        const right = left + 1
        let best = last
        let bestIndex = i
        if (left < items.length && this.before(items[left]!, best)) {
          best = items[left]!
          bestIndex = left
        }
        if (right < items.length && this.before(items[right]!, best)) bestIndex = right
        if (bestIndex === i) break
        items[i] = items[bestIndex]!
        i = bestIndex
      }
      items[i] = last
    }
    return top
  }

  /** Keeps only the items `keep` accepts. */
  retain(keep: (item: T) => boolean): void {
    const kept = this.items.filter(keep)
    this.items = []
    for (const item of kept) this.push(item)
  }

  clear(): Array<T> {
    const items = this.items
    this.items = []
    return items
  }
}

/**
 * A binary min-heap of items by a numeric time, for the timers of the limiter lanes and the attempt
 * deadlines. Both drop finished items lazily (they skip them when they reach the top), which keeps
 * cancellation O(1) on the hot path.
 */
export class MinHeap<T> extends OrderedHeap<T> {
  constructor(timeOf: (item: T) => number) {
    super((a, b) => timeOf(a) < timeOf(b))
  }
}
