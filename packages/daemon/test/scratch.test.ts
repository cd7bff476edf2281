// Where the flattened tree lives: in memory (tmpfs) when it comfortably fits, on disk when an
// explicit BANGER_TMPDIR says so or when a layer expands past the memory budget mid-flatten.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, chmodSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import {
  buildImage,
  e2fsck,
  pushImage,
  startRegistry,
  statInode,
  testUser,
  type TestRegistry,
} from '@banger/test-support'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { fakeKernel, startDaemon, userEnv, type UserEnv } from './spawn.js'

let registry: TestRegistry
let ref: string

beforeAll(async () => {
  registry = await startRegistry()
  // 24 MiB of zeros gzip to a few KiB: the 8× estimate says "fits", the tree says otherwise.
  const image = await buildImage([
    (root) => {
      mkdirSync(join(root, 'etc'))
      writeFileSync(join(root, 'etc', 'os-release'), 'ID=scratch\n')
      writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
      writeFileSync(join(root, 'zeros'), Buffer.alloc(24 * 1024 * 1024))
    },
  ])
  ref = await pushImage(image, registry, 'scratch/zeros:1')
}, 120_000)

afterAll(() => registry?.stop())

interface LogLine {
  msg: string
  from?: string
  memory?: boolean
  workImage?: string
}

function daemonLog(e: UserEnv): LogLine[] {
  const file = join(e.stateDir, 'logs', 'bangerd.log')
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine)
}

/**
 * Pulls the image `times` times (under new names) with a daemon of its own, then stops it (which
 * waits for background work). Resolves to the first pull's rootfs.
 */
async function pullWith(e: UserEnv, times = 1): Promise<string> {
  const kernel = fakeKernel(e)
  const d = await startDaemon(e)
  const records = []
  for (let i = 0; i < times; i++) {
    const record = await d.client.call('image.pull', { ref, kernelPath: kernel, name: `s${i}` })
    expect((await e2fsck(record.rootfsPath)).clean).toBe(true)
    expect((await statInode(record.rootfsPath, '/zeros')).size).toBe(24 * 1024 * 1024)
    records.push(record)
  }
  const record = records[0]!
  d.child.kill('SIGTERM')
  await d.exited
  return record.rootfsPath
}

/** A daemon env with no BANGER_TMPDIR, its memory dir at `memoryDir`. */
function memoryEnv(memoryDir: string): UserEnv {
  const e = userEnv()
  delete e.env.BANGER_TMPDIR
  e.env.BANGER_MEMORY_TMPDIR = memoryDir
  return e
}

/** A daemon env whose memory dir is a plain directory (world-writable, sticky, like /dev/shm). */
function plainMemoryEnv(): { env: UserEnv; memory: string } {
  const e = userEnv()
  const memory = join(e.root, 'shm')
  mkdirSync(memory, { mode: 0o1777 })
  chmodSync(memory, 0o1777)
  return { env: memoryEnv(memory), memory }
}

/**
 * A daemon env whose memory dir is a tmpfs of `size`, unmounted when the test finishes; undefined
 * (the test is skipped) where mounting needs root we lack. CI runs as root.
 */
function tmpfsMemoryEnv(name: string, size: string): { env: UserEnv; memory: string } | undefined {
  const memory = join(userEnv().root, name)
  mkdirSync(memory)
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=1777`, 'tmpfs', memory])
  } catch (err) {
    console.warn(`skipped: cannot mount a tmpfs here (${String(err)})`)
    return undefined
  }
  onTestFinished(() => void execFileSync('umount', [memory]))
  return { env: memoryEnv(memory), memory }
}

/**
 * An `mkfs.ext4` first on the daemon's PATH: a shell script with `$last` set to the output image,
 * whose body `script` writes given the real mkfs.ext4's path.
 */
function fakeMkfs(e: UserEnv, script: (real: string) => string): void {
  const real = ['/usr/sbin/mkfs.ext4', '/sbin/mkfs.ext4'].find((p) => existsSync(p))!
  const bin = join(e.root, 'bin')
  mkdirSync(bin, { mode: 0o755 })
  writeFileSync(join(bin, 'mkfs.ext4'), `#!/bin/sh\nfor last; do :; done\n${script(real)}\n`, {
    mode: 0o755,
  })
  e.env.PATH = `${bin}:${e.env.PATH}`
}

describe('scratch tree placement', () => {
  it('flattens and builds in the memory dir when both fit, and leaves nothing there', async () => {
    const { env, memory } = plainMemoryEnv()
    // The second pull starts while the first one's cache store may still run: it waits for it.
    const rootfs = await pullWith(env, 2)
    const log = daemonLog(env)
    expect(log.find((l) => l.msg === 'tree placed')).toMatchObject({ memory: true })
    // From the memory image while its store still runs, else from the stored entry.
    expect(['the image being stored', 'the cache entry']).toContain(
      log.find((l) => l.msg === 'warm pull: rootfs from cache')?.from,
    )
    const mine = join(memory, `banger-${testUser().uid}`)
    // Built, owned and copied out from memory; the copy in the state dir is what was checked.
    expect(log.find((l) => l.msg === 'built')?.workImage).toMatch(new RegExp(`^${mine}/`))
    expect(log.some((l) => l.msg === 'image copied to the state dir')).toBe(true)
    expect(rootfs.startsWith(env.stateDir)).toBe(true)
    // The warm-pull cache was filled after the pull returned, before the daemon stopped.
    // BANGER_CACHE_DIR is <root>/cache, so the rootfs cache is its sibling <root>/rootfs.
    expect(readdirSync(join(env.root, 'rootfs')).filter((n) => n.endsWith('.ext4'))).toHaveLength(1)
    expect(readdirSync(mine)).toEqual([])
  })

  it('builds the image on disk when the tree fits in memory but the image would not', async () => {
    const tmpfs = tmpfsMemoryEnv('small', '96m')
    if (!tmpfs) return
    const { env, memory } = tmpfs
    const rootfs = await pullWith(env)
    const log = daemonLog(env)
    expect(log.find((l) => l.msg === 'tree placed')).toMatchObject({ memory: true })
    // Built straight into the staging dir that is renamed into place on publish.
    expect(log.find((l) => l.msg === 'built')?.workImage).toBe(
      join(`${dirname(rootfs)}.staging`, basename(rootfs)),
    )
    expect(log.some((l) => l.msg === 'image copied to the state dir')).toBe(false)
    expect(readdirSync(join(memory, `banger-${testUser().uid}`))).toEqual([])
  })

  it('builds again on disk when building in memory fails although the estimate said it fits', async () => {
    const { env, memory } = plainMemoryEnv()
    // A tmpfs that fills between the estimate and mkfs, played by an mkfs.ext4 first on PATH that
    // fails as mkfs does on a full device for any output under the memory dir, and otherwise
    // runs the real one.
    fakeMkfs(
      env,
      (real) => `case "$last" in
  ${memory}/*) echo "mkfs.ext4: No space left on device while writing out and closing file system" >&2; exit 1 ;;
esac
exec ${real} "$@"`,
    )
    const rootfs = await pullWith(env)
    const log = daemonLog(env)
    expect(log.find((l) => l.msg === 'tree placed')).toMatchObject({ memory: true })
    expect(log.some((l) => l.msg.includes('building the image in memory failed'))).toBe(true)
    expect(log.find((l) => l.msg === 'built')?.workImage).toBe(
      join(`${dirname(rootfs)}.staging`, basename(rootfs)),
    )
    expect(log.some((l) => l.msg === 'image copied to the state dir')).toBe(false)
    expect(readdirSync(join(memory, `banger-${testUser().uid}`))).toEqual([])
  })

  it('publishes nothing when the read-back it overlapped with the copy and injection fails', async () => {
    const { env, memory } = plainMemoryEnv()
    // An mkfs.ext4 first on PATH that runs the real one, then moves one file's mtime: the tree
    // carried the manifest's, so the ownership batch trusts the image there, and only the
    // read-back, running beside the copy to the state dir and the injection, can notice.
    fakeMkfs(
      env,
      (real) => `${real} "$@" || exit
exec ${dirname(real)}/debugfs -w -R "sif /etc/os-release mtime @1" "$last"`,
    )
    const kernel = fakeKernel(env)
    const d = await startDaemon(env)
    await expect(
      d.client.call('image.pull', { ref, kernelPath: kernel, name: 'bad' }),
    ).rejects.toMatchObject({ code: 'E_OWNERSHIP_MISMATCH' })
    expect(await d.client.call('image.list', {})).toEqual({ images: [] })
    d.child.kill('SIGTERM')
    await d.exited
    const log = daemonLog(env)
    // The copy and the injection did run before the read-back's verdict was awaited.
    expect(log.some((l) => l.msg === 'image copied to the state dir')).toBe(true)
    expect(log.some((l) => l.msg === 'ownership verified')).toBe(false)
    expect(readdirSync(join(env.stateDir, 'images'))).toEqual([])
    expect(readdirSync(join(memory, `banger-${testUser().uid}`))).toEqual([])
    const cache = join(env.root, 'rootfs')
    expect(existsSync(cache) ? readdirSync(cache) : []).toEqual([])
  })

  it('an explicit BANGER_TMPDIR keeps the tree on disk', async () => {
    const e = userEnv()
    await pullWith(e)
    expect(daemonLog(e).find((l) => l.msg === 'tree placed')).toMatchObject({ memory: false })
  })

  it('falls back to disk when layers expand past the memory budget', async () => {
    const tmpfs = tmpfsMemoryEnv('tiny', '4m')
    if (!tmpfs) return
    const { env, memory } = tmpfs
    await pullWith(env)
    const log = daemonLog(env)
    expect(log.some((l) => l.msg.includes('did not fit in memory'))).toBe(true)
    expect(log.find((l) => l.msg === 'tree placed')).toMatchObject({ memory: false })
    expect(readdirSync(join(memory, `banger-${testUser().uid}`))).toEqual([])
    expect(
      existsSync(env.tmpDir) &&
        readdirSync(env.tmpDir).filter((n) => n.startsWith('bangerd-pull-')),
    ).toEqual([])
  })
})
