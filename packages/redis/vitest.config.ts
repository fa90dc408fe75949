import { defineProject, mergeConfig } from "vitest/config"
import { shared } from "../../vitest.shared.js"

export default mergeConfig(
  shared,
  defineProject({
    test: {
      name: "redis",
      // Installs redis-server when it is missing, as .ci/run does, so `pnpm test` runs the Redis tests on a
      // fresh machine; they skip, saying why, only where it cannot be installed.
      globalSetup: ["./test/global-setup.ts"]
    }
  })
)
