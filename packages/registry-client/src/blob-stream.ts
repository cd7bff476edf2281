import { open, type FileHandle } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { CacheError, StreamRestartedError } from './errors.js'

/** Bytes read per `_read`: large enough for few syscalls, small enough to keep memory flat. */
const chunkSize = 1024 * 1024

type BlobState = 'writing' | 'verified' | 'failed'

interface BlobDescriptor {
  digest: string
  size: number
}

/**
 * A layer blob as one download writes it: the temp file's descriptor (opened once, read and
 * write, so it stays valid across the final rename), how many bytes have landed, and whether
 * the download was verified or failed. A download restarted from zero (a server ignored Range,
 * or a mirror failed over to the origin) bumps `generation`, so a follower knows that what it
 * read before belongs to bytes that will never be verified.
 *
 * The descriptor is reference-counted: the download holds one reference until it has renamed
 * the file into the cache, each open `BlobReadStream` one more; the last release closes it.
 */
export class GrowingBlob {
  written = 0
  generation = 0
  state: BlobState = 'writing'
  error: unknown
  private refs: number
  private closing: Promise<void> | undefined
  private readonly waiters = new Set<() => void>()

  private constructor(
    private readonly fh: FileHandle | undefined,
    /** Where the verified blob lives (or will live) in the cache. */
    readonly path: string,
    readonly digest: string,
    readonly size: number,
  ) {
    this.refs = fh ? 1 : 0
  }

  /** A blob being written to `fh` by the caller, who holds the first reference. */
  static writing(fh: FileHandle, path: string, desc: BlobDescriptor): GrowingBlob {
    return new GrowingBlob(fh, path, desc.digest, desc.size)
  }

  /** A blob already verified in the cache: followers read the cache file. */
  static cached(path: string, desc: BlobDescriptor): GrowingBlob {
    const blob = new GrowingBlob(undefined, path, desc.digest, desc.size)
    blob.written = desc.size
    blob.state = 'verified'
    return blob
  }

  /** The writer's descriptor; only for the download that created this blob. */
  get handle(): FileHandle {
    if (!this.fh) throw new Error('a cached blob has no writer')
    return this.fh
  }

  /** The writer has `bytes` bytes on disk (written with positional writes, in order). */
  wrote(bytes: number): void {
    this.written = bytes
    this.notify()
  }

  /** Starts over from byte 0: followers that already handed out bytes must fail. */
  async restart(): Promise<void> {
    if (this.written > 0) this.generation++
    this.written = 0
    this.notify()
    await this.handle.truncate(0)
  }

  /** Size and digest were checked: followers may end once they reach `size`. */
  verified(): void {
    this.state = 'verified'
    this.notify()
  }

  /** The download failed (or was aborted) before verification; followers error with `err`. */
  fail(err: unknown): void {
    if (this.state !== 'writing') return
    this.state = 'failed'
    this.error = err
    this.notify()
  }

  /** Takes a reference on the live descriptor; undefined once it is closed. */
  acquire(): FileHandle | undefined {
    if (!this.fh || this.refs === 0) return undefined
    this.refs++
    return this.fh
  }

  /** Drops a reference; the last one closes the descriptor. */
  release(): Promise<void> {
    if (this.refs === 0) return this.closing ?? Promise.resolve()
    if (--this.refs === 0) this.closing = this.fh?.close()
    return this.closing ?? Promise.resolve()
  }

  onChange(fn: () => void): void {
    this.waiters.add(fn)
  }

  offChange(fn: () => void): void {
    this.waiters.delete(fn)
  }

  private notify(): void {
    if (this.waiters.size === 0) return
    const waiting = [...this.waiters]
    this.waiters.clear()
    for (const fn of waiting) fn()
  }
}

/**
 * Reads a `GrowingBlob` by position, up to the bytes written so far, waiting for more; ends
 * once the download is verified and every byte was read. Errors (never ends) when the download
 * fails, when it restarts from zero after this stream handed out bytes (E_STREAM_RESTARTED),
 * when `signal` aborts (with its reason), or when the file turns out shorter than its size.
 * Reads one chunk of at most 1 MiB per `_read`, so a slow consumer holds the reading back and
 * never the download. Destroying the stream releases its descriptor.
 */
export class BlobReadStream extends Readable {
  private fh: FileHandle | undefined
  /** Whether `fh` is the download's (shared, reference-counted) or our own of the cache file. */
  private live = false
  private position = 0
  private generation = 0
  private pumping = false
  private wake: (() => void) | undefined
  private readonly onAbort: (() => void) | undefined

  constructor(
    private readonly blob: GrowingBlob,
    private readonly signal?: AbortSignal,
  ) {
    super({ highWaterMark: chunkSize })
    if (signal) {
      this.onAbort = () => this.destroy(signal.reason as Error)
      if (signal.aborted) this.destroy(signal.reason as Error)
      else signal.addEventListener('abort', this.onAbort, { once: true })
    }
  }

  override _construct(callback: (err?: Error | null) => void): void {
    const shared = this.blob.acquire()
    if (shared) {
      this.fh = shared
      this.live = true
      this.generation = this.blob.generation
      callback()
      return
    }
    if (this.blob.state === 'failed') {
      callback(this.blob.error as Error)
      return
    }
    // The download finished and let go of its descriptor: the blob is in the cache by now.
    open(this.blob.path, 'r').then(
      (fh) => {
        this.fh = fh
        callback()
      },
      (err: unknown) =>
        callback(
          new CacheError(this.blob.path, `cannot open blob: ${(err as Error).message}`, {
            cause: err,
          }),
        ),
    )
  }

  override _read(): void {
    if (this.pumping) return
    this.pumping = true
    this.pump().then(
      () => {
        this.pumping = false
      },
      (err: unknown) => {
        this.pumping = false
        this.destroy(err as Error)
      },
    )
  }

  /** Pushes chunks until the consumer's buffer is full, the blob ends, or it fails. */
  private async pump(): Promise<void> {
    const { blob } = this
    for (;;) {
      if (this.destroyed) return
      if (this.live) {
        if (blob.state === 'failed') throw blob.error
        if (blob.generation !== this.generation) {
          if (this.position > 0) throw new StreamRestartedError(blob.digest, this.position)
          this.generation = blob.generation
        }
      }
      const available = this.live ? blob.written : blob.size
      if (this.position >= blob.size && (!this.live || blob.state === 'verified')) {
        this.push(null)
        return
      }
      if (this.position >= available) {
        await new Promise<void>((resolve) => {
          this.wake = resolve
          blob.onChange(resolve)
        })
        this.wake = undefined
        continue
      }
      const length = Math.min(chunkSize, available - this.position)
      const buffer = Buffer.allocUnsafe(length)
      const generation = blob.generation
      const { bytesRead } = await this.fh!.read(buffer, 0, length, this.position)
      if (this.destroyed) return
      // Restarted while we read: what we read may be old or new bytes; decide at the top.
      if (this.live && blob.generation !== generation) continue
      if (bytesRead === 0)
        throw new CacheError(
          blob.path,
          `blob ends after ${this.position} bytes, expected ${blob.size}`,
        )
      this.position += bytesRead
      if (!this.push(bytesRead === length ? buffer : buffer.subarray(0, bytesRead))) return
    }
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort)
    if (this.wake) {
      this.blob.offChange(this.wake)
      this.wake()
    }
    const fh = this.fh
    this.fh = undefined
    const closed = !fh ? Promise.resolve() : this.live ? this.blob.release() : fh.close()
    closed.then(
      () => callback(err),
      (closeErr: unknown) => callback(err ?? (closeErr as Error)),
    )
  }
}
