/**
 * One module per third-party API, each a small preset over `@tollgate/core`: its token source, its
 * documented limits, its headers, its Layers and its `Config`. Import a provider from its own subpath
 * (`@tollgate/providers/nora`) or as a namespace from here.
 *
 * @since 0.1.0
 */

/**
 * Nora (Formflow): JSON client credentials with an organisation, one-hour tokens, 60 requests per
 * minute.
 *
 * @since 0.1.0
 */
export * as Nora from "./Nora.js"

/**
 * Norce Commerce and Storm: OAuth2 client credentials with a rate-limited token endpoint and the
 * `ApplicationId` header.
 *
 * @since 0.1.0
 */
export * as Norce from "./Norce.js"

/**
 * Nomba: issue, refresh and revoke 30-minute tokens, `accountId` on every request, `code` "00" or a
 * typed error.
 *
 * @since 0.1.0
 */
export * as Nomba from "./Nomba.js"

/**
 * The Token project: app key and secret in the query, JWTs without `exp`, 10 requests per 2 minutes per
 * endpoint.
 *
 * @since 0.1.0
 */
export * as TokenProject from "./TokenProject.js"
