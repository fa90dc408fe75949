/**
 * Tollgate with nothing but @tollgate/core: a standard OAuth2 authorization server and an API that
 * allows 5 requests per second, both started here on loopback, and 40 concurrent requests through
 * one authenticated, rate-limited client. Run it with `pnpm tsx examples/core-quickstart.ts`.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { ApiClient, OAuth2, RateLimiter, TokenCache } from "@tollgate/core"
import { Console, Duration, Effect, Redacted } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

const LIMIT = 5
const WINDOW_MS = 1000

// A minimal authorization server and API, so the example needs no network and no credentials.
interface Started {
  readonly url: string
  readonly server: Http.Server
  readonly stats: { tokens: number; admitted: Array<number>; rejected: number }
}

const startServer = Effect.acquireRelease(
  Effect.async<Started>(
    (resume) => {
      const stats = { tokens: 0, admitted: [] as Array<number>, rejected: 0 }
      const live = new Set<string>()
      const server = Http.createServer((req, res) => {
        const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
          res.writeHead(status, { "content-type": "application/json", ...headers })
          res.end(JSON.stringify(body))
        }
        if (req.method === "POST" && req.url === "/oauth/token") {
          const basic = Buffer.from(`demo-client:demo-secret`).toString("base64")
          if (req.headers.authorization !== `Basic ${basic}`) return json(401, { error: "invalid_client" })
          const token = `token-${++stats.tokens}-${Math.random().toString(36).slice(2)}`
          live.add(token)
          return json(200, { access_token: token, token_type: "Bearer", expires_in: 3600 })
        }
        const bearer = req.headers.authorization?.replace(/^Bearer /, "")
        if (bearer === undefined || !live.has(bearer)) return json(401, { error: "invalid_token" })
        const now = Date.now()
        const recent = stats.admitted.filter((t) => now - t < WINDOW_MS)
        if (recent.length >= LIMIT) {
          stats.rejected++
          return json(429, { error: "rate limited" }, { "retry-after": "1" })
        }
        stats.admitted.push(now)
        setTimeout(() => json(200, { path: req.url }), 5 + Math.random() * 20)
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, stats, server }))
      })
    }
  ),
  (started) => Effect.sync(() => started.server.close())
)

const program = Effect.gen(function*() {
  const server = yield* startServer

  // 1. Where tokens come from: any standards-compliant OAuth2 server.
  const source = yield* OAuth2.make({
    provider: "demo",
    tokenUrl: `${server.url}/oauth/token`,
    clientId: "demo-client",
    clientSecret: Redacted.make("demo-secret")
  })
  // 2. One token for the whole program, refreshed ahead of expiry, revoked at the end.
  const tokens = yield* TokenCache.make(source)
  // 3. The API's budget: 5 requests in any 1-second interval, whatever the latency.
  const limiter = yield* RateLimiter.make(
    RateLimiter.slidingWindow({ limit: LIMIT, window: Duration.millis(WINDOW_MS) })
  )
  // 4. An ordinary HttpClient that does all of the above on every request.
  const client = yield* ApiClient.make({
    provider: "demo",
    baseUrl: server.url,
    allowInsecureLoopback: true, // the demo server is plain http on 127.0.0.1
    tokens,
    limiter
  })

  const started = Date.now()
  yield* Effect.forEach(
    Array.from({ length: 40 }, (_, i) => i),
    (i) => client.get(`/items/${i}`).pipe(Effect.flatMap((response) => response.json)),
    { concurrency: 40 }
  )
  const seconds = (Date.now() - started) / 1000
  yield* Console.log(
    `40 requests in ${seconds.toFixed(1)} s, ${server.stats.tokens} token request(s), ${server.stats.rejected} 429(s)`
  )
  if (server.stats.rejected > 0 || server.stats.tokens !== 1) return yield* Effect.fail("the budget was overdrawn")
}).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici))

program.pipe(Effect.asVoid, NodeRuntime.runMain)
