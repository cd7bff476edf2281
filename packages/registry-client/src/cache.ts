import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import {
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises'
import { join } from 'node:path'
import lockfile from 'proper-lockfile'
import { BadSourceError, CacheError, DigestMismatchError, SizeMismatchError } from './errors.js'

const MEDIA_INDEX = 'application/vnd.oci.image.index.v1+json'
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name'
const sha256Re = /^sha256:([0-9a-f]{64})$/

export interface IndexEntry {
  mediaType: string
  digest: string
  size: number
  platform?: { os: string; architecture: string; variant?: string }
  annotations?: Record<string, string>
}

interface IndexFile {
  schemaVersion: 2
  mediaType?: string
  manifests: IndexEntry[]
  [key: string]: unknown
}

/** `sha256:<hex>` → `<hex>`; throws on anything else so a digest can never escape the blob dir. */
export function digestHex(digest: string): string {
  const m = sha256Re.exec(digest)
  if (!m) throw new Error(`not a sha256 digest: ${JSON.stringify(digest)}`)
  return m[1]!
}

export function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === code
}

/**
 * An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/<hex>`). A blob
 * appears under its name only complete and verified: writers stream into `tmp/` under a unique
 * name and rename, so concurrent writers in any process are safe (same digest ⇒ same bytes).
 */
export class OciCache {
  private ready: Promise<void> | undefined

  constructor(readonly dir: string) {}

  blobPath(digest: string): string {
    return join(this.dir, 'blobs', 'sha256', digestHex(digest))
  }

  tempPath(digest: string): string {
    return join(
      this.dir,
      'tmp',
      `${digestHex(digest).slice(0, 16)}-${process.pid}-${randomBytes(6).toString('hex')}`,
    )
  }

  init(): Promise<void> {
    this.ready ??= this.create().catch((err: unknown) => {
      this.ready = undefined
      throw err instanceof CacheError
        ? err
        : new CacheError(this.dir, `cannot set up: ${(err as Error).message}`, { cause: err })
    })
    return this.ready
  }

  private async create(): Promise<void> {
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true })
    await mkdir(join(this.dir, 'tmp'), { recursive: true })
    await this.sweepTemp()
    await this.createIfAbsent('oci-layout', JSON.stringify({ imageLayoutVersion: '1.0.0' }))
    await this.createIfAbsent(
      'index.json',
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [],
      }),
    )
  }

  /** Removes temp files a killed process left behind (older than a day, so never a live one). */
  private async sweepTemp(): Promise<void> {
    const tmp = join(this.dir, 'tmp')
    const cutoff = Date.now() - 24 * 3600 * 1000
    for (const name of await readdir(tmp)) {
      const file = join(tmp, name)
      const s = await stat(file).catch(() => undefined)
      if (s && s.mtimeMs < cutoff) await rm(file, { recursive: true, force: true }).catch(() => {})
    }
  }

  /** link(2) fails if the name exists, so a concurrent writer's index.json is never clobbered. */
  private async createIfAbsent(name: string, content: string): Promise<void> {
    const target = join(this.dir, name)
    try {
      await stat(target)
      return
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
    }
    const temp = join(this.dir, 'tmp', `${name}-${process.pid}-${randomBytes(6).toString('hex')}`)
    await writeFile(temp, content)
    try {
      await link(temp, target)
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err
    } finally {
      await unlink(temp)
    }
  }

  /** A cache hit: the blob exists with the descriptor's size (content was verified on write). */
  async has(digest: string, size: number): Promise<boolean> {
    try {
      const s = await stat(this.blobPath(digest))
      return s.isFile() && s.size === size
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false
      throw new CacheError(this.dir, `cannot stat blob ${digest}: ${(err as Error).message}`, {
        cause: err,
      })
    }
  }

  /** Reads a small blob (manifest, config) and re-verifies it; undefined when absent or bad. */
  async readSmallBlob(digest: string, size?: number): Promise<Buffer | undefined> {
    let data: Buffer
    try {
      data = await readFile(this.blobPath(digest))
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined
      throw new CacheError(this.dir, `cannot read blob ${digest}: ${(err as Error).message}`, {
        cause: err,
      })
    }
    if ((size !== undefined && data.length !== size) || sha256(data) !== digest) return undefined
    return data
  }

  /** Writes a small verified blob (temp + rename). */
  async writeSmallBlob(digest: string, data: Buffer): Promise<void> {
    const actual = sha256(data)
    if (actual !== digest) throw new DigestMismatchError(`blob ${digest}`, digest, actual)
    if (await this.has(digest, data.length)) return
    const temp = this.tempPath(digest)
    try {
      const fh = await open(temp, 'wx', 0o644)
      try {
        await fh.writeFile(data)
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(temp, this.blobPath(digest))
    } catch (err) {
      await unlink(temp).catch(() => {})
      throw new CacheError(this.dir, `cannot write blob ${digest}: ${(err as Error).message}`, {
        cause: err,
      })
    }
  }

  /**
   * Puts a local file into the cache as blob `expected.digest`, verifying size and sha256 on the
   * way. `move` renames the file in after hashing it (it must be ours, on this filesystem, e.g.
   * an archive extracted into tmp/); otherwise it is copied through a temp file.
   */
  async importFile(
    src: string,
    expected: { digest: string; size: number },
    options: { move: boolean; signal?: AbortSignal; onBytes?: (bytes: number) => void },
  ): Promise<void> {
    const { signal, onBytes } = options
    let st
    try {
      st = await lstat(src)
    } catch (err) {
      throw new BadSourceError(src, `blob ${expected.digest} is missing`, { cause: err })
    }
    const move = options.move && st.isFile()
    if (move && st.size !== expected.size) throw new SizeMismatchError(src, expected.size, st.size)
    const hash = createHash('sha256')
    let bytes = 0
    const temp = move ? undefined : this.tempPath(expected.digest)
    const fh = temp ? await open(temp, 'wx', 0o644) : undefined
    try {
      for await (const chunk of createReadStream(
        src,
        signal ? { signal } : {},
      ) as AsyncIterable<Buffer>) {
        if (bytes + chunk.length > expected.size)
          throw new SizeMismatchError(src, expected.size, bytes + chunk.length)
        if (fh) await fh.write(chunk, 0, chunk.length, bytes)
        hash.update(chunk)
        bytes += chunk.length
        onBytes?.(bytes)
      }
      if (bytes !== expected.size) throw new SizeMismatchError(src, expected.size, bytes)
      const actual = `sha256:${hash.digest('hex')}`
      if (actual !== expected.digest) throw new DigestMismatchError(src, expected.digest, actual)
      if (fh) {
        await fh.sync()
        await fh.close()
      }
      await rename(temp ?? src, this.blobPath(expected.digest))
    } finally {
      await fh?.close().catch(() => {})
      if (temp) await unlink(temp).catch(() => {})
    }
  }

  /**
   * Records `entry` in index.json under `refName`, replacing an entry with the same name.
   * Serialised across processes with a lock directory; the file is replaced atomically so a
   * reader (skopeo, umoci, another pull) sees the old or the new index, never half of one.
   */
  async recordImage(entry: IndexEntry, refName: string): Promise<void> {
    const indexPath = join(this.dir, 'index.json')
    let release: (() => Promise<void>) | undefined
    try {
      release = await lockfile.lock(this.dir, {
        lockfilePath: join(this.dir, 'index.json.lock'),
        realpath: false,
        stale: 10_000,
        // Held for milliseconds; the default handler throws from a timer and would crash the daemon.
        onCompromised: () => {},
        retries: { retries: 50, minTimeout: 20, maxTimeout: 200, randomize: true },
      })
      let index: IndexFile
      try {
        index = JSON.parse(await readFile(indexPath, 'utf8')) as IndexFile
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err
        index = { schemaVersion: 2, mediaType: MEDIA_INDEX, manifests: [] }
      }
      if (!Array.isArray(index.manifests)) throw new Error('its manifests field is not a list')
      index.manifests = index.manifests.filter(
        (m) => m.annotations?.[REF_NAME_ANNOTATION] !== refName,
      )
      index.manifests.push({
        ...entry,
        annotations: { ...entry.annotations, [REF_NAME_ANNOTATION]: refName },
      })
      const temp = join(
        this.dir,
        'tmp',
        `index.json-${process.pid}-${randomBytes(6).toString('hex')}`,
      )
      await writeFile(temp, JSON.stringify(index, null, 2) + '\n')
      await rename(temp, indexPath)
    } catch (err) {
      throw new CacheError(this.dir, `cannot update index.json: ${(err as Error).message}`, {
        cause: err,
      })
    } finally {
      await release?.().catch(() => {})
    }
  }
}
