/**
 * @since 0.1.0
 */

/**
 * The Redis connection and its atomic scripts.
 *
 * @since 0.1.0
 */
export * as RedisConnection from "./RedisConnection.js"

/**
 * Core's `RateLimiter`, shared by a fleet through Redis.
 *
 * @since 0.1.0
 */
export * as RedisRateLimiter from "./RedisRateLimiter.js"

/**
 * Core's `TokenCache`, shared by a fleet through Redis.
 *
 * @since 0.1.0
 */
export * as RedisTokenCache from "./RedisTokenCache.js"
