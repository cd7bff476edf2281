import { chmodSync, chownSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { dirname, join, resolve } from 'node:path'
import { run, runAsUser, testUser } from '@banger/test-support'
import { afterAll } from 'vitest'
import type { GuestInspection, InjectResult } from '../src/types.js'

const PACKAGE_DIR = resolve(import.meta.dirname, '..')
// A private build per test process (parallel test files must not rewrite one dist/ under each
// other), inside the package so that `../assets/` resolves as it does from dist/.
const BUILD_DIR = join(PACKAGE_DIR, `.test-build-${process.pid}-${randomUUID().slice(0, 8)}`)
const BUILT_INDEX = join(BUILD_DIR, 'index.js')
afterAll(() => rmSync(BUILD_DIR, { recursive: true, force: true }))

let built: Promise<unknown> | undefined

/** Compiles src/ once per test process: the test user runs the package with plain node. */
export function ensureBuilt(): Promise<unknown> {
  built ??= run(process.execPath, [
    resolve(PACKAGE_DIR, '../../node_modules/typescript/bin/tsc'),
    ...['-p', join(PACKAGE_DIR, 'tsconfig.build.json'), '--outDir', BUILD_DIR],
    ...['--declaration', 'false', '--sourceMap', 'false'],
  ])
  return built
}

export type Outcome<T> =
  { ok: true; value: T } | { ok: false; error: { code?: string; message: string; hint?: string } }

/** Runs one exported function of the built package as the unprivileged test user. */
async function callAsUser<T>(fn: string, args: unknown[]): Promise<Outcome<T>> {
  await ensureBuilt()
  const script = `
    const m = await import(${JSON.stringify(BUILT_INDEX)})
    const args = JSON.parse(process.argv[1])
    try {
      const value = await m[${JSON.stringify(fn)}](...args)
      process.stdout.write(JSON.stringify({ ok: true, value }))
    } catch (e) {
      process.stdout.write(JSON.stringify({ ok: false, error: { code: e.code, message: e.message, hint: e.hint } }))
    }`
  const result = await runAsUser(
    process.execPath,
    ['--input-type=module', '-e', script, JSON.stringify(args)],
    { timeoutMs: 120_000 },
  )
  if (result.code !== 0 || !result.stdout)
    throw new Error(`${fn} as the test user: exit ${result.code}\n${result.stderr}`)
  return JSON.parse(result.stdout) as Outcome<T>
}

export function injectAsUser(
  image: string,
  options: { authorizedKeys: string[]; hostname?: string },
): Promise<Outcome<InjectResult>> {
  return callAsUser<InjectResult>('injectGuest', [image, options])
}

export function inspectAsUser(image: string): Promise<Outcome<GuestInspection>> {
  return callAsUser<GuestInspection>('inspectGuest', [image])
}

/** A file tree description: path → content (file), { link } (symlink) or { dir }. */
export type TreeSpec = Record<
  string,
  string | { content: string; mode: number } | { link: string } | { dir: number }
>

/** Makes a tree as root (so the image's files are owned 0:0), readable by the test user. */
export function makeTree(root: string, spec: TreeSpec): void {
  mkdirSync(root, { recursive: true })
  chmodSync(root, 0o755)
  for (const [path, entry] of Object.entries(spec)) {
    const full = join(root, path)
    mkdirSync(dirname(full), { recursive: true })
    if (typeof entry === 'string') writeFileSync(full, entry, { mode: 0o644 })
    else if ('link' in entry) symlinkSync(entry.link, full)
    else if ('dir' in entry) {
      mkdirSync(full, { recursive: true })
      chmodSync(full, entry.dir)
    } else {
      writeFileSync(full, entry.content)
      chmodSync(full, entry.mode)
    }
  }
}

/**
 * Builds an ext4 image from a tree with plain `mkfs.ext4 -d`, as the unprivileged test user,
 * in a directory the test user owns. Returns the image path.
 */
export async function mkfsAsUser(
  tree: string,
  image: string,
  sizeMiB = 16,
  extra: string[] = [],
): Promise<string> {
  const user = testUser()
  await runAsUser('truncate', ['-s', `${sizeMiB}M`, image], { check: true })
  await runAsUser('mkfs.ext4', ['-q', '-F', ...extra, '-d', tree, image], { check: true })
  chownSync(image, user.uid, user.gid)
  return image
}

/** A systemd-style root: /sbin/init → /lib/systemd/systemd (merged /usr), sh, sshd, passwd. */
export const SYSTEMD_TREE: TreeSpec = {
  'usr/bin': { dir: 0o755 },
  'usr/sbin': { dir: 0o755 },
  'usr/lib/systemd': { dir: 0o755 },
  bin: { link: 'usr/bin' },
  sbin: { link: 'usr/sbin' },
  lib: { link: 'usr/lib' },
  'usr/lib/systemd/systemd': { content: '#!/bin/sh\n', mode: 0o755 },
  'usr/sbin/init': { link: '/lib/systemd/systemd' },
  'usr/bin/dash': { content: '#!/bin/dash\n', mode: 0o755 },
  'usr/bin/sh': { link: 'dash' },
  'usr/sbin/sshd': { content: 'sshd\n', mode: 0o755 },
  'usr/lib/systemd/systemd-networkd': { content: 'networkd\n', mode: 0o755 },
  'etc/passwd': 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/bin/false\n',
  'etc/hostname': 'baked\n',
  'etc/systemd/system/multi-user.target.wants': { dir: 0o755 },
  root: { dir: 0o755 },
}

/** A busybox-style root: everything is a link to /bin/busybox, inittab drives the boot. */
export const BUSYBOX_TREE: TreeSpec = {
  'bin/busybox': { content: 'busybox\n', mode: 0o755 },
  'bin/sh': { link: 'busybox' },
  'sbin/init': { link: '../bin/busybox' },
  'usr/sbin/sshd': { content: 'sshd\n', mode: 0o755 },
  'etc/inittab':
    '# busybox inittab\n::sysinit:/bin/mount -a\n::sysinit:/etc/init.d/rcS\n::respawn:/sbin/getty -L ttyS0 115200 vt100\n::shutdown:/bin/umount -a -r\n',
  'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\n',
  'etc/init.d/rcS': { content: '#!/bin/sh\n', mode: 0o755 },
}
