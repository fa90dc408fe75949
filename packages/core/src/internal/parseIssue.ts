import type { ParseResult } from "effect"
import { kindOf } from "./describe.js"

/** The first problem in a decoding failure, described without the offending value. */
export interface IssueSummary {
  readonly field: string
  readonly expected: string
  readonly received: string
}

const pathSegments = (path: ParseResult.Path): ReadonlyArray<PropertyKey> =>
  Array.isArray(path) ? (path as ReadonlyArray<PropertyKey>) : [path as PropertyKey]

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.length === 0
    ? "(body)"
    : path.map((segment, i) => typeof segment === "number" ? `[${segment}]` : `${i === 0 ? "" : "."}${String(segment)}`)
      .join("")

/**
 * Walks a Schema parse issue to its first leaf. Schema's own formatters quote the actual value, which
 * for a token response may be a secret; this keeps the path and the expected type and names only the
 * *kind* of what arrived.
 */
export const summarize = (issue: ParseResult.ParseIssue): IssueSummary => {
  const walk = (current: ParseResult.ParseIssue, path: ReadonlyArray<PropertyKey>): IssueSummary => {
    switch (current._tag) {
      case "Pointer":
        return walk(current.issue, [...path, ...pathSegments(current.path)])
      case "Composite": {
        const first = Array.isArray(current.issues) ? current.issues[0] : current.issues
        return first === undefined
          ? { field: formatPath(path), expected: String(current.ast), received: kindOf(current.actual) }
          : walk(first as ParseResult.ParseIssue, path)
      }
      case "Refinement":
        return current.kind === "Predicate"
          ? { field: formatPath(path), expected: String(current.ast), received: kindOf(current.actual) }
          : walk(current.issue, path)
      case "Transformation":
        return walk(current.issue, path)
      case "Missing":
        return { field: formatPath(path), expected: String(current.ast), received: "missing" }
      case "Unexpected":
        return { field: formatPath(path), expected: "no such field", received: kindOf(current.actual) }
      case "Type":
      case "Forbidden":
        return { field: formatPath(path), expected: String(current.ast), received: kindOf(current.actual) }
    }
  }
  return walk(issue, [])
}
