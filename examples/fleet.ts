/**
 * A fleet of worker processes that look like ONE well-behaved client to the provider: they share one
 * token and one request budget through Redis. The program starts the Nora emulator on loopback (sped up
 * by `--time-scale`, so "60 requests per minute" becomes 60 per second), starts N workers as separate
 * processes that call the API at saturating demand, and prints what each did and what the provider saw.
 *
 *     pnpm tsx examples/fleet.ts [--workers 4] [--seconds 5] [--time-scale 60] [--local]
 *
 * Redis: `REDIS_URL` when set, otherwise a private `redis-server` on a free loopback port for the run.
 * `--local` runs the same workers with core's per-process cache and limiter instead, for comparison:
 * one token request per worker, and 429s as soon as the workers together exceed the budget.
 *
 * Each worker is this same file run with `--worker`: the `Nora` provider Layer, and in fleet mode the
 * two Redis backend Layers under it. That is the whole difference between one process and a fleet.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as Nora from "@tollgate/providers/nora"
import { RedisConnection, RedisRateLimiter, RedisTokenCache } from "@tollgate/redis"
import * as NoraSandbox from "@tollgate/testing/NoraSandbox"
import * as Sandbox from "@tollgate/testing/Sandbox"
import { Duration, Effect, Either, Layer, Logger } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

interface Result {
  readonly worker: string
  readonly sent: number
  readonly succeeded: number
  readonly unauthorized: number
  readonly rateLimited: number
  readonly failed: number
  readonly tokenFetches: number
}

// ---------------------------------------------------------------------------------------------- worker

const worker = Effect.gen(function*() {
  const env = (name: string) => process.env[name] ?? ""
  const name = env("WORKER")
  const local = env("FLEET_MODE") === "local"
  // Credentials and the emulator's address from Nora's own variables, as a service reads them.
  const nora = Nora.layerConfig({
    limits: RateLimiter.slidingWindow({
      limit: Number(env("LIMIT")),
      window: Duration.millis(Number(env("WINDOW_MS")))
    }),
    client: { retry: { rateLimited: 0 } }
  })
  // The two lines that make a fleet out of single processes: every token cache and limiter the Nora
  // Layer builds now lives in Redis, shared by every worker.
  const services = local
    ? nora
    : nora.pipe(Layer.provide(RedisTokenCache.layerBackend()), Layer.provide(RedisRateLimiter.layerBackend()))
  yield* Effect.gen(function*() {
    const client = yield* Nora.NoraClient
    const tokens = yield* Nora.NoraTokens
    // Ready: wait for the parent's "GO <start> <end>", so that every worker starts at the same instant.
    process.stdout.write("READY\n")
    const [startAt, end] = yield* Effect.promise(() =>
      new Promise<[number, number]>((resolve) => {
        let buffer = ""
        process.stdin.setEncoding("utf8")
        process.stdin.on("data", (chunk: string) => {
          buffer += chunk
          const match = /GO (\d+) (\d+)/.exec(buffer)
          if (match !== null) resolve([Number(match[1]), Number(match[2])])
        })
      })
    )
    process.stdin.pause()
    const wait = startAt - Date.now()
    if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
    const result = { worker: name, sent: 0, succeeded: 0, unauthorized: 0, rateLimited: 0, failed: 0, tokenFetches: 0 }
    yield* Effect.all(
      Array.from({ length: 8 }, () =>
        Effect.gen(function*() {
          while (Date.now() < end) {
            result.sent++
            const outcome = yield* client.get("/api/forms").pipe(
              Effect.flatMap((response) => Effect.as(response.text, response.status)),
              Effect.either
            )
            if (Either.isRight(outcome) && outcome.right < 300) result.succeeded++
            else if (
              Either.isLeft(outcome) && outcome.left._tag === "RateLimited" && outcome.left.reason === "server"
            ) {
              result.rateLimited++
            } else if (Either.isLeft(outcome) && outcome.left._tag === "Unauthorized") result.unauthorized++
            else {
              result.failed++
              yield* Effect.sleep("20 millis")
            }
          }
        })),
      { concurrency: "unbounded", discard: true }
    )
    result.tokenFetches = (yield* tokens.stats).fetches
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`)
  }).pipe(Effect.provide(services))
}).pipe(
  Effect.provide(RedisConnection.layerConfig({ connectTimeout: "1 second" })),
  Effect.provide(NodeHttpClient.layer),
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger)))
)

// ---------------------------------------------------------------------------------------------- parent

const option = (name: string, fallback: number): number => {
  const index = process.argv.indexOf(`--${name}`)
  const value = index === -1 ? undefined : Number(process.argv[index + 1])
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback
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

/** A private redis-server for the run, when REDIS_URL is not set. */
const privateRedis = Effect.acquireRelease(
  Effect.promise(async () => {
    const port = await freePort()
    const dir = mkdtempSync(join(tmpdir(), "tollgate-fleet-"))
    const child = spawn("redis-server", [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir
    ], { stdio: "ignore" })
    for (let i = 0; i < 200; i++) {
      const up = await new Promise<boolean>((resolve) => {
        const socket = Net.connect({ port, host: "127.0.0.1" })
        socket.once("connect", () => (socket.destroy(), resolve(true)))
        socket.once("error", () => resolve(false))
      })
      if (up) return { child, dir, url: `redis://127.0.0.1:${port}` }
      if (child.exitCode !== null) break
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    child.kill("SIGKILL")
    throw new Error("could not start redis-server (install it, or set REDIS_URL)")
  }),
  ({ child, dir }) =>
    Effect.sync(() => {
      child.kill("SIGKILL")
      rmSync(dir, { recursive: true, force: true })
    })
)

interface Running {
  readonly ready: Promise<void>
  readonly go: (startAt: number, endAt: number) => void
  readonly done: Promise<Result | undefined>
}

const runWorker = (env: Record<string, string>): Running => {
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", fileURLToPath(import.meta.url), "--worker"],
    { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "inherit"] }
  )
  let output = ""
  let onReady = () => {}
  const ready = new Promise<void>((resolve) => (onReady = resolve))
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString()
    if (output.includes("READY\n")) onReady()
  })
  const done = new Promise<Result | undefined>((resolve) =>
    child.once("exit", () => {
      onReady()
      const line = output.split("\n").find((l) => l.startsWith("RESULT "))
      resolve(line === undefined ? undefined : (JSON.parse(line.slice(7)) as Result))
    })
  )
  return { ready, go: (startAt, endAt) => child.stdin?.write(`GO ${startAt} ${endAt}\n`), done }
}

const pad = (value: string | number, width: number) => String(value).padStart(width)

const parent = Effect.gen(function*() {
  const workers = option("workers", 4)
  const seconds = option("seconds", 5)
  const timeScale = option("time-scale", 60)
  const local = process.argv.includes("--local")
  const redisUrl = process.env["REDIS_URL"] ?? (yield* privateRedis).url
  const nora = yield* Sandbox.serve(yield* NoraSandbox.make({ timeScale }))
  const { limit, windowMillis } = nora.rateLimit
  const prefix = `fleet-${Date.now().toString(36)}`
  console.log(
    `Tollgate fleet: ${workers} worker processes, ${
      local ? "each with its own cache and limiter (--local)" : "sharing one token and one budget through Redis"
    }\nNora emulator at ${nora.baseUrl}: ${limit} requests per ${windowMillis} ms per client, tokens of ${nora.tokenLifetimeSeconds} s (time scale ${timeScale})\n`
  )
  const running = Array.from({ length: workers }, (_, i) =>
    runWorker({
      WORKER: `worker-${i + 1}`,
      FLEET_MODE: local ? "local" : "redis",
      REDIS_URL: redisUrl,
      TOLLGATE_REDIS_PREFIX: prefix,
      [Nora.definition.variables.baseUrl]: nora.baseUrl,
      [Nora.definition.variables.clientId]: nora.credentials.clientId,
      [Nora.definition.variables.clientSecret]: nora.credentials.clientSecret,
      [Nora.definition.variables.organizationId]: nora.credentials.organizationId,
      TOLLGATE_ALLOW_INSECURE_LOOPBACK: "true",
      LIMIT: String(limit),
      WINDOW_MS: String(windowMillis)
    }))
  // Workers need a moment to compile and connect; they all start calling at the same instant.
  yield* Effect.promise(() => Promise.all(running.map((w) => w.ready)))
  const startAt = Date.now() + 200
  for (const w of running) w.go(startAt, startAt + seconds * 1000)
  const results = yield* Effect.promise(() => Promise.all(running.map((w) => w.done)))
  const recording = yield* nora.recording
  const ran = results.filter((r): r is Result => r !== undefined)
  const total = (key: keyof Omit<Result, "worker">) => ran.reduce((sum, r) => sum + r[key], 0)
  const header = `${"worker".padEnd(10)}${pad("sent", 8)}${pad("succeeded", 11)}${pad("token fetches", 15)}${
    pad("401s", 7)
  }${pad("429s", 7)}${pad("other errors", 14)}`
  console.log(header)
  console.log("-".repeat(header.length))
  for (const r of ran) {
    console.log(
      `${r.worker.padEnd(10)}${pad(r.sent, 8)}${pad(r.succeeded, 11)}${pad(r.tokenFetches, 15)}${
        pad(r.unauthorized, 7)
      }${pad(r.rateLimited, 7)}${pad(r.failed, 14)}`
    )
  }
  console.log("-".repeat(header.length))
  console.log(
    `${"fleet".padEnd(10)}${pad(total("sent"), 8)}${pad(total("succeeded"), 11)}${pad(total("tokenFetches"), 15)}${
      pad(total("unauthorized"), 7)
    }${pad(total("rateLimited"), 7)}${pad(total("failed"), 14)}`
  )
  const max = recording.maxArrivalsInWindow(windowMillis)
  console.log(
    `\nthe provider saw: ${recording.tokenCounts.issue} token request(s), ${recording.unauthorized.api} 401s, ${recording.rateLimited.api} 429s; ` +
      `max arrivals in any ${windowMillis} ms window: ${max.all} (limit ${limit}); ${recording.arrivals.length} arrivals in ${seconds} s`
  )
  if (ran.length < workers) console.log(`${workers - ran.length} worker(s) died without a result`)
})

if (process.argv.includes("--worker")) {
  Effect.runPromise(worker).then(
    () => process.exit(0),
    (error) => {
      process.stderr.write(`worker failed: ${error instanceof Error ? error.message : String(error)}\n`)
      process.exit(1)
    }
  )
} else {
  Effect.runPromise(Effect.scoped(parent)).then(
    () => process.exit(0),
    (error) => {
      console.error(error)
      process.exit(1)
    }
  )
}
