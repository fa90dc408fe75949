// `pnpm build`: compiles every published package to `dist/` (tsc project references, tsconfig.build.json):
// ESM in `dist/esm`, declarations in `dist/dts`, with source maps and declaration maps into the shipped
// `src/`. Nothing in the workspace needs the build (it runs from source); `pnpm pack` and `pnpm publish` run it.
//
// Then, in the emitted JavaScript only, a named import from a package's barrel becomes a namespace import of
// the module itself: `import { Effect, Option } from "effect"` becomes `import * as Effect from
// "effect/Effect"; import * as Option from "effect/Option"`. The barrel of `effect` loads all of its ~170
// modules, which costs a program that needs a dozen of them a few hundred milliseconds at startup (the
// `tollgate` executable most of all). The Effect packages write their imports this way by hand; here the
// source keeps its style and the output gets the speed. The namespaces are the same module objects either
// way. Line numbers are kept, so the source maps stay right.
//
// Last, the `tollgate` executable is bundled with esbuild into `packages/cli/dist/bin/`: loading some 650
// ES modules of Effect, @effect/cli and fast-check (which `effect/Schema` imports) one by one costs ~0.4 s
// of CPU, a single file ~0.1 s. The sandbox (`@tollgate/testing`) is in a chunk of its own that only
// `--sandbox` loads, so both share one copy of Effect. The bundled packages' licenses go to
// `dist/bin/THIRD_PARTY_LICENSES.md`. The library modules of `@tollgate/cli` stay unbundled.
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { packages } from "./manifest.mjs"

const root = fileURLToPath(new URL("../..", import.meta.url))

// Barrel exports of `effect` that are not modules of their own.
const functionExports = new Set(["absurd", "flow", "hole", "identity", "pipe", "unsafeCoerce"])

const barrels = ["effect", "@effect/platform", "@effect/platform-node", "@effect/cli", "@effect/experimental"]

// The subpaths each barrel package exports, read from its package.json as installed for `pkg`.
const subpathsFor = (pkg) => {
  const require = createRequire(join(root, "packages", pkg, "package.json"))
  const subpaths = new Map()
  for (const barrel of barrels) {
    try {
      const manifest = JSON.parse(readFileSync(require.resolve(`${barrel}/package.json`), "utf8"))
      subpaths.set(barrel, new Set(Object.keys(manifest.exports ?? {})))
    } catch {
      // Not a dependency of this package: its imports are left as they are.
    }
  }
  return subpaths
}

const importPattern = /import\s*\{([^}]*)\}\s*from\s*"(effect|@effect\/[a-z-]+)";?/g

export const rewrite = (text, subpaths) =>
  text.replace(importPattern, (statement, list, barrel) => {
    const exported = subpaths.get(barrel)
    if (exported === undefined) return statement
    const lines = [] // the replacement statements
    for (const item of list.split(",").map((s) => s.trim()).filter((s) => s.length > 0)) {
      const match = /^([A-Za-z_$][\w$]*)(?:\s+as\s+([A-Za-z_$][\w$]*))?$/.exec(item)
      if (match === null) return statement
      const [, name, local = name] = match
      if (exported.has(`./${name}`)) lines.push(`import * as ${local} from "${barrel}/${name}";`)
      else if (barrel === "effect" && functionExports.has(name)) {
        lines.push(`import { ${name === local ? name : `${name} as ${local}`} } from "effect/Function";`)
      } else return statement
    }
    const newlines = statement.split("\n").length - 1
    return lines.join(" ") + "\n".repeat(newlines)
  })

const jsFiles = (dir) =>
  readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".js"))
    .map((entry) => join(entry.parentPath ?? entry.path, entry.name))

const bundleCli = async () => {
  const esbuild = await import("esbuild")
  const cli = join(root, "packages", "cli")
  const outdir = join(cli, "dist", "bin")
  rmSync(outdir, { recursive: true, force: true })
  const result = await esbuild.build({
    absWorkingDir: cli,
    entryPoints: { tollgate: "src/bin.ts" },
    outdir,
    chunkNames: "chunks/[name]-[hash]",
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    // CommonJS dependencies call `require`, which an ES module does not have.
    banner: {
      js: "import { createRequire as __tollgateCreateRequire } from \"node:module\";\n" +
        "const require = __tollgateCreateRequire(import.meta.url);"
    },
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
    plugins: [deepImports(subpathsFor("cli"))]
  })
  writeFileSync(join(outdir, "THIRD_PARTY_LICENSES.md"), notices(Object.keys(result.metafile.inputs), cli))
}

// The same rewrite on the workspace's TypeScript sources, which the bundle reads: without it, a barrel import
// drags CommonJS modules that cannot be tree-shaken (msgpackr, by `@effect/platform`'s barrel) into the bundle.
const deepImports = (subpaths) => ({
  name: "deep-imports",
  setup(build) {
    build.onLoad({ filter: /[\\/]packages[\\/][^\\/]+[\\/]src[\\/].*\.ts$/ }, (args) => ({
      contents: rewrite(readFileSync(args.path, "utf8"), subpaths),
      loader: "ts"
    }))
  }
})

// The name, version, license and license text of every package the bundle contains, but our own.
const notices = (inputs, base) => {
  const roots = new Set()
  for (const input of inputs) {
    const at = input.lastIndexOf("node_modules/")
    if (at < 0) continue
    const rest = input.slice(at + "node_modules/".length).split("/")
    const name = rest[0].startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]
    if (name.startsWith("@tollgate/")) continue
    roots.add(join(base, input.slice(0, at), "node_modules", name))
  }
  const sections = [...roots].map((dir) => {
    const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"))
    const file = readdirSync(dir).find((name) => /^(licen[cs]e|copying)(\.|$)/i.test(name))
    const text = file === undefined ? `(no license file; package.json says ${manifest.license})` : readFileSync(
      join(dir, file),
      "utf8"
    ).trim()
    return { title: `${manifest.name}@${manifest.version} (${manifest.license})`, text }
  }).sort((a, b) => a.title.localeCompare(b.title))
  return [
    "# Third-party licenses",
    "",
    "`tollgate` (dist/bin) bundles these packages.",
    ...sections.flatMap(({ text, title }) => ["", `## ${title}`, "", "```", text, "```"])
  ].join("\n") + "\n"
}

const main = async () => {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
  execFileSync(process.execPath, [tsc, "-b", "tsconfig.build.json"], { cwd: root, stdio: "inherit" })
  for (const pkg of packages) {
    const subpaths = subpathsFor(pkg)
    for (const file of jsFiles(join(root, "packages", pkg, "dist", "esm"))) {
      const text = readFileSync(file, "utf8")
      const next = rewrite(text, subpaths)
      if (next !== text) writeFileSync(file, next)
    }
  }
  await bundleCli()
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main()
