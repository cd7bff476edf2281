/** Each hostile input is a coded error, and nothing lands outside the destination. */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { describe, expect, onTestFinished, test } from 'vitest'
import { flattenToDirectory } from './flatten.js'
import type { FlattenLimits, LayerInput } from './types.js'
import { layerOf, layers, sha256, tarLayer, zstdSync, type TestEntry } from '../test/layers.js'
import { patchHeader, rawEntry, rawTar } from '../test/raw.js'

/** A sandbox with the destination and a sibling `outside/` that must stay empty. */
function sandbox() {
  const root = mkdtempSync(join(tmpdir(), 'lf-hostile-'))
  onTestFinished(() => rmSync(root, { recursive: true, force: true }))
  mkdirSync(join(root, 'outside'))
  return { dest: join(root, 'dest'), outside: join(root, 'outside') }
}

async function refuses(stack: LayerInput[], code: string, limits?: FlattenLimits) {
  const { dest, outside } = sandbox()
  const err = await flattenToDirectory(stack, dest, { limits }).then(
    () => {
      throw new Error('flatten succeeded')
    },
    (e: unknown) => e as { code: string; message: string; hint: string },
  )
  expect(err).toMatchObject({ code })
  expect(err.hint).toBeTruthy()
  expect(err.message).not.toContain('\n')
  expect(readdirSync(outside)).toEqual([])
  return err
}

const file = (name: string, content = 'x'): TestEntry => ({ name, content })

describe('paths', () => {
  test('.. components and absolute names', async () => {
    await refuses(await layers([file('../outside/evil')]), 'E_UNSAFE_PATH')
    await refuses(await layers([file('a/../../outside/evil')]), 'E_UNSAFE_PATH')
    await refuses(await layers([file('/outside/evil')]), 'E_UNSAFE_PATH')
  })

  test('writing through a symlink planted earlier in the same layer or a lower one', async () => {
    const { outside } = sandbox()
    const planted: TestEntry = { name: 'ln', type: 'symlink', linkname: outside }
    const err = await refuses(await layers([planted, file('ln/evil')]), 'E_UNSAFE_PATH')
    expect(err.message).toContain('/ln')
    await refuses(await layers([planted], [file('ln/evil')]), 'E_UNSAFE_PATH')
    await refuses(
      await layers([{ name: 'up', type: 'symlink', linkname: '..' }, file('up/outside/evil')]),
      'E_UNSAFE_PATH',
    )
    expect(readdirSync(outside)).toEqual([])
  })

  test('a whiteout or opaque marker through a symlink deletes nothing, outside or in', async () => {
    const { dest, outside } = sandbox()
    writeFileSync(join(outside, 'victim'), 'keep me')
    const planted: TestEntry = { name: 'ln', type: 'symlink', linkname: outside }
    const result = await flattenToDirectory(
      await layers([planted], [file('ln/.wh.victim', ''), file('ln/.wh..wh..opq', '')]),
      dest,
    )
    expect(readdirSync(outside)).toEqual(['victim'])
    expect(result.entries.map((e) => e.path)).toEqual(['/', '/ln'])
  })

  test('hardlinks whose target escapes or goes through a symlink', async () => {
    await refuses(
      await layers([{ name: 'h', type: 'link', linkname: '../outside/x' }]),
      'E_UNSAFE_PATH',
    )
    await refuses(
      await layers([{ name: 'h', type: 'link', linkname: '/etc/passwd' }]),
      'E_UNSAFE_PATH',
    )
    await refuses(
      await layers([
        { name: 'etc', type: 'symlink', linkname: '/etc' },
        { name: 'h', type: 'link', linkname: 'etc/passwd' },
      ]),
      'E_UNSAFE_PATH',
    )
    await refuses(
      await layers([
        { name: 'd', type: 'directory' },
        { name: 'h', type: 'link', linkname: 'd' },
      ]),
      'E_BAD_HARDLINK',
    )
  })

  test('an entry under a regular file', async () => {
    await refuses(await layers([file('f'), file('f/x')]), 'E_PARENT_NOT_DIRECTORY')
  })

  test('the root as a non-directory', async () => {
    await refuses(await layers([{ name: './', type: 'symlink', linkname: '/' }]), 'E_UNSAFE_PATH')
  })
})

describe('names debugfs or ext4 cannot carry', () => {
  test.each([
    ['newline', 'a\n!touch /tmp/pwned'],
    ['carriage return', 'a\rb'],
    ['256-byte component', 'n'.repeat(256)],
    ['path past 4095 bytes', Array(20).fill('d'.repeat(250)).join('/')],
  ])('%s', async (_what, name) => {
    const err = await refuses(await layers([file(name)]), 'E_UNENCODABLE_NAME')
    expect(err.message).toContain(JSON.stringify('/' + name).slice(0, 40))
  })

  test('a name that is not UTF-8', async () => {
    const entry = rawEntry({ name: 'xx' })
    const bad = Buffer.concat([
      patchHeader(entry.subarray(0, 512), 0, Buffer.from([0xff, 0xfe])),
      entry.subarray(512),
    ])
    await refuses([layerOf(rawTar(bad))], 'E_UNENCODABLE_NAME')
  })

  test('quotes, backslashes, !, #, < and spaces are fine', async () => {
    const { dest } = sandbox()
    const names = ['a"b', 'a\\b', '!x', '#x', '<2>', ' lead', 'tab\tx', 'ü']
    const result = await flattenToDirectory(await layers(names.map((n) => file(n))), dest)
    expect(result.entries.map((e) => e.path).sort()).toEqual(
      ['/', ...names.map((n) => '/' + n)].sort(),
    )
  })
})

describe('broken and oversized layers', () => {
  test('a plain tar cut mid-file, and one cut at an entry boundary', async () => {
    const tar = await tarLayer([file('a', 'x'.repeat(5000)), file('b')])
    await refuses([layerOf(tar.subarray(0, 3000), { diffId: false })], 'E_CORRUPT_LAYER')
    await refuses([layerOf(tar.subarray(0, 512 + 5120), { diffId: false })], 'E_CORRUPT_LAYER')
    await refuses([layerOf(Buffer.alloc(0), { diffId: false })], 'E_CORRUPT_LAYER')
  })

  test('corrupt and truncated gzip and zstd', async () => {
    const tar = await tarLayer([file('a', 'hello '.repeat(20000))])
    const gz = gzipSync(tar)
    const zs = zstdSync(tar)
    const flip = (b: Buffer) => {
      const c = Buffer.from(b)
      for (let i = 20; i < c.length - 20; i += 97) c[i]! ^= 0x5a
      return c
    }
    const raw = (bytes: Buffer): LayerInput => ({
      open: () => layerOf(bytes, { diffId: false }).open(),
    })
    await refuses([raw(flip(gz))], 'E_CORRUPT_LAYER')
    await refuses([raw(gz.subarray(0, gz.length - 100))], 'E_CORRUPT_LAYER')
    await refuses([raw(flip(zs))], 'E_CORRUPT_LAYER')
    await refuses([raw(zs.subarray(0, zs.length - 100))], 'E_CORRUPT_LAYER')
    process.env.BANGER_FLATTEN_ZSTD = 'js'
    onTestFinished(() => void delete process.env.BANGER_FLATTEN_ZSTD)
    await refuses([raw(flip(zs))], 'E_CORRUPT_LAYER')
    await refuses([raw(zs.subarray(0, zs.length - 100))], 'E_CORRUPT_LAYER')
  })

  test('garbage, bzip2 and xz', async () => {
    await refuses([layerOf(Buffer.alloc(2048, 'garbage'), { diffId: false })], 'E_CORRUPT_LAYER')
    await refuses(
      [layerOf(Buffer.from('BZh91AY&SY' + 'x'.repeat(600)), { diffId: false })],
      'E_UNSUPPORTED_COMPRESSION',
    )
    await refuses(
      [
        layerOf(Buffer.concat([Buffer.from('fd377a585a00', 'hex'), Buffer.alloc(600)]), {
          diffId: false,
        }),
      ],
      'E_UNSUPPORTED_COMPRESSION',
    )
  })

  test('DiffID mismatch, also for a compressed layer, after draining the padding', async () => {
    const tar = await tarLayer([file('a')])
    const padded = Buffer.concat([tar, Buffer.alloc(10240 - (tar.length % 10240))])
    const err = await refuses(
      [layerOf(padded, { diffId: sha256(tar), compress: 'gzip' })],
      'E_DIFFID_MISMATCH',
    )
    expect(err.message).toContain(sha256(padded))
    // The padded stream's own DiffID is accepted: the hash covers the bytes after end-of-archive.
    const { dest } = sandbox()
    await flattenToDirectory([layerOf(padded, { diffId: sha256(padded), compress: 'gzip' })], dest)
  })

  test('limits on total bytes and entries, across layers', async () => {
    const big = await layers([file('a', 'x'.repeat(100_000))], [file('b', 'y'.repeat(100_000))])
    await refuses(big, 'E_LIMIT_EXCEEDED', { maxBytes: 150_000 })
    const many = await layers(
      Array.from({ length: 50 }, (_, i) => file(`f${i}`)),
      [file('g')],
    )
    const err = await refuses(many, 'E_LIMIT_EXCEEDED', { maxEntries: 50 })
    expect(err.message).toContain('maxEntries')
  })

  test('a gzip bomb stops at maxBytes without inflating it all', async () => {
    const header = rawEntry({ name: 'bomb', size: 512 * 1024 * 1024 }).subarray(0, 512)
    const zeros = Buffer.alloc(64 * 1024 * 1024)
    const bomb = gzipSync(Buffer.concat([header, zeros]))
    const start = Date.now()
    await refuses([layerOf(bomb, { diffId: false })], 'E_LIMIT_EXCEEDED', {
      maxBytes: 4 * 1024 * 1024,
    })
    expect(Date.now() - start).toBeLessThan(5000)
  })

  test('absurd header sizes', async () => {
    // A PAX size record of 1 TiB and no data behind it.
    const huge = rawEntry({ name: 'huge', size: 2 ** 40 })
    await refuses([layerOf(rawTar(huge), { diffId: false })], 'E_LIMIT_EXCEEDED')
    // base-256 size of 2^62: not a safe integer.
    const b256 = Buffer.alloc(12)
    b256[0] = 0x80
    b256[4] = 0x40
    const absurd = patchHeader(rawEntry({ name: 'absurd' }).subarray(0, 512), 124, b256)
    await refuses([layerOf(rawTar(absurd), { diffId: false })], 'E_CORRUPT_LAYER')
    // A PAX header larger than tar-stream's 4 MiB cap.
    const paxBlock = rawEntry({ name: 'PaxHeader', type: 'pax', size: 8 * 1024 * 1024 }).subarray(
      0,
      512,
    )
    await refuses(
      [layerOf(rawTar(paxBlock, Buffer.alloc(8 * 1024 * 1024, 0x31)), { diffId: false })],
      'E_CORRUPT_LAYER',
    )
  })

  test('sparse files and unknown entry types', async () => {
    await refuses(
      await layers([{ name: 's', content: 'x', pax: { 'GNU.sparse.major': '1' } }]),
      'E_UNSUPPORTED_ENTRY',
    )
    const odd = patchHeader(rawEntry({ name: 'odd' }).subarray(0, 512), 156, Buffer.from('X'))
    await refuses([layerOf(rawTar(odd), { diffId: false })], 'E_UNSUPPORTED_ENTRY')
  })
})

describe('destination and cancellation', () => {
  test('a non-empty destination is refused', async () => {
    const { dest } = sandbox()
    mkdirSync(dest)
    writeFileSync(join(dest, 'x'), '')
    await expect(flattenToDirectory(await layers([file('a')]), dest)).rejects.toMatchObject({
      code: 'E_DEST_NOT_EMPTY',
    })
  })

  test('abort rejects with the signal reason and stops reading', async () => {
    const { dest } = sandbox()
    const ac = new AbortController()
    let reads = 0
    const endless: LayerInput = {
      open: () =>
        new (class extends Readable {
          override _read() {
            reads++
            if (reads === 5) ac.abort(new Error('stop now'))
            this.push(Buffer.alloc(512))
          }
        })(),
    }
    await expect(flattenToDirectory([endless], dest, { signal: ac.signal })).rejects.toThrow(
      'stop now',
    )
    const after = reads
    await new Promise((r) => setTimeout(r, 50))
    expect(reads).toBe(after)
    expect(existsSync(dest)).toBe(true)
  })
})

describe('failures mid-stream leave nothing running', () => {
  test('an unsafe entry early in a large zstd layer stops zstd and resolves promptly', async () => {
    const tar = await tarLayer([
      { name: '../evil', content: 'x' },
      { name: 'big', content: Buffer.alloc(20 * 1024 * 1024, 7) },
    ])
    for (const engine of ['system', 'js']) {
      if (engine === 'js') process.env.BANGER_FLATTEN_ZSTD = 'js'
      onTestFinished(() => void delete process.env.BANGER_FLATTEN_ZSTD)
      await refuses([layerOf(tar, { compress: 'zstd', chunk: 65536 })], 'E_UNSAFE_PATH')
    }
  })

  test('a failing tar output is E_WRITE_FAILED, not a corrupt layer', async () => {
    const { Writable } = await import('node:stream')
    const { flattenToTar } = await import('./flatten.js')
    const broken = new Writable({
      write(_chunk, _enc, cb) {
        cb(Object.assign(new Error('EPIPE'), { code: 'EPIPE' }))
      },
    })
    broken.on('error', () => {})
    await expect(
      flattenToTar(await layers([{ name: 'a', content: 'x' }]), broken),
    ).rejects.toMatchObject({ code: 'E_WRITE_FAILED' })
  })
})

test("the caller's stream errors pass through unwrapped, with their own code", async () => {
  const tar = await tarLayer([{ name: 'a', content: 'x'.repeat(50_000) }])
  const failing: LayerInput = {
    open: () =>
      Readable.from(
        (async function* () {
          yield tar.subarray(0, 10_000)
          await Promise.resolve()
          throw Object.assign(new Error('blob digest mismatch'), { code: 'E_DIGEST_MISMATCH' })
        })(),
        { objectMode: false },
      ),
  }
  for (const compress of [undefined, 'gzip', 'zstd'] as const) {
    const input = compress
      ? {
          open: () =>
            Readable.from(errorAfter(compress === 'gzip' ? gzipSync(tar) : zstdSync(tar))),
        }
      : failing
    await expect(flattenToDirectory([input], sandbox().dest)).rejects.toMatchObject({
      code: 'E_DIGEST_MISMATCH',
    })
  }
})

async function* errorAfter(compressed: Buffer): AsyncGenerator<Buffer> {
  yield compressed.subarray(0, 100)
  await Promise.resolve()
  throw Object.assign(new Error('blob digest mismatch'), { code: 'E_DIGEST_MISMATCH' })
}
