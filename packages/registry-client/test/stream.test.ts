import { randomBytes } from 'node:crypto'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildImage, pushImage, startRegistry, type TestRegistry } from '@banger/test-support'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { PullProgressEvent } from '../src/index.js'
import { client, hashStream, openFilesUnder, tempCache, tempFiles } from './helpers.js'

let registry: TestRegistry

beforeAll(async () => {
  registry = await startRegistry()
  const image = await buildImage([
    // Random bytes do not compress: the blob is about as large as the file.
    (root) => writeFileSync(join(root, 'big.bin'), randomBytes(32 * 1024 * 1024)),
    (root) => writeFileSync(join(root, 'small.txt'), 'small\n'),
  ])
  await pushImage(image, registry, 'big:1')
}, 300_000)

afterAll(async () => {
  await registry?.stop()
})

describe('streamLayers against a real registry', () => {
  it('hands out layer 0 while it downloads, and every streamed layer hashes to its digest', async () => {
    const cacheDir = await tempCache()
    const rc = client(cacheDir)
    const events: PullProgressEvent[] = []
    const session = await rc.pull(`${registry.host}/big:1`, { onProgress: (e) => events.push(e) })
    const blobFile = (digest: string): string =>
      join(cacheDir, 'blobs', 'sha256', digest.slice('sha256:'.length))
    expect(session.layers[0]!.size).toBeGreaterThan(30 * 1024 * 1024)

    const digests: string[] = []
    let firstChunk: { blobVisible: boolean; layerDone: boolean } | undefined
    for await (const layer of session.streamLayers()) {
      expect(layer.index).toBe(digests.length)
      expect(layer.diffId).toBe(session.config.rootfs.diff_ids[layer.index])
      const stream = layer.open()
      expect(() => layer.open()).toThrow(/already opened/)
      if (layer.index === 0)
        stream.once('data', () => {
          firstChunk = {
            blobVisible: existsSync(blobFile(layer.descriptor.digest)),
            layerDone: events.some((e) => e.type === 'layer-done' && e.index === 0),
          }
        })
      digests.push(await hashStream(stream))
    }
    await session.done

    // The first bytes of layer 0 arrived before its blob was verified and published.
    expect(firstChunk).toEqual({ blobVisible: false, layerDone: false })
    expect(digests).toEqual(session.layers.map((l) => l.digest))
    expect(tempFiles(cacheDir)).toEqual([])
    expect(openFilesUnder(cacheDir)).toEqual([])

    // Second pull: every layer is a cache hit and streams from the blob file.
    const again: PullProgressEvent[] = []
    const warm = await rc.pull(`${registry.host}/big:1`, { onProgress: (e) => again.push(e) })
    const warmDigests: string[] = []
    for await (const layer of warm.streamLayers()) warmDigests.push(await hashStream(layer.open()))
    await warm.done
    expect(warmDigests).toEqual(session.layers.map((l) => l.digest))
    expect(
      again.filter((e) => e.type === 'layer-done').map((e) => e.type === 'layer-done' && e.cached),
    ).toEqual([true, true])
    expect(openFilesUnder(cacheDir)).toEqual([])
    await rc.close()
  })
})
