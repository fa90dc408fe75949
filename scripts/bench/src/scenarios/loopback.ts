/**
 * Scenario 7: requests per second over real HTTP on loopback, against a server with no limit (a child
 * process, so client and server each have a core). Tollgate's ApiClient (unlimited limiter, cached token)
 * over NodeHttpClient.layerUndici and over @tollgate/undici's UndiciHttpClient, against the bare clients
 * a user could call instead.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as UndiciHttpClient from "@tollgate/undici/UndiciHttpClient"
import { Duration, Effect } from "effect"
import { Pool, request as undiciRequest } from "undici"
import * as Child from "../lib/child.js"
import type { Context } from "../lib/context.js"
import { acquire, repeatConcurrently } from "../lib/effect.js"
import type { Scoped } from "../lib/effect.js"
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
  type Transport = () => Promise<Scoped<HttpClient.HttpClient>>
  // What `NodeHttpClient.layerUndici` builds (an undici Agent and the client over it), in a scope per round.
  const platformClient: Transport = () => acquire(Effect.map(NodeHttpClient.makeDispatcher, NodeHttpClient.makeUndici))
  // What `UndiciHttpClient.layer` builds: the same undici Agent, our client over it.
  const undiciClient: Transport = () => acquire(Effect.map(UndiciHttpClient.makeDispatcher(), UndiciHttpClient.make))
  const bare = (transport: Transport) => async () => {
    const client = await transport()
    return effectRunner(client.value, client.close)
  }
  const tollgate = (transport: Transport, options: Parameters<typeof tollgateClient>[2] = {}) => async () => {
    const http = await transport()
    const client = await acquire(tollgateClient(http.value, RateLimiter.unlimited, options))
    return effectRunner(client.value, async () => {
      await client.close()
      await http.close()
    })
  }
  return [
    { name: "Tollgate ApiClient (undici)", prepare: tollgate(platformClient) },
    { name: "Tollgate ApiClient over @tollgate/undici", prepare: tollgate(undiciClient) },
    {
      name: "(diagnostic) Tollgate, per-attempt timeout off",
      prepare: tollgate(platformClient, { timeout: Duration.infinity })
    },
    { name: "bare @effect/platform NodeHttpClient.layerUndici", prepare: bare(platformClient) },
    { name: "bare @tollgate/undici UndiciHttpClient", prepare: bare(undiciClient) },
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
      // Runs in slices, round-robin, so a burst of load from elsewhere hits every client alike.
      slices: context.quick ? 1 : 4,
      granularity: CONCURRENCY,
      initialCount: CONCURRENCY * 8,
      log: context.log
    })
  } finally {
    await server.close()
  }
  const ours = results[0]!
  const transport = find(results, "bare @tollgate/undici")
  const platform = find(results, "bare @effect/platform")
  const transportRatio = transport !== undefined && platform !== undefined && transport.error === undefined &&
      platform.error === undefined
    ? pairedRatios(transport.rates, platform.rates)
    : undefined
  const overPlatform = platform !== undefined && platform.error === undefined && ours.error === undefined
    ? pairedRatios(ours.rates, platform.rates)
    : undefined
  const ratioColumn = (reference: Throughput.Result | undefined) => (r: Throughput.Result) =>
    reference === undefined || r === reference || r.error !== undefined || reference.error !== undefined
      ? ""
      : Format.withSpread(pairedRatios(reference.rates, r.rates), Format.ratio)
  return {
    id: 7,
    title: "Loopback throughput (real HTTP, no limit)",
    setup: `
A node:http server in a child process answers \`200 ok\` at once on 127.0.0.1; ${CONCURRENCY} requests are kept in
flight (closed loop), each sending a GET and reading the body. **Tollgate**: \`ApiClient.make\` with
\`RateLimiter.unlimited\` and a primed TokenCache over \`NodeHttpClient.layerUndici\` (which builds an undici
\`Agent\`), and the same over \`UndiciHttpClient.layer\` from \`@tollgate/undici\` (the same \`Agent\`, with an
\`HttpClient\` that dispatches to it directly). Against: both clients without Tollgate; undici's \`Pool.request\`
and \`request\` (the library under both); and Node's built-in \`fetch\`. Ratios are paired per round.
`,
    tables: [{
      headers: [
        "client",
        "requests/s, median (min–max)",
        "Tollgate ÷ this (median, min–max)",
        "UndiciHttpClient ÷ this"
      ],
      rows: results.map((r) => [
        r.name,
        r.error === undefined ? Format.withSpread(summarize(r.rates), Format.rate) : `failed: ${r.error}`,
        ratioColumn(ours)(r),
        ratioColumn(transport)(r)
      ])
    }],
    targets: [{
      name: `Tollgate ≥ 0.9× the bare platform client's throughput (${CONCURRENCY} in flight, both over layerUndici)`,
      met: overPlatform === undefined ? undefined : overPlatform.median >= 0.9,
      measured: overPlatform === undefined ? "n/a" : Format.withSpread(overPlatform, Format.ratio)
    }, {
      name: "@tollgate/undici ≥ 2× the platform's undici client (issue 16: ship it as an opt-in transport)",
      met: transportRatio === undefined ? undefined : transportRatio.median >= 2,
      measured: transportRatio === undefined ? "n/a" : Format.ratio(transportRatio.median)
    }],
    notes: notes(results)
  }
}

const find = (results: ReadonlyArray<Throughput.Result>, prefix: string) =>
  results.find((r) => r.name.startsWith(prefix))

const notes = (results: ReadonlyArray<Throughput.Result>): Array<string> => {
  const rateOf = (prefix: string) => {
    const result = find(results, prefix)
    return result === undefined || result.rates.length === 0 ? Number.NaN : summarize(result.rates).median
  }
  // With the same number of requests in flight, 1 ÷ throughput is the client's time per request. Tollgate's
  // figures are the platform client's time scaled by the paired ratio of the same rounds, so a load burst
  // that fell on different rounds for each does not show up as Tollgate's own cost (or as a negative one).
  const platform = 1e6 / rateOf("bare @effect/platform")
  const paired = (prefix: string) => {
    const result = find(results, prefix)
    const reference = find(results, "bare @effect/platform")
    return result === undefined || reference === undefined || result.rates.length === 0
      ? Number.NaN
      : platform / pairedRatios(result.rates, reference.rates).median
  }
  const tollgate = paired("Tollgate ApiClient (undici)")
  const tollgateOverUndici = paired("Tollgate ApiClient over @tollgate/undici")
  const untimed = paired("(diagnostic) Tollgate, per-attempt timeout off")
  const transport = 1e6 / rateOf("bare @tollgate/undici")
  const undici = 1e6 / Math.max(rateOf("bare undici Pool"), rateOf("bare undici request"))
  const us = (value: number) => `${Math.max(0, value).toFixed(0)} µs`
  const signed = (value: number) => value < 0 ? `saves ${us(-value)}` : `adds ${us(value)}`
  return [
    `**Where the time goes.** Per request (1 ÷ throughput at the same concurrency), undici needs ${us(undici)}, the
@effect/platform client adds ${us(platform - undici)} on top (its span, an AbortController registered with a
FinalizationRegistry per response, undici's \`request\` API with its promise, abort listener and Node stream per
body, the body read through \`Effect.cached\`), and Tollgate ${signed(tollgate - platform)}
of its own (timed against the platform client in the same rounds; the per-attempt deadline ${
      signed(tollgate - untimed)
    }: the platform's client honours abort signals,
so the client learns that from the first request and hands each attempt's deadline to it as an \`AbortController\`
of its own, registered for the request, with an entry in the client's deadline heap; no child fiber. The rest is
broken down in scenario 1).`,
    `**@tollgate/undici.** \`UndiciHttpClient\` adds ${us(transport - undici)} to undici, where the platform's client
adds ${us(platform - undici)}. It hands undici a dispatch handler that resumes the fiber from undici's callbacks and
buffers the body (no promise, no AbortSignal, no Node stream per response), keeps the platform's span and trace
propagation, and registers a response for release only when its body is still in flight. Tollgate needs
${us(tollgateOverUndici)} per request over it, against ${us(tollgate)} over the platform's client.`
  ]
}
