import { createHash } from 'node:crypto'
import { open, rename, unlink } from 'node:fs/promises'
import { DockerCredentials, defaultDockerConfigPath } from './auth.js'
import { BlobReadStream, GrowingBlob } from './blob-stream.js'
import { OciCache, sha256, type IndexEntry } from './cache.js'
import {
  BlobUnknownError,
  CacheError,
  DigestMismatchError,
  ManifestInvalidError,
  ManifestTooLargeError,
  ManifestUnknownError,
  RangeResponseError,
  RegistryHttpError,
  RegistryUnreachableError,
  SizeMismatchError,
} from './errors.js'
import {
  RegistryHttp,
  describe,
  errorDetail,
  header,
  isTransientNetworkError,
  throwIfAborted,
  type Endpoint,
  type Response,
} from './http.js'
import {
  ACCEPT,
  CONFIG_SIZE_LIMIT,
  MANIFEST_SIZE_LIMIT,
  configPlatform,
  parseConfig,
  parseManifest,
  pickPlatform,
  type ParsedManifest,
} from './manifest.js'
import { openOfflineSource, parseOfflineSource } from './offline.js'
import { parsePlatform } from './platform.js'
import { DOCKER_HUB, formatReference, parseReference } from './reference.js'
import type {
  CachedLayer,
  ImageReference,
  LayerDescriptor,
  Platform,
  PullOptions,
  PullSession,
  RegistryClientOptions,
  StreamedLayer,
} from './types.js'

export type ResolvedImage = Omit<PullSession, 'cachedLayers' | 'streamLayers' | 'done'>

/** A resolved image plus how to get its layers into the cache, whatever the source. */
export interface OpenedImage {
  image: ResolvedImage
  /** The index.json entry recorded once every layer is cached. */
  entry: IndexEntry
  /**
   * Puts one layer blob into the cache under its digest (temp file, verify, rename). A source
   * that can be read while it downloads calls `onStart` once the temp file exists.
   */
  produce: (
    desc: LayerDescriptor,
    signal: AbortSignal,
    onBytes: (bytes: number) => void,
    onStart?: (blob: GrowingBlob) => void,
  ) => Promise<void>
  /** Removes whatever temporary files the source needed (an extracted archive). */
  release: () => Promise<void>
}

interface FetchedManifest {
  data: Buffer
  digest: string
  parsed: ParsedManifest
}

/**
 * Downloads of one blob path in this process, shared by every pull that needs it (across
 * RegistryClient instances on the same cache). Across processes, unique temp names plus an
 * atomic rename of identical content keep the cache consistent.
 */
const inflight = new Map<string, Promise<void>>()

/**
 * Fetches of small content-addressed documents (a config blob, a manifest pinned by digest) in
 * this process, keyed per digest: concurrent pulls of one image make one request.
 */
const smallInflight = new Map<string, Promise<unknown>>()

/**
 * Runs `fetch` unless the same `key` is already being fetched in this process, in which case
 * its result is shared. When the shared fetch fails (its caller aborted, or the request failed)
 * the caller fetches on its own once, so one caller's abort never fails another.
 */
async function sharedFetch<T>(
  key: string,
  signal: AbortSignal | undefined,
  fetch: () => Promise<T>,
): Promise<T> {
  let failed: Promise<unknown> | undefined
  for (;;) {
    throwIfAborted(signal)
    const running = smallInflight.get(key) as Promise<T> | undefined
    if (!running || running === failed) break
    try {
      if (signal) await untilSettledOrAborted(running, signal)
      return await running
    } catch {
      throwIfAborted(signal)
      failed = running
    }
  }
  const own = fetch()
  smallInflight.set(key, own)
  try {
    return await own
  } finally {
    if (smallInflight.get(key) === own) smallInflight.delete(key)
  }
}

const progressStep = 256 * 1024
const mirrorPenaltyMs = 60_000
const progressIntervalMs = 200

export class RegistryClient {
  private readonly cache: OciCache
  private readonly http: RegistryHttp
  private readonly concurrency: number
  /** Mirror base URL → until when it is skipped after failing to answer. */
  private readonly sickMirrors = new Map<string, number>()

  constructor(private readonly options: RegistryClientOptions) {
    this.cache = new OciCache(options.cacheDir)
    this.http = new RegistryHttp(
      new DockerCredentials(options.dockerConfigPath ?? defaultDockerConfigPath()),
      {
        attempts: Math.max(1, options.retry?.attempts ?? 5),
        baseDelayMs: options.retry?.baseDelayMs ?? 250,
        maxRetryAfterMs: options.retry?.maxRetryAfterMs ?? 60_000,
      },
    )
    this.concurrency = Math.max(1, options.concurrency ?? 3)
  }

  /** Closes the HTTP connection pool. Pulls in flight fail. */
  close(): Promise<void> {
    return this.http.close()
  }

  /**
   * Fetches the manifest (choosing the platform from an index) and the config, writes both
   * into the cache, and downloads no layer. Rejects with E_BAD_REFERENCE, E_BAD_PLATFORM,
   * E_MANIFEST_UNKNOWN, E_PLATFORM_NOT_FOUND, E_UNSUPPORTED_MANIFEST, E_MANIFEST_INVALID,
   * E_MANIFEST_TOO_LARGE, E_DIGEST_MISMATCH, E_AUTH, E_REGISTRY_UNREACHABLE, E_REGISTRY_HTTP,
   * E_CACHE, or the signal's reason.
   */
  async resolve(input: string | ImageReference, options: PullOptions = {}): Promise<ResolvedImage> {
    const opened = await this.open(input, options)
    await opened.release()
    return opened.image
  }

  /**
   * Resolves like `resolve`, emits `resolved`, then downloads the layers in the background
   * (`concurrency` at a time, in layer order) into the cache. `cachedLayers()` yields each
   * layer in order once its blob is verified; `streamLayers()` yields each layer in order as
   * soon as it is cached or this session starts downloading it, with a stream that follows the
   * download and ends only once it is verified; `done` resolves when all are cached and the
   * image is recorded in index.json. The first download error aborts the others and rejects
   * both. Aborting `options.signal` stops every download and leaves no partial blob.
   */
  async pull(input: string | ImageReference, options: PullOptions = {}): Promise<PullSession> {
    const { image, entry, produce, release } = await this.open(input, options)
    const { onProgress } = options
    onProgress?.({ type: 'resolved', manifestDigest: image.manifestDigest, layers: image.layers })

    const controller = new AbortController()
    const signal = options.signal
      ? AbortSignal.any([options.signal, controller.signal])
      : controller.signal
    const limit = limiter(this.concurrency)
    let firstError: unknown
    // Per layer, what streamLayers reads: this session's download as it grows, or the cache file.
    const sources = image.layers.map(() => deferred<GrowingBlob>())
    const paths = image.layers.map((descriptor, index) => {
      const source = sources[index]!
      const task = limit(async () => {
        throwIfAborted(signal)
        let reported = 0
        let reportedAt = 0
        const outcome = await this.ensureBlob(
          descriptor,
          signal,
          (onBytes) => produce(descriptor, signal, onBytes, source.resolve),
          (bytes) => {
            const now = Date.now()
            if (
              bytes === descriptor.size ||
              bytes - reported >= progressStep ||
              now - reportedAt >= progressIntervalMs
            ) {
              reported = bytes
              reportedAt = now
              onProgress?.({
                type: 'layer-progress',
                index,
                digest: descriptor.digest,
                bytes,
                total: descriptor.size,
              })
            }
          },
        )
        onProgress?.({
          type: 'layer-done',
          index,
          digest: descriptor.digest,
          cached: outcome !== 'downloaded',
        })
        const path = this.cache.blobPath(descriptor.digest)
        source.resolve(GrowingBlob.cached(path, descriptor)) // no-op when already streaming
        return path
      }).catch((err: unknown) => {
        if (firstError === undefined) firstError = err
        controller.abort(err)
        source.reject(err)
        throw err
      })
      task.catch(() => {})
      return task
    })
    // Settle only when every task has: a rejected `done` means no download is still writing.
    const done = Promise.allSettled(paths)
      .then(async (results) => {
        if (results.some((r) => r.status === 'rejected')) throw firstError
        await this.cache.recordImage(entry, image.refName)
      })
      .finally(release)
    done.catch(() => {})
    const diffIds = image.config.rootfs.diff_ids
    return {
      ...image,
      done,
      cachedLayers: async function* (): AsyncGenerator<CachedLayer> {
        for (const [index, descriptor] of image.layers.entries()) {
          const path = await paths[index]!
          yield { index, descriptor, diffId: diffIds[index]!, path }
        }
      },
      streamLayers: async function* (): AsyncGenerator<StreamedLayer> {
        for (const [index, descriptor] of image.layers.entries()) {
          const blob = await sources[index]!.promise
          let opened = false
          yield {
            index,
            descriptor,
            diffId: diffIds[index]!,
            open: () => {
              if (opened) throw new Error(`layer ${index} of this pull was already opened`)
              opened = true
              return new BlobReadStream(blob, signal)
            },
          }
        }
      },
    }
  }

  private endpoints(ref: ImageReference): Endpoint[] {
    const mirrors = (this.options.mirrors?.[ref.registry] ?? []).map((m): Endpoint => {
      const url = new URL(m)
      return {
        base: `${url.origin}${url.pathname}`.replace(/\/+$/, ''),
        credentialHost: url.host,
        mirror: true,
      }
    })
    const host = ref.registry === DOCKER_HUB ? 'registry-1.docker.io' : ref.registry
    const scheme = this.isInsecure(ref.registry) ? 'http' : 'https'
    return [
      ...mirrors,
      { base: `${scheme}://${host}`, credentialHost: ref.registry, mirror: false },
    ]
  }

  private isInsecure(registry: string): boolean {
    const hostname = registry.replace(/:\d+$/, '')
    return (
      hostname === 'localhost' ||
      hostname === '[::1]' ||
      /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname) ||
      (this.options.insecureRegistries ?? []).some((r) => r === registry || r === hostname)
    )
  }

  /** Tries each mirror, then the origin; a mirror's failure (other than an abort) falls through. */
  private async fromEndpoints<T>(
    ref: ImageReference,
    signal: AbortSignal | undefined,
    fn: (endpoint: Endpoint) => Promise<T>,
  ): Promise<T> {
    const now = Date.now()
    const endpoints = this.endpoints(ref).filter(
      (e) => !e.mirror || (this.sickMirrors.get(e.base) ?? 0) < now,
    )
    for (const [i, endpoint] of endpoints.entries()) {
      try {
        return await fn(endpoint)
      } catch (err) {
        throwIfAborted(signal)
        if (i === endpoints.length - 1) throw err
        // A mirror that cannot answer at all is skipped for a while instead of being retried on
        // every blob; one that merely lacks this image (404) stays in use.
        const code = (err as { code?: unknown }).code
        if (code === 'E_REGISTRY_UNREACHABLE' || code === 'E_REGISTRY_HTTP')
          this.sickMirrors.set(endpoint.base, Date.now() + mirrorPenaltyMs)
      }
    }
    throw new Error('unreachable: no endpoints')
  }

  private async open(input: string | ImageReference, options: PullOptions): Promise<OpenedImage> {
    const offline = typeof input === 'string' ? parseOfflineSource(input) : undefined
    if (offline) {
      throwIfAborted(options.signal)
      await this.cache.init()
      return openOfflineSource(offline, this.cache, parsePlatform(options.platform), options.signal)
    }
    return this.resolveImage(input, options)
  }

  private async resolveImage(
    input: string | ImageReference,
    options: PullOptions,
  ): Promise<OpenedImage> {
    const { signal } = options
    const ref = typeof input === 'string' ? parseReference(input) : input
    const wanted = parsePlatform(options.platform)
    const name = formatReference(ref)
    throwIfAborted(signal)
    await this.cache.init()

    const top = await this.getManifest(ref, ref.digest ?? ref.tag ?? 'latest', signal)
    let chosen = top
    let platform: Platform | undefined
    if (top.parsed.kind === 'index') {
      const pick = pickPlatform(name, top.parsed.manifests, wanted)
      await this.cache.writeSmallBlob(top.digest, top.data)
      chosen = await this.getManifest(ref, pick.digest, signal)
      if (chosen.data.length !== pick.size)
        throw new ManifestInvalidError(
          name,
          `manifest ${pick.digest} is ${chosen.data.length} bytes, the index says ${pick.size}`,
        )
      platform = pick.platform
    }
    const manifest = chosen.parsed
    if (manifest.kind !== 'image')
      throw new ManifestInvalidError(name, `index entry ${chosen.digest} is itself an index`)
    await this.cache.writeSmallBlob(chosen.digest, chosen.data)

    const configData = await this.getConfig(ref, manifest.config, signal)
    const config = parseConfig(name, manifest.config.digest, configData, manifest.layers.length)
    platform ??= configPlatform(name, config, wanted)
    const image: ResolvedImage = {
      reference: ref,
      refName: name,
      manifestDigest: chosen.digest,
      platform,
      configDigest: manifest.config.digest,
      config,
      layers: manifest.layers,
    }
    const entry: IndexEntry = {
      mediaType: manifest.mediaType,
      digest: chosen.digest,
      size: chosen.data.length,
      platform,
    }
    return {
      image,
      entry,
      produce: (desc, layerSignal, onBytes, onStart) =>
        this.download(ref, desc, layerSignal, onBytes, onStart),
      release: () => Promise.resolve(),
    }
  }

  private async getManifest(
    ref: ImageReference,
    reference: string,
    signal?: AbortSignal,
  ): Promise<FetchedManifest> {
    const name = formatReference(ref)
    const byDigest = reference.startsWith('sha256:')
    const path = `/v2/${ref.repository}/manifests/${reference}`
    const fetchManifest = () =>
      this.fromEndpoints(ref, signal, async (endpoint) => {
        const url = endpoint.base + path
        const res = await this.http.get(endpoint, ref.repository, path, {
          headers: { accept: ACCEPT },
          ...(signal && { signal }),
        })
        if (res.statusCode === 404) throw new ManifestUnknownError(name, await errorDetail(res))
        if (res.statusCode !== 200)
          throw new RegistryHttpError(url, res.statusCode, await errorDetail(res))
        const contentType = header(res, 'content-type')
        const data = await readCapped(res, MANIFEST_SIZE_LIMIT, url)
        const digest = sha256(data)
        if (byDigest && digest !== reference) throw new DigestMismatchError(url, reference, digest)
        // The registry's own digest for a tag: catches a manifest mangled on the way.
        const announced = header(res, 'docker-content-digest')
        if (announced?.startsWith('sha256:') && announced !== digest)
          throw new DigestMismatchError(url, announced, digest)
        return { data, digest, parsed: parseManifest(name, data, contentType) }
      })
    if (!byDigest) return fetchManifest()
    // Only a digest names the same bytes for every caller (a tag may move between two requests).
    // The cache is read inside the shared fetch and written before it settles, so a pull that
    // comes a moment later either joins it or finds the blob cached.
    return sharedFetch(`manifest ${this.cache.blobPath(reference)}`, signal, async () => {
      // Content-addressed: a verified copy in the cache is as good as the registry's.
      const cached = await this.cache.readSmallBlob(reference)
      if (cached)
        return { data: cached, digest: reference, parsed: parseManifest(name, cached, undefined) }
      const fetched = await fetchManifest()
      await this.cache.writeSmallBlob(fetched.digest, fetched.data)
      return fetched
    })
  }

  private async getConfig(
    ref: ImageReference,
    desc: LayerDescriptor,
    signal?: AbortSignal,
  ): Promise<Buffer> {
    if (desc.size > CONFIG_SIZE_LIMIT)
      throw new ManifestTooLargeError(`config ${desc.digest}`, CONFIG_SIZE_LIMIT)
    const path = `/v2/${ref.repository}/blobs/${desc.digest}`
    const fetchConfig = async (): Promise<Buffer> => {
      const cached = await this.cache.readSmallBlob(desc.digest, desc.size)
      if (cached) return cached
      const data = await this.fromEndpoints(ref, signal, async (endpoint) => {
        const url = endpoint.base + path
        const res = await this.http.get(endpoint, ref.repository, path, signal ? { signal } : {})
        if (res.statusCode === 404) {
          await res.body.dump()
          throw new BlobUnknownError(ref.repository, desc.digest)
        }
        if (res.statusCode !== 200)
          throw new RegistryHttpError(url, res.statusCode, await errorDetail(res))
        const body = await readCapped(res, CONFIG_SIZE_LIMIT, url)
        if (body.length !== desc.size) throw new SizeMismatchError(url, desc.size, body.length)
        const actual = sha256(body)
        if (actual !== desc.digest) throw new DigestMismatchError(url, desc.digest, actual)
        return body
      })
      await this.cache.writeSmallBlob(desc.digest, data)
      return data
    }
    // Shared like the manifest above: one request however many pulls need this config at once.
    return sharedFetch(`config ${this.cache.blobPath(desc.digest)}`, signal, fetchConfig)
  }

  /**
   * Makes `desc` present in the cache: a size-checked hit, a wait on this process's download of
   * the same blob, or a download of our own. Resolves with which it was.
   */
  private async ensureBlob(
    desc: LayerDescriptor,
    signal: AbortSignal,
    produce: (onBytes: (bytes: number) => void) => Promise<void>,
    onBytes: (bytes: number) => void,
  ): Promise<'cached' | 'joined' | 'downloaded'> {
    const path = this.cache.blobPath(desc.digest)
    let joined = false
    for (;;) {
      throwIfAborted(signal)
      if (await this.cache.has(desc.digest, desc.size)) return joined ? 'joined' : 'cached'
      const running = inflight.get(path)
      if (running) {
        joined = true
        // If the other pull fails or is aborted, loop and fetch it ourselves.
        await untilSettledOrAborted(running, signal)
        continue
      }
      const download = produce(onBytes)
      inflight.set(path, download)
      try {
        await download
        return 'downloaded'
      } finally {
        if (inflight.get(path) === download) inflight.delete(path)
      }
    }
  }

  private async download(
    ref: ImageReference,
    desc: LayerDescriptor,
    signal: AbortSignal,
    onBytes: (bytes: number) => void,
    onStart?: (blob: GrowingBlob) => void,
  ): Promise<void> {
    const temp = this.cache.tempPath(desc.digest)
    const cacheError = (what: string, err: unknown): CacheError =>
      new CacheError(this.cache.dir, `cannot ${what} ${temp}: ${(err as Error).message}`, {
        cause: err,
      })
    // Read and write: a layer stream reads this descriptor while we write it, and it stays
    // valid across the rename below.
    const fh = await open(temp, 'wx+', 0o644).catch((err: unknown) => {
      throw cacheError('create', err)
    })
    const blob = GrowingBlob.writing(fh, this.cache.blobPath(desc.digest), desc)
    onStart?.(blob)
    try {
      await this.fromEndpoints(ref, signal, (endpoint) =>
        this.fetchBlobInto(endpoint, ref, desc, blob, signal, onBytes),
      )
      blob.verified()
      try {
        // Durable before visible: a crash must not leave a named blob with missing data.
        await fh.sync()
        await rename(temp, this.cache.blobPath(desc.digest))
      } catch (err) {
        throw cacheError('publish', err)
      }
    } catch (err) {
      blob.fail(err)
      throw err
    } finally {
      // Closes the descriptor unless a layer stream still reads it (then the stream closes it).
      await blob.release().catch(() => {})
      await unlink(temp).catch(() => {})
    }
  }

  /**
   * Streams one blob from one endpoint into `fh`, hashing as it writes. An interrupted body is
   * resumed with `Range: bytes=N-`: a 206 must start at N, a 200 restarts from zero.
   */
  private async fetchBlobInto(
    endpoint: Endpoint,
    ref: ImageReference,
    desc: LayerDescriptor,
    blob: GrowingBlob,
    signal: AbortSignal,
    onBytes: (bytes: number) => void,
  ): Promise<void> {
    const path = `/v2/${ref.repository}/blobs/${desc.digest}`
    const url = endpoint.base + path
    const fh = blob.handle
    let hash = createHash('sha256')
    let bytes = 0
    // A previous endpoint (a mirror) may have written part of the blob.
    await blob.restart()
    let failures = 0
    let bytesAtFailure = 0
    for (;;) {
      const headers: Record<string, string> = bytes > 0 ? { range: `bytes=${bytes}-` } : {}
      const res: Response = await this.http.get(endpoint, ref.repository, path, { headers, signal })
      if (res.statusCode === 404) {
        await res.body.dump()
        throw new BlobUnknownError(ref.repository, desc.digest)
      }
      if (res.statusCode === 206 && bytes > 0) {
        const range = header(res, 'content-range') ?? ''
        const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(range.trim())
        if (!m || Number(m[1]) !== bytes || (m[3] !== '*' && Number(m[3]) !== desc.size)) {
          await res.body.dump()
          throw new RangeResponseError(
            url,
            `asked for bytes ${bytes}- and got Content-Range ${JSON.stringify(range)}`,
          )
        }
      } else if (res.statusCode === 200) {
        if (bytes > 0) {
          // The server ignored Range: what we have is worthless, start over.
          hash = createHash('sha256')
          bytes = 0
          bytesAtFailure = 0
          await blob.restart()
        }
      } else {
        throw new RegistryHttpError(url, res.statusCode, await errorDetail(res))
      }
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          if (bytes + chunk.length > desc.size)
            throw new SizeMismatchError(url, desc.size, bytes + chunk.length)
          await fh.write(chunk, 0, chunk.length, bytes)
          hash.update(chunk)
          bytes += chunk.length
          blob.wrote(bytes)
          onBytes(bytes)
        }
      } catch (err) {
        if (!res.body.destroyed) res.body.destroy()
        throwIfAborted(signal)
        if (err instanceof SizeMismatchError) throw err
        if (bytes > bytesAtFailure) failures = 0
        bytesAtFailure = bytes
        if (!isTransientNetworkError(err) || ++failures >= this.http.retry.attempts)
          throw new RegistryUnreachableError(
            url,
            `download broke off after ${bytes} bytes: ${describe(err)}`,
            { cause: err },
          )
        await this.http.backoff(failures - 1, signal)
        continue
      }
      if (bytes !== desc.size) throw new SizeMismatchError(url, desc.size, bytes)
      const actual = `sha256:${hash.digest('hex')}`
      if (actual !== desc.digest) throw new DigestMismatchError(url, desc.digest, actual)
      return
    }
  }
}

/** Reads a whole small body, refusing more than `limit` bytes. */
async function readCapped(res: Response, limit: number, url: string): Promise<Buffer> {
  const declared = Number(header(res, 'content-length'))
  if (declared > limit) {
    res.body.destroy()
    throw new ManifestTooLargeError(url, limit)
  }
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    total += chunk.length
    if (total > limit) {
      res.body.destroy()
      throw new ManifestTooLargeError(url, limit)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

async function untilSettledOrAborted(
  promise: Promise<unknown>,
  signal: AbortSignal,
): Promise<void> {
  throwIfAborted(signal)
  let onAbort: (() => void) | undefined
  const aborted = new Promise<void>((resolve) => {
    onAbort = resolve
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    await Promise.race([promise.then(noop, noop), aborted])
  } finally {
    signal.removeEventListener('abort', onAbort!)
  }
  throwIfAborted(signal)
}

function noop(): void {}

interface Deferred<T> {
  promise: Promise<T>
  resolve: (value: T) => void
  reject: (reason: unknown) => void
}

/** A promise settled from outside; its rejection is pre-handled (nobody may be waiting). */
function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (reason: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  promise.catch(noop)
  return { promise, resolve, reject }
}

/** Runs at most `n` tasks at once, starting them in the order they were queued. */
function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0
  const queue: (() => void)[] = []
  const next = (): void => {
    if (active >= n) return
    const start = queue.shift()
    if (start) {
      active++
      start()
    }
  }
  return <T>(fn: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      queue.push(() => {
        fn()
          .then(resolve, reject)
          .finally(() => {
            active--
            next()
          })
      })
      next()
    })
}
