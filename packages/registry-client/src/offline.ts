import { createReadStream } from 'node:fs'
import { link, mkdir, open, readFile, rm, stat, symlink } from 'node:fs/promises'
import { createHash, randomBytes } from 'node:crypto'
import { basename, dirname, join, posix, relative, resolve as resolvePath } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createGunzip } from 'node:zlib'
import { extract as tarExtract } from 'tar-stream'
import { REF_NAME_ANNOTATION, digestHex, sha256, type IndexEntry, type OciCache } from './cache.js'
import type { OpenedImage } from './client.js'
import {
  BadReferenceError,
  BadSourceError,
  ManifestInvalidError,
  ManifestUnknownError,
} from './errors.js'
import {
  CONFIG_SIZE_LIMIT,
  MANIFEST_SIZE_LIMIT,
  MEDIA,
  configPlatform,
  parseConfig,
  parseManifest,
  pickPlatform,
} from './manifest.js'
import { formatReference, parseReference } from './reference.js'
import type { ImageReference, LayerDescriptor, Platform } from './types.js'

/** An image read from disk instead of a registry, named with skopeo's transport prefixes. */
export interface OfflineSource {
  kind: 'oci' | 'oci-archive' | 'docker-archive'
  path: string
  name?: string
  input: string
}

/** `oci:<dir>[:<name>]`, `oci-archive:<file>[:<name>]`, `docker-archive:<file>[:<repo:tag>]`; else undefined. */
export function parseOfflineSource(input: string): OfflineSource | undefined {
  const m = /^(oci|oci-archive|docker-archive):(.*)$/s.exec(input)
  if (!m) return undefined
  const kind = m[1] as OfflineSource['kind']
  const rest = m[2]!
  const colon = rest.indexOf(':')
  const path = colon === -1 ? rest : rest.slice(0, colon)
  const name = colon === -1 ? '' : rest.slice(colon + 1)
  if (!path) throw new BadReferenceError(input, `the ${kind} path is missing`)
  return { kind, path, input, ...(name && { name }) }
}

export async function openOfflineSource(
  src: OfflineSource,
  cache: OciCache,
  wanted: Platform,
  signal: AbortSignal | undefined,
): Promise<OpenedImage> {
  if (src.kind === 'oci') return openLayout(src, src.path, false, cache, wanted, signal)
  const dir = await extractArchive(src, cache, signal)
  try {
    return src.kind === 'oci-archive'
      ? await openLayout(src, dir, true, cache, wanted, signal)
      : await openDockerArchive(src, dir, cache, wanted, signal)
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
}

function releaser(dir: string | undefined): () => Promise<void> {
  return dir ? () => rm(dir, { recursive: true, force: true }) : () => Promise.resolve()
}

/** A reference for the session: the image's own name when it has one, else `localhost/<kind>/<file>`. */
function offlineReference(src: OfflineSource, ownName: string | undefined): ImageReference {
  for (const candidate of [src.name, ownName]) {
    if (!candidate || (src.kind !== 'docker-archive' && !candidate.includes('/'))) continue
    try {
      return parseReference(candidate)
    } catch {
      // not a reference: fall through to a made-up one
    }
  }
  const slug =
    basename(src.path)
      .toLowerCase()
      .replace(/\.(tar|tgz|tar\.gz)$/, '')
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'image'
  const tag = (src.name ?? 'latest')
    .replace(/[^\w.-]/g, '-')
    .replace(/^[.-]/, '_')
    .slice(0, 128)
  return { registry: 'localhost', repository: `${src.kind}/${slug}`, tag }
}

async function readLimited(src: OfflineSource, path: string, limit: number): Promise<Buffer> {
  try {
    const s = await stat(path)
    if (s.size > limit) throw new BadSourceError(src.input, `${path} is larger than ${limit} bytes`)
    return await readFile(path)
  } catch (err) {
    if (err instanceof BadSourceError) throw err
    throw new BadSourceError(src.input, `cannot read ${path}: ${(err as Error).message}`, {
      cause: err,
    })
  }
}

/** Reads a small blob from a layout and checks it against its descriptor. */
async function layoutBlob(
  src: OfflineSource,
  layout: string,
  desc: LayerDescriptor,
  limit: number,
): Promise<Buffer> {
  const data = await readLimited(
    src,
    join(layout, 'blobs', 'sha256', digestHex(desc.digest)),
    limit,
  )
  const actual = sha256(data)
  if (data.length !== desc.size || actual !== desc.digest)
    throw new BadSourceError(
      src.input,
      `blob ${desc.digest} is corrupt (${data.length} bytes hashing to ${actual})`,
    )
  return data
}

async function openLayout(
  src: OfflineSource,
  layout: string,
  extracted: boolean,
  cache: OciCache,
  wanted: Platform,
  signal: AbortSignal | undefined,
): Promise<OpenedImage> {
  const indexData = await readLimited(src, join(layout, 'index.json'), MANIFEST_SIZE_LIMIT)
  const index = parseManifest(src.input, indexData, MEDIA.ociIndex)
  if (index.kind !== 'index')
    throw new BadSourceError(src.input, 'index.json is not an image index')
  const nameOf = (d: LayerDescriptor): string | undefined => d.annotations?.[REF_NAME_ANNOTATION]
  const named = src.name ? index.manifests.filter((m) => nameOf(m) === src.name) : index.manifests
  const names = index.manifests.map(nameOf).filter(Boolean).join(', ') || '(none)'
  if (named.length === 0) throw new ManifestUnknownError(src.input, `names in the layout: ${names}`)
  if (named.length > 1 && !named.every((m) => m.platform))
    throw new ManifestUnknownError(
      src.input,
      `the layout holds several images; name one of: ${names}`,
    )

  let top = named.length > 1 ? undefined : named[0]!
  let platform: Platform | undefined
  if (!top) {
    // Several entries under one name, each with a platform (as skopeo --all writes).
    top = pickPlatform(src.input, named, wanted)
    platform = top.platform
  }
  let desc: LayerDescriptor = top
  let data = await layoutBlob(src, layout, desc, MANIFEST_SIZE_LIMIT)
  let manifest = parseManifest(src.input, data, desc.mediaType)
  if (manifest.kind === 'index') {
    await cache.writeSmallBlob(desc.digest, data)
    const pick = pickPlatform(src.input, manifest.manifests, wanted)
    platform = pick.platform
    desc = pick
    data = await layoutBlob(src, layout, desc, MANIFEST_SIZE_LIMIT)
    manifest = parseManifest(src.input, data, desc.mediaType)
    if (manifest.kind !== 'image')
      throw new ManifestInvalidError(src.input, `index entry ${desc.digest} is itself an index`)
  }
  await cache.writeSmallBlob(desc.digest, data)
  const configData = await layoutBlob(src, layout, manifest.config, CONFIG_SIZE_LIMIT)
  const config = parseConfig(src.input, manifest.config.digest, configData, manifest.layers.length)
  platform ??= configPlatform(src.input, config, wanted)
  await cache.writeSmallBlob(manifest.config.digest, configData)
  signal?.throwIfAborted()

  const reference = offlineReference(src, nameOf(top))
  const entry: IndexEntry = {
    mediaType: manifest.mediaType,
    digest: desc.digest,
    size: data.length,
    platform,
  }
  return {
    image: {
      reference,
      refName: formatReference(reference),
      manifestDigest: desc.digest,
      platform,
      configDigest: manifest.config.digest,
      config,
      layers: manifest.layers,
    },
    entry,
    produce: (layer, layerSignal, onBytes) =>
      cache.importFile(join(layout, 'blobs', 'sha256', digestHex(layer.digest)), layer, {
        move: extracted,
        signal: layerSignal,
        onBytes,
      }),
    release: releaser(extracted ? layout : undefined),
  }
}

interface DockerArchiveEntry {
  Config?: string
  RepoTags?: string[] | null
  Layers?: string[]
}

async function openDockerArchive(
  src: OfflineSource,
  dir: string,
  cache: OciCache,
  wanted: Platform,
  signal: AbortSignal | undefined,
): Promise<OpenedImage> {
  let entries: DockerArchiveEntry[]
  try {
    entries = JSON.parse(
      (await readLimited(src, join(dir, 'manifest.json'), MANIFEST_SIZE_LIMIT)).toString('utf8'),
    ) as DockerArchiveEntry[]
  } catch (err) {
    if (err instanceof BadSourceError) throw err
    throw new BadSourceError(src.input, 'manifest.json is not JSON', { cause: err })
  }
  if (!Array.isArray(entries) || entries.length === 0)
    throw new BadSourceError(src.input, 'manifest.json lists no image')
  const canonical = (n: string): string => {
    try {
      return formatReference(parseReference(n))
    } catch {
      return n
    }
  }
  const tags = entries.flatMap((e) => e.RepoTags ?? [])
  let chosen: DockerArchiveEntry | undefined
  if (src.name)
    chosen = entries.find((e) =>
      (e.RepoTags ?? []).some((t) => canonical(t) === canonical(src.name!)),
    )
  else if (entries.length === 1) chosen = entries[0]
  if (!chosen)
    throw new ManifestUnknownError(
      src.input,
      src.name
        ? `tags in the archive: ${tags.join(', ') || '(none)'}`
        : `the archive holds several images; name one of: ${tags.join(', ')}`,
    )
  if (!chosen.Config || !Array.isArray(chosen.Layers))
    throw new BadSourceError(src.input, 'manifest.json entry lacks Config or Layers')

  const configData = await readLimited(src, inside(src, dir, chosen.Config), CONFIG_SIZE_LIMIT)
  const configDigest = sha256(configData)
  const config = parseConfig(src.input, configDigest, configData, chosen.Layers.length)
  const platform = configPlatform(src.input, config, wanted)

  // Layer digests are not recorded in the archive: hash each file once to name it.
  const files = new Map<string, string>()
  const layers: LayerDescriptor[] = []
  for (const name of chosen.Layers) {
    const path = inside(src, dir, name)
    const { digest, size, head } = await hashFile(src, path, signal)
    files.set(digest, path)
    const mediaType =
      head[0] === 0x1f && head[1] === 0x8b
        ? 'application/vnd.oci.image.layer.v1.tar+gzip'
        : head.readUInt32BE(0) === 0x28b52ffd
          ? 'application/vnd.oci.image.layer.v1.tar+zstd'
          : 'application/vnd.oci.image.layer.v1.tar'
    layers.push({ mediaType, digest, size })
  }
  const manifestData = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: configData.length,
      },
      layers,
    }),
  )
  const manifestDigest = sha256(manifestData)
  await cache.writeSmallBlob(manifestDigest, manifestData)
  await cache.writeSmallBlob(configDigest, configData)
  const reference = offlineReference(src, chosen.RepoTags?.[0])
  return {
    image: {
      reference,
      refName: formatReference(reference),
      manifestDigest,
      platform,
      configDigest,
      config,
      layers,
    },
    entry: {
      mediaType: MEDIA.ociManifest,
      digest: manifestDigest,
      size: manifestData.length,
      platform,
    },
    produce: (layer, layerSignal, onBytes) =>
      cache.importFile(files.get(layer.digest)!, layer, {
        move: true,
        signal: layerSignal,
        onBytes,
      }),
    release: releaser(dir),
  }
}

/** `name` resolved inside `dir`, refusing anything that escapes it. */
function inside(src: OfflineSource, dir: string, name: string): string {
  const path = resolvePath(dir, name)
  const rel = relative(dir, path)
  if (rel === '' || rel.startsWith('..') || posix.isAbsolute(rel))
    throw new BadSourceError(src.input, `path ${JSON.stringify(name)} escapes the archive`)
  return path
}

async function hashFile(
  src: OfflineSource,
  path: string,
  signal: AbortSignal | undefined,
): Promise<{ digest: string; size: number; head: Buffer }> {
  const hash = createHash('sha256')
  let size = 0
  let head = Buffer.alloc(0)
  try {
    for await (const chunk of createReadStream(
      path,
      signal ? { signal } : {},
    ) as AsyncIterable<Buffer>) {
      if (head.length < 4) head = Buffer.concat([head, chunk.subarray(0, 4 - head.length)])
      hash.update(chunk)
      size += chunk.length
    }
  } catch (err) {
    signal?.throwIfAborted()
    throw new BadSourceError(src.input, `cannot read layer ${path}: ${(err as Error).message}`, {
      cause: err,
    })
  }
  return {
    digest: `sha256:${hash.digest('hex')}`,
    size,
    head: Buffer.concat([head, Buffer.alloc(4)]),
  }
}

/**
 * Unpacks a tar (or gzipped tar) archive into a fresh directory under the cache's tmp/ (same
 * filesystem, so verified blobs can be renamed into place). Entries are drained one at a time;
 * names escaping the directory are refused.
 */
async function extractArchive(
  src: OfflineSource,
  cache: OciCache,
  signal: AbortSignal | undefined,
): Promise<string> {
  let head: Buffer
  try {
    const fh = await open(src.path, 'r')
    try {
      head = Buffer.alloc(2)
      await fh.read(head, 0, 2, 0)
    } finally {
      await fh.close()
    }
  } catch (err) {
    throw new BadSourceError(src.input, `cannot open ${src.path}: ${(err as Error).message}`, {
      cause: err,
    })
  }
  const dir = join(cache.dir, 'tmp', `extract-${process.pid}-${randomBytes(6).toString('hex')}`)
  await mkdir(dir, { recursive: true })
  const extract = tarExtract()
  const gzip = head[0] === 0x1f && head[1] === 0x8b
  try {
    await Promise.all([
      gzip
        ? pipeline(createReadStream(src.path), createGunzip(), extract, signal ? { signal } : {})
        : pipeline(createReadStream(src.path), extract, signal ? { signal } : {}),
      (async () => {
        try {
          await unpackEntries()
        } catch (err) {
          extract.destroy(err as Error)
          throw err
        }
      })(),
    ])
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    signal?.throwIfAborted()
    if (err instanceof BadSourceError) throw err
    throw new BadSourceError(src.input, `cannot unpack: ${(err as Error).message}`, { cause: err })
  }
  return dir

  async function unpackEntries(): Promise<void> {
    for await (const entry of extract) {
      const name = posix.normalize(entry.header.name.replace(/^(\.\/|\/)+/, ''))
      if (name === '.' || name === '') {
        entry.resume()
        continue
      }
      const path = inside(src, dir, name)
      const type = entry.header.type
      if (type === 'directory') {
        await mkdir(path, { recursive: true })
      } else if (type === 'file' || type === 'contiguous-file') {
        await mkdir(dirname(path), { recursive: true })
        const fh = await open(path, 'wx', 0o644)
        try {
          for await (const chunk of entry as AsyncIterable<Buffer>) await fh.write(chunk)
        } finally {
          await fh.close()
        }
        continue
      } else if (
        type === 'symlink' &&
        entry.header.linkname &&
        !posix.isAbsolute(entry.header.linkname)
      ) {
        // docker save links identical layers to one file; only links that stay inside are kept.
        inside(src, dir, join(dirname(name), entry.header.linkname))
        await mkdir(dirname(path), { recursive: true })
        await symlink(entry.header.linkname, path)
      } else if (type === 'link' && entry.header.linkname) {
        await mkdir(dirname(path), { recursive: true })
        await link(inside(src, dir, entry.header.linkname), path)
      }
      entry.resume()
    }
  }
}
