/**
 * Gives every test file a fresh results directory, and at the end prints the fault matrix and fails the
 * run if any fault lost a request, overdrew a limit or leaked a secret.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { TestProject } from "vitest/node"
import * as Matrix from "./Matrix.js"

declare module "vitest" {
  export interface ProvidedContext {
    chaosResults: string
  }
}

export default function setup(project: TestProject) {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "tollgate-chaos-"))
  project.provide("chaosResults", dir)
  const started = performance.now()
  return () => {
    const rows = Matrix.read(dir)
    Fs.rmSync(dir, { recursive: true, force: true })
    const seconds = ((performance.now() - started) / 1000).toFixed(1)
    process.stdout.write(`\nTollgate fault matrix (${seconds} s)\n\n${Matrix.format(rows)}\n\n`)
    if (rows.length === 0) throw new Error("the chaos suite recorded no fault at all")
    const broken = Matrix.violations(rows)
    if (broken.length > 0) {
      throw new Error(
        `invariants broken by: ${
          broken.map((row) => `${row.group}/${row.fault}`).join("; ")
        } (lost, over-limit and leaked must be 0)`
      )
    }
  }
}
