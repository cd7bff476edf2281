import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  buildImage,
  e2fsck,
  pushImage,
  runAsUser,
  startRegistry,
  type TestRegistry,
} from '@banger/test-support'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { bangerHome, errorLines, throttledProxy, type BangerHome } from './helpers.js'

// `banger image pull` end to end: the built CLI as the unprivileged user, the daemon it starts,
// the harness's real registry, real mkfs/debugfs/e2fsck underneath.

let registry: TestRegistry
let small: string // host/small:v1
let big: string // host/big:v1, one 4 MiB incompressible layer

beforeAll(async () => {
  registry = await startRegistry()
  const smallImage = await buildImage([
    (root) => {
      mkdirSync(join(root, 'etc'), { recursive: true })
      writeFileSync(join(root, 'etc', 'os-release'), 'ID=banger-cli-test\n')
    },
    (root) => {
      mkdirSync(join(root, 'srv'), { recursive: true })
      writeFileSync(join(root, 'srv', 'hello.txt'), 'hello\n')
    },
  ])
  small = await pushImage(smallImage, registry, 'small:v1')
  const bigImage = await buildImage([
    (root) => {
      mkdirSync(join(root, 'srv'), { recursive: true })
      writeFileSync(join(root, 'srv', 'blob'), randomBytes(4 * 1024 * 1024))
    },
  ])
  big = await pushImage(bigImage, registry, 'big:v1')
})

afterAll(async () => {
  await registry?.stop()
})

function addKernel(home: BangerHome): Promise<unknown> {
  const kernel = home.file('vmlinuz', 'not really a kernel\n')
  return home.banger('kernel', 'add', 'k', '--kernel-path', kernel, '--default').then((r) => {
    expect(r.code, r.stderr).toBe(0)
  })
}

async function manifestDigest(repo: string, tag: string): Promise<string> {
  const res = await fetch(`${registry.url}/v2/${repo}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
  })
  return res.headers.get('docker-content-digest')!
}

interface Image {
  name: string
  status: string
  sizeBytes: number
  rootfsPath: string
  manifestDigest: string
  sourceRef: string
}

describe('banger image pull', () => {
  it('pulls, lists, shows, refuses the same name again, and removes', async () => {
    const home = bangerHome()
    await addKernel(home)

    const pull = await home.banger('image', 'pull', small)
    expect(pull.code, pull.stderr).toBe(0)
    // Not a terminal: plain progress lines, no escape sequences, no per-byte noise.
    expect(pull.stderr).not.toContain('\x1b')
    expect(pull.stderr.split('\n')).toEqual(
      expect.arrayContaining([
        'resolving reference',
        'downloading layers',
        'flattening layers',
        'building ext4 filesystem',
      ]),
    )
    expect(pull.stderr).toMatch(/^ {2}layer 1 sha256:[0-9a-f]{12} downloaded \(\d+ B\)$/m)
    expect(pull.stderr).toMatch(/^ {2}layer 2 sha256:[0-9a-f]{12} downloaded /m)
    const summary = /^pulled (\S+) as image (\S+): (\S+) \((.+)\)\n$/.exec(pull.stdout)
    expect(summary, pull.stdout).not.toBeNull()
    expect(summary![2]).toBe('small-v1')

    const show = await home.banger('image', 'show', 'small-v1', '--json')
    expect(show.code).toBe(0)
    const img = JSON.parse(show.stdout) as Image
    expect(img).toMatchObject({
      name: 'small-v1',
      status: 'ready',
      sourceRef: containing('small:v1'),
    })
    expect(img.manifestDigest).toBe(await manifestDigest('small', 'v1'))
    expect(img.sizeBytes).toBeGreaterThanOrEqual(1024 ** 3)
    expect(summary![3]).toBe(img.rootfsPath)
    expect((await e2fsck(img.rootfsPath)).clean).toBe(true)

    const text = (await home.banger('image', 'show', 'small-v1')).stdout
    expect(text).toMatch(new RegExp(`^digest\\s+${img.manifestDigest}$`, 'm'))
    expect(text).toMatch(new RegExp(`^size\\s+1\\.0 GiB \\(${img.sizeBytes} bytes\\)$`, 'm'))
    expect(text).toMatch(new RegExp(`^rootfs\\s+${img.rootfsPath}$`, 'm'))

    const table = (await home.banger('image', 'list')).stdout.trimEnd().split('\n')
    expect(table).toHaveLength(2)
    expect(table[1]).toMatch(/^small-v1\s+ready\s+1\.0 GiB\s+k\s+\S*small:v1\s+\d{4}-/)

    // The name is taken: refused before anything is downloaded.
    registry.clearRequests()
    const again = await home.banger('image', 'pull', small)
    expect(again.code).toBe(1)
    expect(again.stdout).toBe('')
    expect(errorLines(again.stderr).message).toContain('small-v1')
    expect(registry.requests().filter((r) => r.path.includes('/blobs/'))).toEqual([])

    const rm = await home.banger('image', 'rm', 'small-v1')
    expect(rm).toMatchObject({ code: 0, stdout: 'removed image small-v1\n' })
    expect(existsSync(img.rootfsPath)).toBe(false)
    expect(JSON.parse((await home.banger('image', 'list', '--json')).stdout)).toEqual({
      images: [],
    })
    expect(home.leftovers()).toEqual([])
  })

  it('takes --name, --size, a relative --kernel-path and --json', async () => {
    const home = bangerHome()
    home.file('bzImage', 'not really a kernel\n')
    const pull = await home.banger(
      'image',
      'pull',
      small,
      '--name',
      'custom',
      '--size',
      '1.5G',
      '--kernel-path',
      'bzImage',
      '--json',
    )
    expect(pull.code, pull.stderr).toBe(0)
    const img = JSON.parse(pull.stdout) as Image & { kernel: { kernelPath: string } }
    expect(img).toMatchObject({ name: 'custom', status: 'ready', sizeBytes: 1.5 * 1024 ** 3 })
    expect(img.kernel.kernelPath).toMatch(/^\//)
  })

  it('registers an existing rootfs, which rm leaves in place', async () => {
    const home = bangerHome()
    await addKernel(home)
    const rootfs = home.file('mine.ext4')
    const mkfs = await runAsUser('mkfs.ext4', ['-q', '-F', rootfs, '16M'])
    expect(mkfs.code, mkfs.stderr).toBe(0)
    const reg = await home.banger('image', 'register', 'mine', '--rootfs', 'mine.ext4')
    expect(reg.stderr).toBe('')
    expect(reg).toMatchObject({ code: 0, stdout: `registered image mine: ${rootfs}\n` })
    const show = await home.banger('image', 'show', 'mine')
    expect(show.stdout).toMatch(/^managed\s+no \(registered/m)
    expect(show.stdout).toMatch(new RegExp(`^rootfs\\s+${rootfs}$`, 'm'))
    expect((await home.banger('image', 'rm', 'mine')).code).toBe(0)
    expect(existsSync(rootfs)).toBe(true)
  })

  it('fails on a missing kernel with one line and a hint, leaving nothing behind', async () => {
    const home = bangerHome()
    const none = await home.banger('image', 'pull', small)
    expect(none.code).toBe(1)
    expect(none.stdout).toBe('')
    const e1 = errorLines(none.stderr)
    expect(e1.message).toMatch(/kernel/i)
    expect(e1.hint).toMatch(/kernel add/)

    const ghost = await home.banger('image', 'pull', small, '--kernel', 'ghost')
    expect(ghost.code).toBe(1)
    // Cross-review of issue 8: this read `params.kernel ghost is not in the catalog`.
    expect(errorLines(ghost.stderr)).toEqual({
      message: 'kernel "ghost" is not in the catalog',
      hint: 'See `banger kernel list` for the names, or add it with `banger kernel add ghost --kernel-path FILE`.',
    })

    // No user-facing message names an RPC field.
    const rpcNames = /params|kernelPath|initrdPath|modulesDir|rootfsPath|sizeBytes/
    for (const args of [
      ['image', 'pull', small, '--kernel-path', 'missing-vmlinuz'],
      ['image', 'pull', small, '--name', 'bad name', '--kernel-path', 'missing-vmlinuz'],
      ['image', 'register', 'r', '--rootfs', 'missing.ext4', '--kernel', 'ghost'],
      ['kernel', 'add', 'k', '--kernel-path', 'missing-vmlinuz'],
      ['kernel', 'show', 'ghost'],
    ]) {
      const res = await home.banger(...args)
      expect(res.code, args.join(' ')).toBe(1)
      const { message, hint } = errorLines(res.stderr)
      expect(`${message}\n${hint ?? ''}`).not.toMatch(rpcNames)
      expect(hint, args.join(' ')).toBeTruthy()
    }

    expect(JSON.parse((await home.banger('image', 'list', '--json')).stdout)).toEqual({
      images: [],
    })
    expect(home.leftovers()).toEqual([])
  })

  it('Ctrl-C mid-download cancels the pull: exit 130, one line, nothing left behind', async () => {
    const proxy = await throttledProxy(registry.host, 1024 * 1024)
    onTestFinished(() => proxy.close())
    const home = bangerHome()
    await addKernel(home)
    const ref = big.replace(registry.host, proxy.host)
    const child = home.spawn('image', 'pull', ref)
    let stderr = ''
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    const exited = new Promise<number | null>((resolve) =>
      child.on('close', (code) => resolve(code)),
    )
    for (let i = 0; i < 200 && !stderr.includes('downloading layers'); i++) await sleep(100)
    expect(stderr).toContain('downloading layers')
    await sleep(700) // 4 MiB at 1 MiB/s: well inside the download
    child.kill('SIGINT')
    expect(await exited).toBe(130)
    expect(stderr.trimEnd().split('\n').at(-1)).toBe(`banger: pull of ${ref} cancelled`)
    expect(stderr).not.toMatch(/\n\s+at /)

    // The daemon survives, cleans up, and lists nothing half-built.
    let status = { pullsInProgress: 1 }
    for (let i = 0; i < 100 && status.pullsInProgress > 0; i++) {
      await sleep(100)
      status = JSON.parse((await home.banger('daemon', 'status', '--json')).stdout) as typeof status
    }
    expect(status.pullsInProgress).toBe(0)
    expect(JSON.parse((await home.banger('image', 'list', '--json')).stdout)).toEqual({
      images: [],
    })
    expect(home.leftovers()).toEqual([])
  })
})

describe('banger image pull when the daemon dies', () => {
  it('fails with one line and exit 1 instead of hanging', async () => {
    const proxy = await throttledProxy(registry.host, 1024 * 1024)
    onTestFinished(() => proxy.close())
    const home = bangerHome()
    await addKernel(home)
    const { pid } = JSON.parse((await home.banger('daemon', 'status', '--json')).stdout) as {
      pid: number
    }
    const child = home.spawn('image', 'pull', big.replace(registry.host, proxy.host))
    let stderr = ''
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    const exited = new Promise<number | null>((resolve) =>
      child.on('close', (code) => resolve(code)),
    )
    for (let i = 0; i < 200 && !stderr.includes('downloading layers'); i++) await sleep(100)
    process.kill(pid, 'SIGKILL')
    expect(await exited).toBe(1)
    const lines = stderr.trimEnd().split('\n')
    expect(lines.at(-2)).toMatch(/^banger: the connection to the daemon at \S+ closed$/)
    expect(lines.at(-1)).toMatch(/^hint: /)
    expect(stderr).not.toMatch(/\n\s+at /)
  })
})

function containing(s: string): string {
  return expect.stringContaining(s) as string
}
