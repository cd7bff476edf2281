import { execFile } from 'node:child_process'
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { promisify } from 'node:util'
import { buildImage, type OciImage } from '@banger/test-support'
import { pack } from 'tar-stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RegistryClient } from '../src/index.js'
import { cachedBlobs, drain, hashFile, tempCache, tempFiles } from './helpers.js'

const exec = promisify(execFile)

let image: OciImage
let work: string
let layoutLayers: string[]
let layoutManifest: string

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'banger-rc-offline-'))
  image = await buildImage([
    (root) => {
      mkdirSync(join(root, 'etc'), { recursive: true })
      writeFileSync(join(root, 'etc', 'os-release'), 'ID=test\n')
    },
    (root) => writeFileSync(join(root, 'data'), Buffer.alloc(100_000, 3)),
  ])
  const index = JSON.parse(readFileSync(join(image.layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[]
  }
  layoutManifest = index.manifests[0]!.digest
  const manifest = JSON.parse(
    readFileSync(join(image.layout, 'blobs/sha256', layoutManifest.slice(7)), 'utf8'),
  ) as {
    layers: { digest: string }[]
  }
  layoutLayers = manifest.layers.map((l) => l.digest)
}, 120_000)

afterAll(async () => {
  await rm(work, { recursive: true, force: true })
})

const client = (cacheDir: string): RegistryClient =>
  new RegistryClient({ cacheDir, dockerConfigPath: '/nonexistent' })

describe('offline sources', () => {
  it('pulls from an OCI layout directory without touching it', async () => {
    const cacheDir = await tempCache()
    const session = await client(cacheDir).pull(`oci:${image.layout}:${image.tag}`)
    const paths = await drain(session)
    expect(session.manifestDigest).toBe(layoutManifest)
    expect(session.layers.map((l) => l.digest)).toEqual(layoutLayers)
    for (const [i, p] of paths.entries()) expect(await hashFile(p)).toBe(layoutLayers[i])
    for (const d of layoutLayers)
      expect(await hashFile(join(image.layout, 'blobs/sha256', d.slice(7)))).toBe(d)
    expect(session.reference).toEqual({
      registry: 'localhost',
      repository: 'oci/layout',
      tag: 'latest',
    })
    const { stdout } = await exec('skopeo', ['inspect', `oci:${cacheDir}:${session.refName}`])
    expect((JSON.parse(stdout) as { Digest: string }).Digest).toBe(layoutManifest)
  })

  it('pulls from an OCI archive and leaves no extracted files behind', async () => {
    const archive = join(work, 'image.oci.tar')
    await exec('skopeo', ['copy', '--quiet', image.ref, `oci-archive:${archive}:v2`])
    const cacheDir = await tempCache()
    const session = await client(cacheDir).pull(`oci-archive:${archive}:v2`)
    const paths = await drain(session)
    expect(session.layers.map((l) => l.digest)).toEqual(layoutLayers)
    for (const [i, p] of paths.entries()) expect(await hashFile(p)).toBe(layoutLayers[i])
    expect(tempFiles(cacheDir)).toEqual([])
    await expect(client(cacheDir).resolve(`oci-archive:${archive}:nope`)).rejects.toMatchObject({
      code: 'E_MANIFEST_UNKNOWN',
      message: expect.stringContaining('v2') as string,
    })
    expect(tempFiles(cacheDir)).toEqual([])
  })

  it('pulls from a docker save archive, naming layers by their content', async () => {
    const archive = join(work, 'image.docker.tar')
    await exec('skopeo', [
      'copy',
      '--quiet',
      image.ref,
      `docker-archive:${archive}:example.com/app:v1`,
    ])
    const cacheDir = await tempCache()
    const session = await client(cacheDir).pull(`docker-archive:${archive}`)
    const paths = await drain(session)
    expect(session.reference).toEqual({ registry: 'example.com', repository: 'app', tag: 'v1' })
    expect(session.layers).toHaveLength(2)
    // docker save stores uncompressed layers: their digests are the config's diff_ids.
    expect(session.layers.map((l) => l.digest)).toEqual(session.config.rootfs.diff_ids)
    expect(
      session.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar'),
    ).toBe(true)
    for (const [i, p] of paths.entries()) expect(await hashFile(p)).toBe(session.layers[i]!.digest)
    expect(cachedBlobs(cacheDir)).toEqual(
      [session.manifestDigest, session.configDigest, ...session.layers.map((l) => l.digest)].sort(),
    )
    expect(tempFiles(cacheDir)).toEqual([])
    const { stdout } = await exec('skopeo', ['inspect', `oci:${cacheDir}:example.com/app:v1`])
    expect((JSON.parse(stdout) as { Digest: string }).Digest).toBe(session.manifestDigest)

    const named = await client(cacheDir).resolve(`docker-archive:${archive}:example.com/app:v1`)
    expect(named.manifestDigest).toBe(session.manifestDigest)
    await expect(
      client(cacheDir).resolve(`docker-archive:${archive}:other:v9`),
    ).rejects.toMatchObject({
      code: 'E_MANIFEST_UNKNOWN',
      message: expect.stringContaining('example.com/app:v1') as string,
    })
  })

  it('refuses a missing file and an archive entry escaping the extraction directory', async () => {
    const cacheDir = await tempCache()
    await expect(
      client(cacheDir).resolve(`docker-archive:${join(work, 'missing.tar')}`),
    ).rejects.toMatchObject({
      code: 'E_BAD_SOURCE',
    })
    await expect(
      client(cacheDir).resolve(`oci:${join(work, 'missing-dir')}`),
    ).rejects.toMatchObject({
      code: 'E_BAD_SOURCE',
    })
    const evil = join(work, 'evil.tar')
    const p = pack()
    p.entry({ name: '../escaped' }, 'gotcha')
    p.finalize()
    await pipeline(p, createWriteStream(evil))
    await expect(client(cacheDir).resolve(`docker-archive:${evil}`)).rejects.toMatchObject({
      code: 'E_BAD_SOURCE',
      message: expect.stringContaining('escapes') as string,
    })
    expect(tempFiles(cacheDir)).toEqual([])
  })
})
