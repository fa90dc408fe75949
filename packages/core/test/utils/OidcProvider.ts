/**
 * `oidc-provider` (panva's OpenID Certified authorization server, which we did not write) on loopback,
 * configured for the client credentials grant with RFC 7009 revocation and short-lived tokens. It can be
 * mounted under a path, so its issuer has one: its metadata is then at the OpenID Connect location
 * (`<issuer>/.well-known/openid-configuration`) only, not at RFC 8414's path-inserted one.
 */
import { Effect } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import Provider from "oidc-provider"

export interface Options {
  readonly clientId: string
  readonly clientSecret: string
  /** Lifetime of access tokens, in seconds. */
  readonly ttl: number
  /** Mount point, e.g. "/tenants/acme" (the issuer's path). Default: none. */
  readonly path?: string
  /** The client's registered authentication method. Default: client_secret_basic. */
  readonly authMethod?: "client_secret_basic" | "client_secret_post"
}

export interface Server {
  readonly issuer: string
  /** Successful token grants so far. */
  readonly grants: () => number
  /** Whether the server still considers an access token valid (absent once revoked or expired). */
  readonly isActive: (token: string) => Promise<boolean>
}

export const make = (options: Options) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const http = Http.createServer()
      await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve))
      const port = (http.address() as AddressInfo).port
      const path = options.path ?? ""
      const issuer = `http://127.0.0.1:${port}${path}`
      const provider = new Provider(issuer, {
        clients: [{
          client_id: options.clientId,
          client_secret: options.clientSecret,
          grant_types: ["client_credentials"],
          redirect_uris: [],
          response_types: [],
          token_endpoint_auth_method: options.authMethod ?? "client_secret_basic"
        }],
        features: {
          clientCredentials: { enabled: true },
          revocation: { enabled: true, allowedPolicy: async () => true },
          devInteractions: { enabled: false }
        },
        ttl: { ClientCredentials: options.ttl }
      })
      let grants = 0
      provider.on("grant.success", () => void grants++)
      const callback = provider.callback()
      http.on("request", (req: Http.IncomingMessage, res: Http.ServerResponse) => {
        const url = req.url ?? "/"
        if (path !== "" && !url.startsWith(`${path}/`)) {
          res.writeHead(404, { "content-type": "text/plain" }).end("not found")
          return
        } // Mounted the way Express mounts it: the path stripped, the original URL kept, from which the
        // provider derives its own mount point and so its endpoints.

        ;(req as Http.IncomingMessage & { originalUrl?: string }).originalUrl = url
        req.url = url.slice(path.length)
        void callback(req, res)
      })
      const server: Server = {
        issuer,
        grants: () => grants,
        isActive: async (token) => (await provider.ClientCredentials.find(token)) !== undefined
      }
      return { http, server }
    }),
    ({ http }) =>
      Effect.promise(() =>
        new Promise<void>((resolve) => {
          http.closeAllConnections()
          http.close(() => resolve())
        })
      )
  ).pipe(Effect.map(({ server }) => server))
