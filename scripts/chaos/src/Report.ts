/**
 * What one test file contributes to the fault matrix: rows merged by fault, and the needles every scan
 * of the file looks for.
 */
import * as Matrix from "./Matrix.js"
import type { Observer } from "./Observe.js"
import { Needles } from "./Observe.js"

export class Report {
  private readonly rows = new Map<string, Matrix.Row>()
  readonly needles = new Needles()

  constructor(secrets: ReadonlyArray<string> = []) {
    for (const secret of secrets) this.needles.secret(secret)
  }

  /** Adds counts to a fault's row. */
  add(
    fault: string,
    group: Matrix.Group,
    where: Matrix.Where,
    provider: string,
    counts: Partial<Matrix.Counts>
  ): void {
    const key = `${group}\u0000${fault}`
    const previous = this.rows.get(key)
    this.rows.set(key, {
      ...Matrix.add(previous ?? Matrix.zero(), counts),
      fault,
      group,
      where: [...new Set([...(previous?.where ?? []), where])].sort(),
      providers: [...new Set([...(previous?.providers ?? []), provider])].sort()
    })
  }

  /** Scans everything `observer` saw for every needle known so far; returns the hits. */
  leaks(observer: Observer): { readonly leaks: number; readonly examples: ReadonlyArray<string> } {
    return this.needles.scan(observer.rendered())
  }

  write(dir: string): void {
    Matrix.write(dir, [...this.rows.values()])
  }
}
