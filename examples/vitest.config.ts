import { defineProject, mergeConfig } from "vitest/config"
import { shared } from "../vitest.shared.js"

// The README's "testing your integration" example runs with the rest of the tests, so it cannot rot.
export default mergeConfig(shared, defineProject({ test: { name: "examples", include: ["*.test.ts"] } }))
