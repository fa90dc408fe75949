/**
 * A private `redis-server` on a free loopback port for one chaos row, which the row can pause (SIGSTOP)
 * and resume (SIGCONT): a hang rather than a crash. Nothing is persisted. (@tollgate/redis keeps an
 * equivalent helper under its tests, which a package does not export.)
 */
import type { Scope } from "effect"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as Net from "node:net"

export interface Server {
  readonly url: string
  readonly signal: (signal: "SIGSTOP" | "SIGCONT") => void
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

const answers = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

const launch = async (): Promise<{ readonly child: ChildProcess; readonly port: number }> => {
  let lastError: unknown
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort()
    const child = spawn(
      process.env["REDIS_SERVER_BIN"] ?? "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"],
      { stdio: "ignore" }
    )
    const exited = new Promise<boolean>((resolve) => {
      child.once("exit", () => resolve(false))
      child.once("error", () => resolve(false))
    })
    for (let i = 0; i < 200; i++) {
      if (await Promise.race([answers(port), exited])) return { child, port }
      if (child.exitCode !== null || child.signalCode !== null) break
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    child.kill("SIGKILL")
    lastError = new Error(
      `redis-server did not start on port ${port} (install it: packages/redis/scripts/ensure-redis.sh)`
    )
  }
  throw lastError
}

/** A server for the current scope; it is resumed and killed when the scope closes. */
export const scoped: Effect.Effect<Server, never, Scope.Scope> = Effect.map(
  Effect.acquireRelease(Effect.promise(launch), ({ child }) =>
    Effect.sync(() => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGCONT")
        child.kill("SIGKILL")
      }
    })),
  ({ child, port }) => ({
    url: `redis://127.0.0.1:${port}`,
    signal: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    }
  })
)
