/** Hand-made tar bytes for cases tar-stream's pack will not produce (binary PAX, bad names). */
import { END_OF_ARCHIVE, encodeHeader, padding, type TarHeader } from '../src/tar-writer.js'

export function rawEntry(
  h: Partial<TarHeader> & { name: string },
  content = Buffer.alloc(0),
): Buffer {
  const header = encodeHeader({
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: 1_700_000_000,
    size: content.length,
    ...h,
  })
  return Buffer.concat([header, content, padding(content.length)])
}

export const rawTar = (...entries: Buffer[]) => Buffer.concat([...entries, END_OF_ARCHIVE])

/** Overwrites bytes of a single ustar header block and fixes its checksum. */
export function patchHeader(block: Buffer, offset: number, bytes: Buffer): Buffer {
  const out = Buffer.from(block)
  bytes.copy(out, offset)
  out.fill(0x20, 148, 156)
  let sum = 0
  for (let i = 0; i < 512; i++) sum += out[i]!
  out.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  return out
}
