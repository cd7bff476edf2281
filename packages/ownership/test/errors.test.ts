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

  it('reports every field the read-back finds different, from ls -p, stat and ea_get', async () => {
    const image = freshImage()
    // Two records for one path: the later one is what the image ends up holding, so every field
    // the first one sets differently must be reported for it, and nothing for the second.
    const long = (c: string): string => Buffer.from(c.repeat(50)).toString('base64')
    const first: OwnershipEntry = {
      ...base[2]!,
      mode: 0o644,
      mtime: 1_000_000_000,
      xattrs: { 'user.short': Buffer.from('one').toString('base64'), 'user.long': long('x') },
    }
    const second: OwnershipEntry = {
      ...base[2]!,
      mode: 0o600,
      mtime: 1_000_000_001,
      xattrs: { 'user.short': Buffer.from('two').toString('base64'), 'user.long': long('y') },
    }
    const err = await applyOwnership(image, [...base.slice(0, 2), first, second]).catch(
      (e: unknown) => e,
    )
    expect(err).toMatchObject({ code: 'E_OWNERSHIP_MISMATCH' })
    const found = (err as { mismatches: { field: string }[] }).mismatches
    expect([...found].sort((a, b) => a.field.localeCompare(b.field))).toEqual([
      { path: '/etc/hostname', field: 'mode', expected: '0644', actual: '0600' },
      { path: '/etc/hostname', field: 'mtime', expected: '1000000000', actual: '1000000001' },
      {
        path: '/etc/hostname',
        field: 'xattr user.long', // 50 bytes: read with ea_get
        expected: Buffer.from('x'.repeat(50)).toString('hex'),
        actual: Buffer.from('y'.repeat(50)).toString('hex'),
      },
      {
        path: '/etc/hostname',
        field: 'xattr user.short', // under 40 bytes: read from stat
        expected: Buffer.from('one').toString('hex'),
        actual: Buffer.from('two').toString('hex'),
      },
    ])
  })

  it('reports an xattr the manifest does not have', async () => {
    const image = freshImage()
    const labelled = { ...base[2]!, xattrs: { 'user.a': Buffer.from('v').toString('base64') } }
    const err = await applyOwnership(image, [...base, labelled, base[2]!]).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'E_OWNERSHIP_MISMATCH' })
    expect((err as { mismatches: unknown[] }).mismatches).toEqual([
      { path: '/etc/hostname', field: 'xattr names', expected: '(none)', actual: 'user.a' },
      { path: '/etc/hostname', field: 'xattr names', expected: '(none)', actual: 'user.a' },
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

  it('stops debugfs and rejects when the signal aborts mid-batch', async () => {
    const image = freshImage()
    const entries: OwnershipEntry[] = [
      ...base,
      ...Array.from({ length: 3000 }, (_, i) => ({
        path: `/etc/fifo${i}`,
        type: 'fifo' as const,
        mode: 0o600,
        uid: i,
        gid: i,
      })),
    ]
    const ac = new AbortController()
    const started = Date.now()
    const applying = applyOwnership(image, entries, { signal: ac.signal })
    setTimeout(() => ac.abort(), 20)
    await expect(applying).rejects.toMatchObject({ name: 'AbortError' })
    // Unstopped, the listing, 3000 mknods with their sifs and the read-back take over a second.
    expect(Date.now() - started).toBeLessThan(1000)
  })

  it('honours an aborted signal before starting', async () => {
    const image = freshImage()
    const ac = new AbortController()
    ac.abort()
    await expect(applyOwnership(image, base, { signal: ac.signal })).rejects.toThrow(/abort/i)
  })
})

describe('applyOwnership names', () => {
  it('verifies names holding the prompt text, quotes and UTF-8', async () => {
    // debugfs's command loop prints `debugfs:  ` before each command; a name holding it shows in
    // `ls -p` output mid-line and must not be read as a prompt.
    const names = ['debugfs:  odd', 'debugfs: one', 'caf\u00e9 \u65e5\u672c', 'q"uote']
    const tree = join(dir, 'names-tree')
    mkdirSync(join(tree, 'd'), { recursive: true })
    for (const n of names) writeFileSync(join(tree, 'd', n), n)
    const image = join(dir, 'names.ext4')
    writeFileSync(image, '')
    await run('truncate', ['-s', '64M', image])
    await run('mkfs.ext4', ['-F', '-q', '-d', tree, '-E', 'root_owner=0:0', image])
    const entries: OwnershipEntry[] = [
      base[0]!,
      { path: '/d', type: 'directory', mode: 0o750, uid: 1, gid: 2 },
      ...names.map((n, i) => ({
        path: `/d/${n}`,
        type: 'file' as const,
        mode: 0o600 + i,
        uid: 1000 + i,
        gid: 2000 + i,
        mtime: 1_600_000_000 + i,
      })),
    ]
    await expect(applyOwnership(image, entries)).resolves.toEqual({
      entries: entries.length,
      commands: expect.any(Number) as unknown,
      verified: entries.length,
    })
    const s = await statInode(image, `/d/${names[2]!}`)
    expect([s.mode, s.uid, s.gid, s.mtime]).toEqual([0o602, 1002, 2002, 1_600_000_002])
  })
})
