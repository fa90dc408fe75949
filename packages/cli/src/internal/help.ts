/**
 * The commands' help: what each does, the providers and where their settings come from (read from the
 * registry), and examples.
 */
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Span from "@effect/cli/HelpDoc/Span"
import { Array } from "effect"
import * as Providers from "../Providers.js"
import { defaultSecretVariable } from "./flags.js"

const providersHelp: HelpDoc.HelpDoc = HelpDoc.blocks([
  HelpDoc.p("Providers, and where their settings come from:"),
  HelpDoc.descriptionList(Array.append(
    Providers.presets.map((entry): [Span.Span, HelpDoc.HelpDoc] => [
      Span.text(entry.name),
      HelpDoc.p(`${entry.title}: ${entry.variables.join(", ")}`)
    ]),
    [
      Span.text("oauth2"),
      HelpDoc.p(
        "Any RFC 6749 client-credentials server: --token-url, --client-id, --scope, --auth, --audience; the " +
          `secret from ${defaultSecretVariable} (or the variable --secret-env names, or --secret-stdin), never ` +
          "from an argument."
      )
    ]
  )),
  HelpDoc.p(
    "With --sandbox none of these are needed: the provider talks to its emulator with the emulator's test " +
      "credentials."
  )
])

/** A command's description: its paragraphs, the providers, and examples. */
export const describe = (lines: ReadonlyArray<string>, examples: ReadonlyArray<string>): HelpDoc.HelpDoc =>
  HelpDoc.blocks([
    ...lines.map((line) => HelpDoc.p(line)),
    providersHelp,
    HelpDoc.p("Examples:"),
    ...examples.map((example) => HelpDoc.p(Span.code(`  ${example}`)))
  ])
