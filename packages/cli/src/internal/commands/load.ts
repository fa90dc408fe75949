/**
 * `tollgate load <provider> <path>`: many GET requests through the provider's limiter, a progress bar on
 * stderr, then a summary on stdout.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type { Scope } from "effect"
import { Console, Effect, Fiber, Schedule } from "effect"
import * as Report from "../../Report.js"
import * as Errors from "../errors.js"
import * as Flags from "../flags.js"
import * as Help from "../help.js"
import * as Session from "../session.js"
import * as Stdio from "../stdio.js"

// Limits bind within seconds in a sandbox: Nora's 60 per minute become 60 per second.
const defaultTimeScale = 60

interface Counters {
  done: number
  succeeded: number
  failed: number
  readonly failures: Map<string, number>
}

const millisSince = (start: number): number => performance.now() - start

/** Starts drawing progress; the effect it returns stops it and draws the last state. */
const progressLoop = (
  label: string,
  total: number,
  counters: Counters,
  startedAt: number
): Effect.Effect<Effect.Effect<void>, never, Stdio.Stdio | Scope.Scope> =>
  Effect.gen(function*() {
    const stdio = yield* Stdio.Stdio
    const snapshot = (): Report.Progress => ({
      label,
      done: counters.done,
      total,
      succeeded: counters.succeeded,
      failed: counters.failed,
      elapsedMillis: millisSince(startedAt)
    })
    if (stdio.stderrIsTTY) {
      const draw = Effect.suspend(() =>
        stdio.writeStderr(`\r${Report.renderProgress(snapshot(), { bar: true, columns: stdio.stderrColumns })}\x1b[K`)
      )
      const fiber = yield* Effect.forkScoped(Effect.repeat(draw, Schedule.spaced("100 millis")))
      return Effect.zipRight(Fiber.interrupt(fiber), Effect.zipRight(draw, stdio.writeStderr("\n")))
    }
    // Not a terminal (a pipe, a CI log): a plain line at most every second, and a last one at the end.
    let printed = -1
    const line = Effect.suspend(() => {
      const now = snapshot()
      if (now.done === printed) return Effect.void
      printed = now.done
      return Console.error(Report.renderProgress(now, { bar: false }))
    })
    const fiber = yield* Effect.forkScoped(Effect.repeat(Effect.delay(line, "1 second"), Schedule.forever))
    return Effect.zipRight(Fiber.interrupt(fiber), line)
  })

const describeFailures = (failures: ReadonlyMap<string, number>): string =>
  [...failures.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([reason, count]) => `${count}× ${reason}`)
    .join("; ")

export const command = Command.make(
  "load",
  {
    provider: Flags.provider,
    path: Flags.path("The path every request GETs, relative to the provider's base URL."),
    requests: Flags.wholeNumber(
      "requests",
      "n",
      { min: 1, max: 1_000_000, default: 100 },
      "How many requests to send."
    ),
    concurrency: Flags.wholeNumber(
      "concurrency",
      "c",
      { min: 1, max: 10_000, default: 10 },
      "How many requests may be in flight (or waiting for a permit) at once."
    ),
    json: Options.boolean("json").pipe(Options.withDescription("Print the summary as JSON instead of a table.")),
    target: Flags.target(defaultTimeScale),
    oauth2: Flags.oauth2({ baseUrl: true })
  },
  (input) =>
    Effect.gen(function*() {
      const pathname = new URL(input.path, "http://placeholder").pathname
      const counters: Counters = { done: 0, succeeded: 0, failed: 0, failures: new Map() }
      const fail = (reason: string) =>
        Effect.sync(() => {
          counters.failed++
          counters.done++
          counters.failures.set(reason, (counters.failures.get(reason) ?? 0) + 1)
        })

      const run = yield* Effect.scoped(Effect.gen(function*() {
        const session = yield* Session.open({ ...input, command: "load", defaultTimeScale }, "api")
        const { built } = session
        yield* Console.error(
          `load: ${input.requests} × GET ${input.path} on ${input.provider}${
            session.sandbox ? ` (sandbox, time scale ${session.timeScale})` : ""
          }, concurrency ${input.concurrency}, limit ${
            built.limit === undefined ? "none" : Report.formatLimit(built.limit)
          }`
        )
        const startedAt = performance.now()
        const startedEpoch = Date.now()
        const stopProgress = yield* progressLoop(input.provider, input.requests, counters, startedAt)
        const one = built.client.get(input.path).pipe(
          Effect.flatMap((response) => Effect.as(Effect.ignore(response.arrayBuffer), response.status)),
          Effect.matchEffect({
            onFailure: (error) => fail(Errors.describe(error).message ?? "failed"),
            onSuccess: (status) =>
              status >= 200 && status < 300
                ? Effect.sync(() => {
                  counters.succeeded++
                  counters.done++
                })
                : fail(`HTTP ${status}`)
          })
        )
        yield* Effect.forEach(Array.from({ length: input.requests }), () => one, {
          concurrency: input.concurrency,
          discard: true
        })
        const elapsedMillis = millisSince(startedAt)
        yield* stopProgress
        return { session, elapsedMillis, startedEpoch }
      }))
      // The scope is closed: the token was revoked where the provider supports it, and counted.
      const { elapsedMillis, session, startedEpoch } = run
      const tokenStats = yield* session.built.tokens.stats
      const events = session.wire.events
      const limit = session.built.limit
      // API requests to the load's path (the base URL may add a prefix); token requests go elsewhere.
      const arrivals = events.filter((event) => event.at >= startedEpoch && event.path.endsWith(pathname))
      const stats: Report.ProviderStats = {
        provider: input.provider,
        requests: input.requests,
        succeeded: counters.succeeded,
        failed: counters.failed,
        tokenFetches: tokenStats.fetches,
        refreshes: tokenStats.refreshes,
        revocations: tokenStats.revocations,
        unauthorized: events.filter((event) => event.status === 401).length,
        rateLimited: events.filter((event) => event.status === 429).length,
        limit,
        peakPerWindow: limit === undefined
          ? undefined
          : Report.peakPerWindow(arrivals.map((event) => event.at), limit.windowMillis),
        elapsedMillis,
        wait: Report.waitStats(session.waits.samples.get(session.built.limiter.provider) ?? [])
      }
      yield* Console.log(
        input.json
          ? JSON.stringify(
            { ...stats, sandbox: session.sandbox, failures: Object.fromEntries(counters.failures) },
            null,
            2
          )
          : Report.renderTable([stats])
      )
      if (counters.failed > 0) {
        return yield* new Errors.OperationFailed({
          message: `${counters.failed} of ${input.requests} requests failed: ${describeFailures(counters.failures)}`
        })
      }
    })
).pipe(
  Command.withDescription(Help.describe([
    "Drive many GET requests through the provider's client and its rate limiter, with a live progress bar " +
    "on stderr (plain lines when stderr is not a terminal), then print a summary table on stdout: requests " +
    "sent and succeeded, token fetches, refreshes and revocations, 401s and 429s seen, the busiest window " +
    "against the limit, throughput and permit waiting time (mean, p50, p95, p99, max).",
    "The exit code is 1 if any request failed. With --sandbox the time scale defaults to 60, so limits " +
    "bind within seconds."
  ], [
    "tollgate load --sandbox nora /api/forms --requests 150 --concurrency 20",
    "tollgate load --sandbox token-project /notarizations/stamps -n 25 -c 5 --time-scale 120"
  ]))
)
