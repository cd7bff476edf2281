import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, rename, rm, stat, statfs } from 'node:fs/promises'
import { freemem } from 'node:os'
import { dirname, join } from 'node:path'
import { buildExt4, planExt4Size } from '@banger/ext4-build'
import { injectGuest } from '@banger/guest-inject'
import { flattenToDirectory, type FlattenResult, type LayerInput } from '@banger/layer-flatten'
import { applyOwnership } from '@banger/ownership'
import {
  RegistryClient,
  formatPlatform,
  formatReference,
  parseReference,
  type PullSession,
} from '@banger/registry-client'
import type { BangerConfig } from './config.js'
import { copySparse, ensureDir, removeAll, removeTree } from './files.js'
import {
  TMP_TREE_PREFIX,
  type ParsedReference,
  type PullJob,
  type PullOutcome,
  type PullPipeline,
} from './pipeline.js'

const GiB = 1024 ** 3
/** Layer blobs are read 1 MiB at a time: each read is a thread-pool round trip. */
const READ_OPTIONS = { highWaterMark: 1 << 20 }

export interface PullPipelineOptions {
  cacheDir: string
  /**
   * Warm-pull cache: the built rootfs before guest injection, keyed by manifest digest,
   * platform and requested size. A re-pull (e.g. under a new name) copies it instead of
   * downloading and flattening again. Absent: no cache.
   */
  rootfsCacheDir?: string
  config: BangerConfig
  /** Parallel blob downloads per pull; default 3. */
  concurrency?: number
  /**
   * A memory-backed directory (tmpfs) for the flattened tree when it comfortably fits; else the
   * tree goes under `job.tmpDir`. Absent: always `job.tmpDir`.
   */
  memoryDir?: string
}

/**
 * Gzip and zstd layers rarely expand past 4×; twice that is the estimate a tree must fit in,
 * within half of what is free in both the tmpfs and RAM, to be flattened in memory.
 */
const EXPANSION_ESTIMATE = 8

/**
 * Where the flattened tree goes. Measured on the Debian image here: flattening into tmpfs took
 * 2.4 s against 6.9 s on disk (each create/open costs about 1 ms of metadata I/O on disk), and
 * the tree is thrown away once mkfs has read it, so disk durability buys nothing.
 * Returns the byte budget the flattener must stay within there (undefined on disk).
 */
async function scratchFor(
  memoryDir: string | undefined,
  diskDir: string,
  compressedBytes: number,
): Promise<{ base: string; maxBytes?: number }> {
  if (!memoryDir) return { base: diskDir }
  try {
    await ensureDir(memoryDir)
  } catch {
    // No usable tmpfs (absent, not writable): disk it is.
    return { base: diskDir }
  }
  const budget = await memoryBudget(memoryDir)
  if (budget > 0 && compressedBytes * EXPANSION_ESTIMATE <= budget)
    return { base: memoryDir, maxBytes: budget }
  return { base: diskDir }
}

/** Half of what is free both in the tmpfs at `dir` and in RAM, now; 0 if `dir` is unusable. */
async function memoryBudget(dir: string): Promise<number> {
  try {
    const fs = await statfs(dir)
    return Math.floor(Math.min(fs.bavail * fs.bsize, freemem()) / 2)
  } catch {
    return 0
  }
}

/**
 * Bytes mkfs will write for a tree: its file data, a block per inode at worst (small files, inode
 * tables, directories) and the journal. A generous estimate: the image only goes to memory when
 * twice this fits.
 */
function imageDataEstimate(totals: FlattenResult['totals']): number {
  return totals.bytes + totals.inodes * 4096 + 256 * 1024 ** 2
}

/** The flattener ran out of the memory budget or the tmpfs filled: worth one more try on disk. */
function outOfScratch(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } }
  return e.code === 'E_LIMIT_EXCEEDED' || e.code === 'ENOSPC' || e.cause?.code === 'ENOSPC'
}

/**
 * The real pipeline: registry-client → layer-flatten (overlapping the downloads) →
 * ext4-build → ownership → guest-inject. The flattened tree lives in a temporary directory
 * under `job.tmpDir` (never the state dir) and is removed as soon as the ext4 image is built,
 * and on every failure.
 */
export function createPullPipeline(options: PullPipelineOptions): PullPipeline {
  const clients = new Map<string, RegistryClient>()
  // One client per extra insecure host; blob downloads are shared process-wide anyway.
  const clientFor = (registry: string, insecure: boolean): RegistryClient => {
    const key = insecure ? registry : ''
    let client = clients.get(key)
    if (!client) {
      client = new RegistryClient({
        cacheDir: options.cacheDir,
        mirrors: options.config.mirrors,
        insecureRegistries: [...options.config.insecureRegistries, ...(insecure ? [registry] : [])],
        concurrency: options.concurrency ?? 3,
      })
      clients.set(key, client)
    }
    return client
  }

  // Work still running after its pull returned (warm-pull cache stores).
  const pending = new Set<Promise<void>>()
  const background = (work: Promise<void>): void => {
    const done = work.finally(() => pending.delete(done))
    pending.add(done)
  }
  /**
   * Warm-pull cache stores in flight, by entry: the memory image being copied in, and the warm
   * pulls copying from that same image meanwhile (it is removed only once they are done).
   */
  const stores = new Map<string, { source: string; readers: Set<Promise<unknown>> }>()

  return {
    async close() {
      // A store is a copy of a few seconds at most: let it finish, so a stop right after a pull
      // keeps the entry (a kill leaves only its temp file, which the next start's sweep removes).
      await Promise.allSettled([...pending])
      await Promise.allSettled([...clients.values()].map((c) => c.close()))
      clients.clear()
    },
    parseReference: (input) => parseReference(input),
    formatReference: (ref) => formatReference(ref),
    async run(job: PullJob): Promise<PullOutcome> {
      const { signal, onProgress, log } = job
      const ref = parseReference(job.ref)
      const client = clientFor(ref.registry, job.insecure)
      if (options.rootfsCacheDir) {
        const resolved = await client.resolve(ref, { platform: job.platform, signal })
        const entry = cacheEntry(options.rootfsCacheDir, resolved.manifestDigest, job)
        // A store of this entry still running: copy the memory image it copies, meanwhile.
        const inFlight = stores.get(entry)
        let read: Promise<boolean>
        if (inFlight) {
          read = copySparse(inFlight.source, job.rootfsPath, signal, true)
          inFlight.readers.add(read)
          void read.finally(() => inFlight.readers.delete(read)).catch(() => undefined)
        } else read = copySparse(entry, job.rootfsPath, signal)
        if (await read) {
          log.info(
            {
              manifestDigest: resolved.manifestDigest,
              entry,
              from: inFlight ? 'the image being stored' : 'the cache entry',
            },
            'warm pull: rootfs from cache',
          )
          onProgress({ type: 'stage', stage: 'build' })
          const injectedFiles = await inject(job, job.rootfsPath)
          const { size } = await stat(job.rootfsPath)
          return {
            manifestDigest: resolved.manifestDigest,
            platform: formatPlatform(resolved.platform),
            sizeBytes: size,
            injectedFiles,
          }
        }
      }
      let treeGone: Promise<void> | undefined
      let tree: string | undefined
      try {
        let sizes: number[] = []
        const session: PullSession = await client.pull(ref, {
          platform: job.platform,
          signal,
          onProgress: (event) => {
            if (event.type === 'resolved') {
              sizes = event.layers.map((l) => l.size)
              onProgress({ type: 'stage', stage: 'download' })
              event.layers.forEach((l, index) =>
                onProgress({
                  type: 'layer',
                  index,
                  digest: l.digest,
                  bytes: 0,
                  total: l.size,
                  cached: false,
                  done: false,
                }),
              )
            } else if (event.type === 'layer-progress') {
              onProgress({
                type: 'layer',
                index: event.index,
                digest: event.digest,
                bytes: event.bytes,
                total: event.total,
                cached: false,
                done: false,
              })
            } else {
              const total = sizes[event.index] ?? 0
              onProgress({
                type: 'layer',
                index: event.index,
                digest: event.digest,
                bytes: total,
                total,
                cached: event.cached,
                done: true,
              })
            }
          },
        })
        log.info(
          { manifestDigest: session.manifestDigest, layers: session.layers.length },
          'resolved',
        )

        // Flatten each layer while it downloads: the stream ends only once the blob is verified
        // and errors otherwise, and the flattener checks each layer's DiffID from the (verified)
        // config, so nothing unverified survives a pull that succeeds.
        let flattenStarted = false
        const input = (
          layer: { descriptor: { digest: string; mediaType: string }; diffId: string },
          open: LayerInput['open'],
        ): LayerInput => ({
          open,
          diffId: layer.diffId,
          mediaType: layer.descriptor.mediaType,
          name: layer.descriptor.digest,
        })
        async function* layers(): AsyncGenerator<LayerInput> {
          for await (const layer of session.streamLayers()) {
            if (!flattenStarted) {
              flattenStarted = true
              onProgress({ type: 'stage', stage: 'flatten' })
            }
            yield input(layer, () => layer.open())
          }
        }
        /** The layers again, from the blob cache (every blob is in once `session.done` is). */
        async function* cachedLayers(): AsyncGenerator<LayerInput> {
          for await (const layer of session.cachedLayers())
            yield input(layer, () => createReadStream(layer.path, READ_OPTIONS))
        }
        const compressed = session.layers.reduce((sum, l) => sum + l.size, 0)
        const scratch = await scratchFor(options.memoryDir, job.tmpDir, compressed)
        const newTree = async (base: string): Promise<string> => {
          tree = await mkdtemp(join(base, `${TMP_TREE_PREFIX}${process.pid}-`))
          await mkdir(join(tree, 'rootfs'))
          return join(tree, 'rootfs')
        }
        let rootDir = await newTree(scratch.base)
        let inMemory = scratch.base !== job.tmpDir
        let flat: FlattenResult
        try {
          ;[flat] = await Promise.all([
            flattenToDirectory(layers(), rootDir, {
              signal,
              ...(scratch.maxBytes ? { limits: { maxBytes: scratch.maxBytes } } : {}),
            }),
            session.done,
          ])
        } catch (err) {
          const restarted = (err as { code?: string }).code === 'E_STREAM_RESTARTED'
          const tooBig = inMemory && outOfScratch(err)
          if (!restarted && !tooBig) throw err
          if (tooBig)
            // Layers that expand far more than usual filled the memory budget: free it and
            // replay from the blob cache on disk.
            log.warn({ err, tree }, 'tree did not fit in memory; flattening again on disk')
          // A server that ignored Range made a download start over under the flattener's feet:
          // what it read is void, so replay from the cache once every blob is in.
          else
            log.warn({ err, tree }, 'a layer download restarted; flattening again from the cache')
          await removeAll(tree!)
          await session.done
          if (tooBig) inMemory = false
          rootDir = await newTree(tooBig ? job.tmpDir : scratch.base)
          flat = await flattenToDirectory(cachedLayers(), rootDir, {
            signal,
            ...(inMemory && scratch.maxBytes ? { limits: { maxBytes: scratch.maxBytes } } : {}),
          })
        }
        log.info({ tree, memory: inMemory }, 'tree placed')
        log.info({ totals: flat.totals }, 'flattened')

        const plan = planExt4Size(flat.totals, { headroom: 1.25, minBytes: GiB })
        // An explicit size too small for the tree is rejected by buildExt4 (E_SIZE_TOO_SMALL).
        const sizeBytes =
          job.sizeBytes !== undefined ? Math.ceil(job.sizeBytes / 4096) * 4096 : plan.sizeBytes
        // With the tree in memory, the image is built and owned there too when it fits, and
        // copied to the state dir once: mkfs's 4 KiB writes and debugfs's cost less on tmpfs
        // than on a disk file (54k-entry image: mkfs 6.4 s in the daemon against 2.8 s).
        let workImage =
          inMemory && imageDataEstimate(flat.totals) <= (await memoryBudget(options.memoryDir!))
            ? join(tree!, 'rootfs.ext4')
            : job.rootfsPath
        const build = (output: string) =>
          buildExt4({
            tree: rootDir,
            output,
            sizeBytes,
            inodes: plan.inodes,
            label: 'rootfs',
            // The flattener already counted the tree: spares ext4-build a second walk of it.
            totals: flat.totals,
            signal,
          })
        onProgress({ type: 'stage', stage: 'build' })
        let image: Awaited<ReturnType<typeof buildExt4>>
        try {
          image = await build(workImage)
        } catch (err) {
          // A tmpfs that filled up makes mkfs fail like an image too small: try the disk once.
          if (workImage === job.rootfsPath || signal.aborted) throw err
          log.warn({ err }, 'building the image in memory failed; building it on disk')
          await rm(workImage, { force: true })
          workImage = job.rootfsPath
          image = await build(workImage)
        }
        log.info({ sizeBytes: image.sizeBytes, inodes: image.inodeCount, workImage }, 'built')
        // The tree is no longer needed: free its space (or memory) while debugfs works, in a
        // process of its own (54k entries: 0.5 s for rm -rf, 0.7 s for fs.rm on the thread pool).
        treeGone = removeTree(rootDir).then(() => log.info('tree removed'))

        onProgress({ type: 'stage', stage: 'ownership' })
        // mkfs -d copied every mtime from the tree, which carries the manifest's. The read-back
        // runs later: beside the copy and injection below when the image is in memory (it reads
        // the memory image, which they leave alone), before them otherwise.
        const owned = await applyOwnership(workImage, flat.entries, {
          signal,
          mtimesInImage: true,
          verify: 'later',
        })
        log.info({ commands: owned.commands }, 'ownership restored')
        const verifying = owned.readBack!(signal).then((verified) => {
          log.info({ verified }, 'ownership verified')
        })
        verifying.catch(() => undefined) // awaited below; a copy failing first must not orphan it

        const cached = options.rootfsCacheDir
          ? cacheEntry(options.rootfsCacheDir, session.manifestDigest, job)
          : undefined
        // The cache is an optimisation: a failed store is logged, never the pull's failure.
        const store = (from: string, entry: string, abort?: AbortSignal): Promise<void> =>
          storeInCache(from, entry, abort).catch((err: unknown) =>
            log.warn({ err, entry }, 'could not store the rootfs in the warm-pull cache'),
          )
        let injectedFiles: string[]
        if (workImage !== job.rootfsPath) {
          try {
            await copySparse(workImage, job.rootfsPath, signal)
            log.info('image copied to the state dir')
            injectedFiles = await inject(job, job.rootfsPath)
          } finally {
            // The memory image is removed with the tree dir: not while debugfs still reads it.
            await verifying.catch(() => undefined)
          }
          await verifying
          // The warm-pull cache is filled from the memory image after the pull returns: the user
          // does not wait for a second 1 GiB copy, and a warm pull meanwhile copies the same image.
          const dir = tree!
          tree = undefined
          const stored = cached ? store(workImage, cached) : Promise.resolve()
          const inStore = { source: workImage, readers: new Set<Promise<unknown>>() }
          if (cached) stores.set(cached, inStore)
          background(
            stored
              .then(async () => {
                // No new readers once the entry is in; the image goes when the last one is done.
                if (cached && stores.get(cached) === inStore) stores.delete(cached)
                while (inStore.readers.size) await Promise.allSettled([...inStore.readers])
              })
              .finally(() => removeAll(dir)),
          )
        } else {
          await verifying
          if (cached) await store(job.rootfsPath, cached, signal)
          injectedFiles = await inject(job, job.rootfsPath)
        }
        return {
          manifestDigest: session.manifestDigest,
          platform: formatPlatform(session.platform),
          sizeBytes: image.sizeBytes,
          injectedFiles,
        }
      } finally {
        await treeGone
        if (tree) await removeAll(tree)
      }
    },
  }
}

async function inject(job: PullJob, rootfsPath: string): Promise<string[]> {
  job.onProgress({ type: 'stage', stage: 'inject' })
  const t0 = Date.now()
  const injected = await injectGuest(rootfsPath, {
    authorizedKeys: job.authorizedKeys,
    hostname: job.hostname,
    signal: job.signal,
  })
  job.log.info({ ms: Date.now() - t0, written: injected.written.length }, 'guest injected')
  for (const problem of injected.inspection.problems) {
    job.onProgress({ type: 'warning', code: problem.code, message: problem.message })
  }
  return injected.written
}

/** `<dir>/<manifest hex>-<os_arch[_variant]>-<size|auto>.ext4` */
function cacheEntry(dir: string, manifestDigest: string, job: PullJob): string {
  const hex = manifestDigest.split(':')[1] ?? manifestDigest
  const platform = job.platform.replace(/\//g, '_')
  return join(dir, `${hex}-${platform}-${job.sizeBytes ?? 'auto'}.ext4`)
}

async function storeInCache(src: string, entry: string, signal?: AbortSignal): Promise<void> {
  await ensureDir(dirname(entry))
  const temp = `${entry}.tmp-${process.pid}-${Date.now()}`
  try {
    await copySparse(src, temp, signal, true)
    await rename(temp, entry) // atomic: a reader never sees half an entry
  } finally {
    await rm(temp, { force: true })
  }
}

export type { ParsedReference }
