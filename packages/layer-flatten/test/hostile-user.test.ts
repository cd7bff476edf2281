/**
 * The hostile-input suite run the way banger runs: as the unprivileged test user, through the
 * built package in its own process. `outside/` is writable by that user, so an escape would land.
 */
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { userTempDir } from '@banger/test-support'
import { beforeAll, expect, test } from 'vitest'
import { sha256, tarLayer, type TestEntry } from './layers.js'
import { rawEntry } from './raw.js'
import { flattenAsUser } from './user.js'

let work: string
let outside: string
let seq = 0

beforeAll(() => {
  work = userTempDir('lf-hostile-user')
  chmodSync(work, 0o777)
  outside = join(work, 'outside')
  mkdirSync(outside)
  chmodSync(outside, 0o777)
  writeFileSync(join(outside, 'victim'), 'keep me')
})

async function attempt(
  stack: (TestEntry[] | Buffer)[],
  opts: { diffIds?: (string | undefined)[]; limits?: object } = {},
) {
  const n = seq++
  const layerFiles = await Promise.all(
    stack.map(async (layer, i) => {
      const path = join(work, `layer-${n}-${i}.tar`)
      const bytes = Buffer.isBuffer(layer) ? layer : await tarLayer(layer)
      writeFileSync(path, bytes)
      return {
        path,
        diffId: opts.diffIds ? opts.diffIds[i] : Buffer.isBuffer(layer) ? undefined : sha256(bytes),
      }
    }),
  )
  const dest = join(work, `dest-${n}`)
  const outcome = await flattenAsUser({ dest, layers: layerFiles, limits: opts.limits })
  // Whatever happened, nothing appeared or vanished outside the destination.
  expect(readdirSync(outside)).toEqual(['victim'])
  expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('keep me')
  expect(
    readdirSync(work).filter((f) => !f.startsWith('layer-') && !f.startsWith('dest-')),
  ).toEqual(['outside'])
  return outcome
}

const refused = async (code: string, ...args: Parameters<typeof attempt>) => {
  const outcome = await attempt(...args)
  expect(outcome).toMatchObject({ ok: false, code })
}

test('.. and absolute names', async () => {
  await refused('E_UNSAFE_PATH', [[{ name: '../outside/evil', content: 'x' }]])
  await refused('E_UNSAFE_PATH', [[{ name: 'a/../../../outside/evil', content: 'x' }]])
  await refused('E_UNSAFE_PATH', [[{ name: join(outside, 'evil').slice(0), content: 'x' }]])
})

test('writes through symlinks planted in the same layer, a lower layer, or pointing up', async () => {
  const planted: TestEntry = { name: 'ln', type: 'symlink', linkname: outside }
  await refused('E_UNSAFE_PATH', [[planted, { name: 'ln/evil', content: 'x' }]])
  await refused('E_UNSAFE_PATH', [[planted], [{ name: 'ln/evil', content: 'x' }]])
  await refused('E_UNSAFE_PATH', [[planted], [{ name: 'ln/victim', content: 'overwritten' }]])
  await refused('E_UNSAFE_PATH', [
    [
      { name: 'up', type: 'symlink', linkname: '../..' },
      { name: 'up/outside/evil', content: 'x' },
    ],
  ])
  await refused('E_UNSAFE_PATH', [[planted, { name: 'ln/sub', type: 'directory' }]])
})

test('hardlinks that escape', async () => {
  await refused('E_UNSAFE_PATH', [[{ name: 'h', type: 'link', linkname: '../outside/victim' }]])
  await refused('E_UNSAFE_PATH', [[{ name: 'h', type: 'link', linkname: join(outside, 'victim') }]])
  await refused('E_UNSAFE_PATH', [
    [
      { name: 'ln', type: 'symlink', linkname: outside },
      { name: 'h', type: 'link', linkname: 'ln/victim' },
    ],
  ])
})

test('whiteouts and opaque markers through a symlink delete nothing', async () => {
  const outcome = await attempt([
    [{ name: 'ln', type: 'symlink', linkname: outside }],
    [
      { name: 'ln/.wh.victim', content: '' },
      { name: 'ln/.wh..wh..opq', content: '' },
    ],
  ])
  expect(outcome.ok).toBe(true)
})

test('names that would inject into a debugfs script', async () => {
  await refused('E_UNENCODABLE_NAME', [
    [{ name: `x\n!touch ${join(outside, 'pwned')} #`, content: 'x' }],
  ])
})

test('broken layers, DiffID mismatch and a gzip bomb', async () => {
  const tar = await tarLayer([{ name: 'a', content: 'x'.repeat(10_000) }])
  const gz = gzipSync(tar)
  await refused('E_CORRUPT_LAYER', [gz.subarray(0, gz.length - 50)])
  await refused('E_DIFFID_MISMATCH', [gz], { diffIds: [sha256(Buffer.from('other'))] })
  const bomb = gzipSync(
    Buffer.concat([
      rawEntry({ name: 'bomb', size: 256 * 1024 * 1024 }),
      Buffer.alloc(32 * 1024 * 1024),
    ]),
  )
  await refused('E_LIMIT_EXCEEDED', [bomb], { limits: { maxBytes: 1024 * 1024 } })
})

test('a clean layer still works as the user, with setuid and 0000 modes', async () => {
  const outcome = await attempt([
    [
      { name: 'locked', type: 'directory', mode: 0 },
      { name: 'locked/suid', content: 'x', mode: 0o4755, uid: 0 },
    ],
  ])
  expect(outcome).toMatchObject({ ok: true })
  if (outcome.ok)
    expect(outcome.result.entries.find((e) => e.path === '/locked/suid')?.mode).toBe(0o4755)
})
