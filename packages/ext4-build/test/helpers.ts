import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runAsUser, userTempDir } from '@banger/test-support'

export const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url))

/** One entry of a tree the unprivileged user creates on disk. */
export type TreeSpec =
  | { path: string; type: 'dir' }
  | { path: string; type: 'file'; content: string; mode?: number }
  | { path: string; type: 'symlink'; target: string }
  | { path: string; type: 'hardlink'; target: string }

/**
 * Runs an ES module body as the unprivileged test user, with `lib` (this package's built dist)
 * and `makeTree(root, specs)` in scope; whatever the body returns is printed as JSON and parsed.
 * Errors come back as `{ error: { code, message, hint } }`.
 */
export async function runAsUserScript(
  body: string,
  dir = userTempDir('ext4-build'),
  env: Record<string, string> = {},
): Promise<unknown> {
  const script = join(dir, `script-${Math.random().toString(36).slice(2)}.mjs`)
  writeFileSync(
    script,
    `import * as lib from ${JSON.stringify(DIST)}
import * as fs from 'node:fs'
import { mkdirSync, writeFileSync, symlinkSync, linkSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
function makeTree(root, specs) {
  mkdirSync(root, { recursive: true })
  for (const s of specs) {
    const p = join(root, s.path)
    if (s.type === 'dir') mkdirSync(p, { recursive: true })
    else if (s.type === 'file') { writeFileSync(p, s.content); if (s.mode !== undefined) chmodSync(p, s.mode) }
    else if (s.type === 'symlink') symlinkSync(s.target, p)
    else linkSync(join(root, s.target), p)
  }
}
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
    env,
    timeoutMs: 600_000,
  })
  if (code !== 0) throw new Error(`user script failed (${code}): ${stderr}`)
  return JSON.parse(stdout) as unknown
}
