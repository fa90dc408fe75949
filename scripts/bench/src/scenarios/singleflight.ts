/**
 * Scenario 4: token single-flight. Thousands of callers ask for a token at once on a cold cache; the
 * loopback token endpoint (a child process) counts how many token requests reach it. Tollgate is a
 * TokenCache over core's OAuth2 client-credentials source; the peer is simple-oauth2 used the way its
 * README shows, each caller checking `expired()` before `getToken`.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as OAuth2 from "@tollgate/core/OAuth2"
import * as TokenCache from "@tollgate/core/TokenCache"
import { Effect, Redacted } from "effect"
import { ClientCredentials } from "simple-oauth2"
import type { AccessToken } from "simple-oauth2"
import * as Child from "../lib/child.js"
import type { Context } from "../lib/context.js"
import { errorMessage } from "../lib/context.js"
import * as Format from "../lib/format.js"
import type { Section } from "../lib/report.js"
import { summarize } from "../lib/stats.js"

const clientId = "bench-client"
const clientSecret = "bench-secret"
// A realistic token endpoint is not instant; every caller is waiting before the first answer returns.
const LATENCY_MILLIS = 50

interface Outcome {
  readonly tokenRequests: number
  readonly millis: number
  readonly failedCallers: number
  readonly error?: string | undefined
}

interface Contender {
  readonly name: string
  /** Serves `callers` concurrent callers; resolves with the wall time and the callers that failed. */
  readonly serve: (tokenUrl: string, callers: number) => Promise<{ millis: number; failed: number }>
}

const tollgate: Contender = {
  name: "Tollgate TokenCache (core OAuth2 source)",
  serve: (tokenUrl, callers) =>
    Effect.gen(function*() {
      const source = yield* OAuth2.make({ tokenUrl, clientId, clientSecret: Redacted.make(clientSecret) })
      const cache = yield* TokenCache.make(source)
      let failed = 0
      const start = performance.now()
      yield* Effect.forEach(
        Array.from({ length: callers }),
        () => Effect.catchAll(Effect.asVoid(cache.get), () => Effect.sync(() => void failed++)),
        { concurrency: "unbounded", discard: true }
      )
      return { millis: performance.now() - start, failed }
    }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici), Effect.runPromise)
}

const simpleOauth2: Contender = {
  name: "simple-oauth2 (check expired(), then getToken)",
  serve: async (tokenUrl, callers) => {
    const url = new URL(tokenUrl)
    const client = new ClientCredentials({
      client: { id: clientId, secret: clientSecret },
      auth: { tokenHost: url.origin, tokenPath: url.pathname }
    })
    let token: AccessToken | undefined
    let failed = 0
    const caller = async () => {
      try {
        if (token === undefined || token.expired()) token = await client.getToken({})
      } catch {
        failed++
      }
    }
    const start = performance.now()
    await Promise.all(Array.from({ length: callers }, caller))
    return { millis: performance.now() - start, failed }
  }
}

const contenders = [tollgate, simpleOauth2]

export const run = async (context: Context): Promise<Section> => {
  const callers = context.quick ? 500 : 10_000
  const rounds = context.quick ? 1 : 3
  const server = Child.spawn("servers.ts")
  const outcomes = new Map<string, Array<Outcome>>(contenders.map((c) => [c.name, []]))
  try {
    const port = await server.call<number>("startToken", { latencyMillis: LATENCY_MILLIS })
    const tokenUrl = `http://127.0.0.1:${port}/oauth/token`
    for (let round = 0; round < rounds; round++) {
      for (const contender of round % 2 === 0 ? contenders : [...contenders].reverse()) {
        context.log(
          `4 single-flight: round ${round + 1}/${rounds}: ${contender.name}, ${callers.toLocaleString("en")} callers`
        )
        await server.call("resetTokenRequests")
        let outcome: Outcome
        try {
          const { failed, millis } = await contender.serve(tokenUrl, callers)
          outcome = { tokenRequests: await server.call<number>("tokenRequests"), millis, failedCallers: failed }
        } catch (error) {
          outcome = {
            tokenRequests: await server.call<number>("tokenRequests"),
            millis: Number.NaN,
            failedCallers: callers,
            error: errorMessage(error)
          }
        }
        outcomes.get(contender.name)!.push(outcome)
      }
    }
  } finally {
    await server.close()
  }
  const ours = outcomes.get(tollgate.name)!
  const theirs = outcomes.get(simpleOauth2.name)!
  const requests = (list: ReadonlyArray<Outcome>) => summarize(list.map((o) => o.tokenRequests))
  return {
    id: 4,
    title: "Token single-flight on a cold cache",
    setup: `
${callers.toLocaleString("en")} concurrent callers ask for a token at once from an empty cache. The token endpoint is
a loopback node:http server in a child process answering RFC 6749 client-credentials requests after
${LATENCY_MILLIS} ms with a one-hour token; it counts the requests it receives. **Tollgate**: \`TokenCache.make\` over
\`OAuth2.make\` (core's generic client-credentials source) on \`NodeHttpClient.layerUndici\`, callers are fibers
calling \`cache.get\`. **simple-oauth2**: one \`ClientCredentials\` client, callers are async functions doing
\`if (!token || token.expired()) token = await client.getToken({})\`, its README's pattern. ${rounds} round(s), the
order alternating.
`,
    tables: [{
      headers: ["client", "token requests, median (min–max)", "time until every caller has a token", "failed callers"],
      rows: contenders.map((c) => {
        const list = outcomes.get(c.name)!
        const error = list.find((o) => o.error !== undefined)?.error
        return [
          c.name,
          Format.withSpread(requests(list), (v) => Math.round(v).toLocaleString("en")),
          error === undefined
            ? Format.withSpread(summarize(list.map((o) => o.millis)), Format.millis)
            : `failed: ${error}`,
          Format.withSpread(summarize(list.map((o) => o.failedCallers)), (v) => Math.round(v).toLocaleString("en"))
        ]
      })
    }],
    targets: [{
      name: `exactly 1 token request for ${callers.toLocaleString("en")} callers`,
      met: ours.every((o) => o.error === undefined) ? ours.every((o) => o.tokenRequests === 1) : undefined,
      measured: ours.map((o) => o.tokenRequests).join(", ") + " (per round)"
    }],
    notes: [
      `simple-oauth2 made ${Format.withSpread(requests(theirs), (v) => Math.round(v).toLocaleString("en"))} token
requests: every caller found the cache empty before the first response arrived, so each started its own request
(the "thundering herd"). Avoiding that with simple-oauth2 takes a hand-written shared promise around \`getToken\`,
plus the refresh-ahead, failure cooldown and invalidation logic that TokenCache provides.`
    ]
  }
}
