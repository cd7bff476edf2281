import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { checkBoundaries, STAGES } from '../scripts/check-boundaries.mjs'

const check: (root: string) => string[] = checkBoundaries

function fakeRepo(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'banger-boundaries-'))
  onTestFinished(() => rmSync(root, { recursive: true, force: true }))
  for (const pkg of [...STAGES, 'daemon', 'cli']) {
    mkdirSync(join(root, 'packages', pkg, 'src', 'rpc'), { recursive: true })
    writeFileSync(
      join(root, 'packages', pkg, 'package.json'),
      JSON.stringify({ name: `@banger/${pkg}` }),
    )
  }
  for (const [path, text] of Object.entries(files)) writeFileSync(join(root, path), text)
  return root
}

describe('import boundaries', () => {
  it('holds for this repository', () => {
    expect(check(resolve(import.meta.dirname, '..'))).toEqual([])
  })

  it('flags a stage importing another stage', () => {
    const root = fakeRepo({
      'packages/ownership/src/x.ts': "import { flattenLayers } from '@banger/layer-flatten'\n",
    })
    expect(check(root)).toEqual(['packages/ownership/src/x.ts imports @banger/layer-flatten'])
  })

  it('flags a stage depending on another stage in package.json', () => {
    const root = fakeRepo({
      'packages/ext4-build/package.json': JSON.stringify({
        dependencies: { '@banger/ownership': 'workspace:*' },
      }),
    })
    expect(check(root)).toEqual(['packages/ext4-build/package.json depends on @banger/ownership'])
  })

  it('flags the CLI importing the daemon root or a stage', () => {
    const root = fakeRepo({
      'packages/cli/src/a.ts':
        "import { startDaemon } from '@banger/daemon'\nimport type { X } from '@banger/daemon/rpc'\n",
      'packages/cli/src/b.ts': "const m = await import('@banger/registry-client')\n",
    })
    expect(check(root)).toEqual([
      'packages/cli/src/a.ts imports @banger/daemon',
      'packages/cli/src/b.ts imports @banger/registry-client',
    ])
  })

  it('flags the rpc entry loading SQLite', () => {
    const root = fakeRepo({
      'packages/daemon/src/rpc/client.ts': "import Database from 'better-sqlite3'\n",
    })
    expect(check(root)).toHaveLength(1)
  })
})
