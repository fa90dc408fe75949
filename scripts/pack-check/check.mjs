// `pnpm pack-check`: Tollgate as a user gets it. Packs every published package with pnpm, checks what each
// tarball holds, then installs the tarballs with npm into fresh projects outside the workspace that have
// only the declared peers, and there:
//
//   (a) plain `node app.mjs` imports `@tollgate/core` and a provider subpath and completes a request against
//       the sandbox started from the installed `tollgate-sandbox` executable;
//   (b) `tsc --noEmit` passes on a strict TypeScript app importing every public subpath, with
//       `moduleResolution` NodeNext and again with Bundler;
//   (c) `npx tollgate --help` and `npx tollgate token nora --sandbox` work from the installed CLI, and
//       `tollgate --version`'s startup time is printed;
//   (d) the CLI installs and runs without `@tollgate/testing` (the executable bundles the sandbox), and the
//       library's `--sandbox` then says how to install it.
//
// The first project is installed with the README's own install line, with our packages swapped for the
// tarballs. None of our packages may come from the registry: every one must resolve to a tarball.
import { execFileSync, spawn, spawnSync } from "node:child_process"
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { packages } from "../packaging/manifest.mjs"

const root = fileURLToPath(new URL("../..", import.meta.url))
const fixtures = fileURLToPath(new URL("fixtures", import.meta.url))
const keep = process.argv.includes("--keep")
const work = mkdtempSync(join(tmpdir(), "tollgate-pack-check-"))
const tarballs = join(work, "tarballs")
mkdirSync(tarballs)

const step = (title) => console.log(`\n-- ${title}`)

const fail = (message) => {
  console.error(`pack-check: ${message}`)
  console.error(`(work directory kept: ${work})`)
  process.exit(1)
}

/** Runs a command; fails the check with its output when it exits non-zero. Returns stdout. */
const run = (command, args, options = {}) => {
  const result = spawnSync(command, args, {
    cwd: options.cwd ?? root,
    env: { ...process.env, ...options.env },
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    timeout: options.timeout ?? 600_000
  })
  if (options.echo !== false) process.stdout.write(result.stdout ?? "")
  if (result.status !== 0 && !options.allowFailure) {
    process.stdout.write(result.stderr ?? "")
    fail(`${command} ${args.join(" ")} exited with ${result.status ?? result.signal}`)
  }
  return result
}

// ---------------------------------------------------------------------------------------------------
// Pack
// ---------------------------------------------------------------------------------------------------

step("manifests are up to date")
run(process.execPath, ["scripts/packaging/manifest.mjs", "--check"])

step("build")
run(process.execPath, ["scripts/packaging/build.mjs"])

step("pack")
const packed = {}
for (const pkg of packages) {
  const before = new Set(readdirSync(tarballs))
  run("pnpm", ["pack", "--pack-destination", tarballs], { cwd: join(root, "packages", pkg), echo: false })
  const [file] = readdirSync(tarballs).filter((name) => !before.has(name))
  if (file === undefined) fail(`pnpm pack made no tarball for @tollgate/${pkg}`)
  packed[pkg] = join(tarballs, file)
}

step("tarball contents")
const forbidden = [
  [/(^|\/)test\//, "a test directory"],
  [/\.(test|spec)\.[cm]?[jt]sx?$/, "a test file"],
  [/(^|\/)tsconfig[^/]*\.json$/, "a tsconfig file"],
  [/(^|\/)vitest\.config\./, "a vitest config"],
  [/\.tsbuildinfo$/, "a TypeScript build-info file"],
  [/(^|\/)node_modules\//, "node_modules"],
  [/(^|\/)\.env/, "an env file"]
]
const rows = []
for (const pkg of packages) {
  const listing = execFileSync("tar", ["-tzf", packed[pkg]], { encoding: "utf8" }).trim().split("\n")
  const files = listing.map((path) => path.replace(/^package\//, "")).filter((path) => !path.endsWith("/"))
  for (const path of files) {
    for (const [pattern, what] of forbidden) {
      if (pattern.test(path)) fail(`@tollgate/${pkg}'s tarball contains ${what}: ${path}`)
    }
  }
  for (
    const required of [
      "package.json",
      "README.md",
      "LICENSE",
      "CHANGELOG.md",
      "dist/esm/index.js",
      "dist/dts/index.d.ts"
    ]
  ) {
    if (!files.includes(required)) fail(`@tollgate/${pkg}'s tarball lacks ${required}`)
  }
  const manifestText = execFileSync("tar", ["-xzOf", packed[pkg], "package/package.json"], { encoding: "utf8" })
  if (manifestText.includes("workspace:")) fail(`@tollgate/${pkg}'s package.json still has a workspace: range`)
  const manifest = JSON.parse(manifestText)
  const targets = []
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    if (typeof target === "string") targets.push(target)
    else {
      if (Object.keys(target)[0] !== "types") fail(`@tollgate/${pkg} exports ${subpath}: "types" must come first`)
      targets.push(...Object.values(target))
    }
    for (const path of targets) {
      if (/\.ts$/.test(path) && !path.endsWith(".d.ts")) fail(`@tollgate/${pkg} exports ${subpath} as ${path}`)
    }
  }
  targets.push(...Object.values(manifest.bin ?? {}), manifest.main, manifest.types)
  for (const target of targets) {
    if (!files.includes(target.replace(/^\.\//, ""))) fail(`@tollgate/${pkg}: ${target} is not in the tarball`)
  }
  for (const bin of Object.values(manifest.bin ?? {})) {
    const text = execFileSync("tar", ["-xzOf", packed[pkg], `package/${bin.replace(/^\.\//, "")}`], {
      encoding: "utf8"
    })
    if (!text.startsWith("#!/usr/bin/env node\n")) fail(`@tollgate/${pkg}: ${bin} does not start with a node shebang`)
  }
  const size = readFileSync(packed[pkg]).length
  rows.push(
    `${manifest.name.padEnd(22)} ${(size / 1024).toFixed(1).padStart(7)} kB packed  ${
      String(files.length).padStart(4)
    } files  ${Object.keys(manifest.exports).length - 1} subpaths`
  )
}
console.log(rows.join("\n"))

// ---------------------------------------------------------------------------------------------------
// Install
// ---------------------------------------------------------------------------------------------------

/** The README's install line, with `@tollgate/*` names swapped for the tarballs. */
const readmeInstall = () => {
  const readme = readFileSync(join(root, "README.md"), "utf8")
  const line = readme.split("\n").find((l) => l.startsWith("npm install @tollgate/"))
  if (line === undefined) fail("README.md has no line starting `npm install @tollgate/`")
  const args = line.replace(/^npm install\s+/, "").split(/\s+/)
  return args.map((arg) => {
    const ours = /^@tollgate\/([a-z-]+)$/.exec(arg)
    if (ours === null) return arg.replace(/^(["'])(.*)\1$/, "$2")
    if (packed[ours[1]] === undefined) fail(`README's install line names ${arg}, which is not a published package`)
    return packed[ours[1]]
  })
}

const npmInstall = (dir, args) => {
  run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", ...args], { cwd: dir })
  // Every one of our packages must come from a tarball (none is on the registry, and none may be fetched).
  const lock = JSON.parse(readFileSync(join(dir, "package-lock.json"), "utf8"))
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!/node_modules\/@tollgate\//.test(path)) continue
    if (!String(entry.resolved ?? "").startsWith("file:")) fail(`${path} was not installed from a tarball`)
  }
}

const newProject = (name) => {
  const dir = join(work, name)
  mkdirSync(dir)
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name, private: true, type: "module" }, null, 2))
  return dir
}

step("install: the README's line, then the other packages, with npm into a fresh project")
const app = newProject("app")
const readmeArgs = readmeInstall()
console.log(`npm install ${readmeArgs.map((arg) => arg.replace(tarballs + "/", "")).join(" ")}`)
npmInstall(app, readmeArgs)
npmInstall(app, [packed.testing, packed.redis, packed.undici, packed.cli])
const typescript = JSON.parse(readFileSync(join(root, "node_modules/typescript/package.json"), "utf8")).version
npmInstall(app, ["--save-dev", `typescript@${typescript}`, "@types/node@^20"])
cpSync(fixtures, app, { recursive: true, filter: (path) => !path.endsWith("cli-library.mjs") })

// ---------------------------------------------------------------------------------------------------
// (a) plain node against the installed sandbox
// ---------------------------------------------------------------------------------------------------

step("(a) node app.mjs against the installed tollgate-sandbox")
const sandbox = spawn(join(app, "node_modules/.bin/tollgate-sandbox"), ["--port", "0"], {
  cwd: app,
  stdio: ["ignore", "pipe", "pipe"]
})
let sandboxOutput = ""
sandbox.stdout.on("data", (chunk) => (sandboxOutput += chunk))
sandbox.stderr.on("data", (chunk) => (sandboxOutput += chunk))
const nora = await new Promise((resolve) => {
  const deadline = setTimeout(() => resolve(undefined), 30_000)
  const poll = setInterval(() => {
    const url = /Nora \(Formflow\)\s+(http:\/\/\S+)/.exec(sandboxOutput)
    const credentials = /clientId=(\S+) clientSecret=(\S+) organizationId=(\S+)/.exec(sandboxOutput)
    if (url !== null && credentials !== null) {
      clearTimeout(deadline)
      clearInterval(poll)
      resolve({
        baseUrl: url[1],
        clientId: credentials[1],
        clientSecret: credentials[2],
        organizationId: credentials[3]
      })
    }
  }, 50)
})
if (nora === undefined) {
  sandbox.kill("SIGKILL")
  fail(`tollgate-sandbox did not print Nora's address within 30 s:\n${sandboxOutput}`)
}
try {
  const result = run(process.execPath, ["app.mjs"], {
    cwd: app,
    timeout: 60_000,
    env: {
      NORA_CLIENT_ID: nora.clientId,
      NORA_CLIENT_SECRET: nora.clientSecret,
      NORA_ORGANIZATION_ID: nora.organizationId,
      NORA_BASE_URL: nora.baseUrl,
      TOLLGATE_ALLOW_INSECURE_LOOPBACK: "true"
    }
  })
  if (!/^GET \/api\/forms: 200, \d+ forms?$/m.test(result.stdout)) fail("app.mjs did not report a 200 from Nora")
} finally {
  sandbox.kill("SIGINT")
}
const sandboxExit = await new Promise((resolve) => {
  const timer = setTimeout(() => {
    sandbox.kill("SIGKILL")
    resolve("killed")
  }, 10_000)
  sandbox.on("exit", (code, signal) => {
    clearTimeout(timer)
    resolve(code ?? signal)
  })
})
console.log(`tollgate-sandbox stopped on SIGINT (${sandboxExit})`)
if (sandboxExit === "killed") fail("tollgate-sandbox did not stop within 10 s of SIGINT")

// ---------------------------------------------------------------------------------------------------
// (b) tsc, NodeNext and Bundler
// ---------------------------------------------------------------------------------------------------

step("(b) tsc --noEmit on a strict app importing every public subpath")
const subpathImports = []
for (const pkg of packages) {
  const manifest = JSON.parse(readFileSync(join(app, "node_modules/@tollgate", pkg, "package.json"), "utf8"))
  for (const subpath of Object.keys(manifest.exports)) {
    if (subpath === "./package.json") continue
    const specifier = subpath === "." ? manifest.name : `${manifest.name}/${subpath.slice(2)}`
    subpathImports.push(specifier)
  }
}
writeFileSync(
  join(app, "subpaths.ts"),
  "// Generated by scripts/pack-check: one import of every public subpath.\n" +
    subpathImports.map((specifier, i) => `import * as M${i} from "${specifier}"`).join("\n") +
    `\n\nexport const modules = [${subpathImports.map((_, i) => `M${i}`).join(", ")}]\n`
)
console.log(`${subpathImports.length} subpaths`)
const tsc = join(app, "node_modules/typescript/bin/tsc")
for (const config of ["tsconfig.nodenext.json", "tsconfig.bundler.json"]) {
  console.log(`tsc -p ${config}`)
  run(process.execPath, [tsc, "-p", config, "--noEmit"], { cwd: app })
}

// ---------------------------------------------------------------------------------------------------
// (c) the CLI
// ---------------------------------------------------------------------------------------------------

step("(c) npx tollgate")
const help = run("npx", ["--no-install", "tollgate", "--help"], { cwd: app, echo: false })
if (!/\btoken\b/.test(help.stdout) || !/\bcall\b/.test(help.stdout)) fail(`tollgate --help:\n${help.stdout}`)
console.log(help.stdout.split("\n").slice(0, 6).join("\n") + "\n…")
const version = run("npx", ["--no-install", "tollgate", "--version"], { cwd: app, echo: false }).stdout.trim()
const expectedVersion = JSON.parse(readFileSync(join(root, "packages/cli/package.json"), "utf8")).version
if (!version.includes(expectedVersion)) fail(`tollgate --version printed ${version}, expected ${expectedVersion}`)
console.log(`tollgate --version: ${version}`)
const token = run("npx", ["--no-install", "tollgate", "token", "nora", "--sandbox"], {
  cwd: app,
  echo: false,
  timeout: 60_000
})
if (token.stdout.trim().length === 0) fail("tollgate token nora --sandbox printed no token")
console.log(`tollgate token nora --sandbox: ${token.stdout.trim().length} characters on stdout`)

// The executable's startup, measured rather than asserted (timing belongs to benchmarks, not checks).
const bin = join(app, "node_modules/.bin/tollgate")
const times = []
for (let i = 0; i < 11; i++) {
  const start = process.hrtime.bigint()
  execFileSync(bin, ["--version"], { cwd: app, stdio: "ignore" })
  if (i > 0) times.push(Number(process.hrtime.bigint() - start) / 1e6)
}
times.sort((a, b) => a - b)
console.log(
  `tollgate --version startup: median ${times[5].toFixed(0)} ms, min ${times[0].toFixed(0)} ms (10 runs)`
)

// ---------------------------------------------------------------------------------------------------
// (d) the CLI without @tollgate/testing
// ---------------------------------------------------------------------------------------------------

step("(d) the CLI installs and runs without @tollgate/testing")
const bare = newProject("cli-only")
npmInstall(bare, [packed.core, packed.providers, packed.cli])
if (spawnSync("test", ["-e", join(bare, "node_modules/@tollgate/testing")]).status === 0) {
  fail("installing @tollgate/cli installed @tollgate/testing")
}
run("npx", ["--no-install", "tollgate", "--version"], { cwd: bare })
// The executable has the sandbox built in.
const bareToken = run("npx", ["--no-install", "tollgate", "token", "nora", "--sandbox"], { cwd: bare, echo: false })
console.log(`tollgate token nora --sandbox: ${bareToken.stdout.trim().length} characters on stdout`)
// The library loads it from @tollgate/testing, and says how to install it.
cpSync(join(fixtures, "cli-library.mjs"), join(bare, "cli-library.mjs"))
const missing = run(process.execPath, ["cli-library.mjs"], { cwd: bare, echo: false, allowFailure: true })
console.log(`library: ${missing.stderr.trim()}`)
if (missing.status !== 1 || !/^tollgate: --sandbox needs @tollgate\/testing/.test(missing.stderr)) {
  fail(`Cli.run --sandbox without @tollgate/testing: exit ${missing.status}, stderr:\n${missing.stderr}`)
}

if (!keep) rmSync(work, { recursive: true, force: true })
console.log(`\npack-check: ok${keep ? ` (work directory: ${work})` : ""}`)
