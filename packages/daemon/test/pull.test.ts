// End to end: bangerd (the built dist/bin.js) runs as the unprivileged test user against the
// harness's real registry, with real mkfs/debugfs/e2fsck underneath.
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
  rmSync,
} from 'node:fs'
import { join } from 'node:path'
import {
  buildImage,
  e2fsck,
  listImageDir,
  pushImage,
  readImageFile,
  startRegistry,
  statInode,
  testUser,
  type OciImage,
  type TestRegistry,
} from '@banger/test-support'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { PullProgress } from '../src/rpc/index.js'
import {
  fakeKernel,
  runDaemonOnce,
  spawnDaemon,
  startDaemon,
  userEnv,
  type UserEnv,
} from './spawn.js'

let registry: TestRegistry
let image: OciImage

const containing = (s: string): string => expect.stringContaining(s) as string

/** A small image: three layers, an owned file, a setuid binary, a whiteout. */
async function smallImage(marker: string, extraBytes = 0): Promise<OciImage> {
  return buildImage([
    (root) => {
      for (const d of ['etc', 'srv', 'usr/bin', 'root', 'sbin', 'bin'])
        mkdirSync(join(root, d), { recursive: true })
      writeFileSync(join(root, 'etc', 'os-release'), 'ID=banger-test\n')
      writeFileSync(join(root, 'etc', 'marker'), marker) // every layer unique per image
      writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
      writeFileSync(join(root, 'srv', 'old'), 'to be deleted\n')
      writeFileSync(join(root, 'srv', 'data'), 'owned\n')
      chownSync(join(root, 'srv', 'data'), 1234, 1234)
      chmodSync(join(root, 'srv', 'data'), 0o640)
    },
    (root) => {
      writeFileSync(join(root, 'usr', 'bin', 'tool'), '#!/bin/sh\n')
      chmodSync(join(root, 'usr', 'bin', 'tool'), 0o4755)
      writeFileSync(join(root, 'srv', 'marker'), marker)
      if (extraBytes) writeFileSync(join(root, 'srv', 'blob'), randomBytes(extraBytes))
    },
    (root) => {
      rmSync(join(root, 'srv', 'old'))
      writeFileSync(join(root, 'srv', 'new.txt'), 'layer three\n')
      writeFileSync(join(root, 'srv', 'marker3'), marker)
    },
  ])
}

function blobGets(reg: TestRegistry): Map<string, number> {
  const counts = new Map<string, number>()
  for (const r of reg.requests()) {
    const m = /\/blobs\/(sha256:[0-9a-f]{64})/.exec(r.path)
    if (r.method === 'GET' && m) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1)
  }
  return counts
}

async function manifestOf(
  reg: TestRegistry,
  repo: string,
  tag: string,
): Promise<{ config: { digest: string }; layers: { digest: string }[] }> {
  const res = await fetch(`${reg.url}/v2/${repo}/manifests/${tag}`, {
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
  })
  return (await res.json()) as { config: { digest: string }; layers: { digest: string }[] }
}

function leftovers(e: UserEnv): string[] {
  const images = join(e.stateDir, 'images')
  return [
    ...(existsSync(images) ? readdirSync(images).filter((n) => n.endsWith('.staging')) : []),
    ...readdirSync(e.tmpDir).filter((n) => n.startsWith('bangerd-pull-')),
  ]
}

const start = startDaemon

beforeAll(async () => {
  registry = await startRegistry()
  image = await smallImage('shared')
  await pushImage(image, registry, 'small:v1')
})

afterAll(async () => {
  await registry?.stop()
})

describe('bangerd command line', () => {
  it('prints help and version, and refuses an unknown flag with exit 2 and a hint', async () => {
    const e = userEnv()
    const help = await runDaemonOnce(e, ['--help'])
    expect(help).toMatchObject({ code: 0, stdout: containing('Usage: bangerd [options]') })
    expect(help.stdout).toContain('--socket PATH')
    const version = await runDaemonOnce(e, ['--version'])
    const pkg = JSON.parse(
      readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8'),
    ) as { version: string }
    expect(version).toMatchObject({ code: 0, stdout: `${pkg.version}\n` })
    const bad = await runDaemonOnce(e, ['--bogus'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(
      /^bangerd: Unknown option '--bogus'.*\n {2}Run `bangerd --help`\.\n$/,
    )
    expect(existsSync(e.stateDir)).toBe(false) // nothing created for a bad command line
  })

  it('fails at once, naming the path, when a directory it needs cannot be created', async () => {
    // Cross-review of issue 8: with the socket under /proc, node's mkdir({ recursive: true })
    // looped forever (ENOENT under an existing parent) and bangerd spun at 60% CPU.
    const e = userEnv()
    const cases: [Record<string, string>, RegExp, string][] = [
      [
        { BANGER_SOCKET: '/proc/x/bangerd.sock' },
        /^bangerd: cannot create \/proc\/x, the directory for the socket \/proc\/x\/bangerd\.sock: no such file or directory \(ENOENT\)\n/,
        'BANGER_SOCKET',
      ],
      [
        { BANGER_STATE_DIR: '/proc/y/state' },
        /^bangerd: cannot create \/proc\/y\/state, the state directory: \/proc\/y: no such file or directory \(ENOENT\)\n/,
        'BANGER_STATE_DIR',
      ],
      [
        { BANGER_SOCKET: '/proc/bangerd.sock' }, // the dir exists; binding there is refused
        /^bangerd: cannot listen on the socket \/proc\/bangerd\.sock: permission denied \(EACCES\)\n/,
        'BANGER_SOCKET',
      ],
    ]
    for (const [env, line, variable] of cases) {
      const started = Date.now()
      const res = await runDaemonOnce(e, [], { env, timeoutMs: 15_000 })
      expect(res.code, JSON.stringify(res)).toBe(1)
      expect(Date.now() - started).toBeLessThan(10_000)
      expect(res.stderr).toMatch(line)
      // Exactly the message line and one indented hint naming what to change.
      const lines = res.stderr.trimEnd().split('\n')
      expect(lines).toHaveLength(2)
      expect(lines[1]).toMatch(new RegExp(`^  Point ${variable} `))
      expect(res.stdout).toBe('')
    }
  })
})

describe('bangerd pulls as an unprivileged user', () => {
  it('pulls a multi-layer image into a clean, correct ext4 image; list, show, collision, delete', async () => {
    const e = userEnv()
    const { client } = await start(e)
    await client.call('kernel.add', { name: 'fake', kernelPath: fakeKernel(e), default: true })
    const ref = `${registry.host}/small:v1`
    const events: PullProgress[] = []
    const rec = await client.call('image.pull', { ref }, { onProgress: (p) => events.push(p) })

    expect(rec).toMatchObject({
      name: 'small-v1',
      managed: true,
      status: 'ready',
      sourceRef: ref,
      platform: 'linux/amd64',
      kernel: { name: 'fake' },
    })
    expect(rec.manifestDigest).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(rec.sizeBytes).toBeGreaterThanOrEqual(1024 ** 3)
    expect(rec.injectedFiles).toContain('/root/.ssh/authorized_keys')
    expect(statSync(rec.rootfsPath).size).toBe(rec.sizeBytes)
    expect(statSync(rec.rootfsPath).uid).toBe(testUser().uid) // built without root
    expect(existsSync(rec.kernel!.kernelPath)).toBe(true)
    const stages = events.flatMap((p) => (p.type === 'stage' ? [p.stage] : []))
    expect(stages).toEqual([
      'resolve',
      'download',
      'flatten',
      'build',
      'ownership',
      'inject',
      'publish',
      'done',
    ])
    expect(events.filter((p) => p.type === 'layer' && p.done)).toHaveLength(3)

    const fsck = await e2fsck(rec.rootfsPath)
    expect(fsck.clean, fsck.output).toBe(true)
    expect((await readImageFile(rec.rootfsPath, '/srv/new.txt')).toString()).toBe('layer three\n')
    expect(await listImageDir(rec.rootfsPath, '/srv')).not.toContain('old')
    expect(await statInode(rec.rootfsPath, '/srv/data')).toMatchObject({
      uid: 1234,
      gid: 1234,
      mode: 0o640,
    })
    expect((await statInode(rec.rootfsPath, '/usr/bin/tool')).mode).toBe(0o4755)
    expect(
      (await readImageFile(rec.rootfsPath, '/root/.ssh/authorized_keys')).toString(),
    ).toContain(e.publicKey)
    expect(leftovers(e)).toEqual([])

    expect((await client.call('image.list', {})).images).toEqual([rec])
    expect(await client.call('image.show', { name: 'small-v1' })).toEqual(rec)

    registry.clearRequests()
    await expect(client.call('image.pull', { ref })).rejects.toMatchObject({
      code: 'E_NAME_TAKEN',
      hint: containing('--name'),
    })
    expect(blobGets(registry).size).toBe(0) // rejected before any download

    expect(await client.call('image.delete', { name: 'small-v1' })).toEqual({ deleted: 'small-v1' })
    expect(existsSync(rec.dir!)).toBe(false)
    expect(readdirSync(join(e.stateDir, 'images'))).toEqual([])
  })

  it('refuses a pull without any kernel before downloading', async () => {
    const e = userEnv()
    const { client } = await start(e)
    registry.clearRequests()
    await expect(
      client.call('image.pull', { ref: `${registry.host}/small:v1` }),
    ).rejects.toMatchObject({
      code: 'E_KERNEL_REQUIRED',
      hint: containing('banger kernel add'),
    })
    expect(registry.requests()).toEqual([])
  })

  it('a failed pull (unknown tag) leaves no staging dir, temp tree or record', async () => {
    const e = userEnv()
    const { client } = await start(e)
    const err = await client
      .call('image.pull', { ref: `${registry.host}/small:nope`, kernelPath: fakeKernel(e) })
      .catch((x: unknown) => x)
    expect(err).toMatchObject({ code: 'E_MANIFEST_UNKNOWN' })
    expect(leftovers(e)).toEqual([])
    expect(readdirSync(join(e.stateDir, 'images'))).toEqual([])
    expect((await client.call('image.list', {})).images).toEqual([])
  })

  it('concurrent pulls of one reference download each blob once', async () => {
    const e = userEnv()
    const { client } = await start(e)
    const fresh = await smallImage(`concurrent-${Date.now()}`)
    const ref = await pushImage(fresh, registry, 'conc:v1')
    const kernelPath = fakeKernel(e)
    registry.clearRequests()
    const [a, b] = await Promise.all([
      client.call('image.pull', { ref, kernelPath }),
      client.call('image.pull', { ref, kernelPath }),
    ])
    expect(a).toEqual(b) // same name and ref: the second joined the first
    const gets = blobGets(registry)
    expect(gets.size).toBe(4) // config + 3 layers
    expect([...gets.values()]).toEqual([1, 1, 1, 1])

    // Different names pull separately but share the blob downloads (registry-client in-flight).
    const again = await smallImage(`concurrent-2-${Date.now()}`)
    const ref2 = await pushImage(again, registry, 'conc:v2')
    const manifest = await manifestOf(registry, 'conc', 'v2')
    const layers = manifest.layers.map((l) => l.digest)
    registry.clearRequests()
    const [c, d] = await Promise.all([
      client.call('image.pull', { ref: ref2, kernelPath, name: 'conc-c' }),
      client.call('image.pull', { ref: ref2, kernelPath, name: 'conc-d' }),
    ])
    expect(c.manifestDigest).toBe(d.manifestDigest)
    const gets2 = blobGets(registry)
    expect(layers.map((l) => gets2.get(l))).toEqual([1, 1, 1])
    // The config blob too (issue 8 cross-review: registry-client fetched it once per pull).
    expect(gets2.get(manifest.config.digest)).toBe(1)
    for (const r of [a, c, d]) expect((await e2fsck(r.rootfsPath)).clean).toBe(true)
  })

  it('SIGKILL mid-pull, restart: nothing is left behind and the re-pull succeeds', async () => {
    const e = userEnv()
    const big = await smallImage('killed', 24 * 1024 * 1024)
    const ref = await pushImage(big, registry, 'killme:v1')
    const kernelPath = fakeKernel(e)
    const first = await spawnDaemon(e)
    let killedAt: string | undefined
    const pull = first.client.call(
      'image.pull',
      { ref, kernelPath },
      {
        onProgress: (p) => {
          if (!killedAt && p.type === 'stage' && p.stage === 'download') {
            killedAt = p.stage
            first.child.kill('SIGKILL')
          }
        },
      },
    )
    await expect(pull).rejects.toMatchObject({ code: 'E_DAEMON_UNAVAILABLE' })
    await first.exited
    expect(killedAt).toBe('download')
    // The crash left its staging dir (and maybe a temp tree) behind …
    expect(readdirSync(join(e.stateDir, 'images')).some((n) => n.endsWith('.staging'))).toBe(true)
    // … and the stale socket file: the next daemon replaces it.
    const { client } = await start(e)
    expect(leftovers(e)).toEqual([])
    expect(readdirSync(join(e.stateDir, 'images'))).toEqual([])
    expect((await client.call('image.list', {})).images).toEqual([])
    const rec = await client.call('image.pull', { ref, kernelPath })
    expect(rec.status).toBe('ready')
    expect((await e2fsck(rec.rootfsPath)).clean).toBe(true)
    await expect(readImageFile(rec.rootfsPath, '/srv/marker')).resolves.toEqual(
      Buffer.from('killed'),
    )
  })

  it('SIGTERM mid-pull: the pull is cancelled, cleaned up, and the daemon exits 0', async () => {
    const e = userEnv()
    const big = await smallImage(`term-${Date.now()}`, 24 * 1024 * 1024)
    const ref = await pushImage(big, registry, 'term:v1')
    const d = await spawnDaemon(e)
    let sent = false
    const pull = d.client.call(
      'image.pull',
      { ref, kernelPath: fakeKernel(e) },
      {
        onProgress: (p) => {
          if (!sent && p.type === 'stage' && p.stage === 'flatten') {
            sent = true
            d.child.kill('SIGTERM')
          }
        },
      },
    )
    await expect(pull).rejects.toMatchObject({
      code: expect.stringMatching(/^E_(PULL_CANCELLED|DAEMON_UNAVAILABLE)$/) as string,
    })
    expect(await d.exited).toBe(0)
    expect(sent).toBe(true)
    expect(leftovers(e)).toEqual([])
    expect(readdirSync(join(e.stateDir, 'images'))).toEqual([])
    expect(existsSync(e.socketPath)).toBe(false)
  })

  it('cancelling a real pull mid-way cleans up and the daemon keeps serving', async () => {
    const e = userEnv()
    const { client } = await start(e)
    const kernelPath = fakeKernel(e)
    const big = await smallImage(`cancel-${Date.now()}`, 24 * 1024 * 1024)
    const ref = await pushImage(big, registry, 'cancel:v1')
    const controller = new AbortController()
    const pull = client.call(
      'image.pull',
      { ref, kernelPath },
      {
        signal: controller.signal,
        onProgress: (p) => {
          if (p.type === 'stage' && p.stage === 'download') controller.abort()
        },
      },
    )
    await expect(pull).rejects.toMatchObject({ code: 'E_PULL_CANCELLED' })
    // The daemon answers the cancel asynchronously; wait until the pull is gone.
    for (let i = 0; i < 200 && (await client.call('daemon.status', {})).pullsInProgress; i++) {
      await new Promise((r) => setTimeout(r, 25))
    }
    expect((await client.call('daemon.status', {})).pullsInProgress).toBe(0)
    expect(leftovers(e)).toEqual([])
    expect(readdirSync(join(e.stateDir, 'images'))).toEqual([])
    // an explicit size is honoured; one too small for the tree is refused by ext4-build
    const rec = await client.call('image.pull', { ref, kernelPath, sizeBytes: 1536 * 1024 ** 2 })
    expect(rec.sizeBytes).toBe(1536 * 1024 ** 2)
    await expect(
      client.call('image.pull', { ref, kernelPath, name: 'tiny', sizeBytes: 4 * 1024 ** 2 }),
    ).rejects.toMatchObject({ code: 'E_SIZE_TOO_SMALL' })
    expect(leftovers(e)).toEqual([])
  })

  it('a warm re-pull under a new name copies the cached rootfs: no layer download, own hostname', async () => {
    const e = userEnv()
    const { client } = await start(e)
    const kernelPath = fakeKernel(e)
    const fresh = await smallImage(`warm-${Date.now()}`)
    const ref = await pushImage(fresh, registry, 'warm:v1')
    const layers = (await manifestOf(registry, 'warm', 'v1')).layers.map((l) => l.digest)
    const t0 = performance.now()
    const cold = await client.call('image.pull', { ref, kernelPath, name: 'warm-a' })
    const coldMs = performance.now() - t0
    registry.clearRequests()
    const events: PullProgress[] = []
    const t1 = performance.now()
    const warm = await client.call(
      'image.pull',
      { ref, kernelPath, name: 'warm-b' },
      { onProgress: (p) => events.push(p) },
    )
    const warmMs = performance.now() - t1
    console.log(`cold pull ${coldMs.toFixed(0)} ms, warm pull ${warmMs.toFixed(0)} ms`)
    const gets = blobGets(registry)
    expect(layers.map((l) => gets.get(l) ?? 0)).toEqual([0, 0, 0])
    expect(events.some((p) => p.type === 'layer')).toBe(false)
    expect(warm.manifestDigest).toBe(cold.manifestDigest)
    expect(warm.sizeBytes).toBe(cold.sizeBytes)
    expect((await e2fsck(warm.rootfsPath)).clean).toBe(true)
    expect((await readImageFile(warm.rootfsPath, '/srv/new.txt')).toString()).toBe('layer three\n')
    expect(await statInode(warm.rootfsPath, '/srv/data')).toMatchObject({ uid: 1234, mode: 0o640 })
    expect((await readImageFile(warm.rootfsPath, '/etc/hostname')).toString()).toContain('warm-b')
    expect((await readImageFile(cold.rootfsPath, '/etc/hostname')).toString()).toContain('warm-a')
    // the cache entry is sparse, like the image it was copied from
    const entries = readdirSync(join(e.root, 'rootfs'))
    expect(entries).toHaveLength(1)
    const st = statSync(join(e.root, 'rootfs', entries[0]!))
    expect(st.blocks * 512).toBeLessThan(st.size / 4)
  })

  it('honours the config (mirrors) and the platform param', async () => {
    const e = userEnv()
    writeFileSync(
      e.env.BANGER_CONFIG!,
      JSON.stringify({ mirrors: { 'mirror.invalid': [registry.url] } }),
    )
    const { client } = await start(e)
    const kernelPath = fakeKernel(e)
    // mirror.invalid does not resolve: only the configured mirror can serve this
    const viaMirror = await client.call('image.pull', {
      ref: 'mirror.invalid/small:v1',
      kernelPath,
    })
    expect(viaMirror).toMatchObject({ name: 'small-v1', sourceRef: 'mirror.invalid/small:v1' })

    const arm = await buildImage([(root) => writeFileSync(join(root, 'arch'), 'arm64\n')], {
      arch: 'arm64',
    })
    const armRef = await pushImage(arm, registry, 'armonly:v1')
    const rec = await client.call('image.pull', {
      ref: armRef,
      kernelPath,
      platform: 'linux/arm64',
    })
    expect(rec.platform).toMatch(/^linux\/arm64/)
    await expect(
      client.call('image.pull', { ref: armRef, kernelPath, name: 'arm-as-amd' }),
    ).rejects.toMatchObject({ code: expect.stringMatching(/^E_PLATFORM/) as string })
    expect(leftovers(e)).toEqual([])
  })

  it('two daemons started at once: one serves, the other exits 1 once the first answers', async () => {
    const e = userEnv()
    const [a, b] = await Promise.allSettled([spawnDaemon(e), spawnDaemon(e)])
    const winners = [a, b].filter((r) => r.status === 'fulfilled')
    const losers = [a, b].filter((r) => r.status === 'rejected')
    expect(winners).toHaveLength(1)
    expect(losers).toHaveLength(1)
    expect(String((losers[0] as PromiseRejectedResult).reason)).toMatch(
      /exited 1: bangerd: another bangerd/,
    )
    const d = winners[0]!.value
    expect((await d.client.call('daemon.status', {})).pid).toBe(d.child.pid)
    d.client.close()
    d.child.kill('SIGTERM')
    expect(await d.exited).toBe(0)
  })

  it('a second daemon on the same socket fails clearly; SIGTERM stops cleanly', async () => {
    const e = userEnv()
    const d = await spawnDaemon(e)
    const second = await runDaemonOnce(e)
    expect(second.code).toBe(1)
    expect(second.stderr).toMatch(/^bangerd: a(nother)? (bangerd|daemon) .*already/m)
    expect(second.stderr.trim().split('\n')).toHaveLength(2) // message + hint, no stack
    d.client.close()
    d.child.kill('SIGTERM')
    expect(await d.exited).toBe(0)
    expect(existsSync(e.socketPath)).toBe(false)
    expect(existsSync(join(e.stateDir, 'bangerd.pid'))).toBe(false)
    const log = join(e.stateDir, 'logs', 'bangerd.log')
    expect(statSync(log).mode & 0o077).toBe(0)
  })
})
