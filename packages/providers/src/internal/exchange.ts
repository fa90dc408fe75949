/**
 * Token endpoints as data: a provider's own (`exchange`) over core's `TokenExchange`, or a standard one
 * over core's `OAuth2`.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as AccessToken from "@tollgate/core/AccessToken"
import * as OAuth2 from "@tollgate/core/OAuth2"
import * as Scrub from "@tollgate/core/Scrub"
import * as TokenExchange from "@tollgate/core/TokenExchange"
import * as TokenSource from "@tollgate/core/TokenSource"
import * as TollgateError from "@tollgate/core/TollgateError"
import { Effect, Either, Option, Redacted, Schema } from "effect"
import type * as TokenEndpoint from "../TokenEndpoint.js"

// The statuses whose meaning core keeps: rejected credentials are not retried, outages are.
const coreStatus = (status: number): boolean =>
  status === 401 || status === 403 || status === 408 || status === 429 || status >= 500

const plain = (params: TokenEndpoint.Params): Record<string, string> => {
  const values: Record<string, string> = {}
  for (const [key, value] of Object.entries(params)) {
    values[key] = Redacted.isRedacted(value)
      ? Redacted.value(value)
      : value
  }
  return values
}

const redactedIn = (params: TokenEndpoint.Params): ReadonlyArray<Redacted.Redacted<string>> =>
  Object.values(params).filter((value): value is Redacted.Redacted<string> => Redacted.isRedacted(value))

/** The headers `fields` name, read from `options`. */
export const headersOf = (
  fields: Readonly<Record<string, string>> | undefined,
  options: object
): Record<string, string> => {
  const headers: Record<string, string> = {}
  for (const [name, field] of Object.entries(fields ?? {})) {
    const value = (options as Record<string, unknown>)[field]
    if (typeof value === "string") headers[name] = value
  }
  return headers
}

export const refine = <A, I>(provider: string, failure: TokenEndpoint.Failure<A, I>) => {
  const decode = Schema.decodeUnknownOption(failure.schema, { onExcessProperty: "ignore" })
  const own = failure.status ?? ((status: number) => !coreStatus(status))
  return (secrets: ReadonlyArray<Redacted.Redacted<string>>) => {
    const shown = secrets.map(Redacted.value)
    return (reply: TokenExchange.Reply): Option.Option<TollgateError.TokenError> =>
      own(reply.status)
        ? Option.map(decode(Option.getOrUndefined(reply.body)), (body) => {
          const { code, description } = failure.read(body)
          return new TollgateError.ProviderError({
            provider,
            code: Scrub.text(code, shown, { maxLength: 80 }),
            description: description === undefined ? undefined : Scrub.text(description, shown),
            status: reply.status
          })
        })
        : Option.none()
  }
}

export const refusal = (options: {
  readonly status: (status: number) => boolean
  readonly code: string
  readonly description?: string | undefined
}): TokenEndpoint.Failure<unknown, unknown> => ({
  status: options.status,
  schema: Schema.Unknown,
  read: (body) => {
    // Core's reading of error bodies, on the decoded body alone.
    const { code, description } = TokenExchange.errorDetails({ body: Option.some(body) } as TokenExchange.Reply)
    return { code: code ?? options.code, description: description ?? options.description }
  }
})

export const exchange = <O, A, I, FA, FI, TH extends keyof O & string>(
  spec: TokenEndpoint.Exchange<O, A, I, FA, FI, TH>
): TokenEndpoint.TokenEndpoint<O, TH> => ({
  headerFields: Object.values(spec.headers ?? {}),
  source: (options, context) =>
    Effect.map(HttpClient.HttpClient, (client) => {
      const base = context.baseUrl ?? ""
      const provider = context.provider
      const headers = headersOf(spec.headers, options as Record<string, unknown>)
      const post = (path: string, params: TokenEndpoint.Params) => {
        const request = HttpClientRequest.post(`${base}${path}`).pipe(
          HttpClientRequest.setHeaders(headers),
          HttpClientRequest.acceptJson
        )
        switch (spec.encoding) {
          case "json":
            return HttpClientRequest.bodyUnsafeJson(request, plain(params))
          case "form":
            return HttpClientRequest.bodyUrlParams(request, plain(params))
          case "query":
            return HttpClientRequest.setUrlParams(request, plain(params))
        }
      }
      const refined = spec.failure === undefined ? undefined : refine(provider, spec.failure)
      const refineWith = (secrets: ReadonlyArray<Redacted.Redacted<string>>) => refined?.(secrets)
      const grant = (
        operation: string,
        request: HttpClientRequest.HttpClientRequest,
        secrets: ReadonlyArray<Redacted.Redacted<string>>,
        previous?: Redacted.Redacted<string>
      ) =>
        TokenExchange.requestToken({
          provider,
          operation,
          request,
          timeout: context.timeout,
          secrets,
          lifetime: context.lifetime,
          success: spec.success,
          refine: refineWith(secrets),
          toFields: (body) => {
            const fields = spec.token(body)
            // RFC 6749 §6: an answer without a new refresh token leaves the old one in force.
            return Either.right(
              fields.refreshToken === undefined && previous !== undefined
                ? { ...fields, refreshToken: Redacted.value(previous) }
                : fields
            )
          }
        }).pipe(Effect.provideService(HttpClient.HttpClient, client))

      const params = spec.params(options)
      const fetch = grant("token request", post(spec.path, params), [...context.secrets, ...redactedIn(params)])
      const refreshSpec = spec.refresh
      const refresh = refreshSpec === undefined ?
        undefined :
        (token: AccessToken.AccessToken) =>
          Option.match(token.refreshToken, {
            onNone: () => fetch,
            onSome: (refreshToken) => {
              const params = refreshSpec.params(options, refreshToken)
              const request = post(refreshSpec.path, params).pipe(
                HttpClientRequest.setHeader("authorization", Redacted.value(token.authorization))
              )
              const secrets = [...context.secrets, token.value, refreshToken, ...redactedIn(params)]
              return grant("token refresh", request, secrets, refreshToken)
            }
          })
      const revokeSpec = spec.revoke
      const revoke = revokeSpec === undefined ? undefined : (token: AccessToken.AccessToken) => {
        const params = revokeSpec.params(options, token)
        const secrets = [...context.secrets, token.value, ...redactedIn(params)]
        return TokenExchange.requestOk({
          provider,
          operation: "token revocation",
          request: post(revokeSpec.path, params),
          timeout: context.timeout,
          secrets,
          refine: refineWith(secrets)
        }).pipe(Effect.asVoid, Effect.provideService(HttpClient.HttpClient, client))
      }
      return TokenSource.make({
        identity: { provider, endpoint: `${base}${spec.path}`, ...spec.identity(options) },
        fetch,
        refresh,
        revoke
      })
    })
})

export const oauth2 = <O>(
  settings: (options: O) => Omit<OAuth2.Options, "provider" | "timeout">
): TokenEndpoint.TokenEndpoint<O> => ({
  headerFields: [],
  source: (options, context) => {
    const own = settings(options)
    return OAuth2.make({
      ...own,
      provider: context.provider,
      timeout: context.timeout,
      lifetime: own.lifetime === undefined && context.lifetime === undefined
        ? undefined
        : { ...own.lifetime, ...context.lifetime }
    }).pipe(
      // The provider's `make` validated the timeout and every header before it builds its source.
      Effect.orDie
    )
  }
})
