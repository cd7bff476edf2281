import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { runAsUser } from '@banger/test-support'
import type { FlattenResult } from '../src/types.js'

const runner = fileURLToPath(new URL('./runner.mjs', import.meta.url))

export type RunnerOutcome =
  { ok: true; result: FlattenResult } | { ok: false; code: string; message: string; hint: string }

/** Flattens in a child node process running as the unprivileged test user, with the built dist. */
export async function flattenAsUser(spec: object): Promise<RunnerOutcome> {
  if (!existsSync(fileURLToPath(new URL('../dist/index.js', import.meta.url)))) {
    throw new Error(
      'packages/layer-flatten/dist is missing: run `pnpm --filter @banger/layer-flatten build` first',
    )
  }
  const r = await runAsUser(process.execPath, [runner], {
    input: JSON.stringify(spec),
    timeoutMs: 300_000,
  })
  if (r.code !== 0) throw new Error(`runner failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout) as RunnerOutcome
}
