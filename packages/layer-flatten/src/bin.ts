#!/usr/bin/env node
import { createReadStream, createWriteStream } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { flattenToDirectory, flattenToTar } from './flatten.js'
import { layersFromOciLayout } from './oci-layout.js'
import type { FlattenResult, LayerInput } from './types.js'

const USAGE = `usage: flatten (--layout DIR [--tag TAG] | LAYER...) (--dest DIR | --tar FILE|-)
               [--manifest FILE] [--max-bytes N] [--max-entries N]

Replays OCI image layers (oldest first) into a directory tree or one tar stream.
  --layout DIR     an OCI image layout (umoci, skopeo copy oci:DIR:TAG); --tag picks the image
  LAYER...         layer files (tar, tar+gzip or tar+zstd), oldest first; no DiffID check
  --dest DIR       write the tree here (must not exist, or be empty)
  --tar FILE|-     write one flattened tar (- for stdout)
  --manifest FILE  write the manifest (every entry with its metadata) as JSON`

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      layout: { type: 'string' },
      tag: { type: 'string' },
      dest: { type: 'string' },
      tar: { type: 'string' },
      manifest: { type: 'string' },
      'max-bytes': { type: 'string' },
      'max-entries': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) return void console.log(USAGE)
  if (!values.layout === (positionals.length === 0) || !values.dest === !values.tar) {
    console.error(USAGE)
    process.exitCode = 2
    return
  }
  const layers: LayerInput[] = values.layout
    ? await layersFromOciLayout(values.layout, values.tag)
    : positionals.map((path) => ({
        name: path,
        open: () => createReadStream(path, { highWaterMark: 1 << 20 }),
      }))
  const ac = new AbortController()
  process.once('SIGINT', () => ac.abort(new Error('interrupted')))
  const options = {
    signal: ac.signal,
    limits: {
      maxBytes: values['max-bytes'] ? Number(values['max-bytes']) : undefined,
      maxEntries: values['max-entries'] ? Number(values['max-entries']) : undefined,
    },
  }
  let result: FlattenResult
  if (values.dest) {
    result = await flattenToDirectory(layers, values.dest, options)
  } else {
    const out = values.tar === '-' ? process.stdout : createWriteStream(values.tar!)
    result = await flattenToTar(layers, out, options)
  }
  if (values.manifest) await writeFile(values.manifest, JSON.stringify(result, null, 1) + '\n')
  const t = result.totals
  console.error(
    `flattened ${layers.length} layers: ${t.files} files (${t.bytes} bytes), ${t.directories} directories, ${t.symlinks} symlinks, ${t.specials} special files`,
  )
}

main().catch((err: Error & { hint?: string }) => {
  console.error(`error: ${err.message}`)
  if (err.hint) console.error(`hint: ${err.hint}`)
  process.exitCode = 1
})
