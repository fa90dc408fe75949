/**
 * The schemas a provider's options are written in (see `Provider.define`): each failure has one message
 * of its own and none quotes a secret; `optional` makes `undefined` count as absent, as in every options
 * object of this library. `decoder` and `validate` apply them outside a definition.
 *
 * @since 0.2.0
 */
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type { ConfigError, Duration, Either, ParseResult, Redacted } from "effect"
import type { Schema } from "effect"
import * as definitions from "./internal/definition.js"
import * as internal from "./internal/fields.js"

/**
 * A non-blank string: an identifier, a name. Read from the environment trimmed.
 *
 * @since 0.2.0
 * @category fields
 */
export const Text: Schema.Schema<string> = internal.Text

/**
 * A non-blank secret, `Redacted` from configuration to the wire. Read from the environment untrimmed
 * and redacted at once; never echoed by an error.
 *
 * @since 0.2.0
 * @category fields
 */
export const Secret: Schema.Schema<Redacted.Redacted<string>> = internal.Secret

/**
 * A URL credentials are sent to: https, or http to loopback when `allowInsecureLoopback` says so; no
 * user-info, query or fragment. Normalised without a trailing slash.
 *
 * @since 0.2.0
 * @category fields
 */
export const Url: Schema.Schema<string> = internal.Url

/**
 * One of a few strings: `oneOf("playground", "stage", "prod")`.
 *
 * @since 0.2.0
 * @category fields
 */
export const oneOf: <const L extends ReadonlyArray<string>>(...values: L) => Schema.Schema<L[number]> = internal.oneOf

/**
 * An OAuth2 scope (RFC 6749 §3.3): one or more values of printable ASCII without space, `"` or `\`,
 * space-delimited or as a list, normalised to single spaces without repeats.
 *
 * @since 0.2.0
 * @category fields
 */
export const Scope: Schema.Schema<string, string | ReadonlyArray<string>> = internal.Scope

/**
 * A host name label (RFC 1123): letters, digits and inner hyphens, at most 63 characters.
 *
 * @since 0.2.0
 * @category fields
 */
export const HostLabel: Schema.Schema<string> = internal.HostLabel

/**
 * A duration of at least a millisecond, by `Duration.decode`'s rules ("90 minutes", 5000, a `Duration`).
 *
 * @since 0.2.0
 * @category fields
 */
export const Lifetime: Schema.Schema<Duration.DurationInput> = internal.Lifetime

/**
 * A function from a request to its limiter key, for options that choose the key.
 *
 * @since 0.2.0
 * @category fields
 */
export const KeyFunction: Schema.Schema<(request: HttpClientRequest.HttpClientRequest) => string> = internal.KeyFunction

/**
 * An optional field (`undefined` counts as absent), with a default when one is given.
 *
 * @since 0.2.0
 * @category fields
 */
export const optional: {
  <A, I>(schema: Schema.Schema<A, I>): Schema.optionalWith<Schema.Schema<A, I>, { exact: true }>
  <A, I>(
    schema: Schema.Schema<A, I>,
    fallback: NoInfer<A>
  ): Schema.optionalWith<Schema.Schema<A, I>, { exact: true; default: () => A }>
} = internal.optional

/**
 * A rule's issue: the option `field` is missing (a `MissingData` naming the option or its variable).
 *
 * @since 0.2.0
 * @category fields
 */
export const missing: (field: string, message: string) => ParseResult.ParseIssue = internal.missing

/**
 * A decoder for some fields, with the checks `define` applies (URLs with the loopback allowance, then
 * `rules`): values to their decoded side, or a `ConfigError` naming each field by `names` (default: its
 * own name).
 *
 * @since 0.2.0
 * @category fields
 */
export const decoder: <F extends Schema.Struct.Fields>(
  fields: F,
  rules?: ReadonlyArray<((options: Schema.Struct.Type<F>) => Schema.FilterOutput) | undefined>
) => (
  values: unknown,
  names?: Readonly<Record<string, string>>
) => Either.Either<Schema.Struct.Type<F>, ConfigError.ConfigError> = definitions.decoder

/**
 * `value` decoded by `schema`, or a `ConfigError` naming `name` with what is wrong.
 *
 * @since 0.2.0
 * @category fields
 */
export const validate: <A, I>(
  schema: Schema.Schema<A, I>,
  name: string,
  value: I
) => Either.Either<A, ConfigError.ConfigError> = definitions.validate
