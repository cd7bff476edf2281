/** Test helpers: tar layers built in memory with tar-stream's pack, fed back in odd-sized chunks. */
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { pack } from 'tar-stream'
import type { LayerInput } from '../src/types.js'

export interface TestEntry {
  name: string
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo'
  content?: string | Buffer
  linkname?: string
  mode?: number
  uid?: number
  gid?: number
  mtime?: number
  devmajor?: number
  devminor?: number
  pax?: Record<string, string>
}

export async function tarLayer(entries: TestEntry[]): Promise<Buffer> {
  const p = pack()
  const chunks: Buffer[] = []
  const done = (async () => {
    for await (const c of p as AsyncIterable<Buffer>) chunks.push(c)
  })()
  for (const e of entries) {
    const type = e.type ?? 'file'
    const content = e.content === undefined ? undefined : Buffer.from(e.content)
    await new Promise<void>((resolve, reject) => {
      // tar-stream's pack clamps ids at 6 octal digits: big ones go in PAX, as Go's tar does.
      const pax: Record<string, string> = { ...e.pax }
      if ((e.uid ?? 0) > 0o777777) pax.uid = String(e.uid)
      if ((e.gid ?? 0) > 0o777777) pax.gid = String(e.gid)
      const header = {
        name: e.name,
        type,
        // pack() treats mode 0 as unset; a bit outside 0o7777 keeps it truthy and is masked off.
        mode: e.mode === 0 ? 0o10000 : (e.mode ?? (type === 'directory' ? 0o755 : 0o644)),
        uid: e.uid ?? 0,
        gid: e.gid ?? 0,
        mtime: new Date((e.mtime ?? 1_700_000_000) * 1000),
        linkname: e.linkname,
        devmajor: e.devmajor,
        devminor: e.devminor,
        pax: Object.keys(pax).length ? pax : undefined,
        size: type === 'file' ? (content?.length ?? 0) : 0,
      }
      const cb = (err?: Error | null) => (err ? reject(err) : resolve())
      if (type === 'file') p.entry(header, content ?? Buffer.alloc(0), cb)
      else p.entry(header, cb)
    })
  }
  p.finalize()
  await done
  return Buffer.concat(chunks)
}

export const sha256 = (buf: Buffer) => `sha256:${createHash('sha256').update(buf).digest('hex')}`

export function zstdSync(buf: Buffer): Buffer {
  const r = spawnSync('zstd', ['-q', '-c', '-3'], { input: buf, maxBuffer: 1 << 30 })
  if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr.toString()}`)
  return r.stdout
}

/** A layer whose bytes arrive in chunks of `chunk` bytes (odd on purpose). */
export function layerOf(
  tar: Buffer,
  opts: { chunk?: number; compress?: 'gzip' | 'zstd'; diffId?: string | false; name?: string } = {},
): LayerInput {
  const bytes =
    opts.compress === 'gzip' ? gzipSync(tar) : opts.compress === 'zstd' ? zstdSync(tar) : tar
  const chunk = opts.chunk ?? 777
  return {
    name: opts.name,
    diffId: opts.diffId === false ? undefined : (opts.diffId ?? sha256(tar)),
    open: () =>
      Readable.from(
        (function* () {
          for (let i = 0; i < bytes.length; i += chunk) yield bytes.subarray(i, i + chunk)
        })(),
        { objectMode: false },
      ),
  }
}

export async function layers(...stacks: TestEntry[][]): Promise<LayerInput[]> {
  return Promise.all(
    stacks.map(async (s, i) => layerOf(await tarLayer(s), { chunk: 333 + i * 101 })),
  )
}
