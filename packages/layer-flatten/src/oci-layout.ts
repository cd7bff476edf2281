import { createReadStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FlattenError } from './errors.js'
import type { LayerInput } from './types.js'

interface Descriptor {
  mediaType?: string
  digest: string
  annotations?: Record<string, string>
}

const blobPath = (layout: string, digest: string): string => {
  const [algo, hex] = digest.split(':')
  if (!algo || !hex || !/^[a-z0-9]+$/.test(algo) || !/^[a-f0-9]+$/.test(hex)) {
    throw new FlattenError(
      'E_CORRUPT_LAYER',
      `bad digest ${JSON.stringify(digest)} in ${layout}`,
      'The OCI layout is damaged.',
    )
  }
  return join(layout, 'blobs', algo, hex)
}

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T
}

/**
 * The layers of one image in an OCI image layout directory (as written by umoci or
 * `skopeo copy ... oci:DIR:TAG`), oldest first, with their DiffIDs from the image config.
 * `tag` picks the manifest by its `org.opencontainers.image.ref.name`; without it the layout
 * must hold exactly one manifest. Nested indexes are followed to their first manifest.
 */
export async function layersFromOciLayout(layout: string, tag?: string): Promise<LayerInput[]> {
  const index = await readJson<{ manifests?: Descriptor[] }>(join(layout, 'index.json'))
  const manifests = index.manifests ?? []
  let chosen = tag
    ? manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)
    : manifests.length === 1
      ? manifests[0]
      : undefined
  if (!chosen) {
    const tags = manifests
      .map((m) => m.annotations?.['org.opencontainers.image.ref.name'])
      .filter(Boolean)
    throw new FlattenError(
      'E_CORRUPT_LAYER',
      tag
        ? `no tag ${JSON.stringify(tag)} in ${layout}`
        : `${layout} holds ${manifests.length} images`,
      `Name one of its tags: ${tags.join(', ') || '(none)'}.`,
    )
  }
  for (let depth = 0; chosen.mediaType === 'application/vnd.oci.image.index.v1+json'; depth++) {
    const nested: { manifests?: Descriptor[] } = await readJson(blobPath(layout, chosen.digest))
    if (!nested.manifests?.[0] || depth > 4)
      throw new FlattenError(
        'E_CORRUPT_LAYER',
        `empty index in ${layout}`,
        'The OCI layout is damaged.',
      )
    chosen = nested.manifests[0]
  }
  const manifest = await readJson<{ config: Descriptor; layers: Descriptor[] }>(
    blobPath(layout, chosen.digest),
  )
  const config = await readJson<{ rootfs?: { diff_ids?: string[] } }>(
    blobPath(layout, manifest.config.digest),
  )
  const diffIds = config.rootfs?.diff_ids ?? []
  if (diffIds.length !== manifest.layers.length) {
    throw new FlattenError(
      'E_CORRUPT_LAYER',
      `image config lists ${diffIds.length} diff_ids for ${manifest.layers.length} layers in ${layout}`,
      'The image is damaged; rebuild or pull it again.',
    )
  }
  return manifest.layers.map((layer, i) => ({
    name: layer.digest,
    mediaType: layer.mediaType,
    diffId: diffIds[i],
    // 1 MiB reads: each read is a thread-pool round trip.
    open: () => createReadStream(blobPath(layout, layer.digest), { highWaterMark: 1 << 20 }),
  }))
}
