/**
 * Vitest global setup of @tollgate/redis: makes sure `redis-server` is there before any test file asks
 * for one, installing it as `.ci/run` does (`scripts/ensure-redis.sh`: Debian's package through apt-get,
 * as root or through sudo). Each test starts its own server on a free loopback port; nothing here starts
 * one. Only when the server truly cannot be had (no apt-get, no root, no network) do the Redis tests
 * skip, and then this prints why, once, before they run.
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"

/** Where the install script is, and which binary the tests run (`REDIS_SERVER_BIN`, as the tests read it). */
export interface Options {
  readonly binary: string
  readonly script: string
  readonly log: (line: string) => void
}

export const defaults: Options = {
  binary: process.env["REDIS_SERVER_BIN"] ?? "redis-server",
  script: fileURLToPath(new URL("../scripts/ensure-redis.sh", import.meta.url)),
  log: (line) => console.log(line)
}

const runs = (binary: string): boolean => {
  const result = spawnSync(binary, ["--version"], { encoding: "utf8" })
  return result.error === undefined && result.status === 0
}

/**
 * Installs `redis-server` with the script when the binary does not run. Returns whether it runs now,
 * and if not, why.
 */
export const ensureRedisServer = (
  options: Options = defaults
): { readonly ok: true } | { readonly ok: false; readonly reason: string } => {
  if (runs(options.binary)) return { ok: true }
  options.log(`[redis] ${options.binary} is not installed: installing it with ${options.script} (as .ci/run does)`)
  const install = spawnSync("bash", [options.script], {
    encoding: "utf8",
    env: { ...process.env, REDIS_SERVER_BIN: options.binary },
    timeout: 10 * 60_000
  })
  const output = `${install.stdout ?? ""}${install.stderr ?? ""}`.trim()
  if (install.error === undefined && install.status === 0 && runs(options.binary)) {
    options.log(`[redis] installed: ${output.split("\n").pop() ?? options.binary}`)
    return { ok: true }
  }
  const why = output.split("\n").filter((line) => line.length > 0).pop() ??
    install.error?.message ?? `exit ${install.status}`
  return { ok: false, reason: `${options.binary} is missing and could not be installed: ${why}` }
}

export default function setup(): void {
  const result = ensureRedisServer()
  if (!result.ok) {
    console.warn(
      `[redis] THE REDIS TESTS WILL BE SKIPPED: ${result.reason}. ` +
        "Install redis-server (>= 6.2) or set REDIS_SERVER_BIN, then run the tests again."
    )
  }
}
