import { ManifestInvalidError, PlatformNotFoundError, UnsupportedManifestError } from './errors.js'
import { formatPlatform, platformMatches, platformScore } from './platform.js'
import type { ImageConfig, LayerDescriptor, Platform } from './types.js'

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const

export const ACCEPT = [
  MEDIA.ociIndex,
  MEDIA.dockerList,
  MEDIA.ociManifest,
  MEDIA.dockerManifest,
].join(', ')
export const MANIFEST_SIZE_LIMIT = 4 * 1024 * 1024
export const CONFIG_SIZE_LIMIT = 16 * 1024 * 1024

const sha256Re = /^sha256:[0-9a-f]{64}$/

export interface IndexManifestEntry extends LayerDescriptor {
  platform?: Platform
}

export type ParsedManifest =
  | { kind: 'index'; mediaType: string; manifests: IndexManifestEntry[] }
  | { kind: 'image'; mediaType: string; config: LayerDescriptor; layers: LayerDescriptor[] }

function checkDescriptor(ref: string, what: string, d: unknown): LayerDescriptor {
  const desc = d as Partial<LayerDescriptor> | null
  if (!desc || typeof desc !== 'object')
    throw new ManifestInvalidError(ref, `${what} is not a descriptor`)
  if (typeof desc.digest !== 'string' || !sha256Re.test(desc.digest))
    throw new ManifestInvalidError(
      ref,
      `${what} has digest ${JSON.stringify(desc.digest)}; only sha256 digests are supported`,
    )
  if (typeof desc.size !== 'number' || !Number.isSafeInteger(desc.size) || desc.size < 0)
    throw new ManifestInvalidError(ref, `${what} has no valid size`)
  return {
    mediaType: typeof desc.mediaType === 'string' ? desc.mediaType : '',
    digest: desc.digest,
    size: desc.size,
    ...(desc.annotations && { annotations: desc.annotations }),
  }
}

/** Classifies and validates a manifest body. Rejects schema1 and unknown types with E_UNSUPPORTED_MANIFEST. */
export function parseManifest(
  ref: string,
  data: Buffer,
  contentType: string | undefined,
): ParsedManifest {
  const headerType = contentType?.split(';')[0]?.trim().toLowerCase()
  if (headerType && /^application\/vnd\.docker\.distribution\.manifest\.v1\+/.test(headerType))
    throw new UnsupportedManifestError(ref, headerType)
  let json: Record<string, unknown>
  try {
    json = JSON.parse(data.toString('utf8')) as Record<string, unknown>
  } catch {
    throw new ManifestInvalidError(ref, 'the manifest is not JSON')
  }
  if (!json || typeof json !== 'object')
    throw new ManifestInvalidError(ref, 'the manifest is not a JSON object')
  if (json.schemaVersion === 1)
    throw new UnsupportedManifestError(
      ref,
      'schemaVersion 1 (application/vnd.docker.distribution.manifest.v1+json)',
    )
  let mediaType = typeof json.mediaType === 'string' ? json.mediaType : undefined
  if (
    !mediaType &&
    headerType &&
    headerType !== 'application/json' &&
    headerType !== 'application/octet-stream'
  )
    mediaType = headerType
  if (!mediaType) mediaType = Array.isArray(json.manifests) ? MEDIA.ociIndex : MEDIA.ociManifest
  if (mediaType === MEDIA.ociIndex || mediaType === MEDIA.dockerList) {
    if (!Array.isArray(json.manifests))
      throw new ManifestInvalidError(ref, 'the index has no manifests list')
    const manifests = json.manifests.map((m: unknown, i) => {
      const desc = checkDescriptor(ref, `index entry ${i}`, m)
      const p = (m as { platform?: Partial<Platform> }).platform
      const platform =
        p && typeof p.os === 'string' && typeof p.architecture === 'string'
          ? {
              os: p.os,
              architecture: p.architecture,
              ...(typeof p.variant === 'string' && p.variant && { variant: p.variant }),
            }
          : undefined
      return { ...desc, ...(platform && { platform }) }
    })
    return { kind: 'index', mediaType, manifests }
  }
  if (mediaType === MEDIA.ociManifest || mediaType === MEDIA.dockerManifest) {
    if (!Array.isArray(json.layers))
      throw new ManifestInvalidError(ref, 'the manifest has no layers list')
    return {
      kind: 'image',
      mediaType,
      config: checkDescriptor(ref, 'config', json.config),
      layers: json.layers.map((l: unknown, i) => checkDescriptor(ref, `layer ${i}`, l)),
    }
  }
  throw new UnsupportedManifestError(ref, mediaType)
}

/** Index entries that are attestations or signatures, not runnable images. */
export function isAttestation(entry: IndexManifestEntry): boolean {
  return (
    entry.platform?.os === 'unknown' ||
    entry.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest'
  )
}

/**
 * Picks the entry of an index for `wanted`, skipping attestations; the best variant match wins.
 * Throws E_PLATFORM_NOT_FOUND listing what the index offers.
 */
export function pickPlatform(
  name: string,
  manifests: IndexManifestEntry[],
  wanted: Platform,
): IndexManifestEntry & { platform: Platform } {
  const offered = manifests.filter(
    (m): m is IndexManifestEntry & { platform: Platform } => !!m.platform && !isAttestation(m),
  )
  const pick = offered
    .filter((m) => platformMatches(wanted, m.platform))
    .sort((a, b) => platformScore(wanted, b.platform) - platformScore(wanted, a.platform))[0]
  if (!pick)
    throw new PlatformNotFoundError(name, formatPlatform(wanted), [
      ...new Set(offered.map((m) => formatPlatform(m.platform))),
    ])
  return pick
}

/** The platform a single-platform image's config declares, checked against `wanted`. */
export function configPlatform(
  name: string,
  config: { os?: string; architecture?: string; variant?: string },
  wanted: Platform,
): Platform {
  const variant = config.variant ?? wanted.variant
  const own: Platform = {
    os: config.os ?? wanted.os,
    architecture: config.architecture ?? wanted.architecture,
    ...(variant && { variant }),
  }
  if (!platformMatches(wanted, own))
    throw new PlatformNotFoundError(name, formatPlatform(wanted), [formatPlatform(own)])
  return own
}

/** Parses a config blob and checks it lists one diff_id per layer. */
export function parseConfig(
  name: string,
  digest: string,
  data: Buffer,
  layerCount: number,
): ImageConfig {
  let config: ImageConfig
  try {
    config = JSON.parse(data.toString('utf8')) as ImageConfig
  } catch {
    throw new ManifestInvalidError(name, `config ${digest} is not JSON`)
  }
  if (!config || typeof config !== 'object' || !Array.isArray(config.rootfs?.diff_ids))
    throw new ManifestInvalidError(name, `config ${digest} has no rootfs.diff_ids`)
  if (config.rootfs.diff_ids.length !== layerCount)
    throw new ManifestInvalidError(
      name,
      `the config lists ${config.rootfs.diff_ids.length} diff_ids for ${layerCount} layers`,
    )
  return config
}
