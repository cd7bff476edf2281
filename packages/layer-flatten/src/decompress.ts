import { spawn } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import { Transform, type TransformCallback } from 'node:stream'
import { createGunzip, type ZlibOptions } from 'node:zlib'
import { Decompress } from 'fzstd'
import { CorruptLayerError, UnsupportedCompressionError, type ErrorPlace } from './errors.js'

export type Compression = 'gzip' | 'zstd' | 'none'

/** Sniffs the first bytes. Anything that is neither gzip nor zstd must look like a tar. */
export function detectCompression(head: Buffer, place: ErrorPlace): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip'
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd'
  if (head.length >= 3 && head.subarray(0, 3).toString('latin1') === 'BZh') {
    throw new UnsupportedCompressionError('bzip2', place)
  }
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from('fd377a585a00', 'hex'))) {
    throw new UnsupportedCompressionError('xz', place)
  }
  return 'none'
}

let zstdBinary: string | null | undefined
/** The system `zstd`, if on PATH: about 4x faster than fzstd and it caps the window size. */
export function findZstd(): string | null {
  // BANGER_FLATTEN_ZSTD=js forces fzstd (tests, benchmarks, machines with a broken zstd).
  if (process.env.BANGER_FLATTEN_ZSTD === 'js') return null
  if (zstdBinary !== undefined) return zstdBinary
  zstdBinary = null
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const candidate = join(dir, 'zstd')
    try {
      accessSync(candidate, constants.X_OK)
      zstdBinary = candidate
      break
    } catch {
      continue
    }
  }
  return zstdBinary
}

/** zstd refuses frames whose window needs more than this (its own default for `-d`). */
export const ZSTD_MEMORY_LIMIT = '128MB'

/** A pipeline stage: gzip via node:zlib; zstd via the system binary, else fzstd. */
export function decompressStage(
  kind: Compression,
  place: ErrorPlace,
): ((source: AsyncIterable<Buffer>) => AsyncIterable<Buffer>) | Transform | null {
  if (kind === 'none') return null
  // Every output chunk is a round trip to the thread pool, and cross-core wake-ups are dear (in a
  // VM especially): 256 KiB chunks, and a 1 MiB readable buffer so inflate runs ahead while this
  // thread parses and writes. 54k-entry image: 7.9 s at 64 KiB/16 KiB, 5.4 s at 256 KiB/1 MiB.
  if (kind === 'gzip')
    return createGunzip({ chunkSize: 256 * 1024, readableHighWaterMark: 1 << 20 } as ZlibOptions)
  const bin = findZstd()
  return bin ? zstdProcess(bin, place) : new FzstdTransform(place)
}

function zstdProcess(bin: string, place: ErrorPlace) {
  return async function* (source: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
    const child = spawn(bin, ['-dcq', `--memory=${ZSTD_MEMORY_LIMIT}`], {
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-500)))
    const exited = new Promise<number | null>((resolve) =>
      child.on('close', (code) => resolve(code)),
    )
    child.stdin.on('error', () => {}) // EPIPE when zstd stops early; its exit code says why
    const feed = (async () => {
      for await (const chunk of source) {
        if (!child.stdin.write(chunk)) {
          await new Promise<void>((resolve) => {
            const done = () => {
              child.stdin.off('drain', done)
              child.stdin.off('close', done)
              resolve()
            }
            child.stdin.on('drain', done).on('close', done)
          })
        }
        if (child.stdin.destroyed) break
      }
      child.stdin.end()
    })()
    let fed: Error | undefined
    feed.catch((err: unknown) => {
      fed = err instanceof Error ? err : new Error(String(err))
      child.kill()
    })
    try {
      for await (const chunk of child.stdout as AsyncIterable<Buffer>) yield chunk
      const code = await exited
      if (fed) throw fed
      await feed
      if (code !== 0) {
        throw new CorruptLayerError(
          `zstd: ${stderr.trim().split('\n').pop() ?? `exit ${code}`}`,
          place,
        )
      }
    } finally {
      if (child.exitCode === null) child.kill()
    }
  }
}

class FzstdTransform extends Transform {
  private readonly decoder = new Decompress((data) => {
    // fzstd may hand out views of its window buffer: copy before it is reused.
    if (data.length) this.push(Buffer.from(data))
  })
  constructor(private readonly place: ErrorPlace) {
    super()
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.decoder.push(chunk)
      cb()
    } catch (err) {
      cb(new CorruptLayerError(`zstd: ${(err as Error).message}`, this.place, { cause: err }))
    }
  }
  override _flush(cb: TransformCallback): void {
    try {
      this.decoder.push(new Uint8Array(0), true)
      cb()
    } catch (err) {
      cb(new CorruptLayerError(`zstd: ${(err as Error).message}`, this.place, { cause: err }))
    }
  }
}
