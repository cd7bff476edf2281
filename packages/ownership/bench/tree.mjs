// The bench tree: files, symlinks, char devices, security.capability and security.selinux
// xattrs, `perDir` entries per directory. Shared by run.mjs (time) and memory.mjs (RSS).
import { execFileSync } from 'node:child_process'
import { mkdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** Who the manifest says owns the files: `mixed` (ids 100000+, like a remapped image), `root`. */
export const OWNERS = ['mixed', 'root']
/**
 * Who runs mkfs.ext4 -d: `self` (this process; the tree is its own), `userns` (the test user
 * inside `unshare --map-root-user`: every inode 0:0), `user` (the test user, no namespace: every
 * inode the user's).
 */
export const MKFS = ['self', 'userns', 'user']

const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex').toString('base64')
const label = Buffer.from('system_u:object_r:usr_t:s0').toString('base64')

/**
 * The manifest of `total` entries; with `tree`, also lays the files out there. With `owners`
 * `root`, everything is 0:0 but every 100th file (100:100), as in a distribution image.
 */
export function makeManifest(total, perDir, tree, owners = 'mixed') {
  if (!OWNERS.includes(owners)) throw new Error(`owners: one of ${OWNERS.join(', ')}`)
  const entries = [
    { path: '/', type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 1_700_000_000 },
  ]
  if (tree) mkdirSync(tree)
  let dir = ''
  for (let i = 0; entries.length < total; i++) {
    if (i % perDir === 0) {
      dir = `/d${i / perDir}`
      if (tree) mkdirSync(join(tree, dir))
      entries.push({
        path: dir,
        type: 'directory',
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
      })
      continue
    }
    const path = `${dir}/e${i}`
    const [uid, gid] =
      owners === 'mixed' ? [100_000 + (i % 7), i % 5] : i % 100 === 1 ? [100, 100] : [0, 0]
    const common = { path, uid, gid, mtime: 1_600_000_000 + i }
    if (i % 50 === 0)
      entries.push({ ...common, type: 'char', mode: 0o666, devMajor: 1, devMinor: i % 256 })
    else if (i % 10 === 0) {
      if (tree) symlinkSync('target', join(tree, path))
      entries.push({ ...common, type: 'symlink', mode: 0o777 })
    } else {
      if (tree) writeFileSync(join(tree, path), '')
      const xattrs =
        i % 20 === 1
          ? { 'security.capability': cap }
          : i % 3 === 0
            ? { 'security.selinux': label }
            : undefined
      entries.push({
        ...common,
        type: 'file',
        mode: i % 11 === 0 ? 0o4755 : 0o644,
        ...(xattrs ? { xattrs } : {}),
      })
    }
  }
  return entries
}

/**
 * mkfs.ext4 -d of `tree` into a fresh 1 GiB `image`, run as `mkfs` says (MKFS). For the test
 * user, tree and image are handed to it first; their directory must let it through.
 */
export async function makeImage(tree, image, total, mkfs = 'self') {
  if (!MKFS.includes(mkfs)) throw new Error(`mkfs: one of ${MKFS.join(', ')}`)
  writeFileSync(image, '')
  truncateSync(image, 1024 * 1024 * 1024)
  const args = ['-F', '-q', '-N', String(total * 2), '-d', tree, '-E', 'root_owner=0:0', image]
  if (mkfs === 'self') return void execFileSync('mkfs.ext4', args)
  // Loaded here only: memory.mjs measures RSS with this module loaded.
  const { runAsUser, testUser } = await import('@banger/test-support')
  const { uid, gid } = testUser()
  execFileSync('chown', ['-R', `${uid}:${gid}`, tree, image])
  const [cmd, ...rest] =
    mkfs === 'userns'
      ? ['unshare', '--map-root-user', 'mkfs.ext4', ...args]
      : ['mkfs.ext4', ...args]
  const { code, stderr } = await runAsUser(cmd, rest, { timeoutMs: 600_000 })
  if (code !== 0) throw new Error(`${cmd} failed (${code}): ${stderr}`)
}
