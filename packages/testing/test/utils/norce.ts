import { OAuth2 } from "@tollgate/core"
import { Redacted } from "effect"
import * as NorceSandbox from "../../src/NorceSandbox.js"

/** Where core's Norce clients in these tests send; the simulation's transport answers it in memory. */
export const norceBase = "https://norce.sandbox.test"

/** Norce's token endpoint, spoken as plain OAuth2 by core alone with the sandbox's default credentials. */
export const norceTokenSource = OAuth2.make({
  provider: "norce",
  tokenUrl: `${norceBase}/identity/1.0/connect/token`,
  clientId: NorceSandbox.defaultCredentials.clientId,
  clientSecret: Redacted.make(NorceSandbox.defaultCredentials.clientSecret),
  authMethod: "client_secret_post",
  scope: "prod"
})
