/**
 * Synchronous views of core's own services, for the ApiClient's fast path. They are found by the service
 * object itself, never through a field of it: a wrapper (a recording limiter, a timing backend) is a new
 * object, has no facet, and so sees every call through its own methods, as it expects.
 */
import type * as AccessToken from "../AccessToken.js"
import type * as RateLimiter from "../RateLimiter.js"
import type * as TokenCache from "../TokenCache.js"
import type * as Compile from "./compile.js"

const limiters = new WeakMap<RateLimiter.Service, Compile.Node>()
const tokenCaches = new WeakMap<TokenCache.Service, () => AccessToken.AccessToken | undefined>()

/** The compiled policy behind a limiter `RateLimiter.make` built. */
export const registerLimiter = (service: RateLimiter.Service, root: Compile.Node): void => {
  limiters.set(service, root)
}

export const limiterNode = (service: RateLimiter.Service): Compile.Node | undefined => limiters.get(service)

/**
 * A cache's synchronous read: the token `get` would hand out at once (counted as a use, as `get` counts
 * it), or `undefined` when `get` would have to wait or fail.
 */
export const registerTokenCache = (
  service: TokenCache.Service,
  peek: () => AccessToken.AccessToken | undefined
): void => {
  tokenCaches.set(service, peek)
}

export const tokenPeek = (service: TokenCache.Service): (() => AccessToken.AccessToken | undefined) | undefined =>
  tokenCaches.get(service)
