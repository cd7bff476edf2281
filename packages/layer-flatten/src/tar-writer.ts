import type { EntryRecord } from './types.js'

/**
 * A minimal ustar + PAX header encoder for the tar output. tar-stream's pack encodes PAX values as
 * UTF-8 text and clamps uid/gid at 6 octal digits, so binary xattrs (security.capability) and
 * ids above 262143 would be lost; this writes PAX records byte for byte.
 */
const BLOCK = 512
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK)

const TYPEFLAG: Record<string, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  directory: '5',
  fifo: '6',
  pax: 'x',
}

export interface TarHeader {
  name: string
  type: keyof typeof TYPEFLAG
  mode: number
  uid: number
  gid: number
  mtime: number
  size: number
  linkName?: string
  devMajor?: number
  devMinor?: number
  xattrs?: Record<string, string>
}

export const padding = (size: number): Buffer => Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK)

function octal(buf: Buffer, offset: number, width: number, value: number): boolean {
  const text = Math.max(0, Math.floor(value)).toString(8)
  if (text.length > width - 1) {
    buf.write('0'.repeat(width - 1), offset, 'latin1')
    return false
  }
  buf.write(text.padStart(width - 1, '0'), offset, 'latin1')
  return true
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')])
  let len = body.length + String(body.length).length
  if (String(len).length !== String(body.length).length) len = body.length + String(len).length
  return Buffer.concat([Buffer.from(String(len)), body])
}

function ustar(h: TarHeader, name: string, linkName: string, pax: Buffer[]): Buffer {
  const buf = Buffer.alloc(BLOCK)
  buf.write(name, 0, 100, 'utf8')
  octal(buf, 100, 8, h.mode & 0o7777)
  if (!octal(buf, 108, 8, h.uid)) pax.push(paxRecord('uid', Buffer.from(String(h.uid))))
  if (!octal(buf, 116, 8, h.gid)) pax.push(paxRecord('gid', Buffer.from(String(h.gid))))
  if (!octal(buf, 124, 12, h.size)) pax.push(paxRecord('size', Buffer.from(String(h.size))))
  if (!octal(buf, 136, 12, h.mtime)) pax.push(paxRecord('mtime', Buffer.from(String(h.mtime))))
  buf.write(TYPEFLAG[h.type]!, 156, 'latin1')
  buf.write(linkName, 157, 100, 'utf8')
  buf.write('ustar\x0000', 257, 'latin1')
  octal(buf, 329, 8, h.devMajor ?? 0)
  octal(buf, 337, 8, h.devMinor ?? 0)
  buf.fill(0x20, 148, 156)
  let sum = 0
  for (const byte of buf) sum += byte
  buf.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  return buf
}

const fitsUstar = (s: string, max: number) =>
  Buffer.byteLength(s) <= max && /^[\x20-\x7e]*$/.test(s)

/** The header block(s) for one entry: a PAX extended header first when anything needs one. */
export function encodeHeader(h: TarHeader): Buffer {
  const pax: Buffer[] = []
  let name = h.name
  let linkName = h.linkName ?? ''
  if (!fitsUstar(name, 100)) {
    pax.push(paxRecord('path', Buffer.from(name)))
    name = 'PaxHeader/' + h.type
  }
  if (!fitsUstar(linkName, 100)) {
    pax.push(paxRecord('linkpath', Buffer.from(linkName)))
    linkName = 'PaxHeader'
  }
  for (const [key, value] of Object.entries(h.xattrs ?? {})) {
    pax.push(paxRecord(`SCHILY.xattr.${key}`, Buffer.from(value, 'base64')))
  }
  const main = ustar(h, name, linkName, pax)
  if (pax.length === 0) return main
  const body = Buffer.concat(pax)
  const paxHeader = ustar(
    {
      name: 'PaxHeader',
      type: 'pax',
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtime: h.mtime,
      size: body.length,
    },
    'PaxHeader',
    '',
    [],
  )
  return Buffer.concat([paxHeader, body, padding(body.length), main])
}

/** The tar name of a manifest entry: relative, directories with a trailing slash. */
export function tarName(record: EntryRecord): string {
  if (record.path === '/') return './'
  const rel = record.path.slice(1)
  return record.type === 'directory' ? rel + '/' : rel
}
