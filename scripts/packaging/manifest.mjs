// Writes the packaging fields of every published package's package.json from its files, so that what the
// workspace resolves and what npm installs list the same public subpaths:
//
//   node scripts/packaging/manifest.mjs           rewrite the manifests (`pnpm manifests`)
//   node scripts/packaging/manifest.mjs --check   fail if a manifest is out of date (the pack check)
//
// Every top-level module `src/<Module>.ts` is the public subpath `@tollgate/<pkg>/<Module>`; `src/index.ts` is
// the package root. Modules under `src/internal/` and the executables are not exported. In the workspace the
// subpaths point at the TypeScript sources (tests, tsx and the examples run with no build step); `pnpm pack`
// and `pnpm publish` replace `exports`, `types`, `bin` and `typesVersions` with `publishConfig`'s, which
// point at the compiled `dist/`.
import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))

export const packages = ["core", "providers", "testing", "redis", "undici", "cli"]

// Subpaths kept for imports written before the PascalCase convention: alias -> module.
const aliases = {
  providers: { nora: "Nora", norce: "Norce", nomba: "Nomba", "token-project": "TokenProject" }
}

// Executables, which are not exports. `workspace` is the bin inside the repository (none: only when installed).
const executables = {
  cli: {
    name: "tollgate",
    source: "./src/bin.ts",
    compiled: "./dist/bin/tollgate.js",
    workspace: "./bin/tollgate.mjs"
  },
  testing: { name: "tollgate-sandbox", source: "./src/bin/sandbox.ts", compiled: "./dist/esm/bin/sandbox.js" }
}

// Where the project lives; the repository field, the homepage and the API reference's links derive from it.
const homepage = "https://github.com/tollgate-ts/tollgate"

const modulesOf = (pkg) =>
  readdirSync(join(root, "packages", pkg, "src"), { withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts"))
    .map((entry) => entry.name.slice(0, -3))
    .filter((name) => name !== "index" && name !== "bin")
    .sort()

const subpaths = (pkg) => {
  const modules = modulesOf(pkg)
  const entries = [[".", "index"], ...modules.map((module) => [`./${module}`, module])]
  for (const [alias, module] of Object.entries(aliases[pkg] ?? {})) {
    if (!modules.includes(module)) throw new Error(`@tollgate/${pkg}: alias ${alias} names no module ${module}`)
    entries.push([`./${alias}`, module])
  }
  return entries
}

const sourceExports = (pkg) => ({
  "./package.json": "./package.json",
  ...Object.fromEntries(
    subpaths(pkg).map(([path, module]) => [path, { types: `./src/${module}.ts`, default: `./src/${module}.ts` }])
  )
})

const distExports = (pkg) => ({
  "./package.json": "./package.json",
  ...Object.fromEntries(
    subpaths(pkg).map((
      [path, module]
    ) => [path, { types: `./dist/dts/${module}.d.ts`, default: `./dist/esm/${module}.js` }])
  )
})

// For TypeScript's `moduleResolution: "node"` (node10), which ignores `exports`.
const typesVersions = (pkg) => ({
  "*": Object.fromEntries(
    subpaths(pkg).map(([path, module]) => [path === "." ? "index" : path.slice(2), [`./dist/dts/${module}.d.ts`]])
  )
})

const order = [
  "name",
  "version",
  "description",
  "keywords",
  "license",
  "repository",
  "homepage",
  "bugs",
  "type",
  "sideEffects",
  "engines",
  "bin",
  "exports",
  "files",
  "scripts",
  "publishConfig",
  "dependencies",
  "peerDependencies",
  "peerDependenciesMeta",
  "devDependencies"
]

export const expected = (pkg, current) => {
  const bin = executables[pkg]
  const next = {
    ...current,
    license: "MIT",
    repository: { type: "git", url: `git+${homepage}.git`, directory: `packages/${pkg}` },
    homepage: `${homepage}/tree/main/packages/${pkg}#readme`,
    type: "module",
    // The executables start the program when imported; every other module only defines things.
    sideEffects: bin === undefined
      ? []
      : [bin.source, bin.source.replace(/^\.\/src\/(.*)\.ts$/, "./dist/esm/$1.js"), bin.compiled],
    engines: { node: ">=20" },
    exports: sourceExports(pkg),
    files: ["dist", "src", "CHANGELOG.md"],
    scripts: { ...current.scripts, prepack: "node ../../scripts/packaging/prepack.mjs" },
    publishConfig: {
      access: "public",
      ...(bin === undefined ? {} : { bin: { [bin.name]: bin.compiled } }),
      exports: distExports(pkg),
      main: "./dist/esm/index.js",
      types: "./dist/dts/index.d.ts",
      typesVersions: typesVersions(pkg)
    }
  }
  if (bin?.workspace !== undefined) next.bin = { [bin.name]: bin.workspace }
  else delete next.bin
  const sorted = {}
  for (const key of order) if (key in next) sorted[key] = next[key]
  for (const key of Object.keys(next)) if (!(key in sorted)) sorted[key] = next[key]
  return sorted
}

export const manifestPath = (pkg) => join(root, "packages", pkg, "package.json")

const main = () => {
  const check = process.argv.includes("--check")
  const stale = []
  for (const pkg of packages) {
    const path = manifestPath(pkg)
    const text = readFileSync(path, "utf8")
    const wanted = JSON.stringify(expected(pkg, JSON.parse(text)), null, 2) + "\n"
    if (wanted === text) continue
    if (check) stale.push(`packages/${pkg}/package.json`)
    else writeFileSync(path, wanted)
  }
  if (stale.length > 0) {
    console.error(`out of date: ${stale.join(", ")}\nrun \`pnpm manifests\` and commit the result`)
    process.exit(1)
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main()
