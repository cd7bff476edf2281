import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  e2fsck,
  getImageXattr,
  listImageDir,
  readImageFile,
  run,
  statInode,
  userTempDir,
} from '@banger/test-support'
import type { OwnershipEntry } from '../src/index.js'
import { runAsUserScript } from './helpers.js'

const b64 = (b: Buffer | string): string => Buffer.from(b).toString('base64')
// VFS_CAP_REVISION_2, permitted = CAP_NET_RAW (bit 13): what `setcap cap_net_raw+p` writes.
const CAP_NET_RAW = Buffer.from('0100000200200000000000000000000000000000', 'hex')
const SELINUX = Buffer.from('system_u:object_r:bin_t:s0\0')
// u::rwx,u:1000:rw-,g::r-x,m::rwx,o::r-x as the kernel (and so tar) gives it: ffffffff ids
const ACL = Buffer.from(
  '02000000' +
    '01000700ffffffff' +
    '02000600e8030000' +
    '04000500ffffffff' +
    '10000700ffffffff' +
    '20000500ffffffff',
  'hex',
)

type E = OwnershipEntry & { content?: string; target?: string; linkTo?: string }
let t = 1_600_000_000
const d = (path: string, mode: number, uid = 0, gid = 0): E => ({
  path,
  type: 'directory',
  mode,
  uid,
  gid,
  mtime: t++,
})
const f = (path: string, mode: number, uid = 0, gid = 0, extra: Partial<E> = {}): E => ({
  path,
  type: 'file',
  mode,
  uid,
  gid,
  mtime: t++,
  content: `content of ${path}`,
  ...extra,
})

const HOSTNAME = f('/etc/hostname', 0o644, 0, 0, { hardlinkGroup: 1 })

/** The manifest; `content`/`target`/`linkTo` tell the script what to put on disk. */
const MANIFEST: E[] = [
  d('/', 0o755),
  d('/bin', 0o755),
  f('/bin/su', 0o4755),
  f('/bin/ping', 0o755, 0, 0, { xattrs: { 'security.capability': b64(CAP_NET_RAW) } }),
  d('/usr', 0o755),
  f('/usr/wall', 0o2755, 0, 5),
  f('/usr/labelled', 0o644, 0, 0, {
    xattrs: {
      'security.selinux': b64(SELINUX),
      'user.comment': b64('two words "quoted"'),
      'trusted.plain': b64('abc'),
    },
  }),
  d('/tmp', 0o1777),
  f('/tmp/acl', 0o664, 0, 0, { xattrs: { 'system.posix_acl_access': b64(ACL) } }),
  d('/home', 0o755),
  d('/home/big', 0o700, 100_000, 100_000),
  f('/home/big/file', 0o640, 165_536, 2_000_000_000),
  d('/etc', 0o755),
  HOSTNAME,
  { ...HOSTNAME, path: '/etc/hostname-hard', linkTo: '/etc/hostname' },
  {
    path: '/etc/link',
    type: 'symlink',
    mode: 0o777,
    uid: 1000,
    gid: 1001,
    mtime: t++,
    target: 'hostname',
  },
  f('/etc/odd "name" here', 0o600, 7, 7),
  d('/dev', 0o755),
  {
    path: '/dev/null',
    type: 'char',
    mode: 0o666,
    uid: 0,
    gid: 0,
    mtime: t++,
    devMajor: 1,
    devMinor: 3,
  },
  {
    path: '/dev/sda',
    type: 'block',
    mode: 0o660,
    uid: 0,
    gid: 6,
    mtime: t++,
    devMajor: 8,
    devMinor: 0,
  },
  {
    path: '/dev/nvme0n1p9',
    type: 'block',
    mode: 0o660,
    uid: 0,
    gid: 6,
    mtime: t++,
    devMajor: 259,
    devMinor: 70_000,
  },
  d('/run', 0o755),
  { path: '/run/initctl', type: 'fifo', mode: 0o600, uid: 0, gid: 0, mtime: t++ },
  d('/secret', 0o000),
  d('/secret/inner', 0o755, 3, 3),
  f('/secret/inner/data', 0o644, 3, 3),
]

describe('applyOwnership as an unprivileged user', () => {
  it('restores every kind of entry, and the image reads back as the manifest says', async () => {
    const dir = userTempDir('ownership-every')
    const image = join(dir, 'rootfs.ext4')
    // The unprivileged user lays the tree down as the flattener does: everything owned by the
    // user, u+rwx dirs and u+rw files, no specials, no xattrs; then mkfs and applyOwnership.
    const out = (await runAsUserScript(
      `const manifest = ${JSON.stringify(MANIFEST)}
       const tree = join(process.cwd(), 'tree')
       for (const e of manifest) {
         const p = join(tree, e.path)
         if (e.type === 'directory') fs.mkdirSync(p, { recursive: true, mode: 0o700 })
         else if (e.linkTo) fs.linkSync(join(tree, e.linkTo), p)
         else if (e.type === 'file') fs.writeFileSync(p, e.content, { mode: 0o600 })
         else if (e.type === 'symlink') fs.symlinkSync(e.target, p)
       }
       fs.writeFileSync(${JSON.stringify(image)}, '')
       fs.truncateSync(${JSON.stringify(image)}, 64 * 1024 * 1024)
       execFileSync('mkfs.ext4', ['-F', '-q', '-d', tree, '-E', 'root_owner=0:0', ${JSON.stringify(image)}])
       return await lib.applyOwnership(${JSON.stringify(image)}, manifest)`,
      dir,
    )) as { result?: { entries: number; commands: number; verified: number }; error?: unknown }
    expect(out.error).toBeUndefined()
    expect(out.result).toMatchObject({ entries: MANIFEST.length, verified: MANIFEST.length })

    const fsck = await e2fsck(image)
    expect(fsck.clean, fsck.output).toBe(true)
    for (const e of MANIFEST) {
      if (e.path.includes('"')) continue // the harness's quote() refuses quotes; checked below
      const s = await statInode(image, e.path)
      expect({
        path: e.path,
        type: s.type,
        mode: s.mode,
        uid: s.uid,
        gid: s.gid,
        mtime: s.mtime,
      }).toEqual({
        path: e.path,
        type: e.type,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime: e.mtime,
      })
      if (e.type === 'char' || e.type === 'block')
        expect([s.devMajor, s.devMinor]).toEqual([e.devMajor, e.devMinor])
      if (e.type === 'file' && e.hardlinkGroup === undefined) expect(s.links).toBe(1)
      if (e.type === 'file' && !e.linkTo)
        expect((await readImageFile(image, e.path)).toString()).toBe(e.content)
    }
    // debugfs's own quoting: "" inside quotes is one quote.
    const odd = (await run('debugfs', ['-R', 'stat "/etc/odd ""name"" here"', image])).stdout
    expect(odd).toMatch(/Type: regular\s+Mode:\s+0600/)
    expect(odd).toMatch(/User:\s+7\s+Group:\s+7\s/)
    const host = await statInode(image, '/etc/hostname')
    const hard = await statInode(image, '/etc/hostname-hard')
    expect(hard.inode).toBe(host.inode)
    expect(host.links).toBe(2)
    expect((await statInode(image, '/etc/link')).linkTarget).toBe('hostname')
    expect(await getImageXattr(image, '/bin/ping', 'security.capability')).toEqual(CAP_NET_RAW)
    expect(await getImageXattr(image, '/usr/labelled', 'security.selinux')).toEqual(SELINUX)
    expect((await getImageXattr(image, '/usr/labelled', 'user.comment'))?.toString()).toBe(
      'two words "quoted"',
    )
    expect((await getImageXattr(image, '/usr/labelled', 'trusted.plain'))?.toString()).toBe('abc')
    expect(await getImageXattr(image, '/bin/su', 'security.capability')).toBeUndefined()
    expect(await listImageDir(image, '/secret/inner')).toEqual(['data'])
    expect(await listImageDir(image, '/dev')).toEqual(['null', 'nvme0n1p9', 'sda'])
  })
})
