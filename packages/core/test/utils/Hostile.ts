/**
 * Hostile arguments for core's argument properties: the same values as `@tollgate/testing/Arbitraries`'
 * `hostile*`, kept here because core's tests cannot depend on the testing package (it depends on core).
 */
import { Duration } from "effect"
import * as fc from "fast-check"

export const anyNumber: fc.Arbitrary<number> = fc.oneof(
  fc.double(),
  fc.constantFrom(Number.NaN, Infinity, -Infinity, Number.MIN_VALUE, -Number.MIN_VALUE, 0, -0, 1e300, 2 ** 53, 0.5),
  fc.integer({ min: -5, max: 50 })
)

export const anyString: fc.Arbitrary<string> = fc.oneof(
  fc.string(),
  fc.constantFrom("", " ", "\t", "a\r\nb", "x\nInjected: 1", "nul\0", "é", "😀", "soon", "5 parsecs", "-5 seconds")
)

export const anyDuration: fc.Arbitrary<unknown> = fc.oneof(
  anyNumber,
  anyString,
  fc.constantFrom(Duration.infinity, Duration.zero, Duration.millis(1), "1 second", "10 minutes", undefined)
)

export const anyUrl: fc.Arbitrary<string> = fc.oneof(
  fc.webUrl(),
  anyString,
  fc.constantFrom(
    "https://user:s3cret@api.test",
    "https://:s3cret@api.test/x",
    "http://api.test",
    "http://127.0.0.1:1",
    "api.test/v1",
    "//api.test",
    "https://exa mple.com",
    "https://api.test/%ZZ",
    "ftp://api.test",
    "https://api.test?x=1#y",
    "javascript:alert(1)"
  )
)
