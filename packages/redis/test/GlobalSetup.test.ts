/**
 * The global setup that gets redis-server before the Redis tests run: it installs the server only when
 * the binary does not run, and says why when it cannot.
 */
import { describe, expect, it } from "@effect/vitest"
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ensureRedisServer } from "./global-setup.js"

const workspace = () => {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-redis-setup-"))
  const file = (name: string, content: string) => {
    const path = join(dir, name)
    writeFileSync(path, content)
    chmodSync(path, 0o755)
    return path
  }
  return { dir, file, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

const fakeServer = "#!/bin/sh\necho 'Redis server v=7.0.15 sha=00000000:0 malloc=libc bits=64'\n"

describe("global setup", () => {
  it("does nothing when redis-server runs", () => {
    const ws = workspace()
    try {
      const binary = ws.file("redis-server", fakeServer)
      const script = ws.file("install.sh", `#!/bin/sh\ntouch ${join(ws.dir, "installed")}\n`)
      const lines: Array<string> = []
      expect(ensureRedisServer({ binary, script, log: (line) => lines.push(line) })).toEqual({ ok: true })
      expect(existsSync(join(ws.dir, "installed"))).toBe(false)
      expect(lines).toEqual([])
    } finally {
      ws.cleanup()
    }
  })

  it("installs it with the script when it is missing, telling the binary to install", () => {
    const ws = workspace()
    try {
      const binary = join(ws.dir, "redis-server")
      const server = ws.file("redis-server.new", fakeServer)
      // Installs the binary it was told to (REDIS_SERVER_BIN), as ensure-redis.sh checks for.
      const script = ws.file(
        "install.sh",
        `#!/bin/sh\ncp "${server}" "$REDIS_SERVER_BIN"\necho 'Redis server v=7.0.15'\n`
      )
      const lines: Array<string> = []
      expect(ensureRedisServer({ binary, script, log: (line) => lines.push(line) })).toEqual({ ok: true })
      expect(lines[0]).toContain("is not installed: installing it with")
      expect(lines[1]).toBe("[redis] installed: Redis server v=7.0.15")
    } finally {
      ws.cleanup()
    }
  })

  it("says why when it cannot be installed", () => {
    const ws = workspace()
    try {
      const binary = join(ws.dir, "redis-server")
      const script = ws.file(
        "install.sh",
        "#!/bin/sh\necho 'error: installing redis-server needs root (or sudo)' >&2\nexit 1\n"
      )
      expect(ensureRedisServer({ binary, script, log: () => undefined })).toEqual({
        ok: false,
        reason: `${binary} is missing and could not be installed: error: installing redis-server needs root (or sudo)`
      })
    } finally {
      ws.cleanup()
    }
  })
})
