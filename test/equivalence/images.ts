import { execFileSync } from 'node:child_process'
import {
  chmodSync,
  chownSync,
  linkSync,
  mkdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { buildImage, type OciImage } from '../../test-support/dist/index.js'

const sh = (cmd: string, args: string[]): void => {
  execFileSync(cmd, args, { stdio: 'pipe' })
}

/**
 * Upper layers delete files and directories, replace a directory wholesale, swap a file for a
 * directory and back, and re-create a deleted directory: every whiteout umoci writes.
 */
export function whiteoutImage(): Promise<OciImage> {
  return buildImage([
    (r) => {
      mkdirSync(join(r, 'etc'), { recursive: true })
      writeFileSync(join(r, 'etc/a'), 'a\n')
      writeFileSync(join(r, 'etc/b'), 'b\n')
      mkdirSync(join(r, 'opt/app/sub'), { recursive: true })
      writeFileSync(join(r, 'opt/app/x'), 'x')
      writeFileSync(join(r, 'opt/app/sub/z'), 'z')
      mkdirSync(join(r, 'var/lib/thing/deep'), { recursive: true })
      writeFileSync(join(r, 'var/lib/thing/1'), 'one')
      writeFileSync(join(r, 'var/lib/thing/deep/2'), 'two')
      writeFileSync(join(r, 'file-to-dir'), 'was a file')
      mkdirSync(join(r, 'dir-to-file'))
      writeFileSync(join(r, 'dir-to-file/child'), 'c')
      mkdirSync(join(r, 'keep'))
      writeFileSync(join(r, 'keep/gone'), 'g')
      writeFileSync(join(r, 'keep/stays'), 's')
    },
    (r) => {
      unlinkSync(join(r, 'etc/a'))
      rmSync(join(r, 'opt/app'), { recursive: true })
      // Replaced wholesale: nothing of the old directory may survive.
      rmSync(join(r, 'var/lib/thing'), { recursive: true })
      mkdirSync(join(r, 'var/lib/thing'))
      writeFileSync(join(r, 'var/lib/thing/new'), 'new')
      chmodSync(join(r, 'var/lib/thing'), 0o700)
      unlinkSync(join(r, 'file-to-dir'))
      mkdirSync(join(r, 'file-to-dir'))
      writeFileSync(join(r, 'file-to-dir/inside'), 'i')
      rmSync(join(r, 'dir-to-file'), { recursive: true })
      writeFileSync(join(r, 'dir-to-file'), 'now a file')
    },
    (r) => {
      mkdirSync(join(r, 'opt/app'))
      writeFileSync(join(r, 'opt/app/again'), 'again')
      unlinkSync(join(r, 'keep/gone'))
      writeFileSync(join(r, 'etc/b'), 'b changed\n')
    },
  ])
}

// user::rw- user:1000:r-- group::r-- mask::r-- other::---
const ACL_NAMED_USER =
  '0x0200000001000600ffffffff02000400e803000004000400ffffffff10000400ffffffff20000000ffffffff'
// default: user::rwx group::r-x other::r-x
const ACL_DEFAULT = '0x0200000001000700ffffffff04000500ffffffff20000500ffffffff'

/**
 * setuid/setgid, ids above 65535, hard links made across layers, a FIFO, char and block devices
 * (one with a minor above 255), `security.capability`, `user.*` and POSIX ACL xattrs, a mode-0000 and a
 * read-only (0555) directory with children, a sticky directory, short, long and dangling
 * symlinks, an empty file.
 */
export function specialFilesImage(): Promise<OciImage> {
  return buildImage([
    (r) => {
      mkdirSync(join(r, 'bin'))
      for (const [name, mode] of [
        ['suid', 0o4755],
        ['sgid', 0o2755],
        ['both', 0o6711],
        ['capped', 0o755],
      ] as const) {
        writeFileSync(join(r, 'bin', name), `#!/bin/sh\necho ${name}\n`)
        chmodSync(join(r, 'bin', name), mode)
      }
      sh('setcap', ['cap_net_bind_service,cap_net_raw+ep', join(r, 'bin/capped')])
      mkdirSync(join(r, 'home/big'), { recursive: true })
      writeFileSync(join(r, 'home/big/owned'), 'big ids')
      chownSync(join(r, 'home/big/owned'), 100000, 200000)
      chownSync(join(r, 'home/big'), 65536, 65537)
      const own = join(r, 'home/big/suid-big')
      writeFileSync(own, 'x')
      chownSync(own, 70000, 70001)
      chmodSync(own, 0o6755)
      mkdirSync(join(r, 'data'))
      writeFileSync(join(r, 'data/hl-src'), 'linked content\n')
      linkSync(join(r, 'data/hl-src'), join(r, 'data/hl-same-layer'))
      writeFileSync(join(r, 'data/empty'), '')
      writeFileSync(join(r, 'data/big'), Buffer.alloc(200_000, 'q'))
      sh('setfattr', ['-n', 'user.comment', '-v', 'hello xattr', join(r, 'data/big')])
      sh('setfattr', ['-n', 'user.dir', '-v', '0x00ff10', join(r, 'data')])
      // POSIX ACLs (what setfacl writes): a named user on a file, a default ACL on a directory.
      writeFileSync(join(r, 'data/acl-file'), 'acl')
      sh('setfattr', [
        '-n',
        'system.posix_acl_access',
        '-v',
        ACL_NAMED_USER,
        join(r, 'data/acl-file'),
      ])
      mkdirSync(join(r, 'data/acl-dir'))
      sh('setfattr', ['-n', 'system.posix_acl_default', '-v', ACL_DEFAULT, join(r, 'data/acl-dir')])
      mkdirSync(join(r, 'dev'))
      sh('mknod', [join(r, 'dev/console'), 'c', '5', '1'])
      sh('mknod', [join(r, 'dev/wide'), 'c', '240', '70000'])
      sh('mknod', [join(r, 'dev/loop7'), 'b', '7', '7'])
      sh('mknod', [join(r, 'dev/nvme'), 'b', '259', '300'])
      mkdirSync(join(r, 'run'))
      sh('mkfifo', [join(r, 'run/fifo')])
      mkdirSync(join(r, 'tmp'))
      chmodSync(join(r, 'tmp'), 0o1777)
      mkdirSync(join(r, 'locked/sub'), { recursive: true })
      writeFileSync(join(r, 'locked/a'), 'a')
      writeFileSync(join(r, 'locked/sub/b'), 'b')
      chmodSync(join(r, 'locked/sub'), 0)
      chmodSync(join(r, 'locked'), 0)
      mkdirSync(join(r, 'ro/inner'), { recursive: true })
      writeFileSync(join(r, 'ro/file'), 'ro')
      writeFileSync(join(r, 'ro/inner/file'), 'ro inner')
      chmodSync(join(r, 'ro/inner'), 0o555)
      chmodSync(join(r, 'ro'), 0o555)
      symlinkSync('../data/hl-src', join(r, 'bin/short-link'))
      symlinkSync(`/${'long-target-'.repeat(10)}end`, join(r, 'bin/long-link'))
      symlinkSync('/nowhere/at/all', join(r, 'bin/dangling'))
    },
    (r) => {
      // A hard link to a file of the layer below: the new layer carries both names.
      linkSync(join(r, 'data/hl-src'), join(r, 'data/hl-next-layer'))
      mkdirSync(join(r, 'usr/bin'), { recursive: true })
      writeFileSync(join(r, 'usr/bin/tool'), 'tool v2\n')
      linkSync(join(r, 'usr/bin/tool'), join(r, 'usr/bin/tool-alias'))
      chmodSync(join(r, 'bin/suid'), 0o4750)
    },
  ])
}

/** A small image whose `/arch` names its architecture, for a two-platform index. */
export function archImage(arch: 'amd64' | 'arm64'): Promise<OciImage> {
  return buildImage(
    [
      (r) => {
        mkdirSync(join(r, 'etc'))
        writeFileSync(join(r, 'arch'), `${arch}\n`)
        writeFileSync(join(r, 'etc', `only-${arch}`), arch)
      },
    ],
    { arch },
  )
}
