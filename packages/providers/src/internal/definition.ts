/**
 * `Provider.define`: from a provider's facts to its Tags, options Schema, `config`, token source, `make`
 * and Layers. Options are decoded by one Schema wherever they come from; its issues become `ConfigError`s
 * named by option (from code) or by variable (from the environment).
 */
import type * as ApiClient from "@tollgate/core/ApiClient"
import * as BaseUrl from "@tollgate/core/BaseUrl"
import * as HeaderValue from "@tollgate/core/HeaderValue"
import * as RateLimiter from "@tollgate/core/RateLimiter"
import type * as TokenCache from "@tollgate/core/TokenCache"
import {
  Config,
  ConfigError,
  Context,
  Duration,
  Effect,
  Either,
  Option,
  ParseResult,
  Predicate,
  Redacted,
  Schema,
  SchemaAST
} from "effect"
import type * as Provider from "../Provider.js"
import { headersOf } from "./exchange.js"
import * as Fields from "./fields.js"
import * as Internal from "./provider.js"

type Field = Schema.Struct.Fields[string]
type Rule = (options: any) => Schema.FilterOutput | ReadonlyArray<Schema.FilterOutput>

// The schema a field is checked with, under `optional` and defaults.
const typeOf = (field: Field): SchemaAST.AST => {
  if (Schema.isSchema(field)) return field.ast
  const ast = (field as Schema.PropertySignature.All).ast
  return ast._tag === "PropertySignatureDeclaration" ? ast.type : ast.from.type
}

const marked = (field: Field, id: symbol): boolean => Option.isSome(SchemaAST.getAnnotation(typeOf(field), id))

// `undefined` counts as absent, as in every options object of this library.
const withoutUndefined = (values: unknown): unknown =>
  Predicate.isRecord(values) ? Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) : values

// One error per option, the first thing wrong with it; several options wrong are all named.
const toConfigError = (
  error: ParseResult.ParseError,
  nameOf: (key: string) => string
): ConfigError.ConfigError => {
  const seen = new Set<string>()
  const errors: Array<ConfigError.ConfigError> = []
  for (const issue of ParseResult.ArrayFormatter.formatErrorSync(error)) {
    const key = issue.path.length === 0 ? "" : String(issue.path[0])
    if (seen.has(key)) continue
    seen.add(key)
    const path = [nameOf(key)]
    errors.push(
      issue._tag === "Missing"
        ? ConfigError.MissingData(path, issue.message)
        : ConfigError.InvalidData(path, issue.message)
    )
  }
  return errors.reduce((left, right) => ConfigError.And(left, right))
}

/**
 * The options Schema: the fields, then URLs and header values (which depend on the loopback allowance of
 * the same options, and whose errors name their own field), then the definition's rules.
 */
const optionsSchema = (
  fields: Schema.Struct.Fields,
  headerFields: ReadonlyArray<string>,
  rules: ReadonlyArray<Rule | undefined>
) => {
  const struct = Schema.Struct(fields) as unknown as Schema.Schema<Record<string, unknown>, Record<string, unknown>>
  const urls = Object.keys(fields).filter((key) => marked(fields[key]!, Fields.UrlId))
  const checked = Schema.transformOrFail(struct, Schema.typeSchema(struct), {
    strict: false,
    decode: (options: Record<string, unknown>, _, ast) => {
      const issues: Array<ParseResult.ParseIssue> = []
      const out: Record<string, unknown> = { ...options }
      const fail = (key: string, value: unknown, message: string) =>
        issues.push(new ParseResult.Pointer(key, options, new ParseResult.Type(ast, value, message)))
      const allowInsecureLoopback = options["allowInsecureLoopback"] === true
      for (const key of urls) {
        const value = options[key]
        if (typeof value !== "string") continue
        const url = BaseUrl.validate(key, value, { allowInsecureLoopback })
        if (Either.isRight(url)) out[key] = url.right
        else fail(key, value, (url.left as { readonly message: string }).message)
      }
      for (const key of headerFields) {
        const value = options[key]
        const problem = typeof value === "string" ? HeaderValue.problem(value) : undefined
        if (problem !== undefined) {
          fail(key, value, `expected a value that can be sent as an HTTP header, got ${problem}`)
        }
      }
      return issues.length === 0 ? ParseResult.succeed(out) : ParseResult.fail(
        new ParseResult.Composite(ast, options, issues as unknown as readonly [ParseResult.ParseIssue])
      )
    },
    encode: ParseResult.succeed
  })
  let ruled: Schema.Schema<any, any> = checked
  for (const rule of rules) if (rule !== undefined) ruled = ruled.pipe(Schema.filter((options) => rule(options)))
  const decode = Schema.decodeUnknownEither(ruled, { errors: "all", onExcessProperty: "ignore" })
  return {
    schema: ruled,
    decode: (values: unknown, nameOf: (key: string) => string) =>
      Either.mapLeft(decode(withoutUndefined(values)), (error) => toConfigError(error, nameOf))
  }
}

export const decoder = <F extends Provider.Fields>(
  fields: F,
  rules: ReadonlyArray<((options: Schema.Struct.Type<F>) => Schema.FilterOutput) | undefined> = []
) => {
  const { decode } = optionsSchema(fields, [], rules as ReadonlyArray<Rule | undefined>)
  return (values: unknown, names?: Readonly<Record<string, string>>) =>
    decode(values, (key) => names?.[key] ?? key) as Either.Either<Schema.Struct.Type<F>, ConfigError.ConfigError>
}

export const validate = <A, I>(schema: Schema.Schema<A, I>, name: string, value: I) =>
  Either.map(decoder({ value: schema })({ value }, { value: name }), (decoded) => decoded.value as A)

// Reads one variable, nested under its name so a `ConfigError` names it once (see `Internal.required`).
const read = (name: string, optional: boolean, secret: boolean): Config.Config<unknown> => {
  const value = (raw: string) => secret ? Redacted.make(raw) : raw.trim()
  if (!optional) return secret ? Internal.secret(name) : Internal.required(name)
  return Config.map(
    Internal.optional(name, { trim: !secret }),
    (option) => Option.getOrUndefined(Option.map(option, value))
  )
}

export const define = <
  const Name extends string,
  const Key extends string,
  F extends Provider.Fields,
  const V extends Readonly<Record<string, string>>,
  const H extends keyof F & string = never,
  const TH extends keyof F & string = never
>(options: F, input: Provider.Input<Name, Key, F, V, H, TH>): Provider.Definition<Name, Key, F, V, Exclude<H, TH>> => {
  const fields: Schema.Struct.Fields = {
    ...options,
    baseUrl: typeof input.baseUrl === "string"
      ? Fields.optional(Fields.Url, input.baseUrl)
      : Fields.optional(Fields.Url),
    allowInsecureLoopback: Fields.optional(Schema.Boolean)
  }
  const apiHeaders: ReadonlyArray<string> = Object.values(input.headers ?? {})
  const tokenHeaders: ReadonlyArray<string> = input.token.headerFields
  const headerFields = [...new Set([...apiHeaders, ...tokenHeaders])]
  const api = optionsSchema(fields, headerFields, [input.rules?.token, input.rules?.api])
  // The token source alone needs neither the API's headers nor the API's rules.
  const apiOnly = apiHeaders.filter((field) => !tokenHeaders.includes(field))
  const sourceFields = { ...fields }
  for (const field of apiOnly) {
    const schema = sourceFields[field]
    if (schema !== undefined && Schema.isSchema(schema)) {
      sourceFields[field] = Fields.optional(schema as Schema.Schema<unknown, unknown>)
    }
  }
  const source = optionsSchema(sourceFields, headerFields, [input.rules?.token])

  const variables: Readonly<Record<string, string>> = input.variables
  const optionName = (key: string) => key === "" ? input.name : key
  const variableName = (key: string) =>
    variables[key] ?? (key === "allowInsecureLoopback" ? Internal.allowInsecureLoopbackVariable : optionName(key))

  const encoded = SchemaAST.encodedAST(
    (Schema.Struct(fields) as unknown as Schema.Schema.Any).ast
  ) as SchemaAST.TypeLiteral
  const optionalKeys = new Set(encoded.propertySignatures.filter((p) => p.isOptional).map((p) => String(p.name)))
  const readers: Record<string, Config.Config<unknown>> = {}
  for (const [key, name] of Object.entries(variables)) {
    readers[key] = read(name, optionalKeys.has(key), fields[key] !== undefined && marked(fields[key], Fields.SecretId))
  }
  const config = Config.mapOrFail(
    Config.all([Config.all(readers), Internal.allowInsecureLoopback]),
    ([values, allowInsecureLoopback]) => api.decode({ ...values, allowInsecureLoopback }, variableName)
  ) as Config.Config<Provider.Options<F>>

  const parse = (values: unknown) => {
    const secrets: Record<string, unknown> = {}
    for (const [key, field] of Object.entries(fields)) {
      const value = Predicate.isRecord(values) ? values[key] : undefined
      if (typeof value === "string" && marked(field, Fields.SecretId)) secrets[key] = Redacted.make(value)
    }
    return api.decode(Predicate.isRecord(values) ? { ...values, ...secrets } : values, optionName)
  }

  const isPositiveDuration = (input: unknown): boolean => {
    if (typeof input === "number" && !(input > 0)) return false
    const decoded = Duration.decodeUnknown(input)
    if (Option.isNone(decoded)) return false
    const millis = Duration.toMillis(decoded.value)
    // Core's bound on any finite duration it is given: 10 years.
    return millis === Number.POSITIVE_INFINITY || (millis > 0 && millis <= 10 * 366 * 24 * 60 * 60 * 1000)
  }

  const apiBaseUrl = (options: Provider.Resolved<F>): string | undefined =>
    typeof input.baseUrl === "string" ? options.baseUrl ?? input.baseUrl : input.baseUrl(options)

  const sourceOf = (options: Provider.Resolved<F>, tuning: Provider.Tuning & { readonly timeout?: unknown }) => {
    const own = input.lifetime?.(options)
    return input.token.source(options, {
      provider: input.name,
      baseUrl: apiBaseUrl(options),
      timeout: (tuning.tokenTimeout ?? tuning.timeout) as Duration.DurationInput | undefined,
      lifetime: own === undefined && tuning.lifetime === undefined ? undefined : { ...own, ...tuning.lifetime },
      secrets: Object.values(options).filter((value): value is Redacted.Redacted<string> => Redacted.isRedacted(value))
    })
  }

  const tokenSource = (options: Provider.SourceOptions<F, Exclude<H, TH>>) =>
    Effect.flatMap(
      Effect.suspend(() =>
        source.decode(options, optionName) as Either.Either<Provider.Resolved<F>, ConfigError.ConfigError>
      ),
      (resolved) => sourceOf(resolved, options as Provider.Tuning & { readonly timeout?: unknown })
    )

  const limitsFor = (limit: { readonly limit: number; readonly window: Duration.DurationInput }) => {
    const window = RateLimiter.slidingWindow(limit)
    return input.limit?.per === undefined ? window : RateLimiter.keyed(input.limit.per, window)
  }
  const defaultLimits = input.limit === undefined ? RateLimiter.learned() : limitsFor(input.limit)

  const make = (options: Provider.Options<F>) =>
    Effect.gen(function*() {
      const resolved = yield* api.decode(options, optionName) as Either.Either<
        Provider.Resolved<F>,
        ConfigError.ConfigError
      >
      const baseUrl = apiBaseUrl(resolved)
      if (baseUrl === undefined) {
        return yield* Effect.fail(ConfigError.MissingData(["baseUrl"], "the API's base URL is not set"))
      }
      // The token endpoint's source reads its timeout as it sends: checked here, before anything is built.
      if (options.tokenTimeout !== undefined && !isPositiveDuration(options.tokenTimeout)) {
        return yield* Effect.fail(
          ConfigError.InvalidData(
            ["tokenTimeout"],
            "the token timeout must be a positive duration of at most 10 years (or infinity)"
          )
        )
      }
      const tokenCache: Omit<TokenCache.Options, "limiter"> | undefined = input.tokenCache === undefined
        ? options.tokenCache
        : { ...input.tokenCache, ...options.tokenCache }
      return yield* Internal.build({
        provider: input.name,
        source: yield* sourceOf(resolved, options),
        baseUrl,
        headers: headersOf(input.headers, resolved),
        limits: defaultLimits,
        tokenLimits: options.tokenLimits ?? input.tokenLimits,
        tokenRequestsCount: input.tokenRequestsCount,
        keyOf: input.keyOf?.(resolved),
        resetFormat: input.resetFormat,
        tuning: { ...options, tokenCache }
      })
    })

  const tags: Provider.Tags<Key> = {
    client: Context.GenericTag<`${Key}Client`, ApiClient.Service>(`${input.key}Client`),
    tokens: Context.GenericTag<`${Key}Tokens`, TokenCache.Service>(`${input.key}Tokens`),
    limiter: Context.GenericTag<`${Key}Limiter`, RateLimiter.Service>(`${input.key}Limiter`)
  }
  const layer = (options: Provider.Options<F>) => Internal.layer(tags, make(options))
  const layerConfig = (...args: ReadonlyArray<unknown>) =>
    Config.isConfig(args[0])
      ? Internal.layerConfig(args[0] as Config.Config<Provider.Options<F>>, args[1] as Provider.Overrides<F>, layer)
      : Internal.layerConfig(config, args[0] as Provider.Overrides<F> | undefined, layer)

  return {
    name: input.name,
    title: input.title,
    tags,
    variables: input.variables,
    limit: input.limit === undefined ? undefined : {
      limit: input.limit.limit,
      windowMillis: Duration.toMillis(Duration.decode(input.limit.window)),
      keyed: input.limit.per !== undefined
    },
    defaultLimits,
    tokenLimits: input.tokenLimits,
    limitsFor,
    schema: api.schema,
    parse,
    config,
    tokenSource,
    make,
    layer,
    layerConfig: layerConfig as Provider.Definition<Name, Key, F, V, Exclude<H, TH>>["layerConfig"]
  }
}
