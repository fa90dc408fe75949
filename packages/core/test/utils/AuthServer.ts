import { Effect } from "effect"
import * as Loopback from "./Loopback.js"

/**
 * A small but strict OAuth 2.0 authorization server on loopback: RFC 6749 §4.4 client credentials with
 * client_secret_basic (credentials form-decoded after base64, §2.3.1) or client_secret_post, §6 refresh,
 * RFC 7009 revocation, §5.2 error bodies. Requests of the wrong shape are refused the way a real server
 * refuses them, with `invalid_request` and a description naming the problem.
 */
export interface Options {
  readonly clientId: string
  readonly clientSecret: string
  /** Scopes the client may ask for; any other is `invalid_scope`. Default: anything. */
  readonly allowedScopes?: ReadonlyArray<string>
  readonly expiresIn?: number
  /**
   * `none`: no refresh tokens; `issue`: one with each client_credentials grant, kept in force by a
   * refresh that returns no new one; `rotate`: every refresh returns a new one and retires the old.
   */
  readonly refreshTokens?: "none" | "issue" | "rotate"
  /** Replaces the answer to a valid token request (the default body is given) to play any server. */
  readonly tokenAnswer?: (context: {
    readonly grant: string
    readonly request: Loopback.Recorded
    readonly form: URLSearchParams
    readonly body: Record<string, unknown>
  }) => Loopback.Answer
  /** Answers a token request before any validation: a broken proxy, an outage. */
  readonly intercept?: (request: Loopback.Recorded) => Loopback.Answer | undefined
  /**
   * Where it publishes its metadata: at the RFC 8414 location (the default), only at the OpenID Connect
   * one, or nowhere.
   */
  readonly discovery?: "oauth-authorization-server" | "openid-configuration" | "none"
  /** The issuer's path, e.g. "/tenants/a": RFC 8414 inserts the well-known segment before it. */
  readonly issuerPath?: string
  /** Rewrites the metadata document, to play a server that lies or is misconfigured. */
  readonly metadata?: (document: Record<string, unknown>) => Record<string, unknown>
}

export interface Authentication {
  readonly method: "client_secret_basic" | "client_secret_post"
  readonly clientId: string
  readonly clientSecret: string
  /** The two halves of the decoded Basic credentials before form-decoding, to prove they were encoded. */
  readonly rawBasic?: { readonly id: string; readonly secret: string }
}

export interface AuthServer extends Loopback.Server {
  readonly issuer: string
  readonly tokenUrl: string
  readonly revocationUrl: string
  readonly authentications: ReadonlyArray<Authentication>
  readonly accessTokens: ReadonlyArray<string>
  readonly refreshTokens: ReadonlyMap<string, { active: boolean }>
  readonly revocations: ReadonlyArray<{ readonly token: string; readonly hint: string | null }>
  readonly grants: ReadonlyArray<string>
}

// application/x-www-form-urlencoded decoding of one value (RFC 6749 Appendix B).
const formDecode = (value: string): string => decodeURIComponent(value.replace(/\+/g, " "))

const oauthError = (status: number, error: string, description: string, headers?: Record<string, string>) => ({
  status,
  headers: { ...headers },
  body: { error, error_description: description }
})

export const make = (options: Options) =>
  Effect.gen(function*() {
    const authentications: Array<Authentication> = []
    const accessTokens: Array<string> = []
    const refreshTokens = new Map<string, { active: boolean }>()
    const revocations: Array<{ token: string; hint: string | null }> = []
    const grants: Array<string> = []
    let counter = 0
    const mint = (prefix: string) => `${prefix}_${++counter}_${Math.random().toString(36).slice(2)}`

    type Checked = { readonly form: URLSearchParams } | { readonly answer: Loopback.Answer }

    // Everything both endpoints require of a request, client authentication included.
    const check = (request: Loopback.Recorded): Checked => {
      if (request.method !== "POST") return { answer: { status: 405, headers: { allow: "POST" } } }
      const contentType = request.headers["content-type"] ?? ""
      if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(contentType)) {
        return {
          answer: oauthError(400, "invalid_request", `content type must be form-urlencoded, got ${contentType}`)
        }
      }
      if ([...request.query.keys()].length > 0) {
        return { answer: oauthError(400, "invalid_request", "parameters must not be sent in the query") }
      }
      const form = new URLSearchParams(request.rawBody)
      for (const key of new Set(form.keys())) {
        if (form.getAll(key).length > 1) return { answer: oauthError(400, "invalid_request", `repeated ${key}`) }
      }
      const header = request.headers.authorization
      const postedSecret = form.get("client_secret")
      if (header !== undefined) {
        if (postedSecret !== null) {
          return { answer: oauthError(400, "invalid_request", "more than one client authentication method") }
        }
        const match = /^Basic ([A-Za-z0-9+/]+={0,2})$/.exec(header)
        const decoded = match === null ? undefined : Buffer.from(match[1]!, "base64").toString("utf8")
        const colon = decoded === undefined ? -1 : decoded.indexOf(":")
        if (decoded === undefined || colon < 0) {
          return {
            answer: oauthError(401, "invalid_client", "malformed Basic credentials", { "www-authenticate": "Basic" })
          }
        }
        const rawBasic = { id: decoded.slice(0, colon), secret: decoded.slice(colon + 1) }
        let clientId: string
        let clientSecret: string
        try {
          clientId = formDecode(rawBasic.id)
          clientSecret = formDecode(rawBasic.secret)
        } catch {
          return { answer: oauthError(401, "invalid_client", "bad encoding", { "www-authenticate": "Basic" }) }
        }
        authentications.push({ method: "client_secret_basic", clientId, clientSecret, rawBasic })
        if (form.has("client_id") && form.get("client_id") !== clientId) {
          return { answer: oauthError(400, "invalid_request", "client_id differs from the authenticated client") }
        }
        if (clientId !== options.clientId || clientSecret !== options.clientSecret) {
          return {
            answer: oauthError(401, "invalid_client", "Client authentication failed", {
              "www-authenticate": "Basic realm=\"loopback\""
            })
          }
        }
        return { form }
      }
      if (postedSecret !== null) {
        const clientId = form.get("client_id") ?? ""
        authentications.push({ method: "client_secret_post", clientId, clientSecret: postedSecret })
        if (clientId !== options.clientId || postedSecret !== options.clientSecret) {
          return { answer: oauthError(400, "invalid_client", "Client authentication failed") }
        }
        return { form }
      }
      return {
        answer: oauthError(401, "invalid_client", "no client authentication", { "www-authenticate": "Basic" })
      }
    }

    const token = (request: Loopback.Recorded): Loopback.Answer => {
      const checked = check(request)
      if ("answer" in checked) return checked.answer
      const form = checked.form
      const grant = form.get("grant_type") ?? ""
      grants.push(grant)
      const body: Record<string, unknown> = { token_type: "Bearer", expires_in: options.expiresIn ?? 3600 }
      if (grant === "client_credentials") {
        const scope = form.get("scope")
        if (scope !== null) {
          const requested = scope.split(" ")
          if (requested.some((s) => s.length === 0)) {
            return oauthError(400, "invalid_request", "scope must be space-delimited")
          }
          const unknown = requested.filter((s) =>
            options.allowedScopes !== undefined && !options.allowedScopes.includes(s)
          )
          if (unknown.length > 0) return oauthError(400, "invalid_scope", `unknown scope ${unknown.join(" ")}`)
          body["scope"] = scope
        }
        if (form.has("refresh_token")) return oauthError(400, "invalid_request", "unexpected refresh_token")
        if ((options.refreshTokens ?? "none") !== "none") {
          const refresh = mint("rt")
          refreshTokens.set(refresh, { active: true })
          body["refresh_token"] = refresh
        }
      } else if (grant === "refresh_token") {
        const presented = form.get("refresh_token") ?? ""
        const state = refreshTokens.get(presented)
        if (state === undefined || !state.active) {
          return oauthError(400, "invalid_grant", "The refresh token is invalid, expired or revoked")
        }
        if (options.refreshTokens === "rotate") {
          state.active = false
          const refresh = mint("rt")
          refreshTokens.set(refresh, { active: true })
          body["refresh_token"] = refresh
        }
      } else {
        return oauthError(400, "unsupported_grant_type", `grant_type ${grant} is not supported`)
      }
      const access = mint("at")
      accessTokens.push(access)
      body["access_token"] = access
      return options.tokenAnswer === undefined
        ? { status: 200, body }
        : options.tokenAnswer({ grant, request, form, body })
    }

    const revoke = (request: Loopback.Recorded): Loopback.Answer => {
      const checked = check(request)
      if ("answer" in checked) return checked.answer
      const presented = checked.form.get("token")
      if (presented === null) return oauthError(400, "invalid_request", "token is required")
      const hint = checked.form.get("token_type_hint")
      if (hint !== null && hint !== "access_token" && hint !== "refresh_token") {
        return oauthError(400, "unsupported_token_type", `unknown hint ${hint}`)
      }
      revocations.push({ token: presented, hint })
      const state = refreshTokens.get(presented)
      if (state !== undefined) state.active = false
      // RFC 7009 §2.2: 200 whether or not the token was valid; the body is ignored by the client.
      return { status: 200, body: "" }
    }

    const issuerPath = options.issuerPath ?? ""
    let base = ""
    const metadata = (): Loopback.Answer => {
      const document = {
        issuer: `${base}${issuerPath}`,
        token_endpoint: `${base}/oauth/token`,
        revocation_endpoint: `${base}/oauth/revoke`,
        token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
        revocation_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
        grant_types_supported: ["client_credentials", "refresh_token"],
        response_types_supported: ["token"]
      }
      return { status: 200, body: options.metadata === undefined ? document : options.metadata(document) }
    }
    const discovery = options.discovery ?? "oauth-authorization-server"
    const server = yield* Loopback.serve((request) => {
      if (request.path === "/oauth/token") return options.intercept?.(request) ?? token(request)
      if (request.path === "/oauth/revoke") return revoke(request)
      if (request.method === "GET") {
        if (
          discovery === "oauth-authorization-server" &&
          request.path === `/.well-known/oauth-authorization-server${issuerPath}`
        ) {
          return metadata()
        }
        if (discovery === "openid-configuration" && request.path === `${issuerPath}/.well-known/openid-configuration`) {
          return metadata()
        }
      }
      return { status: 404, headers: { "content-type": "text/html" }, body: "<html><body>Not Found</body></html>" }
    })
    base = server.url
    const result: AuthServer = {
      ...server,
      issuer: `${server.url}${issuerPath}`,
      tokenUrl: `${server.url}/oauth/token`,
      revocationUrl: `${server.url}/oauth/revoke`,
      authentications,
      accessTokens,
      refreshTokens,
      revocations,
      grants
    }
    return result
  })
