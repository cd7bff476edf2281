import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { e2fsck, run, statInode, userTempDir } from '@banger/test-support'
import { applyOwnership, type OwnershipEntry } from '../src/index.js'
import { runAsUserScript } from './helpers.js'

const CAP = Buffer.from('0100000200200000000000000000000000000000', 'hex').toString('base64')

/**
 * A manifest entry, the mode the unprivileged flattener leaves on disk (setuid/setgid/sticky
 * stripped), and the write batch's commands for it on an image whose inodes mkfs made 0:0 with
 * the disk mode (`root`) and on one whose inodes are the test user's (`user`).
 */
type E = OwnershipEntry & { disk?: number; linkTo?: string; root: number; user: number }
let t = 1_600_000_000
const e = (
  path: string,
  type: 'file' | 'directory',
  mode: number,
  owner: [number, number],
  disk: number,
  root: number,
  user: number,
): E => ({ path, type, mode, uid: owner[0], gid: owner[1], mtime: t++, disk, root, user })

const HOSTS = { ...e('/etc/hosts', 'file', 0o644, [0, 0], 0o644, 1, 3), hardlinkGroup: 1 }

// `root`: mtime, plus whatever of mode, uid, gid the image does not hold yet.
// `user`: the user's uid/gid are never the manifest's, so uid + gid + mtime, plus the mode when
// the disk mode differs. mkfs's root_owner=0:0 makes the root directory 0:0 either way.
const MANIFEST: E[] = [
  e('/', 'directory', 0o755, [0, 0], 0o755, 1, 1),
  e('/etc', 'directory', 0o755, [0, 0], 0o755, 1, 3),
  e('/etc/passwd', 'file', 0o644, [0, 0], 0o644, 1, 3),
  e('/etc/shadow', 'file', 0o640, [0, 42], 0o640, 2, 3), // + gid
  HOSTS,
  // A later hardlink: its inode is written through the first path, so no commands at all.
  { ...HOSTS, path: '/etc/hosts-hard', linkTo: '/etc/hosts', root: 0, user: 0 },
  {
    path: '/etc/nomtime',
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    disk: 0o644,
    root: 0,
    user: 2,
  },
  { path: '/etc/motd', type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtime: t++, root: 1, user: 3 },
  e('/bin', 'directory', 0o755, [0, 0], 0o755, 1, 3),
  e('/bin/su', 'file', 0o4755, [0, 0], 0o755, 2, 4), // + mode: setuid stripped on disk
  // + ea_set
  { ...e('/bin/ping', 'file', 0o755, [0, 0], 0o755, 2, 4), xattrs: { 'security.capability': CAP } },
  e('/tmp', 'directory', 0o1777, [0, 0], 0o777, 2, 4), // + mode: sticky stripped on disk
  e('/home', 'directory', 0o755, [0, 0], 0o755, 1, 3),
  e('/home/user', 'directory', 0o700, [1000, 1000], 0o700, 3, 3), // + uid + gid
  e('/home/user/notes', 'file', 0o600, [1000, 1000], 0o600, 3, 3),
  e('/dev', 'directory', 0o755, [0, 0], 0o755, 1, 3),
  // Specials are mknod'ed here: cd, mknod, block[0..1], mode, uid, gid and all four times.
  {
    path: '/dev/null',
    type: 'char',
    mode: 0o666,
    uid: 0,
    gid: 0,
    mtime: t++,
    devMajor: 1,
    devMinor: 3,
    root: 11,
    user: 11,
  },
  // A FIFO: cd, mknod, mode, uid, gid and all four times.
  { path: '/dev/initctl', type: 'fifo', mode: 0o600, uid: 0, gid: 0, mtime: t++, root: 9, user: 9 },
]
const sum = (key: 'root' | 'user'): number => MANIFEST.reduce((n, x) => n + x[key], 0)

/**
 * Lays the tree down as the test user, as the flattener does, and runs mkfs.ext4 -d as that user:
 * inside `unshare --map-root-user` (every inode 0:0) or not (every inode the user's).
 */
async function buildImage(
  mkfs: 'userns' | 'user',
  { manifest = MANIFEST, mtimes = false }: { manifest?: E[]; mtimes?: boolean } = {},
): Promise<string> {
  const dir = userTempDir(`ownership-settled-${mkfs}`)
  const image = join(dir, 'rootfs.ext4')
  const argv = ['-F', '-q', '-d', 'tree', '-E', 'root_owner=0:0', image]
  const command = mkfs === 'userns' ? ['unshare', '--map-root-user', 'mkfs.ext4'] : ['mkfs.ext4']
  const out = (await runAsUserScript(
    `const manifest = ${JSON.stringify(manifest)}
     for (const e of manifest) {
       const p = join('tree', e.path)
       if (e.type === 'directory') fs.mkdirSync(p, { recursive: true })
       else if (e.linkTo) fs.linkSync(join('tree', e.linkTo), p)
       else if (e.type === 'file') fs.writeFileSync(p, e.path)
       else if (e.type === 'symlink') fs.symlinkSync('passwd', p)
       if (e.disk !== undefined && !e.linkTo) fs.chmodSync(p, e.disk)
     }
     // As the flattener leaves them: children first, so a directory keeps its own time.
     if (${mtimes})
       for (const e of [...manifest].reverse())
         if (e.mtime !== undefined && !e.linkTo && (e.type !== 'char' && e.type !== 'fifo'))
           fs.lutimesSync(join('tree', e.path), e.mtime, e.mtime)
     fs.writeFileSync(${JSON.stringify(image)}, '')
     fs.truncateSync(${JSON.stringify(image)}, 64 * 1024 * 1024)
     const [cmd, ...args] = ${JSON.stringify([...command, ...argv])}
     execFileSync(cmd, args)
     return true`,
    dir,
  )) as { result?: boolean; error?: unknown }
  expect(out.error).toBeUndefined()
  return image
}

/** Every entry's type, mode, owner and mtime as the image holds them. */
async function readBack(image: string): Promise<unknown[]> {
  const out = []
  for (const x of MANIFEST) {
    const s = await statInode(image, x.path)
    const mtime = x.mtime === undefined ? {} : { mtime: s.mtime } // else mkfs's, from the tree
    out.push({ path: x.path, type: s.type, mode: s.mode, uid: s.uid, gid: s.gid, ...mtime })
  }
  return out
}
const wanted = MANIFEST.map(({ path, type, mode, uid, gid, mtime }) => ({
  path,
  type,
  mode,
  uid,
  gid,
  ...(mtime === undefined ? {} : { mtime }),
}))

describe('applyOwnership writes only what the image does not hold', () => {
  it('leaves out mode, uid and gid where mkfs in a user namespace already wrote them', async () => {
    const image = await buildImage('userns')
    // The listing says so: the image as mkfs left it, every inode 0:0.
    expect((await statInode(image, '/home/user/notes')).uid).toBe(0)
    const report = await applyOwnership(image, MANIFEST)
    expect(report).toEqual({
      entries: MANIFEST.length,
      commands: sum('root'),
      verified: MANIFEST.length,
    })
    expect(sum('root')).toBe(42) // against 65 for the user-owned image below
    expect(await readBack(image)).toEqual(wanted)
    const fsck = await e2fsck(image)
    expect(fsck.clean, fsck.output).toBe(true)
  })

  it('fixes the entries whose listed mode or owner is not the manifest one', async () => {
    const image = await buildImage('userns')
    // What the listing will read for these three differs from the manifest: each costs a command.
    for (const cmd of ['sif /etc/passwd uid 5', 'sif /etc/passwd mode 0100600', 'sif /bin gid 7'])
      await run('debugfs', ['-w', '-R', cmd, image], { check: true })
    const report = await applyOwnership(image, MANIFEST)
    expect(report).toEqual({
      entries: MANIFEST.length,
      commands: sum('root') + 3,
      verified: MANIFEST.length,
    })
    expect(await readBack(image)).toEqual(wanted)
  })

  it('still writes every owner on an image mkfs made as the user without a namespace', async () => {
    const image = await buildImage('user')
    expect((await statInode(image, '/home/user/notes')).uid).not.toBe(0)
    const report = await applyOwnership(image, MANIFEST)
    expect(report).toEqual({
      entries: MANIFEST.length,
      commands: sum('user'),
      verified: MANIFEST.length,
    })
    expect(sum('user')).toBe(65)
    expect(await readBack(image)).toEqual(wanted)
  })
})

describe('mtimesInImage and verify: later', () => {
  /** Owner entries whose mtime mkfs copies from the tree: all but `/` and the two specials. */
  const copied = MANIFEST.filter(
    (x) =>
      x.mtime !== undefined &&
      !x.linkTo &&
      x.path !== '/' &&
      x.type !== 'char' &&
      x.type !== 'fifo',
  ).length

  it('leaves out the mtimes mkfs copied from the tree, and the read-back finds them right', async () => {
    const image = await buildImage('userns', { mtimes: true })
    const report = await applyOwnership(image, MANIFEST, { mtimesInImage: true, verify: 'later' })
    expect(copied).toBe(13)
    expect(report).toMatchObject({ entries: MANIFEST.length, commands: sum('root') - copied })
    expect(report.verified).toBe(0)
    expect(await report.readBack!()).toBe(MANIFEST.length)
    expect(await readBack(image)).toEqual(wanted)
    const fsck = await e2fsck(image)
    expect(fsck.clean, fsck.output).toBe(true)
  })

  it('still writes an mtime a 32-bit i_mtime cannot hold', async () => {
    const late = 2 ** 31 + 100 // 2038: mkfs 1.47 keeps only the low 32 bits
    const manifest = MANIFEST.map((x) => (x.path === '/etc/passwd' ? { ...x, mtime: late } : x))
    const image = await buildImage('userns', { manifest, mtimes: true })
    const report = await applyOwnership(image, manifest, { mtimesInImage: true })
    expect(report).toEqual({
      entries: MANIFEST.length,
      commands: sum('root') - copied + 1,
      verified: MANIFEST.length,
    })
    expect((await statInode(image, '/etc/passwd')).mtime).toBe(late)
  })

  it('the read-back catches an mtime the tree did not carry', async () => {
    const image = await buildImage('userns', { mtimes: true })
    // The manifest says one second later than the tree had: the batch trusts the image, the
    // read-back must not.
    const manifest = MANIFEST.map((x) => (x.path === '/bin/su' ? { ...x, mtime: x.mtime! + 1 } : x))
    const report = await applyOwnership(image, manifest, { mtimesInImage: true, verify: 'later' })
    const err = await report.readBack!().catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'E_OWNERSHIP_MISMATCH' })
    expect(String((err as Error).message)).toContain('/bin/su')
    // verify: true reports it the same way, from applyOwnership itself.
    const again = await buildImage('userns', { mtimes: true })
    await expect(applyOwnership(again, manifest, { mtimesInImage: true })).rejects.toMatchObject({
      code: 'E_OWNERSHIP_MISMATCH',
    })
  })
})
