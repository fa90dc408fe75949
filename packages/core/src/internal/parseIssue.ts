import type { ParseResult } from "effect"
import { SchemaAST } from "effect"
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

// A `Missing` issue carries the property signature ("readonly access_token: string"): name its type.
const expectedOfMissing = (ast: unknown): string =>
  ast instanceof SchemaAST.PropertySignature ? String(ast.type) : String(ast)

// A value that fits no member of a union is described by the union ("a number of seconds"), not by its
// first member ("number"), which would claim that a numeric string is refused when it is accepted. Only
// when each member refused the value itself: a member that got as far as a field names that field.
const isUnionMismatch = (issue: ParseResult.Composite): boolean => {
  if (!SchemaAST.isUnion(issue.ast)) return false
  const issues = (Array.isArray(issue.issues) ? issue.issues : [issue.issues]) as ReadonlyArray<ParseResult.ParseIssue>
  return issues.every((member) =>
    member._tag !== "Pointer" && !(member._tag === "Composite" && !SchemaAST.isUnion(member.ast))
  )
}

// An optional field's `| undefined` is noise in a message about a JSON body, where undefined cannot occur.
const describeUnion = (ast: SchemaAST.AST): string =>
  SchemaAST.isUnion(ast) && ast.types.some(SchemaAST.isUndefinedKeyword)
    ? String(SchemaAST.Union.make(ast.types.filter((member) => !SchemaAST.isUndefinedKeyword(member))))
    : String(ast)

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
        // A union nested in a union (`NullOr(Seconds)`) is walked into, to the innermost that was refused.
        if (isUnionMismatch(current) && !(first?._tag === "Composite" && SchemaAST.isUnion(first.ast))) {
          return { field: formatPath(path), expected: describeUnion(current.ast), received: kindOf(current.actual) }
        }
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
        return { field: formatPath(path), expected: expectedOfMissing(current.ast), received: "missing" }
      case "Unexpected":
        return { field: formatPath(path), expected: "no such field", received: kindOf(current.actual) }
      case "Type":
      case "Forbidden":
        return { field: formatPath(path), expected: String(current.ast), received: kindOf(current.actual) }
    }
  }
  return walk(issue, [])
}
