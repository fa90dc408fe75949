import { defineConfig, mergeConfig } from "vitest/config"
import { shared } from "../../vitest.shared.js"

// Run apart from `pnpm test` (by `pnpm test:chaos`), so the fault matrix prints as one report: the global
// setup hands each file a results directory and, once every file has run, prints the matrix and fails the
// run if any fault lost a request, overdrew a limit or leaked a secret.
export default mergeConfig(
  shared,
  defineConfig({
    test: {
      root: "scripts/chaos",
      name: "chaos",
      globalSetup: ["./src/globalSetup.ts"],
      testTimeout: 120_000
    }
  })
)
