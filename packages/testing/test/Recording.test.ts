import { HttpClientRequest } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope, TestClock } from "effect"
import * as fc from "fast-check"
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

  describe("windowTracker", () => {
    const tracked = (arrivals: ReadonlyArray<Recording.Arrival>, windowMillis: number) => {
      const tracker = Recording.windowTracker(windowMillis)
      for (const a of arrivals) tracker.add(a.at, a.admitted)
      return tracker
    }

    it("finds the same windows as maxArrivalsInWindow, streaming", () => {
      const arrivals = [arrival(0), arrival(999), arrival(1000), arrival(1500, false), arrival(2100)]
      expect(tracked(arrivals, 1000).result()).toEqual({ admitted: 2, all: 3 })
      expect(tracked(arrivals, 1001).result()).toEqual({ admitted: 3, all: 3 })
      expect(tracked(arrivals, 1).result()).toEqual({ admitted: 1, all: 1 })
      expect(tracked([], 1000).result()).toEqual({ admitted: 0, all: 0 })
      expect(tracked(arrivals, 1000).admitted()).toBe(4)
      expect(tracked(arrivals, 1000).all()).toBe(5)
    })

    it("catches a window over the limit, however briefly it is overdrawn", () => {
      // 60 per minute, evenly spaced, then one arrival a millisecond early: 61 in one minute.
      const arrivals = Array.from({ length: 120 }, (_, i) => arrival(i * 1000))
      expect(tracked(arrivals, 60_000).result().admitted).toBe(60)
      arrivals.splice(60, 1, arrival(59_999))
      expect(tracked(arrivals, 60_000).result().admitted).toBe(61)
      // A burst at one instant counts whole.
      const burst = [...Array.from({ length: 5 }, () => arrival(10)), arrival(20, false)]
      expect(tracked(burst, 1).result()).toEqual({ admitted: 5, all: 5 })
    })

    it("agrees with maxArrivalsInWindow on any ordered arrivals", () =>
      fc.assert(
        fc.property(
          fc.array(fc.record({ gap: fc.integer({ min: 0, max: 50 }), admitted: fc.boolean() }), { maxLength: 300 }),
          fc.integer({ min: 1, max: 200 }),
          (steps, windowMillis) => {
            let at = 0
            const arrivals = steps.map((step) => arrival(at += step.gap, step.admitted))
            expect(tracked(arrivals, windowMillis).result()).toEqual(
              Recording.maxArrivalsInWindow(arrivals, windowMillis)
            )
          }
        )
      ))

    it("refuses an arrival earlier than the last one, whose windows may be forgotten", () => {
      const tracker = Recording.windowTracker(1000)
      tracker.add(500, true)
      expect(() => tracker.add(499, true)).toThrow(RangeError)
      expect(() => Recording.windowTracker(0)).toThrow(RangeError)
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

    it.effect("hands arrivals to observers, and keeps none while one asks so", () =>
      Effect.gen(function*() {
        const nora = yield* NoraSandbox.make()
        const client = clientFor(nora)
        const token = (yield* send(client, postJson(`${base}/api/token`, nora.credentials))).body.token
        const seen: Array<Recording.Arrival> = []
        const scope = yield* Scope.make()
        yield* Scope.extend(nora.observeArrivals((a) => seen.push(a), { keep: false }), scope)
        yield* send(client, getWith(`${base}/api/forms`, token))
        yield* send(client, getWith(`${base}/api/forms`, "nope"))
        const during = yield* nora.recording
        expect(seen.map((a) => [a.route, a.status, a.admitted])).toEqual([
          ["GET /api/forms", 200, true],
          ["GET /api/forms", 401, false]
        ])
        expect(during.arrivals).toHaveLength(0)
        expect(during.tokenRequests).toHaveLength(1)
        expect(during.unauthorized.api).toBe(1)
        yield* Scope.close(scope, Exit.void)
        yield* send(client, getWith(`${base}/api/forms`, token))
        expect(seen).toHaveLength(2)
        expect((yield* nora.recording).arrivals).toHaveLength(1)
        // An observer that keeps arrivals leaves the recording as it was.
        yield* Effect.scoped(
          nora.observeArrivals((a) => seen.push(a)).pipe(
            Effect.zipRight(send(client, getWith(`${base}/api/forms`, token)))
          )
        )
        expect(seen).toHaveLength(3)
        expect((yield* nora.recording).arrivals).toHaveLength(2)
      }))
  })
})
