/**
 * docs/observability.md against the code: the span and metric names it lists are exactly the ones the
 * source emits, and `examples/observability.ts` runs and emits what the page promises (a duration
 * histogram, a gauge of requests waiting for a permit, status class and code as separate labels).
 */
import { describe, expect, it } from "@effect/vitest"
import { NoraSandbox } from "@tollgate/testing"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { observe } from "./observability.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const page = Fs.readFileSync(Path.join(root, "docs/observability.md"), "utf8")

/** The first column of the table under `heading`, and every `tollgate.*` name in its other columns. */
const table = (heading: string) => {
  const section = page.split(`\n## ${heading}\n`)[1]!.split("\n## ")[0]!
  const rows = section.split("\n").filter((line) => line.startsWith("| `"))
  const names = rows.map((row) => /^\| `([^`]+)`/.exec(row)![1]!)
  const mentioned = rows.flatMap((row) => [...row.matchAll(/`(tollgate[._][a-z_.]+)`/g)].map((match) => match[1]!))
  return { names: new Set(names), mentioned: new Set(mentioned) }
}
const spans = table("Spans")
const metrics = table("Metrics")
const documented = new Set([...spans.names, ...metrics.names])
const attributes = new Set([...spans.mentioned].filter((name) => !spans.names.has(name)))

const sources = Fs.readdirSync(Path.join(root, "packages"))
  .flatMap((pkg) => {
    const src = Path.join(root, "packages", pkg, "src")
    return Fs.existsSync(src)
      ? Fs.readdirSync(src, { recursive: true, encoding: "utf8" })
        .filter((file) => file.endsWith(".ts"))
        .map((file) => ({ pkg, file, text: Fs.readFileSync(Path.join(src, file), "utf8") }))
      : []
  })

// The operations `TokenExchange.send` is given (its span is `tollgate.<operation>`), its default included.
const operations = new Set(
  sources
    .filter(({ pkg }) => pkg === "core" || pkg === "providers")
    .flatMap(({ text }) => [...text.matchAll(/operation(?::| \?\?) "([a-z ]+)"/g)].map((match) => match[1]!))
)
const templates: Record<string, ReadonlyArray<string>> = {
  "tollgate.token.${grant}": ["tollgate.token.fetch", "tollgate.token.refresh"],
  "tollgate.${operation.replace(/\\s+/g, \"_\")}": [...operations].map((op) => `tollgate.${op.replace(/\s+/g, "_")}`)
}

describe("docs/observability.md", () => {
  it("lists exactly the span and metric names the source emits", () => {
    const literals = new Set<string>()
    const unknownTemplates: Array<string> = []
    for (const { text } of sources) {
      for (const match of text.matchAll(/"(tollgate(?:\.[a-z_]+)+|tollgate_[a-z_]+)"/g)) literals.add(match[1]!)
      for (const match of text.matchAll(/`(tollgate[._][^`]*\$\{[^`]*)`/g)) {
        const derived = templates[match[1]!]
        if (derived === undefined) unknownTemplates.push(match[1]!)
        else for (const name of derived) literals.add(name)
      }
    }
    expect(unknownTemplates, "a span or metric name built in a way this test does not know").toEqual([])
    const emitted = [...literals].filter((name) => !attributes.has(name)).sort()
    expect(emitted).toEqual([...documented].sort())
  })

  it.live("matches what examples/observability.ts records", () =>
    Effect.gen(function*() {
      const observed = yield* observe
      const spanNames = new Set(observed.spans.map((span) => span.name).filter((name) => name.startsWith("tollgate")))
      const points = observed.points.filter((point) => point.name.startsWith("tollgate"))
      for (const name of spanNames) expect(spans.names).toContain(name)
      for (const point of points) expect(metrics.names).toContain(point.name)
      expect([...spanNames].sort()).toEqual(["tollgate.request", "tollgate.token.fetch", "tollgate.token_request"])

      // Status class and code are two labels, never one mixed label.
      const throttled = points.find((p) => p.name === "tollgate_requests_total" && p.attributes.status_code === "429")
      expect(throttled?.attributes).toMatchObject({ provider: "nora", status_class: "4xx", workload: "example" })
      const duration = points.filter((p) => p.name === "tollgate_request_duration_seconds")
      expect(duration.map((p) => p.kind)).toContain("histogram")
      expect(duration.reduce((n, p) => n + p.value, 0)).toBe(12)
      const retries = points.filter((p) => p.name === "tollgate_retries_total").map((p) => p.attributes.reason)
      expect(retries.sort()).toEqual(["429", "transient"])
      const waiting = observed.midRun.find((p) => p.name === "tollgate_requests_waiting")
      expect(waiting?.kind).toBe("gauge")
      expect(waiting!.value).toBeGreaterThan(0)
      expect(points.find((p) => p.name === "tollgate_requests_waiting")?.value).toBe(0)
      expect(points.find((p) => p.name === "tollgate_permit_wait_seconds")?.kind).toBe("histogram")

      // No secret in any span attribute.
      const secret = NoraSandbox.defaultCredentials.clientSecret
      for (const span of observed.spans) {
        for (const value of Object.values(span.attributes)) expect(String(value)).not.toContain(secret)
      }
    }), 30_000)
})
