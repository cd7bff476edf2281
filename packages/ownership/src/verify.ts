import { quoteArg, runDebugfs, type DebugfsCommand } from './debugfs.js'
import { lsCommands, Listing } from './listing.js'
import { DEBUGFS_TYPE_WORD, typeWordOfMode, type Manifest } from './entries.js'
import { OwnershipMismatchError, type OwnershipMismatch } from './errors.js'

/** One xattr as `debugfs stat` lists it. */
export interface StatXattr {
  name: string
  /** Length of the stored value. */
  length: number
  /** The bytes, when stat prints them (values under 40 bytes, but not system.data). */
  value?: Buffer
}

/** What `debugfs stat` says about one inode. */
export interface StatFacts {
  inode: number
  type: string
  /** Permission bits, 0o7777. */
  mode: number
  uid: number
  gid: number
  links: number
  mtime?: number
  devMajor?: number
  devMinor?: number
  /** In the order stat lists them. */
  xattrs: StatXattr[]
}

const HEAD = /^Inode:\s*(\d+)\s+Type:\s*(.+?)\s+Mode:\s*([0-7]+)/
// debugfs prints ids with %d: 4294967294 shows as -2.
const OWNER = /User:\s*(-?\d+)\s+Group:\s*(-?\d+)/y
const NUMBER = /\d+/y
const HEX = /([0-9a-f]+)(?::([0-9a-f]+))?/y
const DEVICE = /(\d+):(\d+)/y
const XATTR_LINE = /^ {2}(.+?) \((\d+)\)(?: = (.*))?$/

/**
 * Parses what `debugfs stat` printed for one inode (latin1-decoded, as the batch hands it over);
 * undefined when it holds no inode (e.g. not found). Reads forward through the text once, looking
 * only for the fields it needs, in the order stat prints them.
 */
export function parseStat(text: string): StatFacts | undefined {
  let eol = text.indexOf('\n')
  const head = HEAD.exec(eol < 0 ? text : text.slice(0, eol))
  if (!head || eol < 0) return undefined
  let at = text.indexOf('User:', eol)
  if (at < 0) return undefined
  OWNER.lastIndex = at
  const owner = OWNER.exec(text)
  at = text.indexOf('Links:', at)
  if (!owner || at < 0) return undefined
  NUMBER.lastIndex = at + 'Links: '.length
  const links = NUMBER.exec(text)
  if (!links) return undefined
  const facts: StatFacts = {
    inode: Number(head[1]),
    type: head[2]!,
    mode: parseInt(head[3]!, 8),
    uid: Number(owner[1]) >>> 0,
    gid: Number(owner[2]) >>> 0,
    links: Number(links[0]),
    xattrs: [],
  }
  at = text.indexOf('mtime: 0x', at)
  if (at >= 0) {
    HEX.lastIndex = at + 'mtime: 0x'.length
    const m = HEX.exec(text)
    // i_mtime is signed 32 bits; the low two bits of i_mtime_extra extend the epoch.
    if (m) facts.mtime = (parseInt(m[1]!, 16) | 0) + (parseInt(m[2] ?? '0', 16) & 3) * 2 ** 32
  } else at = 0
  const xattrs = text.indexOf('\nExtended attributes:\n', at)
  if (xattrs >= 0) {
    at = xattrs + '\nExtended attributes:\n'.length
    while (text.startsWith('  ', at)) {
      eol = text.indexOf('\n', at)
      if (eol < 0) eol = text.length
      const m = XATTR_LINE.exec(text.slice(at, eol))
      at = eol + 1
      if (!m) continue
      const x: StatXattr = { name: decodeCString(m[1]!).toString('latin1'), length: Number(m[2]) }
      if (m[3] !== undefined) {
        const value = decodeStatValue(m[3])
        if (value?.length === x.length) x.value = value
      }
      facts.xattrs.push(x)
    }
  }
  const dev = text.indexOf('Device major/minor number: ', at)
  if (dev >= 0) {
    DEVICE.lastIndex = dev + 'Device major/minor number: '.length
    const m = DEVICE.exec(text)
    if (m) {
      facts.devMajor = Number(m[1])
      facts.devMinor = Number(m[2])
    }
  }
  return facts
}

/**
 * An xattr value as stat prints it: `"…"` with C escapes when it is mostly printable, else hex
 * bytes each followed by a space. Undefined when it is neither.
 */
export function decodeStatValue(printed: string): Buffer | undefined {
  if (printed.startsWith('"')) {
    if (printed.length < 2 || !printed.endsWith('"')) return undefined
    return decodeCString(printed.slice(1, -1))
  }
  if (!/^(?:[0-9a-f]{2}(?: |$))*$/.test(printed)) return undefined
  return Buffer.from(printed.replaceAll(' ', ''), 'hex')
}

const C_ESCAPES: Record<string, number> = {
  a: 7,
  b: 8,
  f: 12,
  n: 10,
  t: 9,
  v: 11,
  '\\': 92,
  "'": 39,
  '"': 34,
}

/** Undoes e2fsprogs' print_c_string (`\n`, `\\`, `\"`, `\ooo` …) on latin1-decoded text. */
export function decodeCString(text: string): Buffer {
  if (!text.includes('\\')) return Buffer.from(text, 'latin1')
  const out: number[] = []
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!
    if (ch !== '\\') {
      out.push(text.charCodeAt(i) & 0xff)
      continue
    }
    const next = text[i + 1] ?? ''
    if (next in C_ESCAPES) {
      out.push(C_ESCAPES[next]!)
      i++
    } else if (/^[0-7]{3}$/.test(text.slice(i + 1, i + 4))) {
      out.push(parseInt(text.slice(i + 1, i + 4), 8) & 0xff)
      i += 3
    } else out.push(92)
  }
  return Buffer.from(out)
}

/** Parses `ea_get -x` output: `name (len) = hh hh …` or `name (0)`. */
export function parseEaGetHex(output: string): Buffer | undefined {
  for (const line of output.split('\n')) {
    const m = /^(\S+) \((\d+)\)(?: = ((?:[0-9a-f]{2} ?)*))?\s*$/.exec(line)
    if (!m) continue
    const hex = (m[3] ?? '').replace(/ /g, '')
    const value = Buffer.from(hex, 'hex')
    return value.length === Number(m[2]) ? value : undefined
  }
  return undefined
}

/** Inline data lives in an xattr mkfs may create itself; it is not the manifest's business. */
const IGNORED_XATTRS = new Set(['system.data'])
const ACL_XATTRS = new Set(['system.posix_acl_access', 'system.posix_acl_default'])
/** stat prints values shorter than this. */
const STAT_VALUE_LIMIT = 40

/**
 * Whether the bytes come from `stat`: it prints values under 40 bytes, and prints them as stored,
 * so not POSIX ACLs (stored in ext4's compact form; `ea_get` converts them to the kernel's form).
 */
function valueFromStat(name: string, expected: Buffer): boolean {
  return expected.length < STAT_VALUE_LIMIT && !ACL_XATTRS.has(name)
}

/** `part` of the verify commands: ls -p, stat, or (k ≥ 0) ea_get of the entry's k-th xattr. */
const LS = -1
const STAT = -2

interface VerifyBatch {
  binary: string
  image: string
  manifest: Manifest
  /** Inode each entry was addressed at by the write batch (0: by path). */
  inodes: Uint32Array
  workDir: string
  signal?: AbortSignal
}

/**
 * Reads every entry back in one read-only debugfs process and rejects with E_OWNERSHIP_MISMATCH
 * listing every difference: `ls -p` of every directory (each name present once, at the inode the
 * write addressed, hardlinks at one inode; and the type, mode, uid and gid `ls -p` prints), `stat`
 * of every inode (mtime, device numbers, link count, xattr names, and the bytes of values under 40
 * bytes) and `ea_get -x` of every longer xattr and every POSIX ACL. Output is checked as it
 * streams and dropped. Resolves to the number of entries checked.
 */
export async function verifyEntries(batch: VerifyBatch): Promise<number> {
  const { manifest, inodes } = batch
  const { entries } = manifest

  const mismatches: OwnershipMismatch[] = []
  const miss = (path: string, field: string, expected: unknown, actual: unknown): void => {
    mismatches.push({ path, field, expected: String(expected), actual: String(actual) })
  }
  const hex = (b: Buffer): string => b.toString('hex') || '(empty)'
  const listing = new Listing(manifest)
  await runDebugfs({
    binary: batch.binary,
    image: batch.image,
    commands: verifyCommands(manifest, inodes),
    write: false,
    workDir: batch.workDir,
    signal: batch.signal,
    onOutput: (entry, part, output) => {
      const e = entries[entry]!
      if (part === LS) return listing.absorb(e.path, output)
      if (part !== STAT) {
        const [name, expected] = manifest.xattrsOf(entry)[part]!
        const actual = parseEaGetHex(output)
        if (!actual || !sameXattrValue(name, expected, actual))
          miss(
            e.path,
            `xattr ${name}`,
            hex(expected),
            actual ? hex(actual) : printable(output) || '(missing)',
          )
        return
      }
      const s = parseStat(output)
      if (!s) return miss(e.path, 'inode', 'a readable inode', printable(output) || 'no output')
      const mtime = manifest.mtimeOf(entry)
      if (mtime !== undefined && s.mtime !== mtime) miss(e.path, 'mtime', mtime, s.mtime)
      if (e.type === 'char' || e.type === 'block') {
        if (s.devMajor !== e.devMajor || s.devMinor !== e.devMinor)
          miss(e.path, 'device', `${e.devMajor}:${e.devMinor}`, `${s.devMajor}:${s.devMinor}`)
      }
      if (e.type !== 'directory') {
        const links = manifest.linksOf(entry)
        if (s.links !== links) miss(e.path, 'link count', links, s.links)
      }
      const actual = s.xattrs
        .map((x) => x.name)
        .filter((n) => !IGNORED_XATTRS.has(n))
        .sort()
      const expectedXattrs = manifest.xattrsOf(entry)
      const expected = expectedXattrs.map(([n]) => n).sort()
      if (actual.join(',') !== expected.join(','))
        miss(e.path, 'xattr names', expected.join(',') || '(none)', actual.join(',') || '(none)')
      for (const [name, value] of expectedXattrs) {
        if (!valueFromStat(name, value)) continue // ea_get checks it
        const got = s.xattrs.find((x) => x.name === name)
        if (!got) continue // reported with the names
        if (got.value === undefined || !value.equals(got.value))
          miss(
            e.path,
            `xattr ${name}`,
            hex(value),
            got.value ? hex(got.value) : `${got.length} bytes`,
          )
      }
    },
  })

  // Every name is in its directory once, at the inode the batch wrote (its group's for hardlinks),
  // and the type, mode and owner ls read from that inode are the manifest's.
  const octal = (n: number): string => `0${n.toString(8)}`
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    const s = listing.slot(i)
    const owner = manifest.ownerOf(i)
    const want = inodes[owner]!
    const count = listing.count[s]!
    if (count === 0) miss(e.path, 'directory entry', 'present', 'missing')
    else if (count !== 1) miss(e.path, 'directory entry', 'one name', `${count} names`)
    else if (want !== 0 && listing.ino[s] !== want) miss(e.path, 'inode', want, listing.ino[s])
    if (count === 0 || owner !== i) continue
    const mode = listing.mode[s]!
    const type = typeWordOfMode(mode)
    if (type !== DEBUGFS_TYPE_WORD[e.type]) miss(e.path, 'type', DEBUGFS_TYPE_WORD[e.type], type)
    if ((mode & 0o7777) !== e.mode) miss(e.path, 'mode', octal(e.mode), octal(mode & 0o7777))
    if (listing.uid[s] !== e.uid) miss(e.path, 'uid', e.uid, listing.uid[s])
    if (listing.gid[s] !== e.gid) miss(e.path, 'gid', e.gid, listing.gid[s])
  }
  if (mismatches.length) throw new OwnershipMismatchError(batch.image, mismatches)
  return entries.length
}

/** debugfs output as one line of UTF-8 text, for a mismatch report. */
function printable(output: string): string {
  return Buffer.from(output.trim().split('\n').join(' / '), 'latin1').toString('utf8')
}

function* verifyCommands(manifest: Manifest, inodes: Uint32Array): Generator<DebugfsCommand> {
  yield* lsCommands(manifest, LS)
  const { entries } = manifest
  for (let i = 0; i < entries.length; i++) {
    if (manifest.ownerOf(i) !== i) continue
    const e = entries[i]!
    const p = inodes[i] ? `<${inodes[i]}>` : quoteArg(e.path)
    yield { text: `stat ${p}`, entry: i, part: STAT }
    if (!manifest.hasXattrs(i)) continue
    const xattrs = manifest.xattrsOf(i)
    for (let k = 0; k < xattrs.length; k++) {
      const [name, value] = xattrs[k]!
      if (!valueFromStat(name, value))
        yield { text: `ea_get -x ${p} ${quoteArg(name)}`, entry: i, part: k }
    }
  }
}

/** ACL tags whose entries carry a uid or gid; the others (USER_OBJ, GROUP_OBJ, MASK, OTHER) have none. */
const ACL_USER = 0x02
const ACL_GROUP = 0x08

/**
 * Compares an xattr as the kernel will read it. ext4 stores POSIX ACLs in a compact form without
 * ids for the id-less tags, so the tar's `ffffffff` there comes back from debugfs as `00000000`:
 * the same ACL. Those ids are zeroed on both sides before comparing.
 */
export function sameXattrValue(name: string, expected: Buffer, actual: Buffer): boolean {
  if (!ACL_XATTRS.has(name)) return expected.equals(actual)
  return normalizeAcl(expected).equals(normalizeAcl(actual))
}

function normalizeAcl(value: Buffer): Buffer {
  // 4-byte header, then 8-byte entries: u16 tag, u16 perm, u32 id (little-endian).
  if (value.length < 4 || (value.length - 4) % 8 !== 0) return value
  const out = Buffer.from(value)
  for (let off = 4; off < out.length; off += 8) {
    const tag = out.readUInt16LE(off)
    if (tag !== ACL_USER && tag !== ACL_GROUP) out.writeUInt32LE(0, off + 4)
  }
  return out
}
