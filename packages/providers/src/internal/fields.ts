/**
 * The field schemas definitions are written in. Each failure has one message of its own (`override`, so a
 * union does not list its members), and none quotes a secret.
 */
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type { Schema as S } from "effect"
import { Duration, Option, ParseResult, Predicate, Redacted, Schema } from "effect"
import * as SchemaAST from "effect/SchemaAST"

/** Marks a field read from the environment as a secret: untrimmed, redacted at once. */
export const SecretId: unique symbol = Symbol.for("@tollgate/providers/Provider/Secret")

/** Marks a field checked as a URL, with the loopback allowance of the same options. */
export const UrlId: unique symbol = Symbol.for("@tollgate/providers/Provider/Url")

export const expected = (message: string) => ({ message: () => ({ message, override: true }) })

export const Text: Schema.Schema<string> = Schema.String.pipe(
  Schema.filter((value) => value.trim().length > 0),
  Schema.annotations(expected("expected a non-empty string"))
)

export const Secret: Schema.Schema<Redacted.Redacted<string>> = Schema.RedactedFromSelf(Schema.String).pipe(
  Schema.filter((value) => Redacted.value(value).trim().length > 0),
  Schema.annotations({ [SecretId]: true, ...expected("expected a non-empty secret, as a Redacted string") })
)

export const Url: Schema.Schema<string> = Schema.String.annotations({
  [UrlId]: true,
  ...expected("expected an https:// URL")
})

const list = (values: ReadonlyArray<string>): string =>
  values.length <= 1 ? values.join("") : `${values.slice(0, -1).join(", ")} or ${values[values.length - 1]}`

export const oneOf = <const L extends ReadonlyArray<string>>(...values: L): Schema.Schema<L[number]> =>
  Schema.declare((input): input is L[number] => typeof input === "string" && values.includes(input), {
    identifier: values.map((value) => JSON.stringify(value)).join(" | "),
    ...expected(`expected ${list(values)}`)
  })

// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), printable ASCII but space, `"` and `\`.
const scopeToken = /^[\x21\x23-\x5B\x5D-\x7E]+$/

export const Scope: Schema.Schema<string, string | ReadonlyArray<string>> = Schema.transformOrFail(
  Schema.Union(Schema.String, Schema.Array(Schema.String)).annotations(expected("expected a space-delimited scope")),
  Schema.String,
  {
    strict: true,
    decode: (scope, _, ast) => {
      const values = (typeof scope === "string" ? [scope] : scope).flatMap((s) => s.split(/\s+/))
        .filter((s) => s.length > 0)
      if (values.length === 0) {
        return ParseResult.fail(new ParseResult.Type(ast, scope, "expected one or more space-delimited scope values"))
      }
      const malformed = values.find((value) => !scopeToken.test(value))
      if (malformed !== undefined) {
        return ParseResult.fail(
          new ParseResult.Type(
            ast,
            scope,
            `expected scope values of printable ASCII without quotes or backslashes (RFC 6749 §3.3), got ${
              JSON.stringify(malformed.slice(0, 40))
            }`
          )
        )
      }
      return ParseResult.succeed([...new Set(values)].join(" "))
    },
    encode: ParseResult.succeed
  }
)

export const HostLabel: Schema.Schema<string> = Schema.String.pipe(
  Schema.pattern(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i),
  Schema.annotations(expected("expected a host name label"))
)

// A lifetime under a millisecond would make every token expire on arrival, and every token request fail as
// if the provider had answered badly: it is refused where it is configured, naming the setting.
export const Lifetime: Schema.Schema<Duration.DurationInput> = Schema.declare(
  (input): input is Duration.DurationInput =>
    Option.match(Duration.decodeUnknown(input), {
      onNone: () => false,
      onSome: (duration) => Duration.toMillis(duration) >= 1
    }),
  { identifier: "Lifetime", ...expected("expected a duration of at least a millisecond, such as \"1 hour\"") }
)

export const KeyFunction: Schema.Schema<(request: HttpClientRequest.HttpClientRequest) => string> = Schema.declare(
  (input): input is (request: HttpClientRequest.HttpClientRequest) => string => Predicate.isFunction(input),
  { identifier: "KeyFunction", ...expected("expected a function from a request to its key") }
)

export const optional: {
  <A, I>(schema: Schema.Schema<A, I>): S.optionalWith<Schema.Schema<A, I>, { exact: true }>
  <A, I>(schema: Schema.Schema<A, I>, fallback: NoInfer<A>): S.optionalWith<
    Schema.Schema<A, I>,
    { exact: true; default: () => A }
  >
} = (<A, I>(schema: Schema.Schema<A, I>, ...fallback: [] | [A]) =>
  fallback.length === 0
    ? Schema.optionalWith(schema, { exact: true })
    : Schema.optionalWith(schema, { exact: true, default: () => fallback[0] })) as never

export const missing = (field: string, message: string): ParseResult.ParseIssue =>
  new ParseResult.Pointer(field, undefined, new ParseResult.Missing(new SchemaAST.Type(Schema.Unknown.ast), message))
