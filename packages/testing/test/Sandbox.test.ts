import { FetchHttpClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Scope, TestClock } from "effect"
import { spawn } from "node:child_process"
import { createServer, type Server } from "node:net"
import { fileURLToPath } from "node:url"
import * as Faults from "../src/Faults.js"
import * as NombaSandbox from "../src/NombaSandbox.js"
import * as NoraSandbox from "../src/NoraSandbox.js"
import * as Sandbox from "../src/Sandbox.js"
import * as TokenProjectSandbox from "../src/TokenProjectSandbox.js"
import * as VirtualTime from "../src/VirtualTime.js"
import { getWith, jwtPayload, postForm, postJson, send } from "./utils/http.js"

const fetchClient = Effect.provide(HttpClient.HttpClient, FetchHttpClient.layer)

const tokenRequests = (sandbox: Sandbox.Service) => ({
  nora: postJson(`${sandbox.nora.baseUrl}/api/token`, sandbox.nora.credentials),
  norce: postForm(`${sandbox.norce.baseUrl}/identity/1.0/connect/token`, {
    grant_type: "client_credentials",
    client_id: sandbox.norce.credentials.clientId,
    client_secret: sandbox.norce.credentials.clientSecret,
    scope: "playground"
  }),
  nomba: postJson(`${sandbox.nomba.baseUrl}/v1/auth/token/issue`, {
    grant_type: "client_credentials",
    client_id: sandbox.nomba.credentials.clientId,
    client_secret: sandbox.nomba.credentials.clientSecret
  }, { accountId: sandbox.nomba.credentials.accountId }),
  tokenProject: HttpClientRequest.post(`${sandbox.tokenProject.baseUrl}/auth/token`).pipe(
    HttpClientRequest.setUrlParams({
      key: sandbox.tokenProject.credentials.key,
      secret: sandbox.tokenProject.credentials.secret
    })
  )
})

const listen = (port: number): Promise<Server> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(port, "127.0.0.1", () => resolve(server))
  })

const close = (server: Server): Promise<void> => new Promise((resolve) => server.close(() => resolve()))

/**
 * A base port whose next `length - 1` neighbours were free too a moment ago: a free port's neighbours
 * need not be (another process may hold one), so each candidate run is checked by listening on all of
 * it. Another process can still take one before the caller listens: the caller retries.
 */
const freeRun = (length: number) =>
  Effect.promise(async () => {
    for (let attempt = 0; attempt < 50; attempt++) {
      const first = await listen(0)
      const address = first.address()
      const base = typeof address === "object" && address !== null ? address.port : 0
      const held = [first]
      try {
        for (let i = 1; i < length; i++) held.push(await listen(base + i))
        return base
      } catch {
        // A neighbour is taken (or past 65535): try another run.
      } finally {
        await Promise.all(held.map(close))
      }
    }
    throw new Error(`no run of ${length} free consecutive ports found`)
  })

describe("Sandbox", () => {
  describe("on loopback", () => {
    it.scopedLive("layer serves the four emulators on 127.0.0.1, each on its own port", () =>
      Effect.gen(function*() {
        const client = yield* fetchClient
        const sandbox = Context.get(yield* Layer.build(Sandbox.layer()), Sandbox.Sandbox)
        const urls = [sandbox.nora, sandbox.norce, sandbox.nomba, sandbox.tokenProject].map((e) => e.baseUrl)
        for (const url of urls) expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
        expect(new Set(urls).size).toBe(4)
        const requests = tokenRequests(sandbox)
        const nora = yield* send(client, requests.nora)
        expect(nora.body.expires_in).toBe(3600)
        const norce = yield* send(client, requests.norce)
        expect(norce.body.expires_in).toBe(600)
        const nomba = yield* send(client, requests.nomba)
        expect(nomba.body.code).toBe("00")
        const tokenProject = yield* send(client, requests.tokenProject)
        expect(tokenProject.body.token_type).toBe("bearer")
        const stamps = yield* send(
          client,
          getWith(`${sandbox.tokenProject.baseUrl}/notarizations/stamps`, tokenProject.body.access_token)
        )
        expect(stamps.status).toBe(200)
        expect(stamps.headers["x-ratelimit-remaining"]).toBe("9")
        expect((yield* sandbox.nora.recording).tokenCounts.granted).toBe(1)
      }))

    it.scopedLive("closing the scope stops the servers, even with a request the emulator never answers", () =>
      Effect.gen(function*() {
        const client = yield* fetchClient
        const scope = yield* Scope.make()
        const sandbox = Context.get(yield* Layer.buildWithScope(Sandbox.layer(), scope), Sandbox.Sandbox)
        const request = tokenRequests(sandbox).nora
        expect((yield* send(client, request)).status).toBe(200)
        yield* sandbox.nora.faults.set("token", { timeoutRate: 1 })
        const hanging = yield* Effect.fork(send(client, request))
        yield* Effect.sleep("100 millis")
        const started = Date.now()
        yield* Scope.close(scope, Exit.void)
        expect(Date.now() - started).toBeLessThan(2000)
        const hung = yield* Fiber.join(hanging).pipe(Effect.flip)
        expect(hung._tag).toBe("RequestError")
        yield* sandbox.nora.faults.reset
        const refused = yield* Effect.flip(send(client, request))
        expect(refused._tag).toBe("RequestError")
      }))

    it.scopedLive("a dropped connection destroys the socket; a partial drop cuts the body", () =>
      Effect.gen(function*() {
        const client = yield* fetchClient
        const nomba = yield* Sandbox.serve(yield* NombaSandbox.make())
        expect(nomba.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
        const issue = postJson(`${nomba.baseUrl}/v1/auth/token/issue`, {
          grant_type: "client_credentials",
          client_id: nomba.credentials.clientId,
          client_secret: nomba.credentials.clientSecret
        }, { accountId: nomba.credentials.accountId })
        yield* nomba.faults.set("token", { dropRate: 1 })
        const reset = yield* Effect.flip(send(client, issue))
        expect(reset._tag === "RequestError" && reset.reason).toBe("Transport")
        yield* nomba.faults.set("token", { dropMode: "partial" })
        const response = yield* client.execute(issue)
        expect(response.status).toBe(200)
        const cut = yield* Effect.flip(response.text)
        expect(cut._tag).toBe("ResponseError")
        yield* nomba.faults.reset
        expect((yield* send(client, issue)).body.code).toBe("00")
        const recording = yield* nomba.recording
        expect(recording.tokenRequests.map((r) => r.reason)).toEqual(["drop", "drop", undefined])
      }))

    it.scopedLive("timeouts hold the request until the client gives up; latency is real time", () =>
      Effect.gen(function*() {
        const client = yield* fetchClient
        const sandbox = Context.get(yield* Layer.build(Sandbox.layer()), Sandbox.Sandbox)
        const request = tokenRequests(sandbox).norce
        yield* sandbox.norce.faults.set("token", { timeoutRate: 1 })
        const result = yield* Effect.either(Effect.timeout(send(client, request), "300 millis"))
        expect(result._tag === "Left" && result.left._tag).toBe("TimeoutException")
        yield* sandbox.norce.faults.set("token", { timeoutRate: 0, latency: "150 millis" })
        const started = Date.now()
        expect((yield* send(client, request)).status).toBe(200)
        expect(Date.now() - started).toBeGreaterThanOrEqual(140)
        yield* sandbox.norce.faults.script("token", Faults.respond({ status: 503, body: "down" }))
        const down = yield* send(client, request)
        expect(down.status).toBe(503)
        expect(down.text).toBe("down")
      }))

    it.scopedLive("timeScale makes the Token project window 0.5 s on real time", () =>
      Effect.gen(function*() {
        const client = yield* fetchClient
        const tp = yield* Sandbox.serve(yield* TokenProjectSandbox.make({ timeScale: 240 }))
        const token = (yield* send(
          client,
          HttpClientRequest.post(`${tp.baseUrl}/auth/token`).pipe(
            HttpClientRequest.setUrlParams({ key: tp.credentials.key, secret: tp.credentials.secret })
          )
        )).body.access_token
        const stamps = send(client, getWith(`${tp.baseUrl}/notarizations/stamps`, token))
        // The ten together, so all of them land inside the half-second window however slow the machine.
        const allowed = yield* Effect.all(Array.from({ length: 10 }, () => stamps), { concurrency: "unbounded" })
        expect(allowed.map((response) => response.status)).toEqual(Array.from({ length: 10 }, () => 200))
        const limited = yield* stamps
        expect(limited.status).toBe(429)
        expect(limited.body).toEqual(TokenProjectSandbox.rateLimitedBody)
        const reset = Number(limited.headers["x-ratelimit-reset"])
        const wait = Math.max(0, reset * 1000 - Date.now())
        expect(wait).toBeLessThanOrEqual(1500)
        yield* Effect.sleep(wait)
        expect((yield* stamps).status).toBe(200)
        const recording = yield* tp.recording
        expect(recording.maxArrivalsInWindow(500).admitted).toBeLessThanOrEqual(10)
      }))

    it.scopedLive("Norce's token bucket keys on the loopback client address", () =>
      Effect.gen(function*() {
        const client = yield* fetchClient
        const sandbox = Context.get(yield* Layer.build(Sandbox.layer()), Sandbox.Sandbox)
        const request = tokenRequests(sandbox).norce
        for (let i = 0; i < 20; i++) expect((yield* send(client, request)).status).toBe(200)
        expect((yield* send(client, request)).status).toBe(429)
      }))

    it.scopedLive("a fixed base port puts the four emulators on consecutive ports", () =>
      Effect.gen(function*() {
        // Another process may take one of the ports between the check and the listen: then a new run.
        const { port, sandbox } = yield* Effect.gen(function*() {
          const port = yield* freeRun(4)
          const sandbox = Context.get(yield* Layer.build(Sandbox.layer({ port, timeScale: 60 })), Sandbox.Sandbox)
          return { port, sandbox }
        }).pipe(Effect.retry({ times: 5 }))
        expect([sandbox.nora, sandbox.norce, sandbox.nomba, sandbox.tokenProject].map((e) => e.baseUrl)).toEqual(
          [0, 1, 2, 3].map((i) => `http://127.0.0.1:${port + i}`)
        )
        expect(sandbox.nora.timeScale).toBe(60)
      }))

    it.scopedLive("a provider's real limit can differ from its documented one (plans change), on loopback", () =>
      Effect.gen(function*() {
        const client = yield* fetchClient
        const sandbox = Context.get(
          yield* Layer.build(Sandbox.layer({
            nora: { rateLimit: { limit: 5, windowMillis: 60_000 } },
            tokenProject: { rateLimit: { limit: 3, windowMillis: 120_000 } }
          })),
          Sandbox.Sandbox
        )
        const requests = tokenRequests(sandbox)
        const nora = (yield* send(client, requests.nora)).body.token
        // The token request was the first of five.
        for (let i = 0; i < 4; i++) {
          expect((yield* send(client, getWith(`${sandbox.nora.baseUrl}/api/forms`, nora))).status).toBe(200)
        }
        expect((yield* send(client, getWith(`${sandbox.nora.baseUrl}/api/forms`, nora))).status).toBe(429)
        const tp = (yield* send(client, requests.tokenProject)).body.access_token
        const stamps = getWith(`${sandbox.tokenProject.baseUrl}/notarizations/stamps`, tp)
        expect((yield* send(client, stamps)).headers["x-ratelimit-limit"]).toBe("3")
      }))
  })

  describe("in memory", () => {
    it.effect("makeClient traces a request as the platform does, and answers untraced ones directly", () =>
      Effect.gen(function*() {
        const nora = yield* NoraSandbox.make()
        const client = Sandbox.makeClient((url) => url.host === "nora.sandbox.test" ? nora.app : undefined)
        const token = postJson("http://nora.sandbox.test/api/token", nora.credentials)
        // Traced: the platform's span, whose context travels with the request.
        const traced = yield* Effect.withSpan(client.execute(token), "parent")
        expect(traced.status).toBe(200)
        expect(traced.request.headers["traceparent"]).toBeDefined()
        // Untraced (as Tollgate's clients send): the same answer, nothing added to the request.
        const quiet = HttpClient.withTracerDisabledWhen(client, () => true)
        const untraced = yield* Effect.withSpan(quiet.execute(token), "parent")
        expect(untraced.status).toBe(200)
        expect(untraced.request.headers["traceparent"]).toBeUndefined()
        expect(typeof ((yield* untraced.json) as { token: unknown }).token).toBe("string")
        const withParams = yield* quiet.execute(
          HttpClientRequest.get("http://nora.sandbox.test/api/forms").pipe(HttpClientRequest.setUrlParam("a", "1"))
        )
        expect(withParams.status).toBe(401)
        const invalid = yield* Effect.flip(quiet.execute(HttpClientRequest.get("http://[nope")))
        expect(invalid).toMatchObject({ _tag: "RequestError", reason: "InvalidUrl" })
        const unknown = yield* Effect.flip(quiet.execute(HttpClientRequest.get("http://elsewhere.test/")))
        expect(unknown).toMatchObject({ _tag: "RequestError", reason: "Transport" })
        expect((yield* nora.recording).arrivals.map((a) => a.path)).toEqual(["/api/forms"])
      }))

    it.effect("layerMemory runs a program's whole HTTP stack in memory, under TestClock", () =>
      Effect.gen(function*() {
        const client = yield* HttpClient.HttpClient
        const sandbox = yield* Sandbox.Sandbox
        expect(sandbox.nora.baseUrl).toBe("http://nora.sandbox.test")
        const requests = tokenRequests(sandbox)
        const nora = yield* send(client, requests.nora)
        expect(jwtPayload(nora.body.token).iat).toBe(0)
        expect((yield* send(client, requests.norce)).status).toBe(200)
        expect((yield* send(client, requests.nomba)).body.data.expiresAt).toBe("1970-01-01T00:30:00Z")
        expect((yield* send(client, requests.tokenProject)).status).toBe(200)
        const forms = send(client, getWith(`${sandbox.nora.baseUrl}/api/forms`, nora.body.token))
        expect((yield* forms).status).toBe(200)
        yield* TestClock.adjust("1 hour")
        expect((yield* forms).status).toBe(401)
        const unknown = yield* Effect.flip(send(client, HttpClientRequest.get("http://elsewhere.test/")))
        expect(unknown._tag === "RequestError" && unknown.reason).toBe("Transport")
      }).pipe(Effect.provide(Sandbox.layerMemory())))

    it.effect("layerMemory applies the time scale and the client address", () =>
      Effect.gen(function*() {
        const client = yield* HttpClient.HttpClient
        const sandbox = yield* Sandbox.Sandbox
        expect(sandbox.tokenProject.rateLimit.windowMillis).toBe(2000)
        const request = tokenRequests(sandbox).norce
        for (let i = 0; i < 20; i++) yield* send(client, request)
        expect((yield* send(client, request)).status).toBe(429)
        const elsewhere = Sandbox.makeClient(() => sandbox.norce.app, { remoteAddress: "192.0.2.1" })
        expect((yield* send(elsewhere, request)).status).toBe(200)
      }).pipe(Effect.provide(Sandbox.layerMemory({ timeScale: 60, remoteAddress: "198.51.100.7" }))))

    it.effect("a provider's real limit can differ from its documented one (plans change), in memory", () =>
      Effect.gen(function*() {
        const client = yield* HttpClient.HttpClient
        const sandbox = yield* Sandbox.Sandbox
        expect(sandbox.nomba.rateLimit).toEqual({ limit: 2, windowMillis: 1_000 })
        expect(sandbox.norce.tokenRateLimit).toEqual({ capacity: 1, refillIntervalMillis: 1_000 })
        const requests = tokenRequests(sandbox)
        expect((yield* send(client, requests.norce)).status).toBe(200)
        expect((yield* send(client, requests.norce)).status).toBe(429)
        const nomba = (yield* send(client, requests.nomba)).body.data.access_token
        const accounts = send(
          client,
          getWith(`${sandbox.nomba.baseUrl}/v1/accounts`, nomba, { accountId: sandbox.nomba.credentials.accountId })
        )
        expect([(yield* accounts).status, (yield* accounts).status, (yield* accounts).status]).toEqual([200, 200, 429])
        yield* TestClock.adjust("1 second")
        expect((yield* accounts).status).toBe(200)
      }).pipe(Effect.provide(Sandbox.layerMemory({
        timeScale: 60,
        nomba: { rateLimit: { limit: 2, windowMillis: 60_000 } },
        norce: { tokenRateLimit: { perMinute: 1, burst: 1 } }
      }))))

    it.effect("layerClient routes a Sandbox's own base URLs in memory too", () =>
      Effect.gen(function*() {
        const memory = yield* Sandbox.makeMemory()
        const service: Sandbox.Service = {
          ...memory,
          nomba: { ...memory.nomba, baseUrl: "http://127.0.0.1:9" }
        }
        const client = yield* Effect.provide(
          HttpClient.HttpClient,
          Sandbox.layerClient().pipe(Layer.provide(Layer.succeed(Sandbox.Sandbox, service)))
        )
        const issue = tokenRequests(service).nomba
        expect(issue.url).toBe("http://127.0.0.1:9/v1/auth/token/issue")
        expect((yield* send(client, issue)).body.code).toBe("00")
        const viaHost = HttpClientRequest.setUrl(issue, `http://${Sandbox.hosts.nomba}/v1/auth/token/issue`)
        expect((yield* send(client, viaHost)).body.code).toBe("00")
        expect((yield* service.nomba.recording).tokenCounts.granted).toBe(2)
      }))
  })

  it("in memory, it runs under a virtual-time driver too: an hour of Nora traffic at its limit", async () => {
    const program = Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const sandbox = yield* Sandbox.Sandbox
      const nora = sandbox.nora
      yield* nora.faults.set("api", { latency: { min: "5 millis", max: "50 millis" } })
      const token = (yield* send(client, tokenRequests(sandbox).nora)).body.token
      // The token request counts against the 60 per minute: the traffic starts once it left the window.
      yield* Effect.sleep("1 minute")
      const statuses: Array<number> = []
      for (let minute = 0; minute < 60; minute++) {
        const answers = yield* Effect.all(
          Array.from({ length: 60 }, () => send(client, getWith(`${nora.baseUrl}/api/forms`, token))),
          { concurrency: 10 }
        )
        for (const answer of answers) statuses.push(answer.status)
        yield* Effect.sleep("1 minute")
      }
      return { statuses, recording: yield* nora.recording }
      // A two-hour token, so that one token lasts the minute of waiting and the hour of traffic.
    }).pipe(Effect.provide(Sandbox.layerMemory({ nora: { tokenLifetimeSeconds: 7_200 } })))
    const result = await VirtualTime.run(program)
    expect(Exit.isSuccess(result.exit)).toBe(true)
    if (!Exit.isSuccess(result.exit)) return
    const { recording, statuses } = result.exit.value
    expect(statuses.filter((s) => s === 200)).toHaveLength(3600)
    expect(recording.maxArrivalsInWindow(60_000).admitted).toBeLessThanOrEqual(60)
    expect(recording.tokensIssued).toBe(1)
    expect(result.elapsed).toBeGreaterThanOrEqual(61 * 60_000)
  })

  it.live(
    "the CLI prints the four base URLs and credentials, serves them, and stops on SIGINT",
    () =>
      Effect.gen(function*() {
        const client = yield* fetchClient
        const script = fileURLToPath(new URL("../src/bin/sandbox.ts", import.meta.url))
        const root = fileURLToPath(new URL("../../..", import.meta.url))
        const child = spawn(process.execPath, [
          "--import",
          "tsx",
          script,
          "--time-scale",
          "60",
          "--limit",
          "nora=30/1m",
          "--limit=norce-token=2+5"
        ], { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
        let output = ""
        child.stdout.on("data", (chunk) => output += String(chunk))
        child.stderr.on("data", (chunk) => output += String(chunk))
        const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
        yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
        const urls = yield* Effect.gen(function*() {
          let found: Array<string> = []
          while (found.length < 4) {
            yield* Effect.sleep("50 millis")
            found = output.match(/http:\/\/127\.0\.0\.1:\d+/g) ?? []
          }
          return found
        }).pipe(Effect.timeout("15 seconds"))
        expect(output).toContain("time scale 60")
        expect(output).toContain("nora-sandbox-client")
        expect(output).toContain("token-project-sandbox-key")
        // --limit: a real limit other than the documented one, shown beside it.
        expect(output).toContain("limit 30 per 1000 ms (documented: 60 per 60000 ms), token requests included")
        expect(output).toContain("token endpoint bucket 5, one token per 500 ms (documented: 3 per minute, burst 20)")
        expect(output).toContain("limit 10 per 2000 ms per endpoint\n")
        const answer = yield* send(
          client,
          postJson(`${urls[0]}/api/token`, {
            clientId: "nora-sandbox-client",
            clientSecret: "nora-sandbox-secret",
            organizationId: "nora-sandbox-organization"
          })
        )
        expect(answer.body.expires_in).toBe(60)
        child.kill("SIGINT")
        // Exits on its own (the finalizer's SIGKILL would come too late for this timeout).
        yield* Effect.promise(() => exited).pipe(Effect.timeout("10 seconds"))
        expect(output).not.toContain(answer.body.token)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "the CLI refuses a malformed --limit with one clear line and exit code 2",
    () =>
      Effect.gen(function*() {
        const script = fileURLToPath(new URL("../src/bin/sandbox.ts", import.meta.url))
        const root = fileURLToPath(new URL("../../..", import.meta.url))
        const run = (args: ReadonlyArray<string>) =>
          Effect.promise(() =>
            new Promise<{ readonly code: number | null; readonly output: string }>((resolve) => {
              const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
                cwd: root,
                stdio: ["ignore", "pipe", "pipe"]
              })
              let output = ""
              child.stdout.on("data", (chunk) => output += String(chunk))
              child.stderr.on("data", (chunk) => output += String(chunk))
              child.on("exit", (code) => resolve({ code, output }))
            })
          )
        const [bad, unknown] = yield* Effect.all([run(["--limit", "nora=lots"]), run(["--limit", "acme=1/1s"])], {
          concurrency: 2
        })
        expect(bad.code).toBe(2)
        expect(bad.output).toContain("--limit nora expects COUNT/WINDOW, such as 30/1m or 5/120s, got \"lots\"")
        expect(unknown.code).toBe(2)
        expect(unknown.output).toContain("--limit: unknown provider \"acme\"")
      }),
    30_000
  )
})
