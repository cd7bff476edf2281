import { createHash } from 'node:crypto'
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  debugfs,
  e2fsck,
  filesystemBytes,
  listImageDir,
  readImageFile,
  statInode,
  testUser,
  userTempDir,
} from '@banger/test-support'
import type { Ext4Image } from '../src/types.js'
import { runAsUserScript, type TreeSpec } from './helpers.js'

const UUID = '0badcafe-1234-4abc-8def-0123456789ab'
const big = 'x'.repeat(300_000)
const TREE: TreeSpec[] = [
  { path: 'etc', type: 'dir' },
  { path: 'etc/hostname', type: 'file', content: 'banger\n' },
  { path: 'etc/secret', type: 'file', content: 'shh', mode: 0o600 },
  { path: 'usr/lib/deep/er', type: 'dir' },
  { path: 'usr/lib/deep/er/big.bin', type: 'file', content: big },
  { path: 'usr/lib/empty', type: 'file', content: '' },
  { path: 'usr/lib/hard', type: 'hardlink', target: 'etc/hostname' },
  { path: 'usr/lib/link', type: 'symlink', target: '../../etc/hostname' },
  { path: 'usr/lib/long-link', type: 'symlink', target: `/${'l'.repeat(100)}` },
  { path: 'name with "quotes" and spaces', type: 'file', content: 'q' },
]

/** What the user script returns: the package's own result, through JSON. */
interface Built {
  image: Ext4Image
}

async function buildAsUser(
  dir: string,
  options: Record<string, unknown>,
  makeTree = true,
): Promise<Built> {
  const out = (await runAsUserScript(
    `${makeTree ? `makeTree(${JSON.stringify(join(dir, 'tree'))}, ${JSON.stringify(TREE)})` : ''}
     const image = await lib.buildExt4(${JSON.stringify({ tree: join(dir, 'tree'), ...options })})
     return { image }`,
    dir,
  )) as { result?: Built; error?: unknown }
  if (!out.result) throw new Error(`build failed: ${JSON.stringify(out.error)}`)
  return out.result
}

const sha256 = (file: string): string =>
  createHash('sha256').update(readFileSync(file)).digest('hex')

describe('buildExt4 as an unprivileged user', () => {
  it('builds a clean ext4 of exactly the size asked, holding the tree, owned by root', async () => {
    const dir = userTempDir('ext4-tree')
    const output = join(dir, 'rootfs.ext4')
    const { image } = await buildAsUser(dir, {
      output,
      sizeBytes: 64 * 1024 * 1024,
      label: 'bangerroot',
    })
    expect(image).toMatchObject({
      path: output,
      sizeBytes: 64 << 20,
      blockSize: 4096,
      blockCount: 16384,
    })
    expect(statSync(output).size).toBe(64 << 20)
    expect(statSync(output).uid).toBe(testUser().uid)
    expect(await filesystemBytes(output)).toBe(64 << 20)
    const fsck = await e2fsck(output)
    expect(fsck.clean, fsck.output).toBe(true)

    expect(await listImageDir(output, '/')).toEqual(
      ['etc', 'lost+found', 'name with "quotes" and spaces', 'usr'].sort(),
    )
    expect((await readImageFile(output, '/etc/hostname')).toString()).toBe('banger\n')
    expect((await readImageFile(output, '/usr/lib/deep/er/big.bin')).toString()).toBe(big)
    expect((await readImageFile(output, '/usr/lib/empty')).length).toBe(0)
    const root = await statInode(output, '/')
    expect([root.uid, root.gid]).toEqual([0, 0]) // -E root_owner=0:0, not the building user
    const hostname = await statInode(output, '/etc/hostname')
    const hard = await statInode(output, '/usr/lib/hard')
    expect(hard.inode).toBe(hostname.inode)
    expect(hostname.links).toBe(2)
    // mkfs ran in a user namespace mapping the user to root: the user's files are root's.
    expect(image.owners).toBe('root')
    expect([hostname.uid, hostname.gid]).toEqual([0, 0])
    expect((await statInode(output, '/usr/lib/deep/er')).uid).toBe(0)
    expect((await statInode(output, '/usr/lib/link')).linkTarget).toBe('../../etc/hostname')
    expect((await statInode(output, '/etc/secret')).mode).toBe(0o600)
    expect(await debugfs(output, ['stats'])).toMatch(/Filesystem volume name:\s+bangerroot/)
  })

  it("keeps the tree's owners with owners: 'tree'", async () => {
    const dir = userTempDir('ext4-owners')
    const output = join(dir, 'rootfs.ext4')
    const { image } = await buildAsUser(dir, { output, sizeBytes: 64 << 20, owners: 'tree' })
    expect(image.owners).toBe('tree')
    const hostname = await statInode(output, '/etc/hostname')
    expect([hostname.uid, hostname.gid]).toEqual([testUser().uid, testUser().gid])
    const root = await statInode(output, '/')
    expect([root.uid, root.gid]).toEqual([0, 0]) // root_owner still applies
  })

  it('gives byte-identical images for the same tree and options, whatever the host times', async () => {
    const dir = userTempDir('ext4-repro')
    const opts = { sizeBytes: 64 << 20, uuid: UUID, timestamp: 1_700_000_000 }
    await buildAsUser(dir, { ...opts, output: join(dir, 'a.ext4') })
    // Change what mkfs copies from the host: atime (read it back in time) and ctime (chmod twice).
    const file = join(dir, 'tree', 'etc', 'hostname')
    chmodSync(file, 0o600)
    chmodSync(file, 0o644)
    writeFileSync(join(dir, 'touch'), readFileSync(file))
    await new Promise((r) => setTimeout(r, 1100))
    await buildAsUser(dir, { ...opts, output: join(dir, 'b.ext4') }, false)
    expect(sha256(join(dir, 'b.ext4'))).toBe(sha256(join(dir, 'a.ext4')))
    const stats = await debugfs(join(dir, 'a.ext4'), ['stats'])
    expect(stats).toContain(`Filesystem UUID:          ${UUID}`)
    expect(stats).toContain(`Directory Hash Seed:      ${UUID}`)
    for (const path of [
      '/',
      '/etc/hostname',
      '/usr/lib/link',
      '/usr/lib/deep/er/big.bin',
      '/lost+found',
    ]) {
      const s = await debugfs(join(dir, 'a.ext4'), [`stat "${path}"`])
      expect(s, path).toMatch(/ ctime: 0x6553f100:00000000/)
      expect(s, path).toMatch(/ atime: 0x6553f100:00000000/)
      expect(s, path).toMatch(/crtime: 0x6553f100:00000000/)
    }
    // A different timestamp is a different image: the options matter, not the clock.
    await buildAsUser(
      dir,
      { ...opts, timestamp: 1_600_000_000, output: join(dir, 'c.ext4') },
      false,
    )
    expect(sha256(join(dir, 'c.ext4'))).not.toBe(sha256(join(dir, 'a.ext4')))
    expect((await e2fsck(join(dir, 'a.ext4'))).clean).toBe(true)
  })

  it('makes a 4 GiB filesystem when asked for 4 GiB (no 1 KiB-unit positional size)', async () => {
    const dir = userTempDir('ext4-4g')
    const output = join(dir, 'big.ext4')
    const { image } = await buildAsUser(dir, { output, sizeBytes: 4 * 1024 ** 3 })
    expect(statSync(output).size).toBe(4 * 1024 ** 3)
    expect(await filesystemBytes(output)).toBe(4 * 1024 ** 3)
    expect(image.blockCount * image.blockSize).toBe(4 * 1024 ** 3)
    expect((await e2fsck(output)).clean).toBe(true)
  })

  it('refuses a size that cannot hold the tree before running mkfs', async () => {
    const dir = userTempDir('ext4-small')
    const output = join(dir, 'small.ext4')
    const out = (await runAsUserScript(
      `makeTree('tree', [{ path: 'blob', type: 'file', content: 'y'.repeat(20 * 1024 * 1024) }])
       // mkfs.ext4 here is a script that would leave a mark: it must never run.
       writeFileSync('mkfs.ext4', '#!/bin/sh\\ntouch ran\\nexit 1\\n', { mode: 0o755 })
       await lib.buildExt4({ tree: 'tree', output: ${JSON.stringify(output)}, sizeBytes: 16 * 1024 * 1024, mkfs: join(process.cwd(), 'mkfs.ext4') })`,
      dir,
    )) as { error: { code: string; message: string; hint: string } }
    expect(out.error.code).toBe('E_SIZE_TOO_SMALL')
    expect(out.error.message).toMatch(
      /16777216 bytes cannot hold this tree: it needs at least \d+ bytes/,
    )
    expect(out.error.hint).toMatch(/Ask for at least \d+ bytes/)
    expect(existsSync(join(dir, 'ran'))).toBe(false)
    expect(existsSync(output)).toBe(false)
  })

  it("checks the size against the caller's totals, without walking the tree, unless times are fixed", async () => {
    const dir = userTempDir('ext4-totals')
    const output = join(dir, 'small.ext4')
    // The tree fits in 16 MiB; the totals say it does not: only the totals can refuse it.
    const totals = { bytes: 20 * 1024 * 1024, inodes: 2, directories: 1, files: 1 }
    const out = (await runAsUserScript(
      `makeTree('tree', [{ path: 'small', type: 'file', content: 'y' }])
       writeFileSync('mkfs.ext4', '#!/bin/sh\\ntouch ran\\nexit 1\\n', { mode: 0o755 })
       await lib.buildExt4({ tree: 'tree', output: ${JSON.stringify(output)}, sizeBytes: 16 * 1024 * 1024, totals: ${JSON.stringify(totals)}, mkfs: join(process.cwd(), 'mkfs.ext4') })`,
      dir,
    )) as { error: { code: string; message: string } }
    expect(out.error.code).toBe('E_SIZE_TOO_SMALL')
    expect(existsSync(join(dir, 'ran'))).toBe(false)
    expect(existsSync(output)).toBe(false)

    const bad = (await runAsUserScript(
      `await lib.buildExt4({ tree: 'tree', output: 'x.ext4', sizeBytes: 16 * 1024 * 1024, totals: { bytes: -1, inodes: 2, directories: 1 } })`,
      dir,
    )) as { error: { code: string } }
    expect(bad.error.code).toBe('E_INVALID_OPTION')

    // Accurate totals (TREE plus 'small'; the hardlink once) build the image as a walk would.
    const real = {
      bytes: 7 + 3 + big.length + 1 + 1,
      inodes: 14,
      directories: 6,
      files: 6,
      symlinks: 2,
    }
    const { image } = await buildAsUser(dir, {
      output: join(dir, 'a.ext4'),
      sizeBytes: 64 << 20,
      totals: real,
    })
    expect(image.blockCount).toBe(16384)
    const fsck = await e2fsck(join(dir, 'a.ext4'))
    expect(fsck.clean, fsck.output).toBe(true)
    expect((await readImageFile(join(dir, 'a.ext4'), '/usr/lib/deep/er/big.bin')).toString()).toBe(
      big,
    )
    // With fixed times the tree is walked (its directories are needed), whatever the totals say.
    await buildAsUser(
      dir,
      {
        output: join(dir, 'b.ext4'),
        sizeBytes: 16 << 20,
        totals,
        uuid: UUID,
        timestamp: 1_700_000_000,
      },
      false,
    )
    expect(statSync(join(dir, 'b.ext4')).size).toBe(16 << 20)
  })

  it('tells the user to install e2fsprogs when mkfs.ext4 is missing', async () => {
    const dir = userTempDir('ext4-nomkfs')
    const out = (await runAsUserScript(
      `makeTree('tree', [{ path: 'a', type: 'file', content: 'a' }])
       await lib.buildExt4({ tree: 'tree', output: 'x.ext4', sizeBytes: 64 << 20, mkfs: '/nonexistent/mkfs.ext4' })`,
      dir,
    )) as { error: { code: string; message: string; hint: string } }
    expect(out.error.code).toBe('E_MKFS_MISSING')
    expect(out.error.hint).toMatch(/install e2fsprogs/i)
  })

  it('surfaces the stderr of a failed mkfs and removes the half-made image', async () => {
    const dir = userTempDir('ext4-mkfsfail')
    const out = (await runAsUserScript(
      `makeTree('tree', [{ path: 'a', type: 'file', content: 'a' }])
       writeFileSync('mkfs.ext4', '#!/bin/sh\\necho "mke2fs: bad superblock magic in $*" >&2\\nexit 1\\n', { mode: 0o755 })
       await lib.buildExt4({ tree: 'tree', output: 'x.ext4', sizeBytes: 64 << 20, mkfs: join(process.cwd(), 'mkfs.ext4') })`,
      dir,
    )) as { error: { code: string; message: string } }
    expect(out.error.code).toBe('E_MKFS_FAILED')
    // The arguments banger passed show up too: no positional size after the output.
    expect(out.error.message).toMatch(
      /bad superblock magic in -F -q -b 4096 -I 256 -N \d+ -E root_owner=0:0 -d tree x\.ext4/,
    )
    expect(existsSync(join(dir, 'x.ext4'))).toBe(false)
  })

  it('refuses a name debugfs cannot address when asked for fixed times, and builds it otherwise', async () => {
    const dir = userTempDir('ext4-newline')
    const out = (await runAsUserScript(
      `makeTree('tree', [{ path: 'bad\\nname', type: 'file', content: 'x' }])
       const plain = await lib.buildExt4({ tree: 'tree', output: 'plain.ext4', sizeBytes: 64 << 20 })
       try {
         await lib.buildExt4({ tree: 'tree', output: 'fixed.ext4', sizeBytes: 64 << 20, timestamp: 1 })
       } catch (err) { return { plain, code: err.code, message: err.message, left: fs.existsSync('fixed.ext4') } }`,
      dir,
    )) as {
      result: { plain: { blockCount: number }; code: string; message: string; left: boolean }
    }
    expect(out.result.plain.blockCount).toBe(16384)
    expect(out.result.code).toBe('E_UNENCODABLE_NAME')
    expect(out.result.message).toContain('"/bad\\nname"')
    expect(out.result.left).toBe(false)
  })

  it("uses its own mke2fs.conf, not the host's", async () => {
    const dir = userTempDir('ext4-conf')
    // A host config that would add orphan_file (kernels before 5.15 cannot mount it read-write).
    const hostConf = join(dir, 'host-mke2fs.conf')
    writeFileSync(
      hostConf,
      '[fs_types]\n\text4 = {\n\t\tfeatures = has_journal,extent,orphan_file\n\t}\n',
    )
    const out = (await runAsUserScript(
      `makeTree('tree', [{ path: 'a', type: 'file', content: 'a' }])
       return await lib.buildExt4({ tree: 'tree', output: 'x.ext4', sizeBytes: 64 << 20 })`,
      dir,
      { MKE2FS_CONFIG: hostConf },
    )) as { result?: unknown; error?: unknown }
    expect(out.error).toBeUndefined()
    const features = /Filesystem features:\s+(.*)/.exec(
      await debugfs(join(dir, 'x.ext4'), ['stats']),
    )?.[1]
    expect(features?.split(' ').sort()).toEqual(
      'has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum'
        .split(' ')
        .sort(),
    )
  })

  it('rejects a size that is not a multiple of 4096 and a missing tree with codes', async () => {
    const dir = userTempDir('ext4-opts')
    const bad = (await runAsUserScript(
      `makeTree('tree', [])
       await lib.buildExt4({ tree: 'tree', output: 'x.ext4', sizeBytes: 64 * 1000 * 1000 + 1 })`,
      dir,
    )) as { error: { code: string } }
    expect(bad.error.code).toBe('E_INVALID_OPTION')
    const aborted = (await runAsUserScript(
      `await lib.buildExt4({ tree: 'tree', output: 'x.ext4', sizeBytes: 64 << 20, signal: AbortSignal.abort() })`,
      dir,
    )) as { error: { message: string } }
    expect(aborted.error.message).toMatch(/abort/i)
    expect(existsSync(join(dir, 'x.ext4'))).toBe(false)
    const missing = (await runAsUserScript(
      `await lib.buildExt4({ tree: 'nope', output: 'x.ext4', sizeBytes: 64 << 20 })`,
      dir,
    )) as { error: { code: string } }
    expect(missing.error.code).toBe('E_TREE_NOT_FOUND')
  })
})
