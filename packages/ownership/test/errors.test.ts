import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { run, statInode } from '@banger/test-support'
import { applyOwnership, type OwnershipEntry } from '../src/index.js'

let dir: string
let pristine: string
const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex')

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ownership-errors-'))
  mkdirSync(join(dir, 'tree/etc'), { recursive: true })
  writeFileSync(join(dir, 'tree/etc/hostname'), 'h\n')
  pristine = join(dir, 'pristine.ext4')
  writeFileSync(pristine, '')
  await run('truncate', ['-s', '64M', pristine])
  await run('mkfs.ext4', ['-F', '-q', '-d', join(dir, 'tree'), '-E', 'root_owner=0:0', pristine])
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

let n = 0
function freshImage(): string {
  const copy = join(dir, `img-${n++}.ext4`)
  writeFileSync(copy, readFileSync(pristine))
  return copy
}

const base: OwnershipEntry[] = [
  { path: '/', type: 'directory', mode: 0o755, uid: 0, gid: 0 },
  { path: '/etc', type: 'directory', mode: 0o755, uid: 0, gid: 0 },
  { path: '/etc/hostname', type: 'file', mode: 0o644, uid: 0, gid: 0 },
]

describe('applyOwnership ids', () => {
  it('stores ids up to 2^32-2 (debugfs shows them signed)', async () => {
    const image = freshImage()
    const entries = [...base.slice(0, 2), { ...base[2]!, uid: 4_294_967_294, gid: 3_000_000_000 }]
    await expect(applyOwnership(image, entries)).resolves.toMatchObject({ verified: 3 })
    const out = (await run('debugfs', ['-R', 'stat /etc/hostname', image])).stdout
    expect(out).toMatch(/User:\s+-2\s+Group:\s+-1294967296\s/)
  })
})

describe('applyOwnership reproducibility', () => {
  it('gives byte-identical images from identical inputs, device nodes included', async () => {
    const entries: OwnershipEntry[] = [
      ...base,
      {
        path: '/etc/null',
        type: 'char',
        mode: 0o666,
        uid: 0,
        gid: 0,
        mtime: 1_500_000_000,
        devMajor: 1,
        devMinor: 3,
      },
      { path: '/etc/fifo', type: 'fifo', mode: 0o600, uid: 0, gid: 0 },
      {
        ...base[2]!,
        path: '/etc/hostname',
        xattrs: { 'security.capability': 'AQAAAgAgAAAAAAAAAAAAAAAAAAA=' },
      },
    ]
    const a = freshImage()
    const b = freshImage()
    await applyOwnership(
      a,
      entries.filter((e, i) => i !== 2),
    )
    // mknod stamps the wall clock; the pinned times must make that invisible.
    await new Promise((r) => setTimeout(r, 1100))
    await applyOwnership(
      b,
      entries.filter((e, i) => i !== 2),
    )
    expect(sha(b)).toBe(sha(a))
  })
})

describe('applyOwnership failures', () => {
  it('names the path when a debugfs command fails inside the batch (debugfs exits 0)', async () => {
    const image = freshImage()
    const entries = [
      ...base,
      { path: '/etc/not there', type: 'file', mode: 0o644, uid: 1, gid: 1 } as const,
    ]
    const err = await applyOwnership(image, entries).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'E_DEBUGFS_COMMAND_FAILED' })
    expect((err as Error).message).toMatch(
      /^debugfs failed on \/etc\/not there: `sif "\/etc\/not there" mode 0100644` printed ".*File not found/,
    )
    expect(
      (err as { failures: { path: string }[] }).failures.every((f) => f.path === '/etc/not there'),
    ).toBe(true)
  })

  it('refuses a name debugfs cannot encode before touching the image', async () => {
    const image = freshImage()
    const before = sha(image)
    const entries = [
      ...base,
      { path: '/etc/new\nline', type: 'file', mode: 0o644, uid: 0, gid: 0 } as const,
    ]
    await expect(applyOwnership(image, entries)).rejects.toMatchObject({
      code: 'E_UNENCODABLE_NAME',
    })
    await expect(
      applyOwnership(image, [{ ...base[0]!, xattrs: { 'user.a\rb': 'YQ==' } }]),
    ).rejects.toMatchObject({ code: 'E_INVALID_ENTRY' })
    expect(sha(image)).toBe(before)
  })

  it('refuses malformed entries with E_INVALID_ENTRY', async () => {
    const image = freshImage()
    for (const bad of [
      { path: 'etc', type: 'directory', mode: 0o755, uid: 0, gid: 0 },
      { path: '/etc/../x', type: 'file', mode: 0o644, uid: 0, gid: 0 },
      { path: '/x', type: 'file', mode: 0o10000, uid: 0, gid: 0 },
      { path: '/x', type: 'file', mode: 0o644, uid: -1, gid: 0 },
      { path: '/x', type: 'char', mode: 0o644, uid: 0, gid: 0 },
      {
        path: '/x',
        type: 'file',
        mode: 0o644,
        uid: 0,
        gid: 0,
        xattrs: { 'user.x': 'not base64!' },
      },
    ] as OwnershipEntry[]) {
      await expect(applyOwnership(image, [bad])).rejects.toMatchObject({ code: 'E_INVALID_ENTRY' })
    }
  })

  it('refuses, before writing, a path whose type in the image differs from the manifest', async () => {
    const image = freshImage()
    const before = sha(image)
    const entries = [...base.slice(0, 2), { ...base[2]!, type: 'directory' } as const]
    await expect(applyOwnership(image, entries)).rejects.toMatchObject({
      code: 'E_TREE_MISMATCH',
      mismatches: [{ path: '/etc/hostname', field: 'type', expected: 'directory', actual: 'file' }],
    })
    expect(sha(image)).toBe(before)
  })

  it('refuses to mknod over an existing name instead of adding a second entry', async () => {
    const image = freshImage()
    const entries = [
      ...base.slice(0, 2),
      { path: '/etc/hostname', type: 'fifo', mode: 0o600, uid: 0, gid: 0 } as const,
    ]
    await expect(applyOwnership(image, entries)).rejects.toMatchObject({
      code: 'E_SPECIAL_EXISTS',
      path: '/etc/hostname',
    })
    expect((await statInode(image, '/etc/hostname')).type).toBe('file')
  })

  it('reports a read-back mismatch with the path and field', async () => {
    const image = freshImage()
    // Two records for one path: the later uid wins on disk, so the earlier one cannot verify.
    const entries = [...base, { ...base[2]!, uid: 42 }]
    const err = await applyOwnership(image, entries).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'E_OWNERSHIP_MISMATCH' })
    expect((err as { mismatches: unknown[] }).mismatches).toEqual([
      { path: '/etc/hostname', field: 'uid', expected: '0', actual: '42' },
    ])
  })

  it('finds a name listed twice in its directory on read-back', async () => {
    const image = freshImage()
    // debugfs's ln links without checking the name: a second "hostname" entry in /etc.
    await run('debugfs', ['-w', '-R', 'ln /etc/hostname /etc', image])
    const err = await applyOwnership(image, base).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'E_OWNERSHIP_MISMATCH' })
    expect((err as { mismatches: unknown[] }).mismatches).toContainEqual({
      path: '/etc/hostname',
      field: 'directory entry',
      expected: 'one name',
      actual: '2 names',
    })
  })

  it('says how to get debugfs when it is missing, and fails loudly on a non-ext4 image', async () => {
    const image = freshImage()
    await expect(
      applyOwnership(image, base, { debugfs: '/nonexistent/debugfs' }),
    ).rejects.toMatchObject({
      code: 'E_DEBUGFS_MISSING',
      hint: expect.stringMatching(/e2fsprogs/) as unknown,
    })
    const junk = join(dir, 'junk.img')
    writeFileSync(junk, Buffer.alloc(1 << 20))
    await expect(applyOwnership(junk, base)).rejects.toMatchObject({ code: 'E_DEBUGFS_FAILED' })
  })

  it('honours an aborted signal before starting', async () => {
    const image = freshImage()
    const ac = new AbortController()
    ac.abort()
    await expect(applyOwnership(image, base, { signal: ac.signal })).rejects.toThrow(/abort/i)
  })
})
