/**
 * Every provider of this package, as definitions: the list the CLI, the chaos suite and the demo loop
 * over, so that a new provider is one module and one line here.
 *
 * @since 0.2.0
 */
import * as Nomba from "./Nomba.js"
import * as Nora from "./Nora.js"
import * as Norce from "./Norce.js"
import type * as Provider from "./Provider.js"
import * as TokenProject from "./TokenProject.js"

/**
 * The providers, in the order help and reports list them.
 *
 * @since 0.2.0
 * @category registry
 */
export const all = [Nora.definition, Norce.definition, Nomba.definition, TokenProject.definition] as const

/**
 * A provider's name: `nora`, `norce`, `nomba` or `token-project`.
 *
 * @since 0.2.0
 * @category registry
 */
export type Name = typeof all[number]["name"]

/**
 * The providers by name.
 *
 * @since 0.2.0
 * @category registry
 */
export const byName: { readonly [N in Name]: Extract<typeof all[number], { readonly name: N }> } = Object.fromEntries(
  all.map((definition) => [definition.name, definition])
) as never

/**
 * Whether `name` is one of this package's providers.
 *
 * @since 0.2.0
 * @category registry
 */
export const isName = (name: string): name is Name => all.some((definition) => definition.name === name)

/**
 * Any of the definitions above, or one of your own.
 *
 * @since 0.2.0
 * @category registry
 */
export type Definition = Provider.Any
