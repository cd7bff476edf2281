import { once } from 'node:events'
import { lstat, mkdir, readdir } from 'node:fs/promises'
import type { Writable } from 'node:stream'
import { DestNotEmptyError, WriteFailedError, type ErrorPlace } from './errors.js'
import { readLayer, type Budget } from './read-layer.js'
import { Replay, type Inode } from './replay.js'
import { END_OF_ARCHIVE, encodeHeader, padding, tarName } from './tar-writer.js'
import type {
  EntryRecord,
  FlattenLimits,
  FlattenOptions,
  FlattenResult,
  LayerInput,
} from './types.js'

/** 64 GiB of uncompressed tar across all layers. */
export const DEFAULT_MAX_BYTES = 64 * 1024 ** 3
/** Two million tar entries across all layers. */
export const DEFAULT_MAX_ENTRIES = 2_000_000

type Layers = Iterable<LayerInput> | AsyncIterable<LayerInput>

const budgetFor = (limits: FlattenLimits | undefined): Budget => ({
  bytes: 0,
  entries: 0,
  maxBytes: limits?.maxBytes ?? DEFAULT_MAX_BYTES,
  maxEntries: limits?.maxEntries ?? DEFAULT_MAX_ENTRIES,
})

const placeOf = (layer: LayerInput, index: number): ErrorPlace => ({
  layer: layer.name ? `#${index} ${layer.name}` : `#${index}`,
})

/** Reads every layer, oldest first, into `replay`; resolves to the layers and their DiffIDs. */
async function replayLayers(
  layers: Layers,
  replay: Replay,
  budget: ReturnType<typeof budgetFor>,
  signal: AbortSignal | undefined,
): Promise<{ inputs: LayerInput[]; diffIds: string[] }> {
  const inputs: LayerInput[] = []
  const diffIds: string[] = []
  for await (const layer of layers) {
    const layerIndex = inputs.length
    inputs.push(layer)
    const place = placeOf(layer, layerIndex)
    diffIds.push(
      await readLayer(
        layer,
        place,
        budget,
        (entry, body, ordinal) => replay.apply(entry, body, layerIndex, ordinal, place),
        signal,
      ),
    )
  }
  return { inputs, diffIds }
}

/**
 * Replays `layers` (oldest first) into `dest`, which must not exist or be an empty directory.
 * Pulls the next layer from the iterable only once the previous one is fully replayed, so a
 * producer can still be downloading it. Each layer's stream is read to its end, and its DiffID
 * checked when given.
 *
 * The tree is made for an unprivileged owner: no chown, no device nodes or FIFOs, no
 * setuid/setgid/sticky bits, directories at least u+rwx and files at least u+rw. The resolved
 * manifest is the truth for metadata. On failure `dest` is left partly written: delete it.
 *
 * Rejects with a {@link FlattenError} (`code`, `hint`), or `signal.reason` when aborted.
 */
export async function flattenToDirectory(
  layers: Layers,
  dest: string,
  options: FlattenOptions = {},
): Promise<FlattenResult> {
  const { signal } = options
  signal?.throwIfAborted()
  await prepareDest(dest)
  const replay = new Replay(dest)
  await replayLayers(layers, replay, budgetFor(options.limits), signal)
  signal?.throwIfAborted()
  await replay.finishDisk()
  return replay.manifest()
}

/**
 * Writes the flattened image as one tar stream to `output` (what `crane export` does), touching
 * no disk. Two passes: the first reads every layer in order to resolve the final tree; the second
 * calls `open()` again on each layer that still provides file content and copies those bodies.
 * So unlike {@link flattenToDirectory}, each `open()` must be callable twice and return the same
 * bytes (checked against the first pass's DiffID).
 *
 * Output order: every directory, symlink and special file (parents first), then regular files
 * layer by layer, each followed by hardlinks to it. Binary xattrs and large ids go in PAX records.
 * `output` is ended when the archive is complete. Resolves to the same manifest.
 */
export async function flattenToTar(
  layers: Layers,
  output: NodeJS.WritableStream | Writable,
  options: FlattenOptions = {},
): Promise<FlattenResult> {
  const { signal } = options
  signal?.throwIfAborted()
  const replay = new Replay(null)
  const budget = budgetFor(options.limits)
  const { inputs, diffIds } = await replayLayers(layers, replay, budget, signal)
  const { result, inodes } = replay.manifestWithInodes()

  const out = output as Writable
  let outputError: Error | undefined
  const onError = (err: Error) => (outputError ??= err)
  out.on('error', onError)
  const put = async (buf: Buffer) => {
    try {
      if (outputError) throw outputError
      if (!out.write(buf)) await once(out, 'drain', { signal })
    } catch (err) {
      if (signal?.aborted) throw err
      throw new WriteFailedError('the tar output', err)
    }
  }

  try {
    // Which names each surviving file inode has, and where its content sits.
    const names = new Map<Inode, EntryRecord[]>()
    const bySource = new Map<number, Map<number, Inode>>()
    result.entries.forEach((record, i) => {
      const inode = inodes[i]!
      if (record.type !== 'file') return
      const list = names.get(inode)
      if (list) return list.push(record)
      names.set(inode, [record])
      const { layer, ordinal } = inode.source!
      let perLayer = bySource.get(layer)
      if (!perLayer) bySource.set(layer, (perLayer = new Map<number, Inode>()))
      perLayer.set(ordinal, inode)
    })

    for (const record of result.entries) {
      if (record.type === 'file') continue
      await put(encodeHeader({ ...record, name: tarName(record), linkName: record.linkTarget }))
    }

    for (const [layerIndex, wanted] of [...bySource].sort((a, b) => a[0] - b[0])) {
      const input = inputs[layerIndex]!
      const place = placeOf(input, layerIndex)
      const again: LayerInput = { ...input, open: () => input.open(), diffId: diffIds[layerIndex] }
      await readLayer(
        again,
        place,
        budgetFor(undefined),
        async (_entry, body, ordinal) => {
          const inode = wanted.get(ordinal)
          if (!inode) return
          const [first, ...others] = names.get(inode)!
          await put(encodeHeader({ ...first!, name: tarName(first!), linkName: undefined }))
          for await (const chunk of body) await put(chunk)
          await put(padding(first!.size))
          for (const other of others) {
            await put(
              encodeHeader({
                ...other,
                type: 'link',
                size: 0,
                name: tarName(other),
                linkName: tarName(first!),
                xattrs: undefined,
              }),
            )
          }
        },
        signal,
      )
    }
    await put(END_OF_ARCHIVE)
    out.end()
    if (!out.writableFinished) await once(out, 'finish', { signal })
  } finally {
    out.off('error', onError)
  }
  if (outputError) throw new WriteFailedError('the tar output', outputError)
  return result
}

async function prepareDest(dest: string): Promise<void> {
  try {
    const st = await lstat(dest)
    if (!st.isDirectory() || (await readdir(dest)).length > 0) throw new DestNotEmptyError(dest)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    await mkdir(dest, { recursive: true, mode: 0o700 })
  }
}
