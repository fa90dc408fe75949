/**
 * Starts a private `redis-server` on a free loopback port for a test, so the test can kill it and start
 * it again on the same port mid-run. Nothing is persisted (`--save "" --appendonly no`).
 *
 * `availability` tells whether a server can be started at all on this machine; tests that need Redis
 * skip with that printed reason only when it cannot.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

export const binary = process.env["REDIS_SERVER_BIN"] ?? "redis-server"

export interface Server {
  readonly port: number
  readonly url: string
  /** Whether the process is running now. */
  readonly running: () => boolean
  /** Stops the server with SIGKILL (no goodbye to clients) or SIGTERM. */
  readonly kill: (signal?: "SIGKILL" | "SIGTERM") => Promise<void>
  /** Pauses (SIGSTOP) or resumes (SIGCONT) the process: a hang rather than a crash. */
  readonly signal: (signal: "SIGSTOP" | "SIGCONT") => void
  /** Starts it again on the same port (empty: nothing was persisted). */
  readonly restart: () => Promise<void>
  readonly stop: () => Promise<void>
}

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const canConnect = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", () => resolve()))

// Servers still running when the test process exits (a timed-out test, an interrupted run) go with it.
const live = new Set<ChildProcess>()
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL")
})

const launch = async (port: number, dir: string, extra: ReadonlyArray<string>): Promise<ChildProcess> => {
  const child = spawn(binary, [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--loglevel",
    "warning",
    ...extra
  ], { stdio: ["ignore", "pipe", "pipe"] })
  live.add(child)
  child.once("exit", () => live.delete(child))
  let output = ""
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()))
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()))
  const failed = new Promise<never>((_, reject) => {
    child.once("error", (error) => reject(error))
    child.once("exit", (code) => reject(new Error(`redis-server exited with code ${code}: ${output.trim()}`)))
  })
  const ready = (async () => {
    for (let i = 0; i < 200; i++) {
      if (await canConnect(port)) return
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    throw new Error(`redis-server did not accept connections on port ${port}: ${output.trim()}`)
  })()
  try {
    await Promise.race([ready, failed])
  } catch (error) {
    child.kill("SIGKILL")
    throw error
  }
  failed.catch(() => undefined)
  return child
}

/**
 * Starts a server on a free port (retrying if another process takes the port first). `extra` are more
 * `redis-server` arguments, e.g. `["--requirepass", "…"]`.
 */
export const start = async (extra: ReadonlyArray<string> = []): Promise<Server> => {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-redis-"))
  let lastError: unknown
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort()
    try {
      let child = await launch(port, dir, extra)
      const running = () => child.exitCode === null && child.signalCode === null
      const kill = async (signal: "SIGKILL" | "SIGTERM" = "SIGKILL") => {
        if (!running()) return
        child.kill(signal)
        await exited(child)
      }
      return {
        port,
        url: `redis://127.0.0.1:${port}`,
        running,
        kill,
        signal: (signal) => {
          if (running()) child.kill(signal)
        },
        restart: async () => {
          await kill()
          for (let i = 0;; i++) {
            try {
              child = await launch(port, dir, extra)
              return
            } catch (error) {
              if (i >= 20) throw error
              await new Promise((resolve) => setTimeout(resolve, 50))
            }
          }
        },
        stop: async () => {
          await kill("SIGKILL")
          rmSync(dir, { recursive: true, force: true })
        }
      }
    } catch (error) {
      lastError = error
    }
  }
  rmSync(dir, { recursive: true, force: true })
  throw lastError
}

/** A server for the current scope. */
export const scoped: Effect.Effect<Server, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(() => start()),
  (server) => Effect.promise(() => server.stop())
)

/** A server for the current scope, with more `redis-server` arguments. */
export const scopedWith = (extra: ReadonlyArray<string>): Effect.Effect<Server, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.promise(() => start(extra)), (server) => Effect.promise(() => server.stop()))

/**
 * Whether a server can be started here: `redis-server` exists and one starts and answers. Probed once
 * per test file.
 */
export const probe = async (): Promise<{ readonly ok: true } | { readonly ok: false; readonly reason: string }> => {
  const version = spawnSync(binary, ["--version"], { encoding: "utf8" })
  if (version.error !== undefined || version.status !== 0) {
    return {
      ok: false,
      reason: `${binary} cannot run (${
        version.error?.message ?? `exit ${version.status}`
      }); install it with packages/redis/scripts/ensure-redis.sh`
    }
  }
  try {
    const server = await start()
    await server.stop()
    return { ok: true }
  } catch (error) {
    return { ok: false, reason: `${binary} does not start: ${error instanceof Error ? error.message : String(error)}` }
  }
}

/** Prints why Redis tests are skipped (never silently) and returns whether they can run. */
export const requireRedis = async (suite: string): Promise<boolean> => {
  const result = await probe()
  if (!result.ok) console.warn(`[${suite}] SKIPPED: Redis tests need a redis-server: ${result.reason}`)
  return result.ok
}
