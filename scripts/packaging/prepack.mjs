// Every package's `prepack`: builds the packages (`pnpm build`) before `pnpm pack` or `pnpm publish` takes the
// files, and refuses any other packer. Only pnpm replaces the workspace manifest's source `exports` with
// `publishConfig`'s compiled ones (and `workspace:` ranges with versions): a tarball made by `npm pack`
// would point at `.ts` files that plain Node cannot import.
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

const agent = process.env.npm_config_user_agent ?? ""
if (!agent.startsWith("pnpm/")) {
  console.error(
    `prepack: pack and publish Tollgate packages with pnpm (\`pnpm pack\`, \`pnpm release\`), not ${
      agent.split(" ")[0] || "this tool"
    }: only pnpm applies publishConfig, which points the published exports at dist/`
  )
  process.exit(1)
}

execFileSync(process.execPath, [fileURLToPath(new URL("build.mjs", import.meta.url))], { stdio: "inherit" })
