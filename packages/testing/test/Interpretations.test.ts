/**
 * INTERPRETATIONS.md and the emulators agree: every comment in the emulators that interprets or assumes
 * names a row of the table, every row it names exists, and every row is cited by the code it describes.
 */
import { describe, expect, it } from "@effect/vitest"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const table = readFileSync(join(root, "INTERPRETATIONS.md"), "utf8")

const sources = (dir: string): ReadonlyArray<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sources(join(dir, entry.name))
      : entry.name.endsWith(".ts")
      ? [join(dir, entry.name)]
      : []
  )

const rowId = /\b(?:NORCE|NORA|NOMBA|TP|ALL)-\d+\b/g

const rows = new Set([...table.matchAll(/^\| ((?:NORCE|NORA|NOMBA|TP|ALL)-\d+) \|/gm)].map((m) => m[1]!))

const files = sources(join(root, "src")).map((path) => ({
  path: path.slice(root.length),
  lines: readFileSync(path, "utf8").split("\n")
}))

describe("INTERPRETATIONS.md", () => {
  it("has its own heading and a row per interpretation", () => {
    expect(table.startsWith("## Interpretations of the provider docs\n")).toBe(true)
    expect(rows.size).toBeGreaterThanOrEqual(40)
  })

  it("every interpret or assume comment in the emulators names a row that exists", () => {
    const unnamed: Array<string> = []
    const unknown: Array<string> = []
    for (const file of files) {
      file.lines.forEach((line, i) => {
        const comment = /(\/\/|\/\*|^\s*\*)(.*)$/.exec(line)?.[2]
        if (comment === undefined || !/interpret|assum/i.test(comment)) return
        const ids = comment.match(rowId) ?? []
        if (ids.length === 0 && !comment.includes("INTERPRETATIONS.md")) unnamed.push(`${file.path}:${i + 1}`)
        for (const id of ids) if (!rows.has(id)) unknown.push(`${file.path}:${i + 1} ${id}`)
      })
    }
    expect(unnamed).toEqual([])
    expect(unknown).toEqual([])
  })

  it("every row is cited by the emulator code it describes", () => {
    const cited = new Set(files.flatMap((file) => file.lines.flatMap((line) => line.match(rowId) ?? [])))
    expect([...rows].filter((id) => !cited.has(id))).toEqual([])
  })
})
