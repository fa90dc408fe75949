/**
 * @since 0.1.0
 */

/**
 * An `HttpClient` straight over undici's `Dispatcher`, with the platform undici client's semantics.
 *
 * @since 0.1.0
 */
export * as UndiciHttpClient from "./UndiciHttpClient.js"
