/**
 * The kits are a loop over `Providers.all`: one per definition, each with the definition's name, client and
 * documented limit, so a new provider enters the fault matrix with its test material and nothing else.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Providers from "@tollgate/providers/Providers"
import * as Kits from "../src/Kits.js"

describe("kits", () => {
  it("one kit per definition, in order, with its documented limit per key", () => {
    const kits = Kits.all()
    expect(kits.map((kit) => kit.definition)).toEqual([...Providers.all])
    expect(kits.map((kit) => [kit.name, kit.host])).toEqual(
      Providers.all.map((definition) => [definition.name, `${definition.name}.sandbox.test`])
    )
    for (const kit of kits) {
      expect(kit.limit === undefined).toBe(kit.definition.limit === undefined)
      if (kit.limit === undefined || kit.definition.limit === undefined) continue
      expect([kit.limit.limit, kit.limit.windowMillis]).toEqual([
        kit.definition.limit.limit,
        kit.definition.limit.windowMillis
      ])
      const arrival = { route: "GET /a" } as Parameters<typeof kit.limit.per>[0]
      expect(kit.limit.per(arrival)).toBe(kit.definition.limit.keyed ? "GET /a" : "")
    }
  })
})
