/** Bounded memory: a layer is streamed, never held. A 256 MiB file goes through in a few MiB. */
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { createGzip } from 'node:zlib'
import { expect, test } from 'vitest'
import { flattenToDirectory, flattenToTar } from '../src/flatten.js'
import type { LayerInput } from '../src/types.js'
import { rawEntry } from './raw.js'

const SIZE = 256 * 1024 * 1024

/** A gzip layer holding one SIZE-byte file of zeros, generated on the fly. */
function zeroLayer(): LayerInput {
  return {
    open: () => {
      const header = rawEntry({ name: 'big', size: SIZE })
      const chunk = Buffer.alloc(1024 * 1024)
      const source = Readable.from(
        (function* () {
          yield header
          for (let i = 0; i < SIZE / chunk.length; i++) yield chunk
          yield Buffer.alloc(1024)
        })(),
        { objectMode: false },
      )
      return source.pipe(createGzip({ level: 1 }))
    },
  }
}

function peakRss(): { stop: () => number } {
  let peak = process.memoryUsage().rss
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20)
  return {
    stop: () => {
      clearInterval(timer)
      return Math.max(peak, process.memoryUsage().rss)
    },
  }
}

test('flattenToTar streams a 256 MiB file with bounded memory', async () => {
  const before = process.memoryUsage().rss
  const watch = peakRss()
  let written = 0
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      written += chunk.length
      cb()
    },
  })
  await flattenToTar([zeroLayer()], sink)
  const grew = watch.stop() - before
  expect(written).toBeGreaterThan(SIZE)
  expect(grew).toBeLessThan(96 * 1024 * 1024)
}, 120_000)

test('flattenToDirectory streams a 256 MiB file with bounded memory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lf-mem-'))
  try {
    const before = process.memoryUsage().rss
    const watch = peakRss()
    await flattenToDirectory([zeroLayer()], join(dir, 'out'))
    const grew = watch.stop() - before
    expect(statSync(join(dir, 'out/big')).size).toBe(SIZE)
    expect(grew).toBeLessThan(96 * 1024 * 1024)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}, 120_000)
