import { HttpClientRequest } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import * as NombaSandbox from "../src/NombaSandbox.js"
import * as NoraSandbox from "../src/NoraSandbox.js"
import * as Recording from "../src/Recording.js"
import { base, clientFor, getWith, postJson, send } from "./utils/http.js"

const arrival = (at: number, admitted = true, route = "GET /x"): Recording.Arrival => ({
  at,
  method: "GET",
  route,
  path: "/x",
  status: admitted ? 200 : 429,
  admitted
})

describe("Recording", () => {
  describe("maxArrivalsInWindow", () => {
    it("counts the most arrivals in any half-open interval [t, t + window)", () => {
      const arrivals = [arrival(0), arrival(999), arrival(1000), arrival(1500, false), arrival(2100)]
      expect(Recording.maxArrivalsInWindow(arrivals, 1000)).toEqual({ admitted: 2, all: 3 })
      expect(Recording.maxArrivalsInWindow(arrivals, 1001)).toEqual({ admitted: 3, all: 3 })
      expect(Recording.maxArrivalsInWindow(arrivals, 1)).toEqual({ admitted: 1, all: 1 })
      expect(Recording.maxArrivalsInWindow([], 1000)).toEqual({ admitted: 0, all: 0 })
    })

    it("counts arrivals at the same instant together, in any order, and honours a filter", () => {
      const arrivals = [arrival(50, true, "GET /b"), arrival(5), arrival(5), arrival(5, false), arrival(50)]
      expect(Recording.maxArrivalsInWindow(arrivals, 10)).toEqual({ admitted: 2, all: 3 })
      expect(Recording.maxArrivalsInWindow(arrivals, 100, (a) => a.route === "GET /x")).toEqual({
        admitted: 3,
        all: 4
      })
    })
  })

  describe("snapshots", () => {
    it.effect("record token requests by kind and outcome, API arrivals, 401s, 429s, and tokens", () =>
      Effect.gen(function*() {
        const nomba = yield* NombaSandbox.make({ rateLimit: { limit: 2, windowMillis: 1000 } })
        const client = clientFor(nomba)
        const headers = { accountId: nomba.credentials.accountId }
        const issueBody = {
          grant_type: "client_credentials",
          client_id: nomba.credentials.clientId,
          client_secret: nomba.credentials.clientSecret
        }
        const issued = (yield* send(client, postJson(`${base}/v1/auth/token/issue`, issueBody, headers))).body.data
        yield* send(client, postJson(`${base}/v1/auth/token/issue`, { ...issueBody, client_secret: "x" }, headers))
        yield* TestClock.adjust(100)
        const refreshed = (yield* send(
          client,
          postJson(`${base}/v1/auth/token/refresh`, {
            grant_type: "refresh_token",
            refresh_token: issued.refresh_token
          }, headers).pipe(HttpClientRequest.bearerToken(issued.access_token))
        )).body.data
        const before = yield* nomba.recording
        yield* TestClock.adjust(100)
        for (let i = 0; i < 3; i++) yield* send(client, getWith(`${base}/v1/accounts`, refreshed.access_token, headers))
        yield* send(client, getWith(`${base}/v1/accounts/balance`, undefined, headers))
        yield* send(
          client,
          postJson(`${base}/v1/auth/token/revoke`, {
            clientId: nomba.credentials.clientId,
            access_token: refreshed.access_token
          }, headers)
        )
        const after = yield* nomba.recording

        // An earlier snapshot does not change.
        expect(before.arrivals).toHaveLength(0)
        expect(before.tokenRequests).toHaveLength(3)

        expect(after.provider).toBe("nomba")
        expect(after.tokenRequests.map(({ at, kind, outcome, status }) => ({ at, kind, outcome, status }))).toEqual([
          { at: 0, kind: "issue", outcome: "granted", status: 200 },
          { at: 0, kind: "issue", outcome: "refused", status: 200 },
          { at: 100, kind: "refresh", outcome: "granted", status: 200 },
          { at: 200, kind: "revoke", outcome: "granted", status: 200 }
        ])
        expect(after.tokenCounts).toEqual({ issue: 2, refresh: 1, revoke: 1, granted: 3, refused: 1, faults: 0 })
        expect(after.arrivals).toEqual([
          {
            at: 200,
            method: "GET",
            route: "GET /v1/accounts",
            path: "/v1/accounts",
            status: 200,
            admitted: true,
            client: nomba.credentials.clientId,
            fault: undefined
          },
          expect.objectContaining({ status: 200, admitted: true }),
          expect.objectContaining({ status: 429, admitted: false, client: nomba.credentials.clientId }),
          expect.objectContaining({
            route: "GET /v1/accounts/balance",
            status: 401,
            admitted: false,
            client: undefined
          })
        ])
        expect(after.unauthorized).toEqual({ token: 0, api: 1 })
        expect(after.rateLimited).toEqual({ token: 0, api: 1 })
        expect(after.tokensIssued).toBe(2)
        expect(after.tokensRevoked).toBe(1)
        expect(after.maxArrivalsInWindow(1000)).toEqual({ admitted: 2, all: 4 })
        expect(after.maxArrivalsInWindow(1000, (a) => a.route === "GET /v1/accounts")).toEqual({ admitted: 2, all: 3 })
        // No secret or token appears anywhere in a snapshot.
        const text = JSON.stringify(after)
        for (const secret of [nomba.credentials.clientSecret, issued.access_token, refreshed.refresh_token]) {
          expect(text).not.toContain(secret)
        }

        yield* nomba.resetRecording
        const reset = yield* nomba.recording
        expect(reset.arrivals).toHaveLength(0)
        expect(reset.tokenCounts.issue).toBe(0)
        expect(reset.tokensIssued).toBe(0)
      }))

    it.effect("keeps only counters when recordArrivals is false", () =>
      Effect.gen(function*() {
        const nora = yield* NoraSandbox.make({ recordArrivals: false })
        const client = clientFor(nora)
        const token = (yield* send(client, postJson(`${base}/api/token`, nora.credentials))).body.token
        yield* send(client, getWith(`${base}/api/forms`, token))
        yield* send(client, getWith(`${base}/api/forms`, "nope"))
        const recording = yield* nora.recording
        expect(recording.arrivals).toHaveLength(0)
        expect(recording.tokenRequests).toHaveLength(0)
        expect(recording.tokenCounts.granted).toBe(1)
        expect(recording.tokensIssued).toBe(1)
        expect(recording.unauthorized.api).toBe(1)
      }))
  })
})
