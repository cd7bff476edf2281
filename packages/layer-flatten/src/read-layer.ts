import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { extract as tarExtract } from 'tar-stream'
import type { Extract } from 'tar-stream'
import { decompressStage, detectCompression } from './decompress.js'
import {
  CorruptLayerError,
  DiffIdMismatchError,
  FlattenError,
  LimitExceededError,
  UnsupportedEntryError,
  type ErrorPlace,
} from './errors.js'
import { decodeName } from './paths.js'
import type { LayerInput } from './types.js'

/** One tar entry with everything the replay needs, decoded and range-checked. */
export interface LayerEntry {
  /** The raw entry name, UTF-8. */
  name: string
  type: 'file' | 'directory' | 'symlink' | 'link' | 'char' | 'block' | 'fifo'
  mode: number
  uid: number
  gid: number
  mtime: number
  size: number
  linkName?: string
  devMajor: number
  devMinor: number
  xattrs?: Record<string, string>
}

/** Counts shared by all layers of one flatten call. */
export interface Budget {
  bytes: number
  entries: number
  maxBytes: number
  maxEntries: number
}

export type EntryHandler = (
  entry: LayerEntry,
  body: AsyncIterable<Buffer>,
  ordinal: number,
) => Promise<void>

const MAX_ID = 2 ** 32 - 2
const MIN_MTIME = -(2 ** 31)
const MAX_MTIME = 2 ** 34 - 2 ** 31 - 1

/**
 * Streams one layer: sniffs and decompresses it, hashes every uncompressed byte (the tar padding
 * after the end-of-archive blocks included), and calls `onEntry` for each entry in order, waiting
 * for it before reading on. `onEntry` may leave the body unread; it is drained afterwards.
 * Resolves to the DiffID once the whole stream is consumed and checked.
 */
export async function readLayer(
  input: LayerInput,
  place: ErrorPlace,
  budget: Budget,
  onEntry: EntryHandler,
  signal?: AbortSignal,
): Promise<string> {
  signal?.throwIfAborted()
  const source = await input.open()
  const inner = new AbortController()
  const onAbort = () => inner.abort(signal?.reason)
  signal?.addEventListener('abort', onAbort, { once: true })

  // latin1 keeps every name byte; decodeName turns it into strict UTF-8.
  const it = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]()
  const extract = tarExtract({ filenameEncoding: 'latin1' } as object)
  keepPaxBytes(extract)
  const hash = createHash('sha256')
  let total = 0
  let zeroTail = 0

  let firstError: unknown
  // Errors of the entry handler (disk, output) and of the caller's stream (a download that
  // failed its digest check) pass through as they are; the rest is the layer's fault.
  let handlerError: unknown
  let sourceError: unknown
  const pull = async () => {
    try {
      return await it.next()
    } catch (err) {
      sourceError = err
      throw err
    }
  }
  const fail = (err: unknown) => {
    firstError ??= err
    if (!inner.signal.aborted) inner.abort(err)
    extract.destroy(err instanceof Error ? err : new Error(String(err)))
  }

  const feed = async (chunks: AsyncIterable<Buffer>) => {
    for await (const chunk of chunks) {
      hash.update(chunk)
      total += chunk.length
      budget.bytes += chunk.length
      if (budget.bytes > budget.maxBytes) {
        throw new LimitExceededError('maxBytes', budget.maxBytes, place)
      }
      zeroTail = trailingZeros(chunk, zeroTail)
      if (!extract.write(chunk)) await drained(extract)
    }
    ;(extract as unknown as { end(): void }).end()
    await finished(extract)
  }

  const producer = (async () => {
    let head = Buffer.alloc(0)
    try {
      while (head.length < 6) {
        const next = await pull()
        if (next.done) break
        head = Buffer.concat([head, toBuffer(next.value)])
      }
    } catch (err) {
      source.destroy()
      throw err
    }
    let stage
    try {
      stage = decompressStage(detectCompression(head, place), place)
    } catch (err) {
      source.destroy()
      throw err
    }
    const rest = Readable.from(chain(head, it, pull), { objectMode: false })
    if (stage) await pipeline(rest, stage, feed, { signal: inner.signal })
    else await pipeline(rest, feed, { signal: inner.signal })
  })().catch(fail)

  const consumer = (async () => {
    let ordinal = 0
    for await (const stream of extract) {
      budget.entries++
      if (budget.entries > budget.maxEntries) {
        throw new LimitExceededError('maxEntries', budget.maxEntries, place)
      }
      const entry = decodeEntry(stream.header as unknown as RawHeader, place, budget)
      try {
        await onEntry(entry, stream as AsyncIterable<Buffer>, ordinal++)
      } catch (err) {
        // If the parser broke first, the handler only saw its fallout (a body that ended early).
        const parserBroke = (extract as unknown as { destroying: boolean }).destroying
        if (!parserBroke && firstError === undefined) handlerError = err
        throw err
      }
      for await (const _ of stream as AsyncIterable<Buffer>) void _
    }
  })().catch(fail)

  try {
    await Promise.all([producer, consumer])
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
  if (firstError !== undefined) {
    if (signal?.aborted) throw signal.reason
    if (firstError instanceof FlattenError) throw firstError
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- the handler's own error, as thrown
    if (firstError === handlerError || firstError === sourceError) throw firstError
    const message = firstError instanceof Error ? firstError.message : JSON.stringify(firstError)
    throw new CorruptLayerError(
      /Unexpected end of data|unexpected end of file/i.test(message)
        ? `truncated (${message})`
        : message,
      place,
      { cause: firstError },
    )
  }
  if (total === 0)
    throw new CorruptLayerError('empty stream, not even an end-of-archive block', place)
  if (total % 512 !== 0 || zeroTail < 512) {
    throw new CorruptLayerError('truncated: no end-of-archive block at the end of the tar', place)
  }
  const diffId = `sha256:${hash.digest('hex')}`
  if (input.diffId !== undefined && input.diffId !== diffId) {
    throw new DiffIdMismatchError(input.diffId, diffId, place)
  }
  return diffId
}

async function* chain(
  head: Buffer,
  it: AsyncIterator<unknown>,
  pull: () => Promise<IteratorResult<unknown>>,
): AsyncGenerator<Buffer> {
  try {
    if (head.length) yield head
    for (;;) {
      const next = await pull()
      if (next.done) return
      yield toBuffer(next.value)
    }
  } finally {
    await it.return?.()
  }
}

const toBuffer = (value: unknown): Buffer =>
  Buffer.isBuffer(value)
    ? value
    : typeof value === 'string'
      ? Buffer.from(value)
      : Buffer.from(value as Uint8Array)

/** Length of the run of zero bytes that ends the stream so far. */
function trailingZeros(chunk: Buffer, before: number): number {
  let i = chunk.length
  while (i > 0 && chunk[i - 1] === 0) i--
  return i === 0 ? before + chunk.length : chunk.length - i
}

function drained(stream: Extract): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.off('drain', onDrain)
      stream.off('close', onClose)
    }
    const onDrain = () => {
      cleanup()
      resolve()
    }
    const onClose = () => {
      cleanup()
      reject(new Error('tar parser closed'))
    }
    stream.on('drain', onDrain).on('close', onClose)
  })
}

function finished(stream: Extract): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = stream as Extract & { destroyed: boolean; writableFinished?: boolean }
    if (s.destroyed) return reject(new Error('tar parser closed'))
    stream.once('finish', () => resolve())
    stream.once('close', () => reject(new Error('tar parser closed')))
  })
}

interface RawHeader {
  name: string
  type: string | null
  mode: number
  uid: number
  gid: number
  size: number
  mtime: Date
  linkname: string | null
  devmajor: number
  devminor: number
  pax: Record<string, string> | null
}

const TYPES: Record<string, LayerEntry['type']> = {
  file: 'file',
  'contiguous-file': 'file',
  directory: 'directory',
  symlink: 'symlink',
  link: 'link',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
}

function decodeEntry(h: RawHeader, place: ErrorPlace, budget: Budget): LayerEntry {
  const name = decodeName(h.name, place)
  const type = h.type ? TYPES[h.type] : undefined
  if (!type) throw new UnsupportedEntryError(name, `unsupported tar entry type ${h.type}`, place)
  const pax = h.pax ?? {}
  if (Object.keys(pax).some((k) => k.startsWith('GNU.sparse'))) {
    throw new UnsupportedEntryError(name, 'sparse files are not supported', place)
  }
  if (!Number.isSafeInteger(h.size) || h.size < 0) {
    throw new CorruptLayerError(`entry ${JSON.stringify(name)} has an absurd size ${h.size}`, place)
  }
  if (h.size > budget.maxBytes - budget.bytes) {
    throw new LimitExceededError('maxBytes', budget.maxBytes, place)
  }
  const id = (key: 'uid' | 'gid', fallback: number): number => {
    const raw = pax[key]
    const value = raw === undefined ? fallback : Number(raw)
    if (!Number.isInteger(value) || value < 0 || value > MAX_ID) {
      throw new CorruptLayerError(
        `entry ${JSON.stringify(name)} has ${key} ${raw ?? fallback}, outside 0..${MAX_ID}`,
        place,
      )
    }
    return value
  }
  let mtime = Math.floor(h.mtime.getTime() / 1000)
  if (pax.mtime !== undefined) {
    const parsed = Number(pax.mtime)
    if (!Number.isFinite(parsed)) {
      throw new CorruptLayerError(`entry ${JSON.stringify(name)} has mtime ${pax.mtime}`, place)
    }
    mtime = Math.floor(parsed)
  }
  // Clamped to what ext4 can store (1901-12-13 .. 2446-05-10); utimes would refuse the rest.
  mtime = Number.isFinite(mtime) ? Math.min(Math.max(mtime, MIN_MTIME), MAX_MTIME) : 0
  let xattrs: Record<string, string> | undefined
  for (const [key, value] of Object.entries(pax)) {
    if (!key.startsWith('SCHILY.xattr.')) continue
    xattrs ??= {}
    xattrs[decodeName(key.slice('SCHILY.xattr.'.length), place)] = Buffer.from(
      value,
      'latin1',
    ).toString('base64')
  }
  return {
    name,
    type,
    mode: h.mode & 0o7777,
    uid: id('uid', h.uid),
    gid: id('gid', h.gid),
    mtime,
    size: h.size,
    linkName: h.linkname ? decodeName(h.linkname, place) : undefined,
    devMajor: h.devmajor,
    devMinor: h.devminor,
    xattrs,
  }
}

/**
 * tar-stream decodes PAX records as UTF-8 text, which mangles binary xattr values
 * (security.capability) and non-UTF-8 names. Swap in a byte-exact decoder on this instance only:
 * every value stays a latin1 string (one char per byte), consistent with `filenameEncoding:
 * 'latin1'`. Relies on tar-stream 3.x internals; test/pax pins it.
 */
function keepPaxBytes(extract: Extract): void {
  const self = extract as unknown as {
    _header: { type: string }
    _pax: Record<string, string> | null
    _paxGlobal: Record<string, string> | null
    _decodeLongHeader(buf: Buffer): void
  }
  if (typeof self._decodeLongHeader !== 'function') {
    throw new Error('tar-stream internals changed: pin tar-stream 3.x')
  }
  const original = self._decodeLongHeader.bind(self)
  self._decodeLongHeader = (buf: Buffer) => {
    if (self._header.type === 'pax-header') {
      const records = decodePaxRecords(buf)
      self._pax = self._paxGlobal === null ? records : { ...self._paxGlobal, ...records }
    } else if (self._header.type === 'pax-global-header') {
      self._paxGlobal = decodePaxRecords(buf)
    } else {
      original(buf)
    }
  }
}

/** `<len> <key>=<value>\n` records, values kept byte for byte (latin1). */
export function decodePaxRecords(buf: Buffer): Record<string, string> {
  const result: Record<string, string> = {}
  let at = 0
  while (at < buf.length) {
    if (buf[at] === 0) break // zero padding
    const space = buf.indexOf(0x20, at)
    const len = Number(buf.toString('latin1', at, space))
    if (space < 0 || !Number.isSafeInteger(len) || len <= space - at + 1 || at + len > buf.length) {
      throw new Error('malformed PAX header record')
    }
    const record = buf.subarray(space + 1, at + len - 1)
    if (buf[at + len - 1] !== 0x0a) throw new Error('malformed PAX header record')
    const eq = record.indexOf(0x3d)
    if (eq < 0) throw new Error('malformed PAX header record')
    result[record.toString('latin1', 0, eq)] = record.toString('latin1', eq + 1)
    at += len
  }
  return result
}
