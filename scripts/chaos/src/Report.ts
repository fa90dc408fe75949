/**
 * What one test file contributes to the fault matrix: rows merged by fault, and the needles every scan
 * of the file looks for.
 */
import * as Matrix from "./Matrix.js"
import type { Observer } from "./Observe.js"
import { Needles } from "./Observe.js"
import * as Traffic from "./Traffic.js"

/** One run of a fault against one provider, as the matrix counts it. */
export interface Run {
  readonly fault: string
  readonly group: Matrix.Group
  readonly where: Matrix.Where
  readonly provider: string
  readonly outcomes: ReadonlyArray<Traffic.Outcome>
  /** Everything the client showed during the run, scanned for secrets. */
  readonly observer: Observer
  readonly injected: number
  /** Windows the server saw over a documented limit, and sends through a closed gate. */
  readonly overLimit?: number | undefined
  /** Requests lost beyond the outcomes: permits held back, waiters left queued, a scope that never closed. */
  readonly alsoLost?: number | undefined
}

/** A run as added to its row. */
export interface Recorded {
  readonly counts: Matrix.Counts
  /** Provider, fault and the outcomes' tags, for assertion messages. */
  readonly context: string
  /** What breaks the matrix's promise (a secret leaked, a request lost, a limit overdrawn); empty when none. */
  readonly violations: ReadonlyArray<string>
}

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
      providers: [...new Set([...(previous?.providers ?? []), provider])].sort(),
      notes: previous?.notes,
      known: previous?.known
    })
  }

  /** Marks a fault's row as a known gap in the limit it keeps (see `Matrix.Row.known`). */
  known(fault: string, reason: string): void {
    for (const [key, row] of this.rows) if (row.fault === fault) this.rows.set(key, { ...row, known: reason })
  }

  /** Adds a figure to a fault's row, printed below the matrix. */
  note(fault: string, note: string): void {
    for (const [key, row] of this.rows) {
      if (row.fault === fault) this.rows.set(key, { ...row, notes: [...(row.notes ?? []), note] })
    }
  }

  /** Adds one run to its fault's row and says whether it kept the matrix's promise. */
  record(run: Run): Recorded {
    const leaks = this.leaks(run.observer)
    const tally = Traffic.tally(run.outcomes)
    const counts: Matrix.Counts = {
      ...tally,
      injected: run.injected,
      overLimit: run.overLimit ?? 0,
      leaked: leaks.leaks,
      lost: tally.lost + (run.alsoLost ?? 0)
    }
    this.add(run.fault, run.group, run.where, run.provider, counts)
    return {
      counts,
      context: `${run.provider} / ${run.fault}: ${JSON.stringify(Traffic.tags(run.outcomes))}`,
      violations: [
        ...leaks.examples.map((example) => `leaked ${example}`),
        ...(counts.lost > 0 ? [`${counts.lost} lost`] : []),
        ...(counts.overLimit > 0 ? [`${counts.overLimit} over the limit`] : [])
      ]
    }
  }

  /** Scans everything `observer` saw for every needle known so far; returns the hits. */
  leaks(observer: Observer): { readonly leaks: number; readonly examples: ReadonlyArray<string> } {
    return this.needles.scan(observer.rendered())
  }

  write(dir: string): void {
    Matrix.write(dir, [...this.rows.values()])
  }
}
