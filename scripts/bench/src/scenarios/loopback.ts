/**
 * Scenario 7: requests per second over real HTTP on loopback, against a server with no limit (a child
 * process, so client and server each have a core). Tollgate's ApiClient (unlimited limiter, cached token)
 * over NodeHttpClient.layerUndici, against the bare clients a user could call instead.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import { Duration, Effect } from "effect"
import { Pool, request as undiciRequest } from "undici"
import * as Child from "../lib/child.js"
import type { Context } from "../lib/context.js"
import { acquire, repeatConcurrently } from "../lib/effect.js"
import { tollgateClient } from "../lib/fixtures.js"
import * as Format from "../lib/format.js"
import type { Section } from "../lib/report.js"
import { pairedRatios, summarize } from "../lib/stats.js"
import * as Throughput from "../lib/throughput.js"

/** Closed loop: this many requests in flight at all times. */
const CONCURRENCY = 32

const jsLoop = async (n: number, send: () => Promise<void>) => {
  const perCaller = n / CONCURRENCY
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    for (let i = 0; i < perCaller; i++) await send()
  }))
}

const contenders = (url: string): ReadonlyArray<Throughput.Contender> => {
  const request = HttpClientRequest.get(url)
  const effectRunner = async (client: HttpClient.HttpClient.With<unknown>, close: () => Promise<void>) => ({
    run: (n: number) =>
      Effect.runPromise(
        repeatConcurrently(CONCURRENCY, n / CONCURRENCY, () => Effect.flatMap(client.execute(request), (r) => r.text))
      ),
    close
  })
  // What `NodeHttpClient.layerUndici` builds (an undici Agent and the client over it), in a scope per round.
  const platformClient = () => acquire(Effect.map(NodeHttpClient.makeDispatcher, NodeHttpClient.makeUndici))
  return [
    {
      name: "Tollgate ApiClient (undici)",
      prepare: async () => {
        const platform = await platformClient()
        const client = await acquire(tollgateClient(platform.value))
        return effectRunner(client.value, async () => {
          await client.close()
          await platform.close()
        })
      }
    },
    {
      name: "(diagnostic) Tollgate, per-attempt timeout off",
      prepare: async () => {
        const platform = await platformClient()
        const client = await acquire(
          tollgateClient(platform.value, RateLimiter.unlimited, { timeout: Duration.infinity })
        )
        return effectRunner(client.value, async () => {
          await client.close()
          await platform.close()
        })
      }
    },
    {
      name: "bare @effect/platform NodeHttpClient.layerUndici",
      prepare: async () => {
        const platform = await platformClient()
        return effectRunner(platform.value, platform.close)
      }
    },
    {
      name: "bare undici Pool.request",
      prepare: async () => {
        const target = new URL(url)
        const pool = new Pool(target.origin)
        return {
          run: (n) =>
            jsLoop(n, async () => {
              const { body } = await pool.request({ path: target.pathname, method: "GET" })
              await body.text()
            }),
          close: () => pool.close()
        }
      }
    },
    {
      name: "bare undici request (global Agent)",
      prepare: async () => ({
        run: (n) =>
          jsLoop(n, async () => {
            const { body } = await undiciRequest(url)
            await body.text()
          })
      })
    },
    {
      name: "bare fetch (Node's built-in)",
      prepare: async () => ({
        run: (n) =>
          jsLoop(n, async () => {
            const response = await fetch(url)
            await response.text()
          })
      })
    }
  ]
}

export const run = async (context: Context): Promise<Section> => {
  const server = Child.spawn("servers.ts")
  let results: Array<Throughput.Result>
  try {
    const port = await server.call<number>("startPlain")
    results = await Throughput.measure(contenders(`http://127.0.0.1:${port}/v1/items`), {
      label: "7 loopback",
      warmups: context.quick ? 1 : 2,
      rounds: context.quick ? 1 : 9,
      targetMillis: context.quick ? 150 : 400,
      granularity: CONCURRENCY,
      initialCount: CONCURRENCY * 8,
      log: context.log
    })
  } finally {
    await server.close()
  }
  const ours = results[0]!
  return {
    id: 7,
    title: "Loopback throughput (real HTTP, no limit)",
    setup: `
A node:http server in a child process answers \`200 ok\` at once on 127.0.0.1; ${CONCURRENCY} requests are kept in
flight (closed loop), each sending a GET and reading the body. **Tollgate**: \`ApiClient.make\` with
\`RateLimiter.unlimited\` and a primed TokenCache over \`NodeHttpClient.layerUndici\` (which builds an undici
\`Agent\`). Against: the same platform client without Tollgate; undici's \`Pool.request\` and \`request\` (the
library under the platform client); and Node's built-in \`fetch\`. Ratios are paired per round.
`,
    tables: [{
      headers: ["client", "requests/s, median (min–max)", "Tollgate ÷ this (median, min–max)"],
      rows: results.map((r) => [
        r.name,
        r.error === undefined ? Format.withSpread(summarize(r.rates), Format.rate) : `failed: ${r.error}`,
        r === ours || r.error !== undefined ? "" : Format.withSpread(pairedRatios(ours.rates, r.rates), Format.ratio)
      ])
    }],
    targets: [],
    notes: notes(results)
  }
}

const notes = (results: ReadonlyArray<Throughput.Result>): Array<string> => {
  const rateOf = (prefix: string) => {
    const result = results.find((r) => r.name.startsWith(prefix))
    return result === undefined || result.rates.length === 0 ? Number.NaN : summarize(result.rates).median
  }
  // With the same number of requests in flight, 1 ÷ throughput is the client's time per request.
  const tollgate = 1e6 / rateOf("Tollgate")
  const untimed = 1e6 / rateOf("(diagnostic) Tollgate, per-attempt timeout off")
  const platform = 1e6 / rateOf("bare @effect/platform")
  const undici = 1e6 / Math.max(rateOf("bare undici Pool"), rateOf("bare undici request"))
  const us = (value: number) => `${Math.max(0, value).toFixed(0)} µs`
  return [
    `**Where the time goes.** Per request (1 ÷ throughput at the same concurrency), undici needs ${us(undici)}, the
@effect/platform client adds ${us(platform - undici)} on top (its span, an AbortController registered with a
FinalizationRegistry per response, the body read through \`Effect.cached\`), and Tollgate adds ${
      us(tollgate - platform)
    }
of its own (${us(tollgate - untimed)} of it the per-attempt deadline: over a real socket every attempt suspends, so
it runs in a child fiber with an entry in the client's deadline heap, and the caller waits for that fiber; the rest
is broken down in scenario 1). Matching fetch or undici would take both Tollgate's fast path and a transport that
hands undici's response over without those layers.`
  ]
}
