import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * Gives the whole test run one temp root and removes it at the end. Vitest workers do not exit
 * normally, so process-exit cleanup in the harness never runs; tests that pull Debian images
 * leave gigabytes behind otherwise. Workers inherit TMPDIR, so os.tmpdir() points here.
 */
export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'banger-test-run-'))
  // The unprivileged test user makes its own dirs in here; sticky like /tmp.
  chmodSync(root, 0o1777)
  const previous = process.env.TMPDIR
  process.env.TMPDIR = root
  return () => {
    if (previous === undefined) delete process.env.TMPDIR
    else process.env.TMPDIR = previous
    if (!process.env.BANGER_KEEP_TEST_TMP) rmSync(root, { recursive: true, force: true })
  }
}
