/**
 * Issue #18: core's TokenCache grew about 580 bytes per renewal, because each refresh loop was forked
 * from the previous generation's fiber and every generation stayed reachable. 100,000 renewals in
 * virtual time (a token of 10 s renewed every 9 s: about 10 days) must leave the heap flat. It lives
 * here, not in core, because it needs the virtual-time driver of this package.
 */
import { expect, it } from "@effect/vitest"
import { AccessToken, TokenCache, TokenSource } from "@tollgate/core"
import { DateTime, Duration, Effect, Exit, Option, Redacted } from "effect"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import * as VirtualTime from "../src/VirtualTime.js"

v8.setFlagsFromString("--expose-gc")
const gc = vm.runInNewContext("gc") as () => void

const heapUsed = (): number => {
  for (let i = 0; i < 3; i++) gc()
  return process.memoryUsage().heapUsed
}

it.live("100,000 renewals leave the heap flat", () =>
  Effect.promise(async () => {
    let issued = 0
    // A source that keeps nothing: whatever grows is the cache's.
    const source = TokenSource.make({
      identity: { provider: "heap", endpoint: "https://heap.test/token", clientId: "heap" },
      fetch: Effect.map(DateTime.now, (now) =>
        new AccessToken.AccessToken({
          value: Redacted.make(`heap-token-${++issued}`),
          type: "Bearer",
          obtainedAt: now,
          expiresAt: Option.some(DateTime.addDuration(now, Duration.seconds(10))),
          refreshToken: Option.none(),
          scope: Option.none()
        }, true))
    })
    const marks: Array<number> = []
    const result = await VirtualTime.run(
      Effect.gen(function*() {
        // Renew every token, used or not, so the refresher alone drives the renewals.
        const cache = yield* TokenCache.make(source, { idleAfter: Duration.infinity })
        yield* cache.get
        for (const renewals of [20_000, 100_000]) {
          while (issued < renewals + 1) yield* Effect.sleep(Duration.minutes(10))
          marks.push(heapUsed())
        }
        expect((yield* cache.stats).fetches).toBeGreaterThan(100_000)
      }).pipe(Effect.scoped),
      { settlePromises: false }
    )
    expect(Exit.isSuccess(result.exit)).toBe(true)
    const perRenewal = (marks[1]! - marks[0]!) / 80_000
    // Before the fix: about 550 bytes per renewal. Now flat, within the noise of a collected heap.
    expect(perRenewal).toBeLessThan(20)
  }), 180_000)
