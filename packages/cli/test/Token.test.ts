import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { jwtPattern, leaks, lines, runCli } from "./utils.js"

const providers = ["nora", "norce", "nomba", "token-project", "oauth2"] as const

describe("tollgate token --sandbox", () => {
  for (const provider of providers) {
    it.live(`${provider}: metadata with the token masked`, () =>
      Effect.gen(function*() {
        const result = yield* runCli(["token", "--sandbox", provider])
        expect(result.exitCode).toBe(0)
        expect(result.stderr).toBe("")
        const out = lines(result.stdout)
        expect(out[0]).toBe(`provider       ${provider} (sandbox)`)
        expect(result.stdout).toMatch(
          /^token +•+ \(hidden: JWT, \d+ characters, sha256:[0-9a-f]{12}; --reveal shows it\)$/m
        )
        expect(result.stdout).toMatch(/^type +[Bb]earer$/m)
        expect(result.stdout).toMatch(/^obtained at +\d{4}-\d\d-\d\dT/m)
        expect(result.stdout).toMatch(/^expires at +\d{4}-\d\d-\d\dT.*\(in .*, lifetime .*\)$/m)
        expect(result.stdout).toMatch(/^refresh token +(no|yes \(kept hidden\))$/m)
        expect(leaks(result)).toEqual([])
      }))

    it.live(`${provider}: --reveal shows the token, --json --reveal carries it`, () =>
      Effect.gen(function*() {
        const revealed = yield* runCli(["token", "--sandbox", provider, "--reveal"])
        expect(revealed.exitCode).toBe(0)
        expect(revealed.stdout).toMatch(new RegExp(`^token +${jwtPattern.source}$`, "m"))

        const json = yield* runCli(["token", "--sandbox", "--json", "--reveal", provider])
        expect(json.exitCode).toBe(0)
        const parsed = JSON.parse(json.stdout)
        expect(parsed.provider).toBe(provider)
        expect(parsed.sandbox).toBe(true)
        expect(parsed.type.toLowerCase()).toBe("bearer")
        expect(parsed.token).toMatch(jwtPattern)
        expect(parsed.length).toBe(parsed.token.length)
      }))
  }

  it.live("--json without --reveal: metadata only, no token", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["token", "--sandbox", "nomba", "--json"])
      expect(result.exitCode).toBe(0)
      const parsed = JSON.parse(result.stdout)
      expect(parsed).not.toHaveProperty("token")
      expect(parsed).toMatchObject({
        provider: "nomba",
        sandbox: true,
        type: "Bearer",
        format: "jwt",
        lifetimeSeconds: 1800,
        refreshToken: true,
        scope: null
      })
      expect(parsed.fingerprint).toMatch(/^sha256:[0-9a-f]{12}$/)
      expect(Date.parse(parsed.expiresAt) - Date.parse(parsed.obtainedAt)).toBe(1_800_000)
      expect(parsed.expiresInSeconds).toBeGreaterThan(1790)
      expect(leaks(result)).toEqual([])
    }))

  it.live("norce reports the granted scope; nora's token lasts an hour", () =>
    Effect.gen(function*() {
      const norce = JSON.parse((yield* runCli(["token", "--sandbox", "norce", "--json"])).stdout)
      expect(norce.scope).toBe("prod")
      expect(norce.lifetimeSeconds).toBe(600)
      const nora = JSON.parse((yield* runCli(["token", "--sandbox", "nora", "--json"])).stdout)
      expect(nora.lifetimeSeconds).toBe(3600)
      expect(nora.refreshToken).toBe(false)
    }))

  it.live("--time-scale shortens the sandbox's lifetimes", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["token", "--sandbox", "--time-scale", "60", "nora", "--json"])
      expect(result.exitCode).toBe(0)
      expect(JSON.parse(result.stdout).lifetimeSeconds).toBe(60)
    }))

  it.live("--header prints exactly one Authorization line", () =>
    Effect.gen(function*() {
      for (const provider of providers) {
        const result = yield* runCli(["token", "--sandbox", provider, "--header"])
        expect(result.exitCode).toBe(0)
        expect(result.stderr).toBe("")
        expect(result.stdout).toMatch(new RegExp(`^Authorization: Bearer ${jwtPattern.source}\\n$`))
      }
    }))

  it.live("--header and --json together are refused", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["token", "--sandbox", "nora", "--header", "--json"])
      expect(result.exitCode).toBe(2)
      expect(result.stdout).toBe("")
      expect(lines(result.stderr)).toEqual(["tollgate: choose one of --header and --json"])
    }))

  it.live("--help explains that --header shows the token", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["token", "--help"])
      expect(result.exitCode).toBe(0)
      const help = lines(result.stdout).join("\n")
      expect(help).toContain("--header")
      expect(help).toContain("This SHOWS THE TOKEN")
      expect(help).toContain("NORA_CLIENT_ID")
      expect(help).toContain("TOLLGATE_CLIENT_SECRET")
      expect(help).not.toMatch(/--client-secret|--secret\b(?!-)/)
    }))
})
