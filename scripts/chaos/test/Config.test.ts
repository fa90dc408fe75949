/**
 * Bad configuration, for all four providers' `layerConfig` (read through `ConfigProvider.fromMap`) and
 * `layer(options)`: missing, empty and blank variables, malformed values, base URLs without a scheme,
 * plain http to a remote host, plain http to loopback without the explicit allowance, credentials in a
 * URL. Each must fail when the Layer is built, with a `ConfigError` that names the variable, before any
 * request is sent, and without the secret in any rendering; a good environment builds and sends nothing.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Nomba from "@tollgate/providers/nomba"
import * as Nora from "@tollgate/providers/nora"
import * as Norce from "@tollgate/providers/norce"
import * as TokenProject from "@tollgate/providers/token-project"
import { MemoryHttp } from "@tollgate/testing"
import type { ConfigError } from "effect"
import { Cause, ConfigProvider, Effect, Exit, Layer, Option, Redacted } from "effect"
import { inject } from "vitest"
import { Observer, renderError } from "../src/Observe.js"
import { Report } from "../src/Report.js"
import * as Traffic from "../src/Traffic.js"

const secret = (name: string) => `${name}-Cfg-S3cret/+&=%€-${Math.random().toString(36).slice(2)}`
const secrets = {
  nora: secret("nora"),
  norce: secret("norce"),
  nomba: secret("nomba"),
  tokenProject: secret("tp")
}
const report = new Report(Object.values(secrets))
afterAll(() => report.write(inject("chaosResults")))

interface Provider {
  readonly name: string
  readonly layer: Layer.Layer<never, ConfigError.ConfigError, HttpClient.HttpClient>
  readonly env: Readonly<Record<string, string>>
  readonly required: ReadonlyArray<string>
  readonly baseUrl: string
  readonly secret: string
  /** Provider-specific values that must be refused, by variable. */
  readonly malformed: ReadonlyArray<readonly [string, string]>
  /** `layer(options)` with a base URL and the loopback allowance. */
  readonly direct: (
    baseUrl: string,
    allow: boolean
  ) => Layer.Layer<never, ConfigError.ConfigError, HttpClient.HttpClient>
}

const providers: ReadonlyArray<Provider> = [
  {
    name: "nora",
    layer: Nora.layerConfig(),
    env: { NORA_CLIENT_ID: "nora-id", NORA_CLIENT_SECRET: secrets.nora, NORA_ORGANIZATION_ID: "nora-org" },
    required: ["NORA_CLIENT_ID", "NORA_CLIENT_SECRET", "NORA_ORGANIZATION_ID"],
    baseUrl: "NORA_BASE_URL",
    secret: secrets.nora,
    malformed: [],
    direct: (baseUrl, allow) =>
      Nora.layer({
        clientId: "nora-id",
        clientSecret: Redacted.make(secrets.nora),
        organizationId: "org",
        baseUrl,
        allowInsecureLoopback: allow
      })
  },
  {
    name: "norce",
    layer: Norce.layerConfig(),
    env: {
      NORCE_CLIENT_ID: "norce-id",
      NORCE_CLIENT_SECRET: secrets.norce,
      NORCE_APPLICATION_ID: "1042",
      NORCE_CLIENT_NAME: "norce-open-demo",
      NORCE_ENVIRONMENT: "playground"
    },
    required: ["NORCE_CLIENT_ID", "NORCE_CLIENT_SECRET", "NORCE_APPLICATION_ID"],
    baseUrl: "NORCE_BASE_URL",
    secret: secrets.norce,
    malformed: [
      ["NORCE_ENVIRONMENT", "dev"],
      // Any RFC 6749 scope is accepted (the docs' examples use lab and production); quotes are not scope values.
      ["NORCE_SCOPE", "lab \"quoted\""],
      ["NORCE_SCOPE", " "],
      ["NORCE_PLATFORM", "magento"],
      ["NORCE_REGION", "se/../x"],
      ["NORCE_CLIENT_NAME", "bad name"],
      ["NORCE_TOKEN_URL", "identity.storm.io/1.0/connect/token"],
      ["NORCE_TOKEN_URL", "http://identity.storm.io/1.0/connect/token"]
    ],
    direct: (baseUrl, allow) =>
      Norce.layer({
        clientId: "norce-id",
        clientSecret: Redacted.make(secrets.norce),
        applicationId: "1042",
        baseUrl,
        allowInsecureLoopback: allow
      })
  },
  {
    name: "nomba",
    layer: Nomba.layerConfig(),
    env: { NOMBA_CLIENT_ID: "nomba-id", NOMBA_CLIENT_SECRET: secrets.nomba, NOMBA_ACCOUNT_ID: "nomba-account" },
    required: ["NOMBA_CLIENT_ID", "NOMBA_CLIENT_SECRET", "NOMBA_ACCOUNT_ID"],
    baseUrl: "NOMBA_BASE_URL",
    secret: secrets.nomba,
    malformed: [],
    direct: (baseUrl, allow) =>
      Nomba.layer({
        clientId: "nomba-id",
        clientSecret: Redacted.make(secrets.nomba),
        accountId: "acc",
        baseUrl,
        allowInsecureLoopback: allow
      })
  },
  {
    name: "token-project",
    layer: TokenProject.layerConfig(),
    env: { TOKEN_PROJECT_KEY: "tp-key", TOKEN_PROJECT_SECRET: secrets.tokenProject },
    required: ["TOKEN_PROJECT_KEY", "TOKEN_PROJECT_SECRET"],
    baseUrl: "TOKEN_PROJECT_BASE_URL",
    secret: secrets.tokenProject,
    malformed: [
      ["TOKEN_PROJECT_TOKEN_LIFETIME", "soon"],
      ["TOKEN_PROJECT_TOKEN_LIFETIME", "0 seconds"],
      ["TOKEN_PROJECT_TOKEN_LIFETIME", "-5 minutes"],
      ["TOKEN_PROJECT_TOKEN_LIFETIME", "0.0001 millis"]
    ],
    direct: (baseUrl, allow) =>
      TokenProject.layer({
        key: "tp-key",
        secret: Redacted.make(secrets.tokenProject),
        baseUrl,
        allowInsecureLoopback: allow
      })
  }
]

/** Base URLs and what must become of them. */
const baseUrls = (secret: string): ReadonlyArray<readonly [string, "refused" | "accepted", string?]> => [
  ["api.example.com", "refused"],
  ["//api.example.com", "refused"],
  ["api.example.com:443/v1", "refused"],
  ["http://api.example.com", "refused"],
  ["http://127.0.0.1:4010", "refused"],
  ["http://localhost:4010", "refused"],
  ["http://127.0.0.1:4010", "accepted", "true"],
  ["http://api.example.com", "refused", "true"],
  ["ftp://api.example.com", "refused"],
  [`https://client:${encodeURIComponent(secret)}@api.example.com`, "refused"],
  ["https://api.example.com/?key=1", "refused"],
  ["https://exa mple.com", "refused"],
  ["", "refused"],
  ["   ", "refused"],
  ["https://api.example.com/base/", "accepted"]
]

interface Case {
  readonly label: string
  readonly fault: string
  readonly layer: Layer.Layer<never, ConfigError.ConfigError, HttpClient.HttpClient>
  readonly env: Readonly<Record<string, string>> | undefined
  readonly expect: "refused" | "accepted"
  /** The variable or option a refusal must name. */
  readonly names?: string | undefined
}

const cases = (p: Provider): ReadonlyArray<Case> => [
  { label: "complete", fault: "config complete (control)", layer: p.layer, env: p.env, expect: "accepted" },
  ...p.required.flatMap((variable): ReadonlyArray<Case> => {
    const { [variable]: _, ...without } = p.env
    return [
      {
        label: `${variable} missing`,
        fault: "config variable missing",
        layer: p.layer,
        env: without,
        expect: "refused",
        names: variable
      },
      ...["", "   ", "\t\n"].map((empty): Case => ({
        label: `${variable}=${JSON.stringify(empty)}`,
        fault: "config variable empty or blank",
        layer: p.layer,
        env: { ...p.env, [variable]: empty },
        expect: "refused",
        names: variable
      }))
    ]
  }),
  ...baseUrls(p.secret).map(([url, outcome, allow]): Case => ({
    label: `${p.baseUrl}=${JSON.stringify(url)}${allow === undefined ? "" : " (loopback allowed)"}`,
    fault: url.startsWith("http://") || url.startsWith("ftp:")
      ? "config base URL not https"
      : /^[a-z]+:\/\//.test(url)
      ? "config base URL malformed"
      : "config base URL without a scheme",
    layer: p.layer,
    env: {
      ...p.env,
      [p.baseUrl]: url,
      ...(allow === undefined ? {} : { TOLLGATE_ALLOW_INSECURE_LOOPBACK: allow })
    },
    expect: outcome,
    names: p.baseUrl
  })),
  {
    label: "TOLLGATE_ALLOW_INSECURE_LOOPBACK=maybe",
    fault: "config variable malformed",
    layer: p.layer,
    env: { ...p.env, [p.baseUrl]: "http://127.0.0.1:4010", TOLLGATE_ALLOW_INSECURE_LOOPBACK: "maybe" },
    expect: "refused",
    names: "TOLLGATE_ALLOW_INSECURE_LOOPBACK"
  },
  ...p.malformed.map(([variable, value]): Case => ({
    label: `${variable}=${JSON.stringify(value)}`,
    fault: "config variable malformed",
    layer: p.layer,
    env: { ...p.env, [variable]: value },
    expect: "refused",
    names: variable
  })),
  ...([
    ["http://api.example.com", false, "refused"],
    ["http://127.0.0.1:4010", false, "refused"],
    ["api.example.com", true, "refused"],
    ["http://[::1]:4010", true, "accepted"]
  ] as const).map(([url, allow, outcome]): Case => ({
    label: `layer({ baseUrl: ${JSON.stringify(url)}, allowInsecureLoopback: ${allow} })`,
    fault: /^[a-z]+:\/\//.test(url) ? "config base URL not https" : "config base URL without a scheme",
    layer: p.direct(url, allow),
    env: undefined,
    expect: outcome,
    names: "baseUrl"
  }))
]

describe("configuration", () => {
  for (const provider of providers) {
    it.effect(provider.name, () =>
      Effect.gen(function*() {
        for (const c of cases(provider)) {
          const observer = new Observer()
          const sent: Array<string> = []
          const http = MemoryHttp.client((request) => Effect.sync(() => (sent.push(request.url), { status: 500 })))
          const build = Effect.scoped(
            Layer.build(c.layer.pipe(Layer.provide(Layer.succeed(HttpClient.HttpClient, http))))
          )
          const exit = yield* observer.observe(
            Effect.exit(
              c.env === undefined
                ? build
                : Effect.withConfigProvider(build, ConfigProvider.fromMap(new Map(Object.entries(c.env))))
            )
          )
          const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
          if (Option.isSome(failure)) observer.error(failure.value)
          if (Exit.isFailure(exit)) observer.texts.push(Cause.pretty(exit.cause))
          const outcome: Traffic.Outcome = Exit.isSuccess(exit)
            ? { kind: "success", tag: "built" }
            : Option.isSome(failure) && failure.value._tag !== undefined && "_op" in failure.value
            ? { kind: "typed", tag: "ConfigError" }
            : { kind: "lost", tag: Cause.isDie(exit.cause) ? "defect" : "other" }
          const leaks = report.leaks(observer)
          report.add(c.fault, "config", "memory", provider.name, {
            ...Traffic.tally([outcome]),
            injected: c.expect === "refused" ? 1 : 0,
            leaked: leaks.leaks
          })
          const context = `${provider.name} ${c.label}: ${Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "built"}`
          expect(leaks.examples, context).toEqual([])
          expect(sent, `${context}: nothing is sent while building`).toEqual([])
          expect(outcome.kind, context).toBe(c.expect === "refused" ? "typed" : "success")
          if (c.expect === "refused" && Option.isSome(failure) && c.names !== undefined) {
            expect(renderError(failure.value).join("\n"), context).toContain(c.names)
          }
        }
      }))
  }
})
