/**
 * The experiment behind checkEncodable, against the real debugfs (e2fsprogs 1.47): which names a
 * `debugfs -f` script can address, quoted as `"<path with each " doubled>"`.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from '@banger/test-support'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { flattenToDirectory } from '../src/flatten.js'
import { checkEncodable } from '../src/paths.js'
import { layers } from './layers.js'

const work = mkdtempSync(join(tmpdir(), 'lf-debugfs-'))
afterAll(() => rmSync(work, { recursive: true, force: true }))

const accepted = [
  'a"b',
  '"start',
  'end"',
  'a""b',
  'a\\b',
  "sq'x",
  '!x',
  '#x',
  '<2>',
  '-dash',
  ' lead',
  'trail ',
  'tab\tx',
  'semi;x',
  '|pipe',
  'dol$x',
  'ü',
  '\uFFFD',
]
const refused = ['nl\nx', 'cr\rx', 'x\n!touch PWNED #']
const image = join(work, 'img')

const quote = (path: string) => `"${path.replaceAll('"', '""')}"`

async function debugfsScript(lines: string[]): Promise<string> {
  const script = join(work, `script-${Math.random()}`)
  writeFileSync(script, lines.join('\n') + '\n')
  const r = await run('debugfs', ['-f', script, image], { cwd: work, check: false })
  return r.stdout + r.stderr
}

beforeAll(async () => {
  // Accepted names go through the flattener; the refused ones are made by hand (it refuses them).
  const tree = join(work, 'tree')
  await flattenToDirectory(await layers(accepted.map((name) => ({ name, content: name }))), tree)
  for (const name of refused) writeFileSync(join(tree, name), name)
  mkdirSync(join(tree, 'deep'))
  await run('mkfs.ext4', ['-q', '-F', '-d', tree, image, '8M'])
})

test('every name checkEncodable accepts is found by debugfs when quoted', async () => {
  for (const name of accepted)
    expect(() => checkEncodable('/' + name, { layer: 't' })).not.toThrow()
  const out = await debugfsScript(accepted.map((n) => `stat ${quote('/' + n)}`))
  const found = out.match(/^Inode: \d+\s+Type: regular/gm) ?? []
  expect(found.length).toBe(accepted.length)
  expect(out).not.toMatch(/not found|Unbalanced/)
})

test('names with newline or CR cannot be addressed, and a newline lets `!` reach the shell', async () => {
  for (const name of refused) {
    expect(() => checkEncodable('/' + name, { layer: 't' })).toThrow(
      expect.objectContaining({ code: 'E_UNENCODABLE_NAME' }),
    )
  }
  const out = await debugfsScript(refused.map((n) => `stat ${quote('/' + n)}`))
  expect(out.match(/^Inode: \d+/gm)).toBeNull()
  expect(out).toContain('Unbalanced quotes')
  // The third name split the line; its second half ran as `touch PWNED #"` in /bin/sh.
  const { existsSync } = await import('node:fs')
  expect(existsSync(join(work, 'PWNED'))).toBe(true)
})

test('debugfs -f cuts lines at 8191 bytes, so quoted paths must stay well under it', async () => {
  const pad = ' '.repeat(8191 - 'stat "/deep"'.length)
  const fits = await debugfsScript([`${pad}stat "/deep"`])
  expect(fits).toMatch(/Type: directory/)
  const cut = await debugfsScript([` ${pad}stat "/deep"`])
  expect(cut).not.toMatch(/Type: directory/)
})
