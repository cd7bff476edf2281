import { execFileSync } from 'node:child_process'
import {
  chmodSync,
  chownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  allowedAdditions,
  compareTrees,
  loopMountUnavailable,
  mountReadOnly,
  normalizeAclHex,
  walkDirectory,
  walkExt4,
  type Tree,
  type TreeEntry,
} from './index.js'

const isRoot = process.getuid?.() === 0

function entry(path: string, over: Partial<TreeEntry> = {}): TreeEntry {
  return {
    path,
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 1,
    sha256: 'aa',
    mtimeSec: 1,
    mtimeNsec: 0,
    xattrs: {},
    inode: Math.floor(Math.random() * 1e9),
    ...over,
  }
}

function tree(...entries: TreeEntry[]): Tree {
  return new Map(entries.map((e) => [e.path, e]))
}

describe('compareTrees', () => {
  const base = (): Tree =>
    tree(
      entry('/', { type: 'directory', mode: 0o755 }),
      entry('/a', { inode: 10 }),
      entry('/b', { inode: 10 }),
      entry('/c', { xattrs: { 'security.capability': '0100' } }),
    )

  it('finds nothing between equal trees', () => {
    expect(compareTrees(base(), base())).toEqual([])
  })

  it('catches a mode change, a content change, an owner change and a lost xattr', () => {
    const actual = base()
    actual.get('/a')!.mode = 0o600
    actual.get('/b')!.sha256 = 'bb'
    actual.get('/c')!.uid = 70000
    actual.get('/c')!.xattrs = {}
    expect(compareTrees(base(), actual)).toEqual([
      { path: '/a', field: 'mode', expected: 0o644, actual: 0o600 },
      { path: '/b', field: 'sha256', expected: 'aa', actual: 'bb' },
      { path: '/c', field: 'uid', expected: 0, actual: 70000 },
      { path: '/c', field: 'xattr security.capability', expected: '0100', actual: undefined },
    ])
  })

  it('catches a broken hard link, sub-second mtimes, and missing and extra paths', () => {
    const actual = base()
    actual.get('/b')!.inode = 11
    actual.get('/c')!.mtimeNsec = 5
    actual.delete('/a')
    actual.set('/d', entry('/d'))
    const diffs = compareTrees(base(), actual)
    expect(diffs.map((d) => `${d.path} ${d.field}`)).toEqual([
      '/a missing',
      '/b hardlinks',
      '/c mtime',
      '/d extra',
    ])
    // Whole-second precision (mkfs.ext4 -d drops nanoseconds) forgives the mtime only.
    expect(compareTrees(base(), actual, { mtimePrecision: 's' })).toHaveLength(3)
  })

  it('reads an ACL with 0 for the id-less entries (debugfs) as the kernel-spelled one', () => {
    const kernel = '0200000001000600ffffffff02000400e803000020000000ffffffff'
    const debugfs = '02000000010006000000000002000400e80300002000000000000000'
    expect(normalizeAclHex(debugfs)).toBe(kernel)
    const a = tree(entry('/f', { xattrs: { 'system.posix_acl_access': kernel } }))
    const b = tree(entry('/f', { xattrs: { 'system.posix_acl_access': debugfs } }))
    b.get('/f')!.inode = a.get('/f')!.inode
    expect(compareTrees(a, b)).toEqual([])
    // but a different named user is a difference
    b.get('/f')!.xattrs['system.posix_acl_access'] = debugfs.replace('e8030000', 'e9030000')
    expect(compareTrees(a, b).map((d) => d.field)).toEqual(['xattr system.posix_acl_access'])
  })

  it('allows exactly the injected files and the directories made for them', () => {
    const expected = base()
    const actual = base()
    actual.set('/etc/banger/init', entry('/etc/banger/init'))
    actual.set('/etc/banger', entry('/etc/banger', { type: 'directory' }))
    actual.set('/etc', entry('/etc', { type: 'directory' }))
    actual.set('/lost+found', entry('/lost+found', { type: 'directory' }))
    actual.set('/stray', entry('/stray'))
    const allowed = allowedAdditions(expected, ['/etc/banger/init'])
    expect(allowed).toEqual(['/etc', '/etc/banger', '/etc/banger/init', '/lost+found'])
    // A directory the source already has stays compared even when listed as injected.
    expected.set('/etc', entry('/etc', { type: 'directory' }))
    expect(allowedAdditions(expected, ['/etc', '/etc/x'])).toEqual(['/etc/x', '/lost+found'])
    expected.delete('/etc')
    expect(compareTrees(expected, actual, { allowed })).toEqual([
      { path: '/stray', field: 'extra', actual: 'file' },
    ])
  })
})

// A source tree with every kind of entry, packed by mkfs.ext4 -d: both readers of the image must
// see the same tree as a walk of the source, and a change made inside the image must show.
describe.skipIf(!isRoot)('walkers on a real ext4 (root)', () => {
  let dir: string
  let src: string
  let image: string

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'banger-eqv-unit-'))
    src = join(dir, 'src')
    image = join(dir, 'image.ext4')
    mkdirSync(join(src, 'etc/deep'), { recursive: true })
    writeFileSync(join(src, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n')
    writeFileSync(join(src, 'etc/big'), Buffer.alloc(300_000, 7))
    linkSync(join(src, 'etc/passwd'), join(src, 'etc/deep/passwd-link'))
    symlinkSync('../passwd', join(src, 'etc/deep/short'))
    symlinkSync('x'.repeat(100), join(src, 'etc/long-dangling'))
    writeFileSync(join(src, 'suid'), '#!/bin/sh\n')
    chownSync(join(src, 'suid'), 70000, 70001)
    chmodSync(join(src, 'suid'), 0o6755)
    execFileSync('mkfifo', [join(src, 'fifo')])
    execFileSync('mknod', [join(src, 'null'), 'c', '1', '3'])
    execFileSync('mknod', [join(src, 'loop9'), 'b', '7', '300'])
    execFileSync('setcap', ['cap_net_raw+ep', join(src, 'suid')])
    execFileSync('setfattr', ['-n', 'user.note', '-v', 'hello', join(src, 'etc')])
    mkdirSync(join(src, 'locked/inner'), { recursive: true })
    writeFileSync(join(src, 'locked/inner/file'), 'x')
    mkdirSync(join(src, 'ro'))
    writeFileSync(join(src, 'ro/file'), 'y')
    chmodSync(join(src, 'ro'), 0o555)
    chmodSync(join(src, 'locked'), 0)
    // mkfs.ext4 -d keeps whole seconds only: give every entry a whole-second mtime.
    execFileSync('find', [src, '-depth', '-exec', 'touch', '-h', '-d', '@1700000000', '{}', '+'])
    lutimesSync(join(src, 'etc/passwd'), 1600000000, 1600000000)
    execFileSync('truncate', ['-s', '32M', image])
    execFileSync('mkfs.ext4', ['-q', '-d', src, image])
    return () => rmSync(dir, { recursive: true, force: true })
  })

  it('debugfs reader sees the source tree exactly, then a mode change made in the image', async () => {
    const expected = await walkDirectory(src)
    expect(expected.get('/suid')).toMatchObject({ mode: 0o6755, uid: 70000, gid: 70001 })
    expect(expected.get('/suid')!.xattrs['security.capability']).toBeDefined()
    expect(expected.get('/loop9')).toMatchObject({ type: 'block', devMajor: 7, devMinor: 300 })
    const actual = await walkExt4(image)
    expect(
      compareTrees(expected, actual, { allowed: ['/lost+found'], allowedFields: ['/ mtime'] }),
    ).toEqual([])

    const changed = join(dir, 'changed.ext4')
    execFileSync('cp', [image, changed])
    execFileSync('debugfs', ['-w', '-R', 'sif /etc/passwd mode 0100600', changed])
    const after = await walkExt4(changed)
    expect(
      compareTrees(expected, after, { allowed: ['/lost+found'], allowedFields: ['/ mtime'] }),
    ).toEqual(
      [
        { path: '/etc/passwd', field: 'mode', expected: 0o644, actual: 0o600 },
        // the other name of the same inode changed with it
        { path: '/etc/deep/passwd-link', field: 'mode', expected: 0o644, actual: 0o600 },
      ].sort((a, b) => (a.path < b.path ? -1 : 1)),
    )
  })

  it('mounted reader (loop, read-only) sees the same tree', async (ctx) => {
    const why = await loopMountUnavailable()
    if (why) ctx.skip(why)
    const expected = await walkDirectory(src)
    const mounted = await mountReadOnly(image)
    try {
      const actual = await walkDirectory(mounted.dir)
      expect(
        compareTrees(expected, actual, { allowed: ['/lost+found'], allowedFields: ['/ mtime'] }),
      ).toEqual([])
    } finally {
      await mounted.unmount()
    }
  })
})
