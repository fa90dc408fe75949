/**
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as AccessToken from "./AccessToken.js"

/**
 * @since 0.1.0
 */
export * as ApiClient from "./ApiClient.js"

/**
 * @since 0.2.0
 */
export * as AuthorizationServer from "./AuthorizationServer.js"

/**
 * @since 0.1.0
 */
export * as BaseUrl from "./BaseUrl.js"

/**
 * @since 0.2.0
 */
export * as Bearer from "./Bearer.js"

/**
 * @since 0.2.0
 */
export * as HeaderValue from "./HeaderValue.js"

/**
 * @since 0.1.0
 */
export * as OAuth2 from "./OAuth2.js"

/**
 * @since 0.1.0
 */
export * as RateLimiter from "./RateLimiter.js"

/**
 * @since 0.1.0
 */
export * as RateLimitHeaders from "./RateLimitHeaders.js"

/**
 * @since 0.2.0
 */
export * as Scrub from "./Scrub.js"

/**
 * @since 0.1.0
 */
export * as TokenCache from "./TokenCache.js"

/**
 * @since 0.1.0
 */
export * as TokenExchange from "./TokenExchange.js"

/**
 * @since 0.1.0
 */
export * as TokenSource from "./TokenSource.js"

/**
 * @since 0.2.0
 */
export * as TokenStore from "./TokenStore.js"

/**
 * @since 0.1.0
 */
export * as TollgateError from "./TollgateError.js"

/**
 * @since 0.2.0
 */
export * as Transport from "./Transport.js"
