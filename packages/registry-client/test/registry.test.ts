import { execFile } from 'node:child_process'
import { chmodSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { mkdtemp, rm, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  runAsUser,
  testUser,
  userTempDir,
  buildImage,
  pushImage,
  pushIndex,
  startRegistry,
  type OciImage,
  type TestRegistry,
} from '@banger/test-support'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { PullProgressEvent, PullSession } from '../src/index.js'
import { cachedBlobs, client, hashFile, tempCache, tempFiles } from './helpers.js'

const exec = promisify(execFile)

let registry: TestRegistry
let multi: OciImage
let arm: OciImage
let single: OciImage

beforeAll(async () => {
  registry = await startRegistry()
  ;[multi, arm, single] = await Promise.all([
    buildImage([
      (root) => {
        mkdirSync(join(root, 'etc'), { recursive: true })
        writeFileSync(join(root, 'etc', 'hostname'), 'one\n')
      },
      (root) => writeFileSync(join(root, 'big.bin'), Buffer.alloc(300_000, 7)),
      (root) => {
        writeFileSync(join(root, 'etc', 'hostname'), 'three\n')
        symlinkSync('/etc/hostname', join(root, 'link'))
      },
    ]),
    buildImage([(root) => writeFileSync(join(root, 'arch'), 'arm64\n')], { arch: 'arm64' }),
    buildImage([(root) => writeFileSync(join(root, 'arch'), 'amd64\n')]),
  ])
  await Promise.all([
    // One after the other: two pushes uploading the same blobs at once can leave docker-registry
    // answering "manifest blob unknown" to the second manifest (seen once in CI).
    pushImage(multi, registry, 'multi:oci', { format: 'oci' }).then(() =>
      pushImage(multi, registry, 'multi:v2s2', { format: 'v2s2' }),
    ),
    pushIndex(registry, 'multiarch:1', [
      { image: single, platform: { os: 'linux', architecture: 'amd64' } },
      { image: arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ]),
  ])
}, 300_000)

afterAll(async () => {
  await registry?.stop()
})

async function drain(session: PullSession): Promise<string[]> {
  const paths: string[] = []
  for await (const layer of session.cachedLayers()) {
    expect(layer.index).toBe(paths.length)
    paths.push(layer.path)
  }
  await session.done
  return paths
}

const blobGets = (r: TestRegistry): string[] =>
  r
    .requests()
    .filter((q) => q.method === 'GET' && q.path.includes('/blobs/'))
    .map((q) => q.path)

describe('pull from a real registry', () => {
  it('cold pull of an OCI image fills the cache with exactly its verified blobs, in layer order', async () => {
    const cacheDir = await tempCache()
    const rc = client(cacheDir)
    registry.clearRequests()
    const events: PullProgressEvent[] = []
    const session = await rc.pull(`${registry.host}/multi:oci`, {
      onProgress: (e) => events.push(e),
    })
    expect(session.layers).toHaveLength(3)
    expect(session.platform).toMatchObject({ os: 'linux', architecture: 'amd64' })
    expect(session.refName).toBe(`${registry.host}/multi:oci`)
    const paths = await drain(session)

    for (const [i, layer] of session.layers.entries()) {
      expect(await hashFile(paths[i]!)).toBe(layer.digest)
    }
    const expected = [
      session.manifestDigest,
      session.configDigest,
      ...session.layers.map((l) => l.digest),
    ].sort()
    expect(cachedBlobs(cacheDir)).toEqual(expected)
    expect(tempFiles(cacheDir)).toEqual([])
    expect(session.config.rootfs.diff_ids).toHaveLength(3)

    // One GET per layer plus the config: nothing fetched twice.
    expect(blobGets(registry).sort()).toEqual(
      [session.configDigest, ...session.layers.map((l) => l.digest)]
        .map((d) => `/v2/multi/blobs/${d}`)
        .sort(),
    )
    expect(events[0]).toMatchObject({ type: 'resolved', manifestDigest: session.manifestDigest })
    const done = events.filter((e) => e.type === 'layer-done')
    expect(done.map((e) => e.type === 'layer-done' && e.cached)).toEqual([false, false, false])
    const big = session.layers.findIndex(
      (l) => l.size === Math.max(...session.layers.map((x) => x.size)),
    )
    const lastProgress = events.filter((e) => e.type === 'layer-progress' && e.index === big).at(-1)
    expect(lastProgress).toMatchObject({
      bytes: session.layers[big]!.size,
      total: session.layers[big]!.size,
    })

    // A warm pull reads everything from the cache: no blob request at all.
    registry.clearRequests()
    const warmEvents: PullProgressEvent[] = []
    const warm = await client(cacheDir).pull(`${registry.host}/multi:oci`, {
      onProgress: (e) => warmEvents.push(e),
    })
    await drain(warm)
    expect(warm.manifestDigest).toBe(session.manifestDigest)
    expect(blobGets(registry)).toEqual([])
    expect(registry.requests().filter((q) => q.path.includes('/manifests/'))).toHaveLength(1)
    expect(
      warmEvents
        .filter((e) => e.type === 'layer-done')
        .every((e) => e.type === 'layer-done' && e.cached),
    ).toBe(true)

    // skopeo reads the cache as an OCI layout under the recorded name.
    const { stdout } = await exec('skopeo', ['inspect', `oci:${cacheDir}:${session.refName}`])
    const inspected = JSON.parse(stdout) as {
      Digest: string
      Layers: string[]
      Architecture: string
    }
    expect(inspected.Digest).toBe(session.manifestDigest)
    expect(inspected.Layers).toEqual(session.layers.map((l) => l.digest))
    const { stdout: stat } = await exec('umoci', [
      'stat',
      '--image',
      `${cacheDir}:${session.refName}`,
    ])
    expect(stat).toContain(session.layers[0]!.digest.slice(0, 20))
    await rc.close()
  })

  it('a cached blob with the wrong size is not a hit: it is fetched again and replaced', async () => {
    const cacheDir = await tempCache()
    const first = await client(cacheDir).pull(`${registry.host}/multi:oci`)
    const paths = await drain(first)
    writeFileSync(paths[1]!, '') // a zero-byte blob, the poison the Go tool left behind
    registry.clearRequests()
    const second = await client(cacheDir).pull(`${registry.host}/multi:oci`)
    const again = await drain(second)
    expect(blobGets(registry)).toEqual([`/v2/multi/blobs/${first.layers[1]!.digest}`])
    expect(await hashFile(again[1]!)).toBe(first.layers[1]!.digest)
  })

  it('pulls a Docker schema2 image and a pinned digest', async () => {
    const cacheDir = await tempCache()
    const rc = client(cacheDir)
    const v2 = await rc.resolve(`${registry.host}/multi:v2s2`)
    const manifest = JSON.parse(
      readFileSync(join(cacheDir, 'blobs/sha256', v2.manifestDigest.slice(7)), 'utf8'),
    ) as {
      mediaType: string
    }
    expect(manifest.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json')
    registry.clearRequests()
    const session = await rc.pull(`${registry.host}/multi@${v2.manifestDigest}`)
    // Pinned by digest and already cached: the manifest and config need no request.
    expect(registry.requests().filter((q) => !q.path.includes('/blobs/'))).toEqual([])
    expect(session.manifestDigest).toBe(v2.manifestDigest)
    expect(session.reference.digest).toBe(v2.manifestDigest)
    const paths = await drain(session)
    for (const [i, layer] of session.layers.entries())
      expect(await hashFile(paths[i]!)).toBe(layer.digest)
    const index = JSON.parse(readFileSync(join(cacheDir, 'index.json'), 'utf8')) as {
      manifests: { digest: string; mediaType: string; annotations: Record<string, string> }[]
    }
    expect(index.manifests).toEqual([
      expect.objectContaining({
        digest: v2.manifestDigest,
        mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        annotations: {
          'org.opencontainers.image.ref.name': `${registry.host}/multi@${v2.manifestDigest}`,
        },
      }),
    ])
    await rc.close()
  })

  it('picks the platform from a manifest list and lists the offered ones when absent', async () => {
    const cacheDir = await tempCache()
    const rc = client(cacheDir)
    const amd = await rc.pull(`${registry.host}/multiarch:1`)
    await drain(amd)
    expect(amd.platform).toEqual({ os: 'linux', architecture: 'amd64' })
    expect(amd.config.architecture).toBe('amd64')
    const arm64 = await rc.pull(`${registry.host}/multiarch:1`, { platform: 'linux/arm64' })
    await drain(arm64)
    expect(arm64.platform).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' })
    expect(arm64.config.architecture).toBe('arm64')
    expect(arm64.manifestDigest).not.toBe(amd.manifestDigest)

    const err = await rc
      .resolve(`${registry.host}/multiarch:1`, { platform: 'linux/s390x' })
      .catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'E_PLATFORM_NOT_FOUND' })
    expect((err as Error).message).toContain('linux/amd64, linux/arm64/v8')
    // A single-platform image of the wrong architecture is refused too.
    await expect(
      rc.resolve(`${registry.host}/multi:oci`, { platform: 'linux/arm64' }),
    ).rejects.toMatchObject({
      code: 'E_PLATFORM_NOT_FOUND',
      message: expect.stringContaining('linux/amd64') as string,
    })
    await rc.close()
  })

  it('concurrent pulls of one reference share the in-flight config and manifest fetches', async () => {
    // Cross-review of issue 8: two pulls of one reference under different names (the daemon
    // runs them separately) each GET the config blob; layer blobs were already shared.
    const cacheDir = await tempCache()
    registry.clearRequests()
    const sessions = await Promise.all(
      [1, 2, 3].map(() => client(cacheDir).pull(`${registry.host}/multiarch:1`)),
    )
    await Promise.all(sessions.map((s) => drain(s)))
    const [first] = sessions
    for (const s of sessions) expect(s.configDigest).toBe(first!.configDigest)
    const gets = (path: string) =>
      registry.requests().filter((q) => q.method === 'GET' && q.path.endsWith(path)).length
    expect(gets(`/blobs/${first!.configDigest}`)).toBe(1)
    // The platform's manifest, fetched by digest from the index, is shared the same way.
    expect(gets(`/manifests/${first!.manifestDigest}`)).toBe(1)
    for (const l of first!.layers) expect(gets(`/blobs/${l.digest}`)).toBe(1)
  })

  it('reports an unknown tag and an unreachable registry with their codes', async () => {
    const cacheDir = await tempCache()
    const rc = client(cacheDir)
    await expect(rc.resolve(`${registry.host}/multi:nope`)).rejects.toMatchObject({
      code: 'E_MANIFEST_UNKNOWN',
    })
    await expect(rc.resolve(`${registry.host}/nothing:here`)).rejects.toMatchObject({
      code: 'E_MANIFEST_UNKNOWN',
    })
    await expect(rc.resolve('127.0.0.1:1/x:y')).rejects.toMatchObject({
      code: 'E_REGISTRY_UNREACHABLE',
    })
    await expect(rc.resolve('Not A Ref')).rejects.toMatchObject({ code: 'E_BAD_REFERENCE' })
    await rc.close()
  })

  it('tries mirrors before the origin and falls back past a dead one', async () => {
    const mirror = await startRegistry()
    try {
      await pushImage(multi, mirror, 'multi:oci', { format: 'oci' })
      const cacheDir = await tempCache()
      registry.clearRequests()
      const rc = client(cacheDir, {
        mirrors: { [registry.host]: ['http://127.0.0.1:1', mirror.url] },
      })
      const session = await rc.pull(`${registry.host}/multi:oci`)
      await drain(session)
      expect(blobGets(mirror)).toHaveLength(4)
      expect(registry.requests()).toEqual([])
      await rc.close()
    } finally {
      await mirror.stop()
    }
  })
})

describe('as the unprivileged user', () => {
  it('pulls with the built package into a cache the user owns', async () => {
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url))
    const script = fileURLToPath(new URL('./pull-child.mjs', import.meta.url))
    const cacheDir = join(userTempDir('banger-rc-user'), 'cache')
    const { code, stdout, stderr } = await runAsUser(
      process.execPath,
      [script, dist, cacheDir, `${registry.host}/multi:oci`],
      {
        timeoutMs: 60_000,
      },
    )
    expect(code, stdout + stderr).toBe(0)
    const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      manifestDigest: string
      paths: string[]
    }
    expect(result.paths).toHaveLength(3)
    const user = testUser()
    for (const path of result.paths) {
      expect(statSync(path).uid).toBe(user.uid)
      expect(await hashFile(path)).toBe(`sha256:${path.split('/').at(-1)}`)
    }
    expect(statSync(join(cacheDir, 'index.json')).uid).toBe(user.uid)
    const { stdout: inspected } = await exec('skopeo', [
      'inspect',
      `oci:${cacheDir}:${registry.host}/multi:oci`,
    ])
    expect((JSON.parse(inspected) as { Digest: string }).Digest).toBe(result.manifestDigest)
  })
})

describe('credentials', () => {
  const auth = { username: 'banger', password: 's3cret-pw' }
  let secured: TestRegistry

  beforeAll(async () => {
    secured = await startRegistry({ auth })
    await pushImage(single, secured, 'private:1', { format: 'oci' })
  }, 120_000)
  afterAll(async () => {
    await secured?.stop()
  })

  it('is refused without credentials, then pulls with auths from a Docker config.json', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'banger-rc-auth-'))
    try {
      await expect(
        client(join(dir, 'c0')).resolve(`${secured.host}/private:1`),
      ).rejects.toMatchObject({ code: 'E_AUTH' })

      const config = join(dir, 'config.json')
      const wrong = Buffer.from(`${auth.username}:nope`).toString('base64')
      writeFileSync(config, JSON.stringify({ auths: { [secured.host]: { auth: wrong } } }))
      await expect(
        client(join(dir, 'c1'), { dockerConfigPath: config }).resolve(`${secured.host}/private:1`),
      ).rejects.toMatchObject({
        code: 'E_AUTH',
      })

      const good = Buffer.from(`${auth.username}:${auth.password}`).toString('base64')
      writeFileSync(
        config,
        JSON.stringify({ auths: { [`http://${secured.host}/v2/`]: { auth: good } } }),
      )
      const session = await client(join(dir, 'c2'), { dockerConfigPath: config }).pull(
        `${secured.host}/private:1`,
      )
      const paths = await drain(session)
      expect(await hashFile(paths[0]!)).toBe(session.layers[0]!.digest)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('runs docker-credential-<name> from credHelpers', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'banger-rc-helper-'))
    const oldPath = process.env.PATH
    try {
      const helper = join(dir, 'docker-credential-bangertest')
      writeFileSync(
        helper,
        `#!/bin/sh\nread server\necho "$server" > ${join(dir, 'asked')}\nprintf '{"ServerURL":"%s","Username":"${auth.username}","Secret":"${auth.password}"}' "$server"\n`,
      )
      chmodSync(helper, 0o755)
      process.env.PATH = `${dir}:${oldPath}`
      const config = join(dir, 'config.json')
      writeFileSync(config, JSON.stringify({ credHelpers: { [secured.host]: 'bangertest' } }))
      const rc = client(join(dir, 'cache'), { dockerConfigPath: config })
      const image = await rc.resolve(`${secured.host}/private:1`)
      expect(image.layers).toHaveLength(1)
      expect(readFileSync(join(dir, 'asked'), 'utf8').trim()).toBe(secured.host)

      writeFileSync(config, JSON.stringify({ credsStore: 'missinghelper' }))
      await expect(
        client(join(dir, 'c3'), { dockerConfigPath: config }).resolve(`${secured.host}/private:1`),
      ).rejects.toMatchObject({
        code: 'E_CREDENTIAL_HELPER',
      })
      await rc.close()
    } finally {
      process.env.PATH = oldPath
      await unlink(join(dir, 'asked')).catch(() => {})
      await rm(dir, { recursive: true, force: true })
    }
  })
})
