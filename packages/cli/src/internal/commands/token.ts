/**
 * `tollgate token <provider>`: obtains a token and prints its metadata, the value masked unless asked for.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Console, DateTime, Effect, Redacted } from "effect"
import * as Flags from "../flags.js"
import * as Format from "../format.js"
import * as Help from "../help.js"
import * as Session from "../session.js"

const defaultTimeScale = 1

const output = Options.all({
  reveal: Options.boolean("reveal").pipe(
    Options.withDescription("Show the token itself instead of a masked fingerprint.")
  ),
  header: Options.boolean("header").pipe(
    Options.withDescription(
      "Print only a ready `Authorization: Bearer <token>` line, to paste or pipe into another tool. " +
        "This SHOWS THE TOKEN, like --reveal."
    )
  ),
  json: Options.boolean("json").pipe(
    Options.withDescription("Print the metadata as JSON (the token itself only with --reveal).")
  )
}).pipe(
  Options.mapEffect((flags) =>
    flags.header && flags.json ? Flags.invalid("choose one of --header and --json") : Effect.succeed(flags)
  )
)

export const command = Command.make(
  "token",
  {
    provider: Flags.provider,
    output,
    target: Flags.target(defaultTimeScale),
    oauth2: Flags.oauth2({ baseUrl: false })
  },
  (input) =>
    Effect.gen(function*() {
      const session = yield* Session.open({ ...input, command: "token", defaultTimeScale }, "token")
      const accessToken = yield* session.built.tokens.get
      if (input.output.header) {
        return yield* Console.log(`Authorization: ${Redacted.value(accessToken.authorization)}`)
      }
      const view: Format.TokenView = {
        provider: input.provider,
        sandbox: session.sandbox,
        token: accessToken,
        reveal: input.output.reveal,
        now: yield* DateTime.now
      }
      yield* Console.log(
        input.output.json ? JSON.stringify(Format.tokenJson(view), null, 2) : Format.tokenLines(view)
      )
    }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(Help.describe([
    "Obtain a token from the provider's token endpoint and print what it is: its type, when it was obtained, " +
    "when it expires and its lifetime, its scope, and whether a refresh token came with it.",
    "The token itself is masked (its length and a SHA-256 fingerprint, to tell tokens apart) unless you pass " +
    "--reveal or --header. The token is not revoked when the command exits, so it stays usable."
  ], [
    "tollgate token --sandbox nora",
    "tollgate token nomba --json",
    "tollgate token oauth2 --token-url https://auth.example.com/oauth/token --client-id my-client --header"
  ]))
)
