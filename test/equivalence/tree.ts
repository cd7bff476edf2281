/**
 * One tree's worth of file metadata, as read from a directory (umoci unpack, a mounted ext4) or
 * from an ext4 image through debugfs, and the comparison of two such trees.
 */

export type EntryType = 'file' | 'directory' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket'

export interface TreeEntry {
  /** Absolute in-tree path: `/`, `/etc`, `/etc/passwd`. */
  path: string
  type: EntryType
  /** Permission bits, setuid/setgid/sticky included (0o7777). */
  mode: number
  uid: number
  gid: number
  /** Regular files and symlinks (a symlink's size is its target's length). */
  size?: number
  /** sha256 of a regular file's bytes. */
  sha256?: string
  mtimeSec: number
  mtimeNsec: number
  linkTarget?: string
  devMajor?: number
  devMinor?: number
  /** name → hex value. */
  xattrs: Record<string, string>
  /** Identity within this tree only: entries sharing it are hard links of one inode. */
  inode: number
}

export type Tree = Map<string, TreeEntry>

export interface Difference {
  path: string
  /** `missing` (only in expected), `extra` (only in actual), or the field that differs. */
  field: string
  expected?: unknown
  actual?: unknown
}

export interface CompareOptions {
  /**
   * Paths allowed to differ or to exist only in `actual` (banger's injected files and the
   * directories created for them, `lost+found`). A listed directory covers only itself.
   */
  allowed?: Iterable<string>
  /**
   * Single fields allowed to differ at one path, as `path field` (e.g. `/ mtime`: adding
   * `lost+found` to the root changes its mtime).
   */
  allowedFields?: Iterable<string>
  /** `ns` (default) compares nanoseconds too; `s` only whole seconds (mkfs.ext4 -d drops ns). */
  mtimePrecision?: 'ns' | 's'
  /** xattr names never compared (e.g. ext4's internal `system.data`). */
  ignoreXattrs?: string[]
}

/** For each path that is a hard link (another path has its inode), the sorted group. */
export function hardlinkGroups(tree: Tree): Map<string, string> {
  const byInode = new Map<number, string[]>()
  for (const entry of tree.values()) {
    if (entry.type === 'directory') continue
    const list = byInode.get(entry.inode) ?? []
    list.push(entry.path)
    byInode.set(entry.inode, list)
  }
  const groups = new Map<string, string>()
  for (const paths of byInode.values()) {
    if (paths.length < 2) continue
    const key = paths.sort().join(' = ')
    for (const p of paths) groups.set(p, key)
  }
  return groups
}

const ACL_XATTRS = new Set(['system.posix_acl_access', 'system.posix_acl_default'])
// ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER carry no id.
const ACL_TAGS_WITHOUT_ID = new Set([0x01, 0x04, 0x10, 0x20])

/**
 * A POSIX ACL xattr (hex) with the id of the entries that have none set to ACL_UNDEFINED_ID, as
 * the kernel reports it: debugfs, converting from ext4's compact on-disk form, writes 0 there.
 * The two spell the same ACL.
 */
export function normalizeAclHex(hex: string): string {
  const buf = Buffer.from(hex, 'hex')
  if (buf.length < 4 || (buf.length - 4) % 8 !== 0 || buf.readUInt32LE(0) !== 2) return hex
  for (let at = 4; at < buf.length; at += 8) {
    if (ACL_TAGS_WITHOUT_ID.has(buf.readUInt16LE(at))) buf.writeUInt32LE(0xffffffff, at + 4)
  }
  return buf.toString('hex')
}

const FIELDS = [
  'type',
  'mode',
  'uid',
  'gid',
  'size',
  'sha256',
  'linkTarget',
  'devMajor',
  'devMinor',
] as const

/**
 * Every difference between two trees: paths present on one side only, and per path type, mode
 * bits, owner, size (not for directories), content hash, mtime, link target, device numbers,
 * xattrs, and hard-link grouping. Allowed paths are skipped, and hard-link groups are compared
 * with allowed paths removed.
 */
export function compareTrees(
  expected: Tree,
  actual: Tree,
  options: CompareOptions = {},
): Difference[] {
  const allowed = new Set(options.allowed ?? [])
  const ignoreXattrs = new Set(options.ignoreXattrs ?? [])
  const allowedFields = new Set(options.allowedFields ?? [])
  const found: Difference[] = []
  const diffs = found
  const groupsExpected = hardlinkGroups(expected)
  const groupsActual = hardlinkGroups(actual)
  const stripAllowed = (group: string | undefined): string | undefined => {
    if (!group) return undefined
    const kept = group.split(' = ').filter((p) => !allowed.has(p))
    return kept.length > 1 ? kept.join(' = ') : undefined
  }
  for (const [path, exp] of expected) {
    if (allowed.has(path)) continue
    const act = actual.get(path)
    if (!act) {
      diffs.push({ path, field: 'missing', expected: exp.type })
      continue
    }
    for (const field of FIELDS) {
      if (field === 'size' && exp.type === 'directory') continue
      if (exp[field] !== act[field])
        diffs.push({ path, field, expected: exp[field], actual: act[field] })
    }
    const precise = (options.mtimePrecision ?? 'ns') === 'ns'
    if (exp.mtimeSec !== act.mtimeSec || (precise && exp.mtimeNsec !== act.mtimeNsec))
      diffs.push({
        path,
        field: 'mtime',
        expected: `${exp.mtimeSec}.${String(exp.mtimeNsec).padStart(9, '0')}`,
        actual: `${act.mtimeSec}.${String(act.mtimeNsec).padStart(9, '0')}`,
      })
    const names = new Set([...Object.keys(exp.xattrs), ...Object.keys(act.xattrs)])
    for (const name of [...names].sort()) {
      if (ignoreXattrs.has(name)) continue
      const norm = (v: string | undefined): string | undefined =>
        v !== undefined && ACL_XATTRS.has(name) ? normalizeAclHex(v) : v
      if (norm(exp.xattrs[name]) !== norm(act.xattrs[name]))
        diffs.push({
          path,
          field: `xattr ${name}`,
          expected: exp.xattrs[name],
          actual: act.xattrs[name],
        })
    }
    const ge = stripAllowed(groupsExpected.get(path))
    const ga = stripAllowed(groupsActual.get(path))
    if (ge !== ga) diffs.push({ path, field: 'hardlinks', expected: ge, actual: ga })
  }
  for (const path of actual.keys()) {
    if (!expected.has(path) && !allowed.has(path))
      diffs.push({ path, field: 'extra', actual: actual.get(path)!.type })
  }
  return found.filter((d) => !allowedFields.has(`${d.path} ${d.field}`))
}

/**
 * The paths an image may add beyond its source: each injected file, and each of its parent
 * directories that the source tree lacks (created for it), plus `/lost+found` when the source
 * has none. An injected path that is a directory in the source stays compared: injecting into a
 * directory that exists must leave it as it was.
 */
export function allowedAdditions(expected: Tree, injected: Iterable<string>): string[] {
  const out = new Set<string>()
  if (!expected.has('/lost+found')) out.add('/lost+found')
  for (const file of injected) {
    if (expected.get(file)?.type !== 'directory') out.add(file)
    let dir = file.slice(0, file.lastIndexOf('/')) || '/'
    while (dir !== '/' && !expected.has(dir)) {
      out.add(dir)
      dir = dir.slice(0, dir.lastIndexOf('/')) || '/'
    }
  }
  return [...out].sort()
}

/** A short human summary: the first `limit` differences, one per line. */
export function formatDifferences(diffs: Difference[], limit = 40): string {
  const lines = diffs
    .slice(0, limit)
    .map(
      (d) =>
        `${d.path}: ${d.field}` +
        (d.expected !== undefined || d.actual !== undefined
          ? ` expected ${JSON.stringify(d.expected)} actual ${JSON.stringify(d.actual)}`
          : ''),
    )
  if (diffs.length > limit) lines.push(`… and ${diffs.length - limit} more`)
  return lines.join('\n')
}
