/**
 * What the ApiClient knows about the `HttpClient` it sends through. Every attempt is bounded by the
 * client's `timeout`. A transport that honours the `AbortSignal` the platform hands each request (it
 * aborts the request and ends the attempt with an error) takes that bound itself: the client aborts the
 * request at its deadline and no fiber is spent on it. Any other transport's attempt runs in a child
 * fiber that the deadline interrupts.
 *
 * The platform's own transports (undici, node:http, fetch) honour the signal; the client learns that
 * from the first request that reaches one. A transport of one's own says so with `abortable`.
 *
 * @since 0.2.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"

const declared = new WeakSet<object>()
const inMemory = new WeakSet<object>()

/**
 * Declares that `client` honours the abort signal of each request: once it is aborted, the request
 * ends (a transport error) promptly, and nothing of it keeps running. Returns `client` itself (a client
 * derived from it with the platform's combinators is not covered: it is learned instead).
 *
 * With `inMemory`, it also declares that its responses hold no connection (their bodies are in memory):
 * a response dropped unread then needs no abort when it is collected, which spares the client a
 * finalization-registry entry per response.
 *
 * @since 0.2.0
 * @category declarations
 */
export const abortable = <C extends HttpClient.HttpClient.With<any, any>>(
  client: C,
  options?: { readonly inMemory?: boolean | undefined }
): C => {
  declared.add(client)
  if (options?.inMemory === true) inMemory.add(client)
  return client
}

/**
 * Whether `client` was declared with `abortable`.
 *
 * @since 0.2.0
 * @category predicates
 */
export const isAbortable = (client: HttpClient.HttpClient.With<any, any>): boolean => declared.has(client)

/**
 * Whether `client` was declared with `abortable` and `inMemory`.
 *
 * @since 0.2.0
 * @category predicates
 */
export const isInMemory = (client: HttpClient.HttpClient.With<any, any>): boolean => inMemory.has(client)
