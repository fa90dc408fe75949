/**
 * Scenario 5's run, in a process of its own so the wall time and peak memory are the simulation's
 * alone: all four providers at their limits for a simulated day, through `@tollgate/testing`'s
 * `Simulation` (virtual time, in-memory sandbox emulators) and each provider module's `make`. Prints one
 * JSON line.
 *
 * With `floor` it runs the same emulators, limits lifted, behind bare clients instead (a token fetched
 * once, the request sent as is): what the simulator itself (virtual time, workers, in-memory transport,
 * emulators) costs per request, the floor under the Tollgate clients' share.
 *
 * Usage: node --import tsx simulation.ts <virtual hours> [floor] (the bench runs it bundled: `Child.bundle`)
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import * as Nomba from "@tollgate/providers/nomba"
import * as Nora from "@tollgate/providers/nora"
import * as Norce from "@tollgate/providers/norce"
import * as TokenProject from "@tollgate/providers/token-project"
import * as NombaSandbox from "@tollgate/testing/NombaSandbox"
import * as NoraSandbox from "@tollgate/testing/NoraSandbox"
import * as NorceSandbox from "@tollgate/testing/NorceSandbox"
import * as Simulation from "@tollgate/testing/Simulation"
import * as TokenProjectSandbox from "@tollgate/testing/TokenProjectSandbox"
import { Effect, Option, Redacted } from "effect"
import type { Scope } from "effect"

const hours = Number(process.argv[2] ?? "24")
const floor = process.argv[3] === "floor"

// The simulation's transport answers every URL from its one emulator; a loopback base URL passes the
// providers' https-only check without anything leaving the process.
const baseUrl = "http://127.0.0.1"

/** Norce and Nomba document no API limit; both are driven at this one, enforced by client and emulator. */
export const undocumentedLimit = { limit: 60, window: "1 minute" } as const
const undocumentedPolicy = RateLimiter.slidingWindow(undocumentedLimit)

/** Network latency in virtual time, the same for every provider (the Simulation default is 5–30 ms). */
export const latency = { min: "20 millis", max: "120 millis" } as const

/** Concurrent callers per provider: more than enough to keep every limit saturated. */
export const fibers = 4

/** A provider's `make` over the simulation's transport. */
const over = <A, E>(make: Effect.Effect<A, E, HttpClient.HttpClient | Scope.Scope>) => (http: HttpClient.HttpClient) =>
  Effect.provideService(make, HttpClient.HttpClient, http)

const secret = Redacted.make

export const targets: ReadonlyArray<Simulation.Target<unknown>> = [
  {
    name: "Nora: 60 per minute",
    emulator: NoraSandbox.make(),
    latency,
    client: over(Nora.make({
      clientId: NoraSandbox.defaultCredentials.clientId,
      clientSecret: secret(NoraSandbox.defaultCredentials.clientSecret),
      organizationId: NoraSandbox.defaultCredentials.organizationId,
      baseUrl,
      allowInsecureLoopback: true
    })),
    request: Simulation.get("/api/forms"),
    fibers,
    limit: { limit: 60, window: "1 minute" }
  },
  {
    name: "Norce: token endpoint 3 per minute + burst 20; API at 60 per minute",
    emulator: NorceSandbox.make(),
    latency,
    client: over(Norce.make({
      clientId: NorceSandbox.defaultCredentials.clientId,
      clientSecret: secret(NorceSandbox.defaultCredentials.clientSecret),
      applicationId: NorceSandbox.defaultCredentials.applicationId,
      baseUrl,
      allowInsecureLoopback: true,
      limits: undocumentedPolicy
    })),
    request: Simulation.get("/commerce/metadata/1.1/GetApplication?format=json"),
    fibers,
    limit: undocumentedLimit
  },
  {
    name: "Nomba: 30-minute tokens, refresh and revoke; API at 60 per minute",
    emulator: NombaSandbox.make({ rateLimit: { limit: undocumentedLimit.limit, windowMillis: 60_000 } }),
    latency,
    client: over(Nomba.make({
      clientId: NombaSandbox.defaultCredentials.clientId,
      clientSecret: secret(NombaSandbox.defaultCredentials.clientSecret),
      accountId: NombaSandbox.defaultCredentials.accountId,
      baseUrl,
      allowInsecureLoopback: true,
      limits: undocumentedPolicy
    })),
    request: Simulation.get("/v1/accounts"),
    fibers,
    limit: undocumentedLimit
  },
  {
    name: "Token project: 10 per 2 minutes per endpoint, two endpoints",
    emulator: TokenProjectSandbox.make(),
    latency,
    client: over(TokenProject.make({
      key: TokenProjectSandbox.defaultCredentials.key,
      secret: secret(TokenProjectSandbox.defaultCredentials.secret),
      baseUrl,
      allowInsecureLoopback: true
    })),
    request: (n) => HttpClientRequest.get(n % 2 === 0 ? "/notarizations/stamps" : "/storage/files"),
    fibers,
    limit: { limit: 10, window: "2 minutes", per: (arrival) => arrival.route }
  }
]

/** No limit any client could reach in a floor run. */
const lifted = { limit: 1_000_000_000, windowMillis: 60_000 }

/**
 * A client that only authenticates: one token from the emulator's token endpoint, then every request sent
 * with it and `headers`, the platform's tracing off (as Tollgate's clients switch it off).
 */
const bare = (options: {
  readonly token: HttpClientRequest.HttpClientRequest
  readonly read: (body: any) => string
  readonly headers?: Readonly<Record<string, string>> | undefined
}) =>
(http: HttpClient.HttpClient) =>
  Effect.gen(function*() {
    const untraced = HttpClient.withTracerDisabledWhen(http, () => true)
    const response = yield* Effect.orDie(untraced.execute(HttpClientRequest.prependUrl(options.token, baseUrl)))
    const headers = { ...options.headers, authorization: `Bearer ${options.read(yield* Effect.orDie(response.json))}` }
    const client = HttpClient.mapRequest(
      untraced,
      (request) => HttpClientRequest.setHeaders(HttpClientRequest.prependUrl(request, baseUrl), headers)
    )
    return { client } as Simulation.Subject
  })

/** The same providers and demand, limits lifted, behind bare clients (a floor run lasts minutes, not hours). */
export const floorTargets: ReadonlyArray<Simulation.Target<unknown>> = [
  {
    name: "Nora",
    emulator: NoraSandbox.make({ rateLimit: lifted }),
    latency,
    client: bare({
      token: HttpClientRequest.bodyUnsafeJson(HttpClientRequest.post("/api/token"), NoraSandbox.defaultCredentials),
      read: (body) => body.token
    }),
    request: Simulation.get("/api/forms"),
    fibers
  },
  {
    name: "Norce",
    emulator: NorceSandbox.make(),
    latency,
    client: bare({
      token: HttpClientRequest.bodyUrlParams(HttpClientRequest.post("/identity/1.0/connect/token"), {
        grant_type: "client_credentials",
        client_id: NorceSandbox.defaultCredentials.clientId,
        client_secret: NorceSandbox.defaultCredentials.clientSecret,
        scope: "playground"
      }),
      read: (body) => body.access_token,
      headers: { applicationid: NorceSandbox.defaultCredentials.applicationId }
    }),
    request: Simulation.get("/commerce/metadata/1.1/GetApplication?format=json"),
    fibers
  },
  {
    name: "Nomba",
    emulator: NombaSandbox.make(),
    latency,
    client: bare({
      token: HttpClientRequest.post("/v1/auth/token/issue").pipe(
        HttpClientRequest.setHeader("accountid", NombaSandbox.defaultCredentials.accountId),
        HttpClientRequest.bodyUnsafeJson({
          grant_type: "client_credentials",
          client_id: NombaSandbox.defaultCredentials.clientId,
          client_secret: NombaSandbox.defaultCredentials.clientSecret
        })
      ),
      read: (body) => body.data.access_token,
      headers: { accountid: NombaSandbox.defaultCredentials.accountId }
    }),
    request: Simulation.get("/v1/accounts"),
    fibers
  },
  {
    name: "Token project",
    emulator: TokenProjectSandbox.make({ rateLimit: lifted }),
    latency,
    client: bare({
      token: HttpClientRequest.post("/auth/token").pipe(
        HttpClientRequest.setUrlParams({
          key: TokenProjectSandbox.defaultCredentials.key,
          secret: TokenProjectSandbox.defaultCredentials.secret
        })
      ),
      read: (body) => body.access_token
    }),
    request: (n) => HttpClientRequest.get(n % 2 === 0 ? "/notarizations/stamps" : "/storage/files"),
    fibers
  }
]

export interface Output {
  readonly wallMillis: number
  readonly virtualMillis: number
  readonly steps: number
  readonly peakRssBytes: number
  readonly peakHeapBytes: number
  /** The resident set just before the run: Node, the TypeScript loader and every module already loaded. */
  readonly rssBeforeRunBytes: number
  readonly reports: ReadonlyArray<{
    readonly name: string
    readonly requests: number
    readonly succeeded: number
    readonly failed: Readonly<Record<string, number>>
    readonly lost: number
    readonly rateLimited: number
    readonly unauthorized: number
    readonly tokenRequests: number
    readonly maxAdmittedInWindow: number | undefined
    readonly limit: number | undefined
    readonly perWindow: number | undefined
  }>
}

const main = async () => {
  let peakHeap = 0
  // Sampled from a timer: the simulation never yields to the event loop for long, so also sample at the end.
  const sample = () => {
    peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)
  }
  const rssBeforeRun = process.memoryUsage().rss
  const sampler = setInterval(sample, 20)
  const result = await Simulation.run({ targets: floor ? floorTargets : targets, duration: `${hours} hours` })
  sample()
  clearInterval(sampler)
  const output: Output = {
    wallMillis: result.wallMillis,
    virtualMillis: result.virtualMillis,
    steps: result.steps,
    // The kernel's high-water mark of the resident set: the whole process, Node itself included.
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    peakHeapBytes: peakHeap,
    rssBeforeRunBytes: rssBeforeRun,
    reports: result.reports.map((report) => ({
      name: report.name,
      requests: report.requests,
      succeeded: report.succeeded,
      failed: report.failed,
      lost: report.lost,
      rateLimited: report.server.rateLimited,
      unauthorized: report.server.unauthorized,
      tokenRequests: report.server.tokenRequests.issue + report.server.tokenRequests.refresh +
        report.server.tokenRequests.revoke,
      maxAdmittedInWindow: Option.getOrUndefined(Option.map(report.window, (w) => w.maxAdmitted)),
      limit: Option.getOrUndefined(Option.map(report.window, (w) => w.limit)),
      perWindow: Option.getOrUndefined(report.perWindow)
    }))
  }
  process.stdout.write(`${JSON.stringify(output)}\n`)
  process.exit(0)
}

// Run directly (through tsx, or as the bench's JavaScript bundle), not when a scenario imports its constants.
if (/simulation\.(ts|mjs)$/.test(process.argv[1] ?? "")) void main()
