import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { expect, onTestFinished, test } from 'vitest'
import { flattenToDirectory, flattenToTar } from './flatten.js'
import type { EntryRecord, FlattenResult, LayerInput } from './types.js'
import { layerOf, layers, tarLayer, type TestEntry } from '../test/layers.js'
import { rawEntry, rawTar } from '../test/raw.js'

function tempDest(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lf-unit-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return join(dir, 'rootfs')
}

async function flatten(
  ...stack: TestEntry[][]
): Promise<{ dest: string; result: FlattenResult; get: (p: string) => EntryRecord | undefined }> {
  const dest = tempDest()
  const result = await flattenToDirectory(await layers(...stack), dest)
  return { dest, result, get: (p) => result.entries.find((e) => e.path === p) }
}

const paths = (r: FlattenResult) => r.entries.map((e) => e.path)
const dir = (name: string, extra: Partial<TestEntry> = {}): TestEntry => ({
  name,
  type: 'directory',
  ...extra,
})
const file = (name: string, content = name, extra: Partial<TestEntry> = {}): TestEntry => ({
  name,
  content,
  ...extra,
})

test('a whiteout deletes a lower file, symlink and whole directory', async () => {
  const { dest, result } = await flatten(
    [
      dir('d'),
      file('d/keep'),
      file('d/gone'),
      { name: 'd/ln', type: 'symlink', linkname: 'keep' },
      dir('tree'),
      dir('tree/sub'),
      file('tree/sub/f'),
    ],
    [file('d/.wh.gone', ''), file('d/.wh.ln', ''), file('.wh.tree', '')],
  )
  expect(paths(result)).toEqual(['/', '/d', '/d/keep'])
  expect(existsSync(join(dest, 'd/gone'))).toBe(false)
  expect(existsSync(join(dest, 'tree'))).toBe(false)
  expect(readFileSync(join(dest, 'd/keep'), 'utf8')).toBe('d/keep')
})

test('a whiteout never deletes an entry of its own layer, before or after it', async () => {
  const { result, dest } = await flatten(
    [file('a', 'old'), file('b', 'old')],
    [file('a', 'new'), file('.wh.a', ''), file('.wh.b', ''), file('b', 'new')],
  )
  expect(paths(result)).toEqual(['/', '/a', '/b'])
  expect(readFileSync(join(dest, 'a'), 'utf8')).toBe('new')
  expect(readFileSync(join(dest, 'b'), 'utf8')).toBe('new')
})

test('an opaque marker hides lower entries wherever it sits, and keeps its own layer', async () => {
  const { result } = await flatten(
    [dir('d'), file('d/lower1'), dir('d/lowerdir'), file('d/lowerdir/x'), file('d/shared', 'low')],
    [file('d/early'), file('d/shared', 'up'), file('d/.wh..wh..opq', ''), file('d/late')],
  )
  expect(paths(result)).toEqual(['/', '/d', '/d/early', '/d/late', '/d/shared'])
})

test('a whiteout under a lower directory that also got new entries keeps those', async () => {
  const { result, get } = await flatten(
    [dir('d', { mode: 0o700, uid: 5 }), file('d/old')],
    [file('d/new'), file('.wh.d', '')],
  )
  expect(paths(result)).toEqual(['/', '/d', '/d/new'])
  // /d itself came from the lower layer: what is left is an implicit directory.
  expect(get('/d')).toMatchObject({ mode: 0o755, uid: 0, mtime: 0 })
})

test('bad whiteouts are errors', async () => {
  for (const bad of [[file('.wh.', '')], [file('d/.wh..wh.plnk', '')], [dir('.wh.x')]]) {
    await expect(flattenToDirectory(await layers(bad), tempDest())).rejects.toMatchObject({
      code: 'E_BAD_WHITEOUT',
    })
  }
})

test('type changes unlink and recreate; dir over dir keeps contents and takes new metadata', async () => {
  const { dest, get, result } = await flatten(
    [
      file('f2d'),
      dir('d2f'),
      file('d2f/child'),
      file('f2l'),
      dir('keep', { mode: 0o700, mtime: 5 }),
      file('keep/child'),
    ],
    [
      dir('f2d'),
      file('d2f', 'now a file'),
      { name: 'f2l', type: 'symlink', linkname: '/x' },
      dir('keep', { mode: 0o750, uid: 7, mtime: 9 }),
    ],
  )
  expect(lstatSync(join(dest, 'f2d')).isDirectory()).toBe(true)
  expect(readFileSync(join(dest, 'd2f'), 'utf8')).toBe('now a file')
  expect(readlinkSync(join(dest, 'f2l'))).toBe('/x')
  expect(get('/keep')).toMatchObject({ mode: 0o750, uid: 7, mtime: 9 })
  expect(paths(result)).toContain('/keep/child')
  expect(paths(result)).not.toContain('/d2f/child')
})

test('a path deleted and recreated later is there', async () => {
  const { dest } = await flatten([file('x', 'one')], [file('.wh.x', '')], [file('x', 'three')])
  expect(readFileSync(join(dest, 'x'), 'utf8')).toBe('three')
})

test('hardlinks within a layer and to lower files share one inode; rewriting a name splits it', async () => {
  const { dest, get, result } = await flatten(
    [file('a', 'shared'), file('solo', 'solo')],
    [
      { name: 'b', type: 'link', linkname: 'a' },
      { name: 'c', type: 'link', linkname: './b' },
      file('d'),
      { name: 'e', type: 'link', linkname: 'd' },
    ],
    [file('a', 'rewritten')],
  )
  expect(statSync(join(dest, 'b')).ino).toBe(statSync(join(dest, 'c')).ino)
  expect(statSync(join(dest, 'b')).nlink).toBe(2)
  expect(readFileSync(join(dest, 'b'), 'utf8')).toBe('shared')
  expect(readFileSync(join(dest, 'a'), 'utf8')).toBe('rewritten')
  expect(get('/a')?.hardlinkGroup).toBeUndefined()
  expect(get('/b')?.hardlinkGroup).toBe(get('/c')?.hardlinkGroup)
  expect(get('/d')?.hardlinkGroup).toBe(get('/e')?.hardlinkGroup)
  expect(get('/b')?.hardlinkGroup).not.toBe(get('/d')?.hardlinkGroup)
  expect(get('/solo')?.hardlinkGroup).toBeUndefined()
  // a, b/c, d/e, solo: 4 file inodes, hardlinks counted once.
  expect(result.totals).toMatchObject({ files: 4, directories: 1, inodes: 5, bytes: 9 + 6 + 4 + 1 })
})

test('a hardlink to a missing target names both paths', async () => {
  const run = flattenToDirectory(
    await layers([{ name: 'etc/link', type: 'link', linkname: 'etc/nowhere' }]),
    tempDest(),
  )
  await expect(run).rejects.toMatchObject({ code: 'E_MISSING_LINK_TARGET' })
  await expect(run).rejects.toThrow(/"\/etc\/link".*"\/etc\/nowhere"/)
})

test('duplicate entries: the last one wins', async () => {
  const { dest, get } = await flatten([
    file('x', 'first', { mode: 0o600 }),
    file('x', 'second', { mode: 0o640 }),
  ])
  expect(readFileSync(join(dest, 'x'), 'utf8')).toBe('second')
  expect(get('/x')?.mode).toBe(0o640)
})

test('./ prefixes, missing parents, and the root entry', async () => {
  const { result, get } = await flatten([file('./deep/er/f'), dir('./', { mode: 0o700, mtime: 3 })])
  expect(paths(result)).toEqual(['/', '/deep', '/deep/er', '/deep/er/f'])
  expect(get('/')).toMatchObject({ type: 'directory', mode: 0o700, mtime: 3 })
  expect(get('/deep')).toMatchObject({ mode: 0o755, uid: 0, gid: 0, mtime: 0 })
  const { get: get2 } = await flatten([file('x')])
  expect(get2('/')).toMatchObject({ type: 'directory', mode: 0o755, uid: 0, gid: 0 })
})

test('PAX long names and link targets, UTF-8 names, uid/gid up to 2^32-2', async () => {
  const long = 'd'.repeat(120) + '/' + 'é'.repeat(80) + '/ファイル'
  const target = '/' + 't'.repeat(300)
  const { dest, get } = await flatten([
    file(long, 'x', { uid: 2 ** 32 - 2, gid: 2 ** 32 - 2 }),
    { name: 'ln', type: 'symlink', linkname: target },
    { name: 'hl', type: 'link', linkname: long },
  ])
  expect(get('/' + long)).toMatchObject({ uid: 2 ** 32 - 2, gid: 2 ** 32 - 2, hardlinkGroup: 1 })
  expect(readlinkSync(join(dest, 'ln'))).toBe(target)
  expect(readFileSync(join(dest, long), 'utf8')).toBe('x')
})

test('mtimes beyond what ext4 stores are clamped to its range', async () => {
  const { get } = await flatten([
    file('far', 'x', { pax: { mtime: '1e300' } }),
    file('past', 'x', { pax: { mtime: '-99999999999.5' } }),
  ])
  expect(get('/far')?.mtime).toBe(2 ** 34 - 2 ** 31 - 1)
  expect(get('/past')?.mtime).toBe(-(2 ** 31))
})

test('uid 2^32-1 is refused', async () => {
  await expect(
    flattenToDirectory(
      await layers([file('x', 'x', { pax: { uid: String(2 ** 32 - 1) } })]),
      tempDest(),
    ),
  ).rejects.toMatchObject({ code: 'E_CORRUPT_LAYER' })
})

test('binary xattrs pass byte for byte into the manifest and back out through the tar', async () => {
  const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex')
  const tar = rawTar(
    rawEntry(
      {
        name: 'bin/ping',
        xattrs: {
          'security.capability': cap.toString('base64'),
          'user.ü': Buffer.from('v').toString('base64'),
        },
      },
      Buffer.from('ELF'),
    ),
  )
  const dest = tempDest()
  const result = await flattenToDirectory([layerOf(tar, { chunk: 7 })], dest)
  const ping = result.entries.find((e) => e.path === '/bin/ping')!
  expect(Buffer.from(ping.xattrs!['security.capability']!, 'base64')).toEqual(cap)
  expect(ping.xattrs!['user.ü']).toBe(Buffer.from('v').toString('base64'))
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', (c: Buffer) => chunks.push(c))
  await flattenToTar([layerOf(tar)], out)
  const again = await flattenToTar([layerOf(Buffer.concat(chunks))], new PassThrough().resume())
  expect(again.entries).toEqual(result.entries)
})

test('device nodes and FIFOs live in the manifest only', async () => {
  const { dest, get, result } = await flatten([
    dir('dev'),
    { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0, mode: 0o660, gid: 6 },
    { name: 'run.fifo', type: 'fifo', mode: 0o600 },
  ])
  expect(get('/dev/null')).toMatchObject({ type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 })
  expect(get('/dev/sda')).toMatchObject({ type: 'block', devMajor: 8, devMinor: 0, gid: 6 })
  expect(get('/run.fifo')).toMatchObject({ type: 'fifo' })
  expect(existsSync(join(dest, 'dev/null'))).toBe(false)
  expect(existsSync(join(dest, 'run.fifo'))).toBe(false)
  expect(result.totals.specials).toBe(3)
})

test('on disk: no setuid/sticky bits, owner always rw(x), exact mtimes; the manifest keeps the truth', async () => {
  const { dest, get } = await flatten([
    dir('locked', { mode: 0o000, mtime: 1000 }),
    file('locked/f', 'x', { mode: 0o000, mtime: 2000 }),
    dir('ro', { mode: 0o555 }),
    file('ro/suid', 'x', { mode: 0o4755 }),
    dir('tmp', { mode: 0o1777 }),
  ])
  expect(statSync(join(dest, 'locked')).mode & 0o7777).toBe(0o700)
  expect(statSync(join(dest, 'locked/f')).mode & 0o7777).toBe(0o600)
  expect(statSync(join(dest, 'ro')).mode & 0o7777).toBe(0o755)
  expect(statSync(join(dest, 'ro/suid')).mode & 0o7777).toBe(0o755)
  expect(statSync(join(dest, 'tmp')).mode & 0o7777).toBe(0o777)
  expect(statSync(join(dest, 'locked')).mtimeMs).toBe(1000_000)
  expect(statSync(join(dest, 'locked/f')).mtimeMs).toBe(2000_000)
  expect(get('/ro/suid')?.mode).toBe(0o4755)
  expect(get('/tmp')?.mode).toBe(0o1777)
  expect(get('/locked')?.mode).toBe(0)
})

test('gzip and zstd (system binary and fzstd) layers, detected by magic', async () => {
  const tar = await tarLayer([file('z', 'zzz'.repeat(1000))])
  for (const compress of ['gzip', 'zstd'] as const) {
    const dest = tempDest()
    await flattenToDirectory([layerOf(tar, { compress, chunk: 3 })], dest)
    expect(readFileSync(join(dest, 'z'), 'utf8')).toBe('zzz'.repeat(1000))
  }
  process.env.BANGER_FLATTEN_ZSTD = 'js'
  onTestFinished(() => void delete process.env.BANGER_FLATTEN_ZSTD)
  const dest = tempDest()
  await flattenToDirectory([layerOf(tar, { compress: 'zstd', chunk: 5 })], dest)
  expect(readFileSync(join(dest, 'z'), 'utf8')).toBe('zzz'.repeat(1000))
})

test('one byte at a time: magic sniffing, PAX records and bodies split everywhere', async () => {
  const tar = await tarLayer([
    file('p/' + 'long'.repeat(40), 'body', { pax: { 'SCHILY.xattr.user.k': 'v' } }),
    { name: 'ln', type: 'symlink', linkname: 'x'.repeat(150) },
  ])
  for (const compress of [undefined, 'gzip', 'zstd'] as const) {
    const dest = tempDest()
    const result = await flattenToDirectory([layerOf(tar, { compress, chunk: 1 })], dest)
    expect(result.entries.map((e) => e.path)).toEqual(['/', '/ln', '/p', '/p/' + 'long'.repeat(40)])
    expect(result.entries[3]?.xattrs).toEqual({ 'user.k': Buffer.from('v').toString('base64') })
    expect(readlinkSync(join(dest, 'ln'))).toBe('x'.repeat(150))
  }
})

test('layers are pulled lazily: layer N+1 is requested only after layer N is fully read', async () => {
  const events: string[] = []
  const tars = [await tarLayer([file('a', 'x'.repeat(100_000))]), await tarLayer([file('b')])]
  async function* produce(): AsyncGenerator<LayerInput> {
    for (const [i, tar] of tars.entries()) {
      await Promise.resolve()
      events.push(`yield ${i}`)
      yield {
        open: () =>
          Readable.from(
            (function* () {
              for (let at = 0; at < tar.length; at += 4096) yield tar.subarray(at, at + 4096)
              events.push(`read ${i}`)
            })(),
            { objectMode: false },
          ),
      }
    }
  }
  await flattenToDirectory(produce(), tempDest())
  expect(events).toEqual(['yield 0', 'read 0', 'yield 1', 'read 1'])
})

test('the tar output lists directories first, then files with their hardlinks', async () => {
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', (c: Buffer) => chunks.push(c))
  const stack = await layers(
    [dir('d', { mode: 0o555 }), file('d/f', 'one'), { name: 'd/g', type: 'link', linkname: 'd/f' }],
    [file('d/h', 'two'), { name: 'd/s', type: 'symlink', linkname: 'f' }],
  )
  const result = await flattenToTar(stack, out)
  const { extract } = await import('tar-stream')
  const ex = extract()
  const seen: string[] = []
  const reading = (async () => {
    for await (const e of ex) {
      seen.push(
        `${e.header.type} ${e.header.name}${e.header.linkname ? ' -> ' + e.header.linkname : ''}`,
      )
      e.resume()
    }
  })()
  ex.end(Buffer.concat(chunks))
  await reading
  expect(seen).toEqual([
    'directory ./',
    'directory d/',
    'symlink d/s -> f',
    'file d/f',
    'link d/g -> d/f',
    'file d/h',
  ])
  expect(result.entries.map((e) => e.path)).toEqual(['/', '/d', '/d/f', '/d/g', '/d/h', '/d/s'])
})
