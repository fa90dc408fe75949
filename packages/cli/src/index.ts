/**
 * @since 0.1.0
 */

/**
 * The `tollgate` commands (`token`, `call`, `load`) and `run`, which executes them on an argument list.
 *
 * @since 0.1.0
 */
export * as Cli from "./Cli.js"

/**
 * The registry of providers the CLI can build, from the environment or from the sandbox.
 *
 * @since 0.1.0
 */
export * as Providers from "./Providers.js"

/**
 * The summary table and progress line renderers, shared with the demo.
 *
 * @since 0.1.0
 */
export * as Report from "./Report.js"
