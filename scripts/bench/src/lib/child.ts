/**
 * Child processes: servers run in their own process (so the client under test has the main thread to
 * itself, as it would in production) and memory is measured in a fresh process per limiter. A child
 * is a TypeScript file run by Node through tsx, talking to the parent over the IPC channel with a tiny
 * request/reply protocol; one whose resident memory is measured runs as a JavaScript bundle instead
 * (see `bundle`).
 */
import * as esbuild from "esbuild"
import { fork } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
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
 * Bundles `file` (relative to src/children) into one ES module in a temporary directory and returns its
 * path. tsx compiles every module on load in a worker thread of its own and keeps both around: about
 * 150 MB of resident memory that belongs to the bench harness, not to the code measured, which in
 * production runs as compiled JavaScript.
 */
export const bundle = async (file: string): Promise<string> => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "tollgate-bench-"))
  const outfile = Path.join(dir, file.replace(/\.ts$/, ".mjs"))
  await esbuild.build({
    entryPoints: [Path.join(childrenDir, file)],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "error",
    // Some dependencies are CommonJS and call `require`; an ES module bundle has none of its own.
    banner: {
      js:
        "import { createRequire as __createRequire } from \"node:module\"; const require = __createRequire(import.meta.url);"
    }
  })
  return outfile
}

/** Deletes what `bundle` wrote. */
export const removeBundle = (outfile: string): void =>
  Fs.rmSync(Path.dirname(outfile), { recursive: true, force: true })

/**
 * Runs a child to completion and reads the JSON it prints as its last stdout line (for one-shot
 * measurements such as memory, where the IPC channel itself would allocate inside the measurement).
 */
export const runOnce = (
  file: string,
  nodeFlags: ReadonlyArray<string>,
  args: ReadonlyArray<string>,
  timeoutMillis: number,
  options?: { readonly bundled?: string | undefined }
): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const child = fork(options?.bundled ?? Path.join(childrenDir, file), [...args], {
      execArgv: options?.bundled === undefined ? [...nodeFlags, "--import", "tsx"] : [...nodeFlags],
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
