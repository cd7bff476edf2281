/** Contract of @banger/registry-client. Implementation fills these; shapes are API. */

import type { Readable } from 'node:stream'

/** A parsed image reference, normalised with Docker's rules (`debian` → `docker.io/library/debian:latest`). */
export interface ImageReference {
  /** Registry host with optional port, e.g. `docker.io`, `localhost:5000`. */
  readonly registry: string
  /** Repository path, e.g. `library/debian`. */
  readonly repository: string
  /** Tag; `latest` when neither tag nor digest was given. */
  readonly tag?: string
  /** `sha256:<hex>` when the reference pins a digest. */
  readonly digest?: string
}

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

export interface LayerDescriptor {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
}

/** The image config blob (OCI image-spec config), parsed. Only the fields banger reads are typed. */
export interface ImageConfig {
  architecture?: string
  os?: string
  variant?: string
  config?: {
    Env?: string[]
    Entrypoint?: string[] | null
    Cmd?: string[] | null
    WorkingDir?: string
    User?: string
  }
  rootfs: { type: string; diff_ids: string[] }
  [key: string]: unknown
}

export interface RegistryClientOptions {
  /** OCI image layout directory used as the blob cache (created if missing). */
  cacheDir: string
  /** Registry host → mirror base URLs (`http://127.0.0.1:5001`), tried in order before the origin. */
  mirrors?: Record<string, string[]>
  /** Registry hosts reached over plain HTTP. localhost and 127.0.0.0/8 always are. */
  insecureRegistries?: string[]
  /** Docker config for credentials; default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. */
  dockerConfigPath?: string
  /** Parallel blob downloads per pull; default 3. */
  concurrency?: number
  /** Retry policy for 5xx, connection resets and 429; defaults `{ attempts: 5, baseDelayMs: 250, maxRetryAfterMs: 60_000 }`. */
  retry?: { attempts?: number; baseDelayMs?: number; maxRetryAfterMs?: number }
}

export interface PullOptions {
  /** `linux/amd64` (default), `linux/arm64/v8`, or a Platform. */
  platform?: string | Platform
  signal?: AbortSignal
  onProgress?: (event: PullProgressEvent) => void
}

export type PullProgressEvent =
  | { type: 'resolved'; manifestDigest: string; layers: LayerDescriptor[] }
  | { type: 'layer-progress'; index: number; digest: string; bytes: number; total: number }
  | { type: 'layer-done'; index: number; digest: string; cached: boolean }

/** A layer blob that is complete and verified in the cache. */
export interface CachedLayer {
  index: number
  descriptor: LayerDescriptor
  /** DiffID from the config (sha256 of the uncompressed tar), for the flattener to verify. */
  diffId: string
  /** Path of the verified blob file inside the cache. Read-only: never modify it. */
  path: string
}

/** A layer handed out while it may still be downloading; see `PullSession.streamLayers`. */
export interface StreamedLayer {
  index: number
  descriptor: LayerDescriptor
  /** DiffID from the config (sha256 of the uncompressed tar), for the flattener to verify. */
  diffId: string
  /**
   * The blob's compressed bytes, from the start. Call at most once (a second call throws).
   * Ends only after the download was verified (size and sha256); errors, never ends, when the
   * download fails or is aborted, or restarts from zero after bytes were handed out
   * (E_STREAM_RESTARTED). Reads 1 MiB at a time on demand; consume it or destroy it, since it
   * holds a file descriptor until it ends, errors or is destroyed.
   */
  open(): Readable
}

export interface PullSession {
  reference: ImageReference
  /** Name under which the image is recorded in the cache's index.json (`org.opencontainers.image.ref.name`): `formatReference(reference)`. */
  refName: string
  /** Digest of the image manifest picked (after platform selection). */
  manifestDigest: string
  platform: Platform
  configDigest: string
  config: ImageConfig
  /** In layer order, oldest first. */
  layers: LayerDescriptor[]
  /**
   * Yields each layer, in order, as soon as its blob is verified in the cache, while later
   * layers keep downloading (bounded by `concurrency`). Iterate once. Rejects with the first
   * download error; aborting the pull's signal stops every download.
   */
  cachedLayers(): AsyncIterable<CachedLayer>
  /**
   * Yields each layer, in order, as soon as it is cached or this session has started
   * downloading it, so a consumer can read a layer while it lands on disk. A layer another
   * pull in this process is downloading is yielded once that download is cached. Iterate once.
   * Rejects with the first download error. The streams error when the pull's signal aborts.
   * Does not change when a blob becomes visible in the cache: only after verification.
   */
  streamLayers(): AsyncIterable<StreamedLayer>
  /** Resolves when every blob is in the cache. */
  done: Promise<void>
}
