/**
 * Runs fleet workers (`test/fixtures/worker.ts`) as child processes and collects what each printed.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

export const fixture = fileURLToPath(new URL("../fixtures/worker.ts", import.meta.url))
const packageRoot = fileURLToPath(new URL("../..", import.meta.url))

export interface WorkerResult {
  readonly worker: string
  readonly pid: number
  readonly sent: number
  readonly succeeded: number
  readonly statuses: Readonly<Record<string, number>>
  readonly errors: Readonly<Record<string, number>>
  readonly timeline: ReadonlyArray<number>
  readonly tokens: ReadonlyArray<string>
  readonly tokenStats: { readonly fetches: number; readonly refreshes: number; readonly invalidations: number }
  readonly statsAt: number
  readonly limiterStats: { readonly granted: number; readonly refunded: number }
}

export interface Worker {
  readonly child: ChildProcess
  /** Everything the worker wrote, stdout and stderr. */
  readonly output: () => string
  /** Resolves when the worker is built and waits for `go` (rejects if it exits first). */
  readonly ready: Promise<void>
  /** Starts its traffic at `startAt` (epoch ms). */
  readonly go: (startAt: number) => void
  /** The worker's result, or `undefined` when it died without printing one (killed, crashed). */
  readonly done: Promise<WorkerResult | undefined>
}

export const start = (env: Readonly<Record<string, string>>): Worker => {
  const child = spawn(process.execPath, ["--import", "tsx", fixture], {
    cwd: packageRoot,
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"]
  })
  let output = ""
  let onReady: () => void = () => {}
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve
    child.once("exit", () => reject(new Error(`worker exited before it was ready:\n${output}`)))
  })
  ready.catch(() => undefined)
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString()
    if (output.includes("READY\n")) onReady()
  })
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()))
  child.stdin?.on("error", () => undefined)
  const done = new Promise<WorkerResult | undefined>((resolve) => {
    child.once("exit", () => {
      const line = output.split("\n").find((l) => l.startsWith("RESULT "))
      resolve(line === undefined ? undefined : JSON.parse(line.slice("RESULT ".length)) as WorkerResult)
    })
  })
  return {
    child,
    output: () => output,
    ready,
    go: (startAt) => {
      child.stdin?.write(`GO ${startAt}\n`)
    },
    done
  }
}

/** Waits until every worker is ready, then starts them all together, `delay` ms from now. */
export const startTogether = async (workers: ReadonlyArray<Worker>, delay = 200): Promise<number> => {
  await Promise.all(workers.map((worker) => worker.ready))
  const startAt = Date.now() + delay
  for (const worker of workers) worker.go(startAt)
  return startAt
}

/** Kills whatever is still running (a failed test must not leave workers behind). */
export const killAll = (workers: ReadonlyArray<Worker>): void => {
  for (const worker of workers) {
    if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill("SIGKILL")
  }
}
