import { CommandScript, quoteArg, runDebugfs } from './debugfs.js'
import { absorbListing, lsCommand, ROOT_INO, type ListedPath } from './listing.js'
import { DEBUGFS_TYPE_WORD, type CheckedEntry } from './entries.js'
import { OwnershipMismatchError, type OwnershipMismatch } from './errors.js'

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
  /** xattr names, in the order stat lists them. */
  xattrs: string[]
}

/** Parses the lines `debugfs stat` prints; undefined when they hold no inode (e.g. not found). */
export function parseStat(lines: string[]): StatFacts | undefined {
  const text = lines.join('\n')
  const head = /Inode:\s*(\d+)\s+Type:\s*(.+?)\s+Mode:\s*([0-7]+)/.exec(text)
  // debugfs prints ids with %d: 4294967294 shows as -2.
  const owner = /User:\s*(-?\d+)\s+Group:\s*(-?\d+)/.exec(text)
  const links = /Links:\s*(\d+)/.exec(text)
  if (!head || !owner || !links) return undefined
  const facts: StatFacts = {
    inode: Number(head[1]),
    type: head[2]!,
    mode: parseInt(head[3]!, 8),
    uid: Number(owner[1]) >>> 0,
    gid: Number(owner[2]) >>> 0,
    links: Number(links[1]),
    xattrs: [],
  }
  // i_mtime is signed 32 bits; the low two bits of i_mtime_extra extend the epoch.
  const mtime = /^\s*mtime:\s*0x([0-9a-f]+)(?::([0-9a-f]+))?/m.exec(text)
  if (mtime)
    facts.mtime = (parseInt(mtime[1]!, 16) | 0) + (parseInt(mtime[2] ?? '0', 16) & 3) * 2 ** 32
  const dev = /Device major\/minor number:\s*(\d+):(\d+)/.exec(text)
  if (dev) {
    facts.devMajor = Number(dev[1])
    facts.devMinor = Number(dev[2])
  }
  let inXattrs = false
  for (const line of lines) {
    if (line === 'Extended attributes:') inXattrs = true
    else if (inXattrs) {
      const m = /^ {2}(\S+) \(\d+\)/.exec(line)
      if (m) facts.xattrs.push(m[1]!)
      else if (!line.startsWith('  ')) inXattrs = false
    }
  }
  return facts
}

/** Parses `ea_get -x` output: `name (len) = hh hh …` or `name (0)`. */
export function parseEaGetHex(lines: string[]): Buffer | undefined {
  for (const line of lines) {
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

interface VerifyBatch {
  binary: string
  image: string
  entries: CheckedEntry[]
  /** Inode of each path as the write batch addressed it (directory listing, or mknod's output). */
  inodes: Map<string, number>
  /** Directories to list again, to check every name leads to its inode exactly once. */
  directories: string[]
  workDir: string
  signal?: AbortSignal
}

/**
 * Reads every entry back in one read-only debugfs process and rejects with E_OWNERSHIP_MISMATCH
 * listing every difference: `ls -p` of every directory (each name present once, at the inode the
 * write addressed; hardlinks at one inode), `stat` of every inode (type, mode, uid, gid, mtime,
 * device numbers, link count, xattr names) and `ea_get -x` of every xattr (the bytes). Resolves to
 * the number of entries checked.
 */
export async function verifyEntries(batch: VerifyBatch): Promise<number> {
  const { entries, inodes, directories } = batch
  const groupSize = new Map<number, number>()
  // Later names of a hardlink group are held to what the first name (which carries the inode) says.
  const firstOfGroup = new Map<number, CheckedEntry>()
  for (const e of entries) {
    if (e.hardlinkGroup === undefined) continue
    groupSize.set(e.hardlinkGroup, (groupSize.get(e.hardlinkGroup) ?? 0) + 1)
    if (!firstOfGroup.has(e.hardlinkGroup)) firstOfGroup.set(e.hardlinkGroup, e)
  }
  const ownerOf = (e: CheckedEntry): CheckedEntry =>
    e.hardlinkGroup === undefined ? e : firstOfGroup.get(e.hardlinkGroup)!
  const spec = (path: string): string => {
    const ino = inodes.get(path)
    return ino === undefined ? quoteArg(path) : `<${ino}>`
  }

  const commands = new CommandScript()
  for (const dir of directories) commands.add(lsCommand(dir))
  // What each command after the listings checks: the stat, or xattr `name`, of an inode owner.
  const checks: { entry: CheckedEntry; xattr?: string }[] = []
  for (const e of entries) {
    if (ownerOf(e) !== e) continue
    const p = spec(e.path)
    commands.add(`stat ${p}`)
    checks.push({ entry: e })
    for (const name of e.values.keys()) {
      commands.add(`ea_get -x ${p} ${quoteArg(name)}`)
      checks.push({ entry: e, xattr: name })
    }
  }

  const mismatches: OwnershipMismatch[] = []
  const miss = (path: string, field: string, expected: unknown, actual: unknown): void => {
    mismatches.push({ path, field, expected: String(expected), actual: String(actual) })
  }
  const octal = (n: number): string => `0${n.toString(8)}`
  const listed = new Map<string, ListedPath>([['/', { ino: ROOT_INO, mode: 0o040000, count: 1 }]])
  await runDebugfs({
    ...batch,
    commands,
    write: false,
    onOutput: (i, lines) => {
      if (i < directories.length) return absorbListing(listed, directories[i]!, lines)
      const check = checks[i - directories.length]!
      const e = check.entry
      if (check.xattr !== undefined) {
        const actual = parseEaGetHex(lines)
        const expected = e.values.get(check.xattr)!
        if (!actual || !sameXattrValue(check.xattr, expected, actual))
          miss(
            e.path,
            `xattr ${check.xattr}`,
            expected.toString('hex') || '(empty)',
            actual ? actual.toString('hex') || '(empty)' : lines.join(' / ') || '(missing)',
          )
        return
      }
      const s = parseStat(lines)
      if (!s) return miss(e.path, 'inode', 'a readable inode', lines.join(' / ') || 'no output')
      if (s.type !== DEBUGFS_TYPE_WORD[e.type])
        miss(e.path, 'type', DEBUGFS_TYPE_WORD[e.type], s.type)
      if (s.mode !== e.mode) miss(e.path, 'mode', octal(e.mode), octal(s.mode))
      if (s.uid !== e.uid) miss(e.path, 'uid', e.uid, s.uid)
      if (s.gid !== e.gid) miss(e.path, 'gid', e.gid, s.gid)
      if (e.mtime !== undefined && s.mtime !== e.mtime) miss(e.path, 'mtime', e.mtime, s.mtime)
      if (e.type === 'char' || e.type === 'block') {
        if (s.devMajor !== e.devMajor || s.devMinor !== e.devMinor)
          miss(e.path, 'device', `${e.devMajor}:${e.devMinor}`, `${s.devMajor}:${s.devMinor}`)
      }
      if (e.type !== 'directory') {
        const links = e.hardlinkGroup === undefined ? 1 : groupSize.get(e.hardlinkGroup)!
        if (s.links !== links) miss(e.path, 'link count', links, s.links)
      }
      const actual = s.xattrs.filter((n) => !IGNORED_XATTRS.has(n)).sort()
      const expected = [...e.values.keys()].sort()
      if (actual.join(',') !== expected.join(','))
        miss(e.path, 'xattr names', expected.join(',') || '(none)', actual.join(',') || '(none)')
    },
  })

  // Every name is in its directory once, at the inode the batch wrote (its group's for hardlinks).
  for (const e of entries) {
    const found = listed.get(e.path)
    const want = inodes.get(ownerOf(e).path)
    if (!found) miss(e.path, 'directory entry', 'present', 'missing')
    else if (found.count !== 1) miss(e.path, 'directory entry', 'one name', `${found.count} names`)
    else if (want !== undefined && found.ino !== want) miss(e.path, 'inode', want, found.ino)
  }
  if (mismatches.length) throw new OwnershipMismatchError(batch.image, mismatches)
  return entries.length
}

const ACL_XATTRS = new Set(['system.posix_acl_access', 'system.posix_acl_default'])
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
