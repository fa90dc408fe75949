/**
 * One module per third-party API, each a definition (`Provider.define`) over `@tollgate/core`: its
 * options, its token endpoint, its documented limits, its headers, and from them its Layers and its
 * `Config`. Import a provider from its own subpath (`@tollgate/providers/nora`) or as a namespace from here.
 *
 * @since 0.1.0
 */

/**
 * A provider as a definition: `Provider.define` turns a provider's facts into its Tags, `make`, Layers
 * and `Config`.
 *
 * @since 0.2.0
 */
export * as Provider from "./Provider.js"

/**
 * The schemas a provider's options are written in.
 *
 * @since 0.2.0
 */
export * as Field from "./Field.js"

/**
 * How a provider obtains tokens: a token endpoint of its own making, or a standard OAuth2 one.
 *
 * @since 0.2.0
 */
export * as TokenEndpoint from "./TokenEndpoint.js"

/**
 * Every provider of this package as a list of definitions.
 *
 * @since 0.2.0
 */
export * as Providers from "./Providers.js"

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
