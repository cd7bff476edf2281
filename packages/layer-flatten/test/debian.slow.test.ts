/**
 * The harness's Debian bookworm image (debootstrap, packed by umoci; cached), flattened as the
 * unprivileged test user, against `umoci unpack` as root: every entry's type, mode, owner, size,
 * link target, device numbers and xattrs from the manifest, and every file's bytes from disk.
 */
import { execFileSync } from 'node:child_process'
import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { debianImage, run, userTempDir } from '@banger/test-support'
import { expect, test } from 'vitest'
import type { EntryRecord } from '../src/types.js'
import { typeOf } from './stat-type.js'
import { flattenAsUser } from './user.js'

test('debian bookworm: flattened as the user == umoci unpack as root', async () => {
  const image = await debianImage()
  // The cache is root's: copy the layout somewhere the user can read.
  const work = userTempDir('lf-debian')
  const layout = join(work, 'layout')
  execFileSync('cp', ['-a', image.layout, layout])
  execFileSync('chmod', ['-R', 'a+rX', work])
  const ours = join(work, 'ours')
  const outcome = await flattenAsUser({ layout, tag: image.tag, dest: ours })
  if (!outcome.ok) throw new Error(`${outcome.code}: ${outcome.message}`)
  const { entries, totals } = outcome.result
  const bundle = join(userTempDir('lf-debian-root'), 'bundle')
  await run('umoci', ['unpack', '--image', `${layout}:${image.tag}`, bundle])
  const theirs = join(bundle, 'rootfs')

  const walked: string[] = ['/']
  const visit = (rel: string) => {
    for (const name of readdirSync(join(theirs, rel)).sort()) {
      walked.push(`${rel}/${name}`)
      if (lstatSync(join(theirs, rel, name)).isDirectory()) visit(`${rel}/${name}`)
    }
  }
  visit('')
  expect(entries.map((e) => e.path).sort()).toEqual(walked.sort())

  // xattrs of the whole unpacked tree in one getfattr run.
  const dump = execFileSync(
    'getfattr',
    ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'base64', '--absolute-names', theirs],
    {
      encoding: 'utf8',
      maxBuffer: 1 << 28,
    },
  )
  const xattrs = new Map<string, Record<string, string>>()
  let current = ''
  for (const line of dump.split('\n')) {
    if (line.startsWith('# file: ')) current = line.slice(8).slice(theirs.length) || '/'
    const m = /^([^#=][^=]*)=0s(.*)$/.exec(line)
    if (m) xattrs.set(current, { ...xattrs.get(current), [m[1]!]: m[2]! })
  }

  let files = 0
  for (const entry of entries) {
    const path = join(theirs, entry.path)
    const st = lstatSync(path)
    const want: Partial<EntryRecord> = { type: typeOf(st), uid: st.uid, gid: st.gid }
    if (!st.isSymbolicLink()) want.mode = st.mode & 0o7777
    if (st.isSymbolicLink()) want.linkTarget = readlinkSync(path)
    if (st.isFile()) want.size = st.size
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      want.devMajor = Math.floor(st.rdev / 256)
      want.devMinor = st.rdev % 256
    }
    expect(entry, entry.path).toMatchObject(want)
    if (!st.isSymbolicLink()) expect(entry.xattrs, entry.path).toEqual(xattrs.get(entry.path))
    if (entry.type === 'file') {
      files++
      expect(readFileSync(join(ours, entry.path)).equals(readFileSync(path)), entry.path).toBe(true)
    }
    if (entry.type === 'symlink') expect(readlinkSync(join(ours, entry.path))).toBe(want.linkTarget)
  }
  expect(files).toBeGreaterThan(5000)
  expect(totals.specials).toBeGreaterThanOrEqual(0)
}, 900_000)
