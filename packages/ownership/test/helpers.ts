import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runAsUser, userTempDir } from '@banger/test-support'

export const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url))

/**
 * Runs an ES module body as the unprivileged test user with `lib` (this package's built dist),
 * `fs`, `join` and `execFileSync` in scope. The body's return value comes back parsed from JSON;
 * a rejection comes back as `{ error: { code, message, hint } }`.
 */
export async function runAsUserScript(
  body: string,
  dir = userTempDir('ownership'),
): Promise<unknown> {
  const script = join(dir, `script-${Math.random().toString(36).slice(2)}.mjs`)
  writeFileSync(
    script,
    `import * as lib from ${JSON.stringify(DIST)}
import * as fs from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
try {
  const result = await (async () => { ${body} })()
  process.stdout.write(JSON.stringify({ result }))
} catch (err) {
  process.stdout.write(JSON.stringify({ error: { code: err.code, message: err.message, hint: err.hint } }))
}
`,
  )
  const { code, stdout, stderr } = await runAsUser(process.execPath, [script], {
    cwd: dir,
    timeoutMs: 600_000,
  })
  if (code !== 0) throw new Error(`user script failed (${code}): ${stderr}`)
  return JSON.parse(stdout) as unknown
}
