/** The `flatten` bin, end to end: layer files in, a tree or a tar out, errors as two lines. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { run } from '@banger/test-support'
import { afterAll, expect, test } from 'vitest'
import { tarLayer } from './layers.js'

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url))
const work = mkdtempSync(join(tmpdir(), 'lf-bin-'))
afterAll(() => rmSync(work, { recursive: true, force: true }))

test('layer files to a tree with a manifest, and to a tar on stdout', async () => {
  const l1 = join(work, 'l1.tar')
  const l2 = join(work, 'l2.tar')
  writeFileSync(
    l1,
    await tarLayer([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/a', content: 'A' },
      { name: 'etc/b', content: 'B' },
    ]),
  )
  writeFileSync(l2, await tarLayer([{ name: 'etc/.wh.a', content: '' }]))
  const dest = join(work, 'tree')
  const manifest = join(work, 'm.json')
  const r = await run(process.execPath, [bin, l1, l2, '--dest', dest, '--manifest', manifest])
  expect(r.stderr).toContain('flattened 2 layers: 1 files')
  expect(readFileSync(join(dest, 'etc/b'), 'utf8')).toBe('B')
  const parsed = JSON.parse(readFileSync(manifest, 'utf8')) as { entries: { path: string }[] }
  expect(parsed.entries.map((e) => e.path)).toEqual(['/', '/etc', '/etc/b'])
  const tar = await run('sh', ['-c', `node ${bin} ${l1} ${l2} --tar - | tar -t`])
  expect(tar.stdout.split('\n').filter(Boolean)).toEqual(['./', 'etc/', 'etc/b'])
})

test('errors print the message and the hint, exit 1', async () => {
  const bad = join(work, 'bad.tar')
  writeFileSync(bad, await tarLayer([{ name: '../x', content: '' }]))
  const r = await run(process.execPath, [bin, bad, '--dest', join(work, 'x')], { check: false })
  expect(r.code).toBe(1)
  expect(r.stderr).toMatch(
    /^error: entry "\.\.\/x" has a `\.\.` component \(layer #0 .*bad\.tar\)\nhint: .+\n$/,
  )
})
