/**
 * A real multi-layer image built by umoci (deletions, type changes, hardlinks, devices, xattrs,
 * odd modes and owners), flattened by us as the unprivileged test user, against `umoci unpack`
 * of the same image as root: file for file.
 */
import { execFileSync } from 'node:child_process'
import {
  chmodSync,
  chownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { gunzipSync } from 'node:zlib'
import { buildImage, run, userTempDir, type OciImage } from '@banger/test-support'
import { beforeAll, expect, test } from 'vitest'
import type { EntryRecord, FlattenResult } from '../src/types.js'
import { typeOf } from './stat-type.js'
import { flattenAsUser } from './user.js'

let image: OciImage
let ours: string
let theirs: string
let result: FlattenResult

const sh = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { stdio: 'pipe' })

beforeAll(async () => {
  image = await buildImage([
    (root) => {
      mkdirSync(join(root, 'etc'))
      writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n')
      mkdirSync(join(root, 'usr/bin'), { recursive: true })
      writeFileSync(join(root, 'usr/bin/tool'), '#!/bin/sh\necho tool\n')
      chmodSync(join(root, 'usr/bin/tool'), 0o4755)
      linkSync(join(root, 'usr/bin/tool'), join(root, 'usr/bin/tool-alias'))
      symlinkSync('/usr/bin/tool', join(root, 'usr/bin/tool-link'))
      mkdirSync(join(root, 'dev'))
      sh('mknod', '-m', '0666', join(root, 'dev/null'), 'c', '1', '3')
      sh('mknod', '-m', '0660', join(root, 'dev/loop9'), 'b', '7', '9')
      sh('mkfifo', '-m', '0600', join(root, 'dev/fifo'))
      mkdirSync(join(root, 'home/user'), { recursive: true })
      writeFileSync(join(root, 'home/user/notes'), 'mine')
      chownSync(join(root, 'home/user'), 1000, 1000)
      chownSync(join(root, 'home/user/notes'), 1000, 100)
      writeFileSync(join(root, 'home/user/bigid'), 'big')
      chownSync(join(root, 'home/user/bigid'), 2 ** 32 - 2, 2 ** 32 - 2)
      writeFileSync(join(root, 'usr/bin/ping'), 'ELF')
      sh('setcap', 'cap_net_raw+ep', join(root, 'usr/bin/ping'))
      sh('setfattr', '-n', 'user.comment', '-v', 'hello world', join(root, 'etc/passwd'))
      mkdirSync(join(root, 'tmp'))
      chmodSync(join(root, 'tmp'), 0o1777)
      mkdirSync(join(root, 'locked/inner'), { recursive: true })
      writeFileSync(join(root, 'locked/inner/secret'), 's')
      chmodSync(join(root, 'locked/inner'), 0o000)
      chmodSync(join(root, 'locked'), 0o555)
      mkdirSync(join(root, 'var/lib/pkgs'), { recursive: true })
      for (const n of ['a', 'b', 'c']) writeFileSync(join(root, 'var/lib/pkgs', n), n)
      writeFileSync(join(root, 'becomes-dir'), 'file')
      mkdirSync(join(root, 'becomes-file'))
      writeFileSync(join(root, 'becomes-file/child'), 'x')
      writeFileSync(join(root, 'doomed'), 'bye')
    },
    (root) => {
      rmSync(join(root, 'doomed'))
      rmSync(join(root, 'var/lib/pkgs/b'))
      rmSync(join(root, 'becomes-dir'))
      mkdirSync(join(root, 'becomes-dir'))
      writeFileSync(join(root, 'becomes-dir/now'), 'dir')
      rmSync(join(root, 'becomes-file'), { recursive: true })
      writeFileSync(join(root, 'becomes-file'), 'file now')
      linkSync(join(root, 'etc/passwd'), join(root, 'etc/passwd-hardlink'))
      writeFileSync(join(root, 'usr/bin/tool'), '#!/bin/sh\necho tool v2\n')
      chmodSync(join(root, 'usr/bin'), 0o700)
      symlinkSync('../usr/bin', join(root, 'home/user/bin'))
    },
    (root) => {
      rmSync(join(root, 'var/lib/pkgs'), { recursive: true })
      mkdirSync(join(root, 'var/lib/pkgs'))
      writeFileSync(join(root, 'var/lib/pkgs/z'), 'z')
      writeFileSync(join(root, 'doomed'), 'back again')
      rmSync(join(root, 'dev/fifo'))
    },
  ])
  // The layout sits in root's 0700 temp dir: let the test user read it.
  execFileSync('chmod', ['-R', 'a+rX', dirname(image.layout)])
  const work = userTempDir('lf-umoci')
  chmodSync(work, 0o755)
  ours = join(work, 'ours')
  theirs = join(userTempDir('lf-umoci-root'), 'bundle')
  const outcome = await flattenAsUser({ layout: image.layout, tag: image.tag, dest: ours })
  if (!outcome.ok) throw new Error(`flatten failed: ${outcome.code} ${outcome.message}`)
  result = outcome.result
  await run('umoci', ['unpack', '--image', `${image.layout}:${image.tag}`, theirs])
  theirs = join(theirs, 'rootfs')
}, 300_000)

function walk(root: string): string[] {
  const out = ['/']
  const visit = (rel: string) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const p = `${rel}/${name}`
      out.push(p)
      if (lstatSync(join(root, p)).isDirectory()) visit(p)
    }
  }
  visit('')
  return out
}

function xattrsOf(path: string): Record<string, string> | undefined {
  const out = execFileSync(
    'getfattr',
    ['--absolute-names', '-h', '-d', '-m', '-', '-e', 'base64', path],
    { encoding: 'utf8' },
  )
  const found: Record<string, string> = {}
  for (const line of out.split('\n')) {
    const m = /^([^#=][^=]*)=0s(.*)$/.exec(line)
    if (m) found[m[1]!] = m[2]!
  }
  return Object.keys(found).length ? found : undefined
}

test('the manifest lists exactly what umoci unpacked', () => {
  expect(result.entries.map((e) => e.path)).toEqual(walk(theirs))
})

/** Every manifest entry matches what `root` (a tree extracted as root) holds at its path. */
function expectTreeMatches(root: string, entries: EntryRecord[]): void {
  expect(entries.map((e) => e.path)).toEqual(walk(root))
  for (const entry of entries) {
    const st = lstatSync(join(root, entry.path))
    const want: Partial<EntryRecord> = {
      path: entry.path,
      type: typeOf(st),
      uid: st.uid,
      gid: st.gid,
      size: st.isFile() ? st.size : 0,
    }
    if (!st.isSymbolicLink()) want.mode = st.mode & 0o7777
    if (st.isSymbolicLink()) want.linkTarget = readlinkSync(join(root, entry.path))
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      want.devMajor = Math.floor(st.rdev / 256)
      want.devMinor = st.rdev % 256
    }
    if (!st.isDirectory() && entry.path !== '/')
      expect(entry.mtime, entry.path).toBe(Math.floor(st.mtimeMs / 1000))
    expect(entry, entry.path).toMatchObject(want)
    if (!st.isSymbolicLink())
      expect(entry.xattrs, entry.path).toEqual(xattrsOf(join(root, entry.path)))
    if (st.isFile()) expect(entry.hardlinkGroup !== undefined, entry.path).toBe(st.nlink > 1)
  }
}

test('type, mode, owner, mtime, size, link target, device numbers and xattrs match, entry by entry', () => {
  expectTreeMatches(theirs, result.entries)
  // The interesting cases really are in the image.
  const get = (p: string) => result.entries.find((e) => e.path === p)
  expect(get('/usr/bin/tool')?.mode).toBe(0o4755)
  expect(get('/home/user/bigid')).toMatchObject({ uid: 2 ** 32 - 2, gid: 2 ** 32 - 2 })
  expect(get('/dev/loop9')).toMatchObject({ type: 'block', devMajor: 7, devMinor: 9 })
  expect(get('/usr/bin/ping')?.xattrs?.['security.capability']).toBeDefined()
  expect(get('/doomed')?.size).toBe('back again'.length)
  expect(get('/dev/fifo')).toBeUndefined()
  expect(get('/var/lib/pkgs/a')).toBeUndefined()
  expect(get('/locked/inner')?.mode).toBe(0)
})

test('the same image recompressed by skopeo to zstd, or uncompressed, flattens to the same manifest', async () => {
  const { flattenToDirectory } = await import('../src/flatten.js')
  const { layersFromOciLayout } = await import('../src/oci-layout.js')
  const work = userTempDir('lf-skopeo')
  const layout = join(work, 'zstd')
  await run('skopeo', [
    'copy',
    '--dest-compress-format',
    'zstd',
    `oci:${image.layout}:${image.tag}`,
    `oci:${layout}:${image.tag}`,
  ])
  const zstdLayers = await layersFromOciLayout(layout, image.tag)
  for (const layer of zstdLayers) {
    expect(
      readFileSync(join(layout, 'blobs', ...layer.name!.split(':')))
        .subarray(0, 4)
        .toString('hex'),
    ).toBe('28b52ffd')
  }
  expect(await flattenToDirectory(zstdLayers, join(work, 'tree-zstd'))).toEqual(result)
  // Plain tar layers: the gzip blobs inflated, checked against the same DiffIDs.
  const plain = (await layersFromOciLayout(image.layout, image.tag)).map((layer) => ({
    ...layer,
    open: () =>
      Readable.from([
        gunzipSync(readFileSync(join(image.layout, 'blobs', ...layer.name!.split(':')))),
      ]),
  }))
  expect(await flattenToDirectory(plain, join(work, 'tree-plain'))).toEqual(result)
})

test('the tar output, extracted by GNU tar as root, is the same tree umoci unpacked', async () => {
  const { flattenToTar } = await import('../src/flatten.js')
  const { layersFromOciLayout } = await import('../src/oci-layout.js')
  const work = userTempDir('lf-gnutar')
  const tarFile = join(work, 'flat.tar')
  const { createWriteStream } = await import('node:fs')
  const viaTar = await flattenToTar(
    await layersFromOciLayout(image.layout, image.tag),
    createWriteStream(tarFile),
  )
  expect(viaTar).toEqual(result)
  const tree = join(work, 'tree')
  mkdirSync(tree)
  await run('tar', [
    '--xattrs',
    '--xattrs-include=*',
    '--numeric-owner',
    '-xpf',
    tarFile,
    '-C',
    tree,
  ])
  expectTreeMatches(tree, result.entries)
  for (const entry of result.entries.filter((e) => e.type === 'file')) {
    expect(
      readFileSync(join(tree, entry.path)).equals(readFileSync(join(theirs, entry.path))),
      entry.path,
    ).toBe(true)
  }
})

test('content, hardlinks and symlinks on disk match umoci; specials exist only in the manifest', () => {
  const inodes = new Map<number, number>()
  for (const entry of result.entries) {
    const mine = join(ours, entry.path)
    const theirsPath = join(theirs, entry.path)
    if (['char', 'block', 'fifo'].includes(entry.type)) {
      expect(() => lstatSync(mine)).toThrow()
      continue
    }
    const st = lstatSync(mine)
    expect(typeOf(st), entry.path).toBe(entry.type)
    if (entry.type === 'file') {
      expect(readFileSync(mine), entry.path).toEqual(readFileSync(theirsPath))
      // Same grouping as umoci's inodes.
      const theirIno = lstatSync(theirsPath).ino
      if (inodes.has(theirIno)) expect(entry.hardlinkGroup).toBe(inodes.get(theirIno))
      else if (lstatSync(theirsPath).nlink > 1) inodes.set(theirIno, entry.hardlinkGroup!)
      else expect(entry.hardlinkGroup).toBeUndefined()
      expect(st.nlink).toBe(lstatSync(theirsPath).nlink)
    }
    if (entry.type === 'symlink') expect(readlinkSync(mine)).toBe(readlinkSync(theirsPath))
  }
  expect(inodes.size).toBe(2)
  // Made by the unprivileged user, owned by it.
  expect(lstatSync(join(ours, 'home/user/notes')).uid).not.toBe(0)
})
