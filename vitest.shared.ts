import type { ViteUserConfig } from "vitest/config"

/** Settings every package's vitest project shares. */
export const shared: ViteUserConfig = {
  esbuild: { target: "es2022" },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    sequence: { concurrent: false },
    fakeTimers: { toFake: undefined }
  }
}
