import { describe, expect, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Either } from "effect"
import * as BaseUrl from "../src/BaseUrl.js"

describe("BaseUrl", () => {
  it("accepts https and strips the trailing slash", () => {
    expect(BaseUrl.validate("X", "https://api.nomba.com/")).toEqual(Either.right("https://api.nomba.com"))
    expect(BaseUrl.validate("X", " https://a.test/base/path/ ")).toEqual(Either.right("https://a.test/base/path"))
  })

  it.each([
    ["", "expected an https:// URL"],
    ["api.nomba.com", "absolute URL with a scheme"],
    ["//api.nomba.com", "absolute URL with a scheme"],
    ["http://api.nomba.com", "plain http is refused"],
    ["ftp://files.test", "expected an https:// URL"],
    ["https://user:pass@api.test", "credentials must not be embedded"],
    ["https://api.test/?key=secret-value", "no query"],
    ["http://127.0.0.1:8080", "must be allowed explicitly"]
  ])("refuses %j", (url, why) => {
    const result = BaseUrl.validate("NOMBA_BASE_URL", url)
    expect(Either.isLeft(result)).toBe(true)
    const message = String(Either.isLeft(result) ? result.left : "")
    expect(message).toContain("NOMBA_BASE_URL")
    expect(message).toContain(why)
    expect(message).not.toContain("pass")
    expect(message).not.toContain("secret-value")
  })

  it("joins paths onto a base URL, and finds a URL's path without parsing it", () => {
    expect(BaseUrl.join("https://api.test/v1", "/forms")).toBe("https://api.test/v1/forms")
    expect(BaseUrl.join("https://api.test/v1/", "/forms")).toBe("https://api.test/v1/forms")
    expect(BaseUrl.join("https://api.test/v1", "forms?page=2")).toBe("https://api.test/v1/forms?page=2")
    expect(BaseUrl.join("https://api.test/v1", "?page=2")).toBe("https://api.test/v1?page=2")
    expect(BaseUrl.join("https://api.test/v1", "")).toBe("https://api.test/v1")
    expect(BaseUrl.join("https://api.test/v1", "https://elsewhere.test/x")).toBe("https://elsewhere.test/x")
    expect(BaseUrl.isAbsolute("mailto:x@y.test")).toBe(true)
    expect(BaseUrl.isAbsolute("/forms")).toBe(false)
    expect(BaseUrl.pathOf("https://api.test/v1/forms?x=1#top")).toBe("/v1/forms")
    expect(BaseUrl.pathOf("https://api.test")).toBe("/")
    expect(BaseUrl.pathOf("/forms#top")).toBe("/forms")
    expect(BaseUrl.pathOf("https://api.test?x=/not/a/path")).toBe("/")
  })

  it("accepts plain http to loopback only when allowed", () => {
    for (const url of ["http://127.0.0.1:4000", "http://localhost:4000/api", "http://[::1]:4000"]) {
      expect(Either.isRight(BaseUrl.validate("X", url, { allowInsecureLoopback: true }))).toBe(true)
    }
    expect(Either.isLeft(BaseUrl.validate("X", "http://10.0.0.1", { allowInsecureLoopback: true }))).toBe(true)
  })

  it.effect("reads a variable with a default, and names the variable when it is wrong", () =>
    Effect.gen(function*() {
      const read = (env: Record<string, string>) =>
        Effect.withConfigProvider(
          Effect.either(BaseUrl.config("NORA_BASE_URL", { default: "https://main.formflow-dev.net" })),
          ConfigProvider.fromMap(new Map(Object.entries(env)))
        )
      expect(yield* read({})).toEqual(Either.right("https://main.formflow-dev.net"))
      const wrong = yield* read({ NORA_BASE_URL: "main.formflow-dev.net" })
      expect(Either.isLeft(wrong) && String(wrong.left)).toContain("NORA_BASE_URL")
      const empty = yield* Effect.withConfigProvider(
        Effect.either(BaseUrl.nonEmpty("NORA_CLIENT_ID")),
        ConfigProvider.fromMap(new Map([["NORA_CLIENT_ID", "  "]]))
      )
      expect(Either.isLeft(empty) && String(empty.left)).toContain("NORA_CLIENT_ID")
      // Set but empty is invalid, not missing: a default must not paper over it.
      const defaulted = yield* Effect.withConfigProvider(
        Effect.either(Config.withDefault(BaseUrl.nonEmpty("NORA_REGION"), "se")),
        ConfigProvider.fromMap(new Map([["NORA_REGION", ""]]))
      )
      expect(Either.isLeft(defaulted)).toBe(true)
      const missing = yield* Effect.withConfigProvider(
        Effect.either(BaseUrl.nonEmpty("NORA_CLIENT_ID")),
        ConfigProvider.fromMap(new Map())
      )
      expect(Either.isLeft(missing) && String(missing.left)).toContain("NORA_CLIENT_ID")
    }))
})
