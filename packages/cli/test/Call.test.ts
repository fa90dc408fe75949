import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Call from "../src/internal/commands/call.js"
import { leaks, lines, runCli } from "./utils.js"

describe("tollgate call --sandbox", () => {
  it.live("200: the body on stdout, the status and timing on stderr", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["call", "--sandbox", "nora", "GET", "/api/forms"])
      expect(result.exitCode).toBe(0)
      const body = JSON.parse(result.stdout)
      expect(body.total).toBe(2)
      expect(body.data.map((form: { id: string }) => form.id)).toEqual(["frm_motor_quote", "frm_home_claim"])
      expect(lines(result.stderr)).toHaveLength(1)
      expect(result.stderr).toMatch(/^200 OK {2}GET \/api\/forms {2}[\d.]+ m?s \(token [\d.]+ m?s\)\n$/)
      expect(leaks(result)).toEqual([])
    }))

  it.live("404: the body still on stdout, exit code 1", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["call", "--sandbox", "nora", "GET", "/api/forms/frm_missing"])
      expect(result.exitCode).toBe(1)
      expect(JSON.parse(result.stdout)).toMatchObject({ statusCode: 404, message: "Form frm_missing not found" })
      expect(lines(result.stderr)).toHaveLength(1)
      expect(result.stderr).toMatch(/^404 Not Found {2}GET \/api\/forms\/frm_missing /)
      expect(leaks(result)).toEqual([])
    }))

  it.live("each provider answers through its own client (headers, query strings)", () =>
    Effect.gen(function*() {
      const norce = yield* runCli([
        "call",
        "--sandbox",
        "norce",
        "get",
        "/commerce/metadata/1.1/GetApplication?format=json"
      ])
      expect(norce.exitCode).toBe(0)
      expect(JSON.parse(norce.stdout)).toMatchObject({ ApplicationId: 1000 })

      const nomba = yield* runCli(["call", "--sandbox", "nomba", "GET", "/v1/accounts"])
      expect(nomba.exitCode).toBe(0)
      expect(JSON.parse(nomba.stdout)).toMatchObject({ code: "00" })

      const tokenProject = yield* runCli(["call", "--sandbox", "token-project", "GET", "/notarizations/stamps"])
      expect(tokenProject.exitCode).toBe(0)
      expect(JSON.parse(tokenProject.stdout).data).toHaveLength(1)

      const oauth2 = yield* runCli(["call", "--sandbox", "oauth2", "GET", "/commerce/products/1.1/GetProduct?id=1003"])
      expect(oauth2.exitCode).toBe(0)
      expect(JSON.parse(oauth2.stdout)).toMatchObject({ ProductId: 1003, Name: "Sandbox cap" })
      for (const result of [norce, nomba, tokenProject, oauth2]) expect(leaks(result)).toEqual([])
    }))

  it.live("--data sends a JSON body (text, @file, or - for stdin) with --header", () =>
    Effect.gen(function*() {
      const path = "/api/forms/frm_motor_quote/submissions"
      const inline = yield* runCli(["call", "--sandbox", "nora", "POST", path, "--data", "{\"driverAge\": 42}"])
      expect(inline.exitCode).toBe(0)
      expect(JSON.parse(inline.stdout)).toMatchObject({ formId: "frm_motor_quote", status: "received" })
      expect(inline.stderr).toMatch(/^201 Created {2}POST /)

      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped()
      yield* fs.writeFileString(`${dir}/body.json`, "{\"registrationNumber\": \"ABC123\"}")
      const file = yield* runCli(["call", "--sandbox", "nora", "POST", path, "-d", `@${dir}/body.json`])
      expect(file.exitCode).toBe(0)
      expect(file.stderr).toMatch(/^201 Created/)

      const stdin = yield* runCli(["call", "--sandbox", "nora", "POST", path, "--data", "-"], { stdin: "{}" })
      expect(stdin.exitCode).toBe(0)

      // Plain text is sent as text/plain, which this route refuses: the header says what was sent.
      const text = yield* runCli(["call", "--sandbox", "nora", "POST", path, "--data", "hello"])
      expect(text.exitCode).toBe(1)
      expect(text.stderr).toMatch(/^400 Bad Request/)
      const forced = yield* runCli([
        "call",
        "--sandbox",
        "nora",
        "POST",
        path,
        "--data",
        "{}",
        "--header",
        "Content-Type: text/plain"
      ])
      expect(forced.exitCode).toBe(1)
      expect(forced.stderr).toMatch(/^400 Bad Request/)

      const missing = yield* runCli(["call", "--sandbox", "nora", "POST", path, "--data", `@${dir}/nope.json`])
      expect(missing.exitCode).toBe(2)
      expect(lines(missing.stderr)).toHaveLength(1)
      expect(missing.stderr).toMatch(/^tollgate: --data @.*nope\.json: cannot read the file/)
    }).pipe(Effect.provide(NodeFileSystem.layer), Effect.scoped))

  it.live("refuses absolute URLs, paths without /, unknown methods and malformed headers", () =>
    Effect.gen(function*() {
      for (
        const args of [
          ["GET", "https://example.com/steal"],
          ["GET", "api/forms"],
          ["GET", "//example.com/x"],
          ["FETCH", "/api/forms"],
          ["GET", "/api/forms", "--header", "no-colon"]
        ]
      ) {
        const result = yield* runCli(["call", "--sandbox", "nora", ...args])
        expect(result.exitCode).toBe(2)
        expect(result.stdout).toBe("")
        expect(lines(result.stderr)).toHaveLength(1)
        expect(result.stderr).toMatch(/^tollgate: /)
      }
    }))

  it.live("--json: one document on stdout (status, headers, parsed body, timing), nothing on stderr", () =>
    Effect.gen(function*() {
      const ok = yield* runCli(["call", "--sandbox", "nora", "GET", "/api/forms?page=1", "--json"])
      expect(ok.exitCode).toBe(0)
      expect(ok.stderr).toBe("")
      const doc = JSON.parse(ok.stdout)
      expect(doc).toMatchObject({
        provider: "nora",
        sandbox: true,
        request: { method: "GET", path: "/api/forms?page=1" },
        status: 200,
        statusText: "OK",
        bodyFormat: "json",
        body: { total: 2 },
        retriedAfter: []
      })
      expect(doc.headers["content-type"]).toMatch(/^application\/json/)
      expect(doc.timing.tokenMillis).toBeGreaterThan(0)
      expect(doc.timing.requestMillis).toBeGreaterThan(0)
      expect(leaks(ok)).toEqual([])

      // Not 2xx: the same document, exit code 1, still nothing on stderr.
      const missing = yield* runCli(["call", "--sandbox", "nora", "GET", "/api/forms/frm_missing", "--json"])
      expect(missing.exitCode).toBe(1)
      expect(missing.stderr).toBe("")
      expect(JSON.parse(missing.stdout)).toMatchObject({
        status: 404,
        statusText: "Not Found",
        bodyFormat: "json",
        body: { message: "Form frm_missing not found" }
      })

      // No body at all.
      const head = yield* runCli(["call", "--sandbox", "nomba", "HEAD", "/v1/accounts", "--json"])
      expect(JSON.parse(head.stdout)).toMatchObject({ request: { method: "HEAD" }, bodyFormat: "empty", body: null })

      // A failure before any response is still one tollgate: line, and no JSON.
      const unreachable = yield* runCli([
        "call",
        "--sandbox",
        "oauth2",
        "GET",
        "/x",
        "--base-url",
        "https://127.0.0.1:9",
        "--json"
      ])
      expect(unreachable.exitCode).toBe(1)
      expect(unreachable.stdout).toBe("")
      expect(lines(unreachable.stderr)).toEqual(["tollgate: could not reach GET https://127.0.0.1:9/x (ECONNREFUSED)"])
    }))

  it.live("--json shows text and binary bodies as they are, and hides credential headers", () =>
    Effect.gen(function*() {
      const text = yield* Call.responseJson(
        HttpClientResponse.fromWeb(
          HttpClientRequest.get("https://api.example/x"),
          new Response("plain words", {
            status: 503,
            headers: { "content-type": "text/plain", "set-cookie": "session=abc", "x-ratelimit-remaining": "4" }
          })
        ),
        new TextEncoder().encode("plain words")
      )
      expect(text).toEqual({
        status: 503,
        statusText: "Service Unavailable",
        headers: { "content-type": "text/plain", "set-cookie": "<redacted>", "x-ratelimit-remaining": "4" },
        bodyFormat: "text",
        body: "plain words"
      })
      const bytes = new Uint8Array([0xff, 0x00, 0xfe])
      const binary = yield* Call.responseJson(
        HttpClientResponse.fromWeb(HttpClientRequest.get("https://api.example/x"), new Response(bytes)),
        bytes
      )
      expect(binary).toMatchObject({ bodyFormat: "base64", body: "/wD+" })
    }))
})
