// The bench tree: files, symlinks, char devices, security.capability and security.selinux
// xattrs, `perDir` entries per directory. Shared by run.mjs (time) and memory.mjs (RSS).
import { execFileSync } from 'node:child_process'
import { mkdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex').toString('base64')
const label = Buffer.from('system_u:object_r:usr_t:s0').toString('base64')

/** The manifest of `total` entries; with `tree`, also lays the files out there. */
export function makeManifest(total, perDir, tree) {
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
    const common = { path, uid: 100_000 + (i % 7), gid: i % 5, mtime: 1_600_000_000 + i }
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

/** mkfs.ext4 -d of `tree` into a fresh 1 GiB `image`. */
export function makeImage(tree, image, total) {
  writeFileSync(image, '')
  truncateSync(image, 1024 * 1024 * 1024)
  execFileSync('mkfs.ext4', [
    '-F',
    '-q',
    '-N',
    String(total * 2),
    '-d',
    tree,
    '-E',
    'root_owner=0:0',
    image,
  ])
}
