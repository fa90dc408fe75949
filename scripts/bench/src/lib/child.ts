/**
 * Child processes: servers run in their own process (so the client under test has the main thread to
 * itself, as it would in production) and memory is measured in a fresh process per limiter. A child
 * is a TypeScript file run by Node through tsx, talking to the parent over the IPC channel with a tiny
 * request/reply protocol.
 */
import { fork } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

export const childrenDir = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..", "children")

interface Reply {
  readonly id: number
  readonly result?: unknown
  readonly error?: string
}

export interface Child {
  readonly call: <A>(method: string, params?: unknown) => Promise<A>
  readonly close: () => Promise<void>
  readonly process: ChildProcess
}

/** Starts `file` (relative to src/children) under tsx with extra Node flags. */
export const spawn = (file: string, nodeFlags: ReadonlyArray<string> = [], args: ReadonlyArray<string> = []): Child => {
  const child = fork(Path.join(childrenDir, file), [...args], {
    execArgv: [...nodeFlags, "--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })
  let nextId = 0
  const pending = new Map<number, { resolve: (value: any) => void; reject: (error: Error) => void }>()
  child.on("message", (message: Reply) => {
    const waiter = pending.get(message.id)
    if (waiter === undefined) return
    pending.delete(message.id)
    if (message.error !== undefined) waiter.reject(new Error(message.error))
    else waiter.resolve(message.result)
  })
  child.on("exit", (code) => {
    for (const waiter of pending.values()) waiter.reject(new Error(`child ${file} exited with code ${code}`))
    pending.clear()
  })
  return {
    process: child,
    call: <A>(method: string, params?: unknown) =>
      new Promise<A>((resolve, reject) => {
        const id = nextId++
        pending.set(id, { resolve, reject })
        child.send({ id, method, params })
      }),
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve()
        child.once("exit", () => resolve())
        child.kill()
      })
  }
}

/** The child's side: answers each request with `handlers[method](params)`. */
export const serve = (handlers: Record<string, (params: any) => unknown>): void => {
  process.on("message", async (message: { id: number; method: string; params: unknown }) => {
    try {
      const handler = handlers[message.method]
      if (handler === undefined) throw new Error(`unknown method ${message.method}`)
      process.send!({ id: message.id, result: await handler(message.params) })
    } catch (error) {
      process.send!({ id: message.id, error: error instanceof Error ? error.message : String(error) })
    }
  })
  // Die with the parent.
  process.on("disconnect", () => process.exit(0))
}

/**
 * Runs a child to completion and reads the JSON it prints as its last stdout line (for one-shot
 * measurements such as memory, where the IPC channel itself would allocate inside the measurement).
 */
export const runOnce = (
  file: string,
  nodeFlags: ReadonlyArray<string>,
  args: ReadonlyArray<string>,
  timeoutMillis: number
): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const child = fork(Path.join(childrenDir, file), [...args], {
      execArgv: [...nodeFlags, "--import", "tsx"],
      stdio: ["ignore", "pipe", "inherit", "ipc"]
    })
    let out = ""
    child.stdout!.on("data", (chunk) => (out += String(chunk)))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${file} ${args.join(" ")} timed out after ${timeoutMillis} ms`))
    }, timeoutMillis)
    child.on("exit", (code) => {
      clearTimeout(timer)
      const last = out.trim().split("\n").pop() ?? ""
      try {
        if (code !== 0) throw new Error(`exit code ${code}`)
        resolve(JSON.parse(last))
      } catch (error) {
        reject(new Error(`${file} ${args.join(" ")} failed (${String(error)}): ${last.slice(0, 200)}`))
      }
    })
  })
