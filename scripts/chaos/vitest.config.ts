import { defineConfig, mergeConfig } from "vitest/config"
import { shared } from "../../vitest.shared.js"

// Run apart from `pnpm test` (by `pnpm test:chaos`), so the fault matrix prints as one report.
export default mergeConfig(shared, defineConfig({ test: { root: "scripts/chaos", name: "chaos" } }))
