import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { BangerConfig } from './config.js'
import { checkPath, cloneFile, cloneTree, removeAll } from './files.js'
import type { KernelService, ResolvedKernel } from './kernels.js'
import { Mutex } from './lock.js'
import { defaultImageName, hostnameFor } from './names.js'
import { TMP_TREE_PREFIX, type PullEvent, type PullPipeline } from './pipeline.js'
import {
  ERROR_CODES,
  RpcError,
  type ImagePullParams,
  type ImageRecord,
  type ImageRegisterParams,
} from './rpc/index.js'
import type { StoredImage, Store } from './store.js'

export interface PullContext {
  signal?: AbortSignal
  onProgress?: (event: PullEvent) => void
}

interface Subscriber {
  onProgress?: (event: PullEvent) => void
}

/** A pull in flight, keyed by image name; identical requests join it instead of pulling twice. */
interface InflightPull {
  name: string
  /** Requests with the same key share this pull. */
  key: string
  sourceRef: string
  controller: AbortController
  subscribers: Set<Subscriber>
  promise: Promise<ImageRecord>
}

export interface ImageServiceOptions {
  store: Store
  kernels: KernelService
  config: BangerConfig
  pipeline: PullPipeline
  imagesDir: string
  /** Base for temporary trees, outside the state dir. */
  tmpDir: string
  /** Other places temporary trees may live (the memory-backed one), swept like tmpDir. */
  scratchDirs?: string[]
  /** The warm-pull cache, swept of half-written entries at start. */
  rootfsCacheDir?: string
  log: Logger
  /** Home directory to read `~/.ssh/*.pub` from; default os.homedir(). */
  home?: string
}

const GiB = 1024 ** 3

/**
 * Image records and the pull lifecycle: name checks, staging in `<images>/<id>.staging`,
 * atomic publish, cleanup on every failure, crash sweep, and status computed from the files.
 */
export class ImageService {
  readonly #ops = new Mutex()
  readonly #inflight = new Map<string, InflightPull>()
  #closing = false

  constructor(private readonly o: ImageServiceOptions) {}

  get pullsInProgress(): number {
    return this.#inflight.size
  }

  async list(): Promise<ImageRecord[]> {
    return Promise.all(this.o.store.listImages().map((i) => withStatus(i)))
  }

  async show(name: string): Promise<ImageRecord> {
    const image = this.o.store.getImage(name)
    if (!image) throw imageNotFound(name)
    return withStatus(image)
  }

  delete(name: string): Promise<{ deleted: string }> {
    return this.#ops.run(async () => {
      const image = this.o.store.getImage(name)
      if (!image) throw imageNotFound(name)
      // Record first, files second: a crash in between leaves an orphan dir the sweep removes.
      this.o.store.deleteImage(name)
      if (image.managed && image.dir) await removeAll(image.dir)
      this.o.log.info({ image: name, managed: image.managed }, 'image deleted')
      return { deleted: name }
    })
  }

  /** Record an existing ext4 file (managed = false): banger never deletes its files. */
  async register(params: ImageRegisterParams): Promise<ImageRecord> {
    this.#assertNameFree(params.name)
    await checkPath('rootfs', params.rootfsPath, 'file')
    await checkExt4(params.rootfsPath)
    const kernel = await this.o.kernels.resolve(params)
    return this.#ops.run(async () => {
      this.#assertNameFree(params.name)
      const image: StoredImage = {
        id: newId(),
        name: params.name,
        managed: false,
        sizeBytes: (await stat(params.rootfsPath)).size,
        rootfsPath: params.rootfsPath,
        kernel,
        injectedFiles: [],
        createdAt: new Date().toISOString(),
      }
      this.o.store.insertImage(image)
      this.o.log.info({ image: image.name, rootfs: image.rootfsPath }, 'image registered')
      return withStatus(image)
    })
  }

  /**
   * Pull `params.ref` into a new image. Validates everything it can before any download;
   * resolves to the published record. Rejects with the stage's own code (passed through), or
   * E_PULL_CANCELLED when the caller's signal aborts (the pull stops when no caller is left).
   */
  async pull(params: ImagePullParams, ctx: PullContext = {}): Promise<ImageRecord> {
    if (this.#closing) throw shuttingDown()
    let parsed
    try {
      parsed = this.o.pipeline.parseReference(params.ref)
    } catch (err) {
      const e = err as { code?: unknown; message?: string; hint?: unknown }
      throw new RpcError(
        typeof e.code === 'string' ? e.code : ERROR_CODES.INVALID_REFERENCE,
        e.message ?? `invalid image reference ${params.ref}`,
        {
          hint:
            typeof e.hint === 'string'
              ? e.hint
              : 'Use a Docker-style reference such as debian:bookworm or host:5000/repo@sha256:….',
          cause: err,
        },
      )
    }
    const name = params.name ?? defaultImageName(parsed)
    const sourceRef = this.o.pipeline.formatReference(parsed)
    const platform = params.platform ?? 'linux/amd64'
    const sizeBytes = params.sizeBytes ?? this.o.config.defaultSizeBytes
    const kernelKey = JSON.stringify([
      params.kernel,
      params.kernelPath,
      params.initrdPath,
      params.modulesDir,
    ])
    const key = JSON.stringify([sourceRef, platform, sizeBytes, kernelKey, !!params.insecure])

    // A cancelled pull of this name may still be cleaning up: wait for it, then start afresh.
    const cancelled = this.#inflight.get(name)
    if (cancelled?.controller.signal.aborted) {
      await cancelled.promise.catch(() => undefined)
      return this.pull(params, ctx)
    }
    const joined = this.#join(name, key, ctx)
    if (joined) return joined
    this.#assertNameFree(name)
    const kernel = await this.o.kernels.resolve(params)
    const authorizedKeys = await this.#authorizedKeys()
    if (authorizedKeys.length === 0) {
      throw new RpcError(
        ERROR_CODES.NO_AUTHORIZED_KEYS,
        'no SSH public key found for the image: ~/.ssh/id_ed25519.pub and ~/.ssh/id_rsa.pub are missing and the config has no authorizedKeys',
        {
          hint: 'Create a key with `ssh-keygen -t ed25519`, or list public keys under "authorizedKeys" in the banger config file.',
        },
      )
    }
    if (this.#closing) throw shuttingDown()
    // Another identical request may have started while the kernel resolved.
    const joinedLate = this.#join(name, key, ctx)
    if (joinedLate) return joinedLate
    this.#assertNameFree(name)

    const controller = new AbortController()
    const subscribers = new Set<Subscriber>()
    const job: InflightPull = {
      name,
      key,
      sourceRef,
      controller,
      subscribers,
      promise: Promise.resolve(undefined as unknown as ImageRecord),
    }
    const broadcast = (event: PullEvent): void => {
      for (const s of subscribers) s.onProgress?.(event)
    }
    this.#inflight.set(name, job)
    // Started on the next microtask so the first subscriber sees the very first event.
    job.promise = Promise.resolve()
      .then(() =>
        this.#runPull({
          name,
          sourceRef,
          ref: params.ref,
          platform,
          insecure: params.insecure === true,
          ...(sizeBytes !== undefined ? { sizeBytes } : {}),
          kernel,
          authorizedKeys,
          signal: controller.signal,
          onProgress: broadcast,
        }),
      )
      .finally(() => this.#inflight.delete(name))
    job.promise.catch(() => undefined) // each subscriber observes it; never unhandled
    return this.#subscribe(job, ctx)
  }

  #join(name: string, key: string, ctx: PullContext): Promise<ImageRecord> | undefined {
    const running = this.#inflight.get(name)
    if (!running) return undefined
    if (running.key !== key || running.controller.signal.aborted) {
      throw new RpcError(
        ERROR_CODES.NAME_TAKEN,
        `an image named ${name} is already being pulled (from ${running.sourceRef})`,
        { hint: 'Pick another name with --name, or wait for that pull to finish.' },
      )
    }
    this.o.log.info({ image: name }, 'joining the pull already in progress')
    return this.#subscribe(running, ctx)
  }

  #subscribe(job: InflightPull, ctx: PullContext): Promise<ImageRecord> {
    const subscriber: Subscriber = ctx.onProgress ? { onProgress: ctx.onProgress } : {}
    if (ctx.signal?.aborted) {
      if (job.subscribers.size === 0) job.controller.abort()
      return Promise.reject(pullCancelled(job.name))
    }
    job.subscribers.add(subscriber)
    return new Promise<ImageRecord>((resolve, reject) => {
      const onAbort = (): void => {
        job.subscribers.delete(subscriber)
        if (job.subscribers.size === 0) {
          this.o.log.info({ image: job.name }, 'pull cancelled by its last client')
          job.controller.abort()
          // Answer once the pull has cleaned up, so "cancelled" means "nothing left behind".
          job.promise.then(
            () => reject(pullCancelled(job.name)),
            () => reject(pullCancelled(job.name)),
          )
        } else {
          reject(pullCancelled(job.name))
        }
      }
      ctx.signal?.addEventListener('abort', onAbort, { once: true })
      job.promise.then(
        (v) => {
          ctx.signal?.removeEventListener('abort', onAbort)
          if (job.subscribers.delete(subscriber)) resolve(v)
        },
        (err: Error) => {
          ctx.signal?.removeEventListener('abort', onAbort)
          if (job.subscribers.delete(subscriber)) reject(err)
        },
      )
    })
  }

  async #runPull(p: {
    name: string
    sourceRef: string
    ref: string
    platform: string
    insecure: boolean
    sizeBytes?: number
    kernel: ResolvedKernel
    authorizedKeys: string[]
    signal: AbortSignal
    onProgress: (event: PullEvent) => void
  }): Promise<ImageRecord> {
    const id = newId()
    const finalDir = join(this.o.imagesDir, id)
    const staging = `${finalDir}.staging`
    const log = this.o.log.child({ image: p.name, id, ref: p.sourceRef })
    let published = false
    let inserted = false
    const started = Date.now()
    // Stage start times, logged at the end: the figures a benchmark wants.
    const stageAt: Record<string, number> = {}
    const forward = p.onProgress
    p = {
      ...p,
      onProgress: (event) => {
        if (event.type === 'stage') stageAt[event.stage] = Date.now() - started
        forward(event)
      },
    }
    try {
      p.onProgress({ type: 'stage', stage: 'resolve' })
      await mkdir(staging, { recursive: true, mode: 0o700 })
      log.info({ platform: p.platform }, 'pull started')
      const outcome = await this.o.pipeline.run({
        ref: p.ref,
        name: p.name,
        platform: p.platform,
        insecure: p.insecure,
        ...(p.sizeBytes !== undefined ? { sizeBytes: p.sizeBytes } : {}),
        rootfsPath: join(staging, 'rootfs.ext4'),
        tmpDir: this.o.tmpDir,
        authorizedKeys: p.authorizedKeys,
        hostname: hostnameFor(p.name),
        signal: p.signal,
        onProgress: p.onProgress,
        log,
      })
      p.signal.throwIfAborted()
      p.onProgress({ type: 'stage', stage: 'publish' })
      const kernel: ImageRecord['kernel'] = { kernelPath: join(finalDir, 'vmlinuz') }
      if (p.kernel.name !== undefined) kernel.name = p.kernel.name
      await cloneFile(p.kernel.kernelPath, join(staging, 'vmlinuz'))
      if (p.kernel.initrdPath) {
        await cloneFile(p.kernel.initrdPath, join(staging, 'initrd.img'))
        kernel.initrdPath = join(finalDir, 'initrd.img')
      }
      if (p.kernel.modulesDir) {
        await cloneTree(p.kernel.modulesDir, join(staging, 'modules'))
        kernel.modulesDir = join(finalDir, 'modules')
      }
      const image: StoredImage = {
        id,
        name: p.name,
        managed: true,
        sourceRef: p.sourceRef,
        manifestDigest: outcome.manifestDigest,
        platform: outcome.platform,
        sizeBytes: outcome.sizeBytes,
        dir: finalDir,
        rootfsPath: join(finalDir, 'rootfs.ext4'),
        kernel,
        injectedFiles: outcome.injectedFiles,
        createdAt: new Date().toISOString(),
      }
      await this.#ops.run(async () => {
        p.signal.throwIfAborted()
        this.#assertNotStored(p.name)
        await rename(staging, finalDir)
        published = true
        this.o.store.insertImage(image)
        inserted = true
      })
      p.onProgress({ type: 'stage', stage: 'done' })
      log.info(
        {
          ms: Date.now() - started,
          stageAt,
          sizeBytes: image.sizeBytes,
          digest: image.manifestDigest,
        },
        'pull published',
      )
      return await withStatus(image)
    } catch (err) {
      const cancelled = p.signal.aborted
      if (cancelled) log.info('pull cancelled; cleaning up')
      else log.error({ err, stageAt }, 'pull failed; cleaning up')
      await removeAll(staging).catch((e: unknown) => log.error({ err: e }, 'cleanup failed'))
      if (published && !inserted) {
        await removeAll(finalDir).catch((e: unknown) => log.error({ err: e }, 'cleanup failed'))
      }
      if (cancelled) throw pullCancelled(p.name)
      throw toRpcError(err, p.sourceRef)
    }
  }

  async #authorizedKeys(): Promise<string[]> {
    const home = this.o.home ?? homedir()
    const keys: string[] = []
    for (const file of ['id_ed25519.pub', 'id_rsa.pub']) {
      try {
        const text = await readFile(join(home, '.ssh', file), 'utf8')
        keys.push(...text.split('\n').filter((l) => l.trim() && !l.startsWith('#')))
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code !== 'ENOENT' && code !== 'EACCES' && code !== 'ENOTDIR') throw err
      }
    }
    for (const key of this.o.config.authorizedKeys) if (!keys.includes(key)) keys.push(key)
    return keys
  }

  #assertNotStored(name: string): void {
    if (this.o.store.getImage(name)) {
      throw new RpcError(ERROR_CODES.NAME_TAKEN, `an image named ${name} already exists`, {
        hint: `Pick another name with --name, or remove it first with \`banger image rm ${name}\`.`,
      })
    }
  }

  #assertNameFree(name: string): void {
    this.#assertNotStored(name)
    const running = this.#inflight.get(name)
    if (running) {
      throw new RpcError(
        ERROR_CODES.NAME_TAKEN,
        `an image named ${name} is already being pulled (from ${running.sourceRef})`,
        { hint: 'Pick another name with --name, or wait for that pull to finish.' },
      )
    }
  }

  /**
   * Crash sweep, run before the socket opens: removes `*.staging` dirs, image dirs with no
   * record and dead daemons' temporary trees. Returns what it removed.
   */
  async sweep(): Promise<string[]> {
    return this.#ops.run(async () => {
      const removed: string[] = []
      const ids = this.o.store.imageIds()
      for (const entry of await readdir(this.o.imagesDir)) {
        if (ids.has(entry)) continue
        await removeAll(join(this.o.imagesDir, entry))
        removed.push(join(this.o.imagesDir, entry))
      }
      if (this.o.rootfsCacheDir) {
        let cached: string[] = []
        try {
          cached = await readdir(this.o.rootfsCacheDir)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        }
        for (const entry of cached) {
          const m = /\.tmp-(\d+)-/.exec(entry)
          if (!m || Number(m[1]) === process.pid || isAlive(Number(m[1]))) continue
          await removeAll(join(this.o.rootfsCacheDir, entry))
          removed.push(join(this.o.rootfsCacheDir, entry))
        }
      }
      for (const dir of [this.o.tmpDir, ...(this.o.scratchDirs ?? [])]) {
        let entries: string[] = []
        try {
          entries = await readdir(dir)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        }
        for (const entry of entries) {
          if (!entry.startsWith(TMP_TREE_PREFIX)) continue
          const pid = Number(entry.slice(TMP_TREE_PREFIX.length).split('-')[0])
          if (!Number.isInteger(pid) || pid === process.pid || isAlive(pid)) continue
          await removeAll(join(dir, entry))
          removed.push(join(dir, entry))
        }
      }
      return removed
    })
  }

  /** Stop taking pulls, abort the running ones and wait until they have cleaned up. */
  async close(): Promise<void> {
    this.#closing = true
    const running = [...this.#inflight.values()]
    for (const job of running) job.controller.abort()
    await Promise.allSettled(running.map((j) => j.promise))
  }
}

/** The ext4 superblock starts at byte 1024; its magic 0xEF53 (little-endian) is at offset 56. */
async function checkExt4(path: string): Promise<void> {
  const fh = await open(path, 'r')
  try {
    const buf = Buffer.alloc(2)
    const { bytesRead } = await fh.read(buf, 0, 2, 1024 + 56)
    if (bytesRead === 2 && buf.readUInt16LE(0) === 0xef53) return
  } finally {
    await fh.close()
  }
  throw new RpcError(ERROR_CODES.NOT_EXT4, `rootfs ${path} is not an ext4 filesystem`, {
    hint: 'Register an ext4 image file (mkfs.ext4), not a directory, tarball or partitioned disk.',
  })
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function newId(): string {
  return randomBytes(8).toString('hex')
}

/** Attach `status` and `problem`: an image whose files are gone is 'broken', never hidden. */
export async function withStatus(image: StoredImage): Promise<ImageRecord> {
  const checks: [string, string, 'file' | 'directory'][] = []
  if (image.managed && image.dir) checks.push(['image directory', image.dir, 'directory'])
  checks.push(['rootfs', image.rootfsPath, 'file'])
  if (image.kernel) {
    checks.push(['kernel', image.kernel.kernelPath, 'file'])
    if (image.kernel.initrdPath) checks.push(['initrd', image.kernel.initrdPath, 'file'])
    if (image.kernel.modulesDir) checks.push(['modules', image.kernel.modulesDir, 'directory'])
  }
  for (const [what, path, kind] of checks) {
    try {
      const s = await stat(path)
      if (kind === 'file' ? !s.isFile() : !s.isDirectory()) {
        return { ...image, status: 'broken', problem: `${what} ${path} is not a ${kind}` }
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      return {
        ...image,
        status: 'broken',
        problem: `${what} ${path} ${code === 'ENOENT' ? 'is missing' : `cannot be read (${code})`}`,
      }
    }
  }
  return { ...image, status: 'ready' }
}

function imageNotFound(name: string): RpcError {
  return new RpcError(ERROR_CODES.IMAGE_NOT_FOUND, `no image named ${name}`, {
    hint: 'See `banger image list` for the names.',
  })
}

function pullCancelled(name: string): RpcError {
  return new RpcError(ERROR_CODES.PULL_CANCELLED, `pull of ${name} cancelled`, {
    hint: 'Nothing was kept; run the pull again to retry.',
  })
}

function shuttingDown(): RpcError {
  return new RpcError(ERROR_CODES.SHUTTING_DOWN, 'the daemon is shutting down', {
    hint: 'Run the command again once the daemon has restarted.',
  })
}

/** Keep a stage's own `code` and `hint` (codes are API across packages); wrap the rest. */
function toRpcError(err: unknown, ref: string): RpcError {
  if (err instanceof RpcError) return err
  const e = err as { code?: unknown; message?: unknown; hint?: unknown }
  const message = typeof e.message === 'string' ? e.message : String(err)
  if (typeof e.code === 'string' && e.code.startsWith('E_')) {
    return new RpcError(e.code, message, {
      ...(typeof e.hint === 'string' ? { hint: e.hint } : {}),
      cause: err,
    })
  }
  return new RpcError(ERROR_CODES.PULL_FAILED, `pull of ${ref} failed: ${message}`, {
    hint: 'Nothing was kept. See the daemon log (<state>/logs/bangerd.log) for details.',
    cause: err,
    ...(typeof e.code === 'string' ? { data: { cause: e.code } } : {}),
  })
}

export const MIN_SIZE_BYTES = GiB
