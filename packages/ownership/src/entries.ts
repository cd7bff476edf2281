import { InvalidEntryError } from './errors.js'
import { quoteArg } from './debugfs.js'
import type { OwnershipEntry } from './types.js'

/** File-type bits of i_mode, by manifest type. */
export const TYPE_BITS: Record<OwnershipEntry['type'], number> = {
  file: 0o100000,
  directory: 0o040000,
  symlink: 0o120000,
  char: 0o020000,
  block: 0o060000,
  fifo: 0o010000,
}

/** debugfs `stat` prints these words for the types. */
export const DEBUGFS_TYPE_WORD: Record<OwnershipEntry['type'], string> = {
  file: 'regular',
  directory: 'directory',
  symlink: 'symlink',
  char: 'character special',
  block: 'block special',
  fifo: 'FIFO',
}

/** The word debugfs `stat` prints for the file-type bits of an i_mode. */
export function typeWordOfMode(mode: number): string {
  switch (mode & 0o170000) {
    case 0o040000:
      return 'directory'
    case 0o100000:
      return 'regular'
    case 0o120000:
      return 'symlink'
    case 0o060000:
      return 'block special'
    case 0o020000:
      return 'character special'
    case 0o010000:
      return 'FIFO'
    case 0o140000:
      return 'socket'
    default:
      return 'bad type'
  }
}

export function isSpecial(type: OwnershipEntry['type']): boolean {
  return type === 'char' || type === 'block' || type === 'fifo'
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const MAX_UINT32 = 0xffffffff
/** ext4 stores seconds in 32 signed bits plus two epoch bits: up to year 2446. */
const MAX_TIME = 2 ** 34 - 1

function isUint(n: unknown, max: number): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max
}

/**
 * Validates one manifest entry in place (nothing is copied: a manifest has tens of thousands of
 * entries) and checks debugfs can carry its path and xattr names. Throws InvalidEntryError or
 * UnencodableNameError.
 */
export function checkEntry(entry: OwnershipEntry): void {
  const { path } = entry
  if (typeof path !== 'string' || !path.startsWith('/'))
    throw new InvalidEntryError(String(path), 'path must be absolute')
  if (path !== '/') {
    if (path.endsWith('/')) throw new InvalidEntryError(path, 'path must not end with /')
    if (
      path.includes('//') ||
      path.includes('/./') ||
      path.includes('/../') ||
      /\/\.\.?$/.test(path)
    )
      throw new InvalidEntryError(path, 'path must be normalised (no empty, . or .. components)')
  }
  quoteArg(path)
  if (!Object.hasOwn(TYPE_BITS, entry.type))
    throw new InvalidEntryError(path, `unknown type ${String(entry.type)}`)
  if (!isUint(entry.mode, 0o7777))
    throw new InvalidEntryError(path, `mode ${String(entry.mode)} is not within 0..0o7777`)
  if (!isUint(entry.uid, MAX_UINT32))
    throw new InvalidEntryError(path, `uid ${String(entry.uid)} is not a 32-bit id`)
  if (!isUint(entry.gid, MAX_UINT32))
    throw new InvalidEntryError(path, `gid ${String(entry.gid)} is not a 32-bit id`)
  if (
    entry.mtime !== undefined &&
    !(typeof entry.mtime === 'number' && entry.mtime >= 0 && entry.mtime <= MAX_TIME)
  )
    throw new InvalidEntryError(path, `mtime ${String(entry.mtime)} is outside what ext4 stores`)
  if (entry.type === 'char' || entry.type === 'block') {
    // Linux dev_t as ext4 stores it: 12-bit major, 20-bit minor.
    if (!isUint(entry.devMajor, 0xfff) || !isUint(entry.devMinor, 0xfffff))
      throw new InvalidEntryError(
        path,
        'a device node needs devMajor (0..4095) and devMinor (0..1048575)',
      )
  }
  if (path === '/' && entry.type !== 'directory')
    throw new InvalidEntryError(path, 'the root must be a directory')
  if (entry.xattrs === undefined) return
  for (const name in entry.xattrs) {
    if (!Object.hasOwn(entry.xattrs, name)) continue
    if (!/^[^\s"\\-][^\s"\\]*$/.test(name) || !name.includes('.'))
      throw new InvalidEntryError(
        path,
        `xattr name ${JSON.stringify(name)} is not a plain namespace.name`,
      )
    quoteArg(name)
    const b64 = entry.xattrs[name]
    if (typeof b64 !== 'string' || !BASE64.test(b64))
      throw new InvalidEntryError(path, `xattr ${name} value is not base64`)
  }
}

/** The entry's mtime as ext4 stores it (whole seconds), if it has one. */
export function mtimeOf(entry: OwnershipEntry): number | undefined {
  return entry.mtime === undefined ? undefined : Math.floor(entry.mtime)
}

const NO_XATTRS: readonly [string, Buffer][] = []

/** The entry's xattrs with values decoded from base64, decoded on each call and not kept. */
export function decodeXattrs(entry: OwnershipEntry): readonly [string, Buffer][] {
  if (entry.xattrs === undefined) return NO_XATTRS
  const out: [string, Buffer][] = []
  for (const name in entry.xattrs)
    if (Object.hasOwn(entry.xattrs, name))
      out.push([name, Buffer.from(entry.xattrs[name]!, 'base64')])
  return out
}

/** The parent directory and last component of an absolute, normalised path. */
export function splitPath(path: string): { parent: string; base: string } {
  const i = path.lastIndexOf('/')
  return { parent: i === 0 ? '/' : path.slice(0, i), base: path.slice(i + 1) }
}

/**
 * The validated manifest as the stage works on it: the caller's own entry objects (validated in
 * place, never copied) in an array, a Map from each path (the caller's string) to its first index,
 * and typed arrays for what the passes ask of every entry: about 30 bytes an entry in all.
 *
 * Optional fields are read once, here: a load of an absent property from objects of many shapes
 * (manifests built with spreads are in dictionary mode) allocates in V8's old space, about 30
 * bytes a load, which a pass over 54 000 entries turned into megabytes of garbage.
 */
export class Manifest {
  readonly entries: OwnershipEntry[] = []
  /** Index of the first entry with each path. */
  readonly #byPath = new Map<string, number>()
  /** Per entry: index of the first entry with its path. */
  readonly #slot: Int32Array
  /** Per entry: index of the entry carrying its inode (the first of its hardlink group). */
  readonly #owner: Int32Array
  /** Per entry: links its inode should have. */
  readonly #links: Uint32Array
  readonly #flags: Uint8Array
  /** Indices of the directory entries, in manifest order. */
  readonly directories: number[] = []

  constructor(entries: Iterable<OwnershipEntry>) {
    const flags: number[] = []
    const grouped: number[] = []
    const groupOf: number[] = []
    const firstOfGroup = new Map<number, number>()
    const groupSize = new Map<number, number>()
    for (const entry of entries) {
      checkEntry(entry)
      const i = this.entries.push(entry) - 1
      if (!this.#byPath.has(entry.path)) this.#byPath.set(entry.path, i)
      if (entry.type === 'directory') this.directories.push(i)
      const { hardlinkGroup: group, xattrs, mtime } = entry
      flags.push((xattrs === undefined ? 0 : HAS_XATTRS) | (mtime === undefined ? 0 : HAS_MTIME))
      if (group !== undefined) {
        grouped.push(i)
        groupOf.push(group)
        groupSize.set(group, (groupSize.get(group) ?? 0) + 1)
        if (!firstOfGroup.has(group)) firstOfGroup.set(group, i)
      }
    }
    const n = this.entries.length
    this.#flags = Uint8Array.from(flags)
    this.#slot = new Int32Array(n)
    this.#owner = new Int32Array(n)
    this.#links = new Uint32Array(n).fill(1)
    for (let i = 0; i < n; i++) {
      this.#slot[i] = this.#byPath.get(this.entries[i]!.path)!
      this.#owner[i] = i
    }
    grouped.forEach((i, k) => {
      this.#owner[i] = firstOfGroup.get(groupOf[k]!)!
      this.#links[i] = groupSize.get(groupOf[k]!)!
    })
  }

  get length(): number {
    return this.entries.length
  }

  /** Index of the first entry with this path. */
  indexOf(path: string): number | undefined {
    return this.#byPath.get(path)
  }

  /** Index of the first entry with entry i's path (i itself unless a duplicate record). */
  slotOf(i: number): number {
    return this.#slot[i]!
  }

  /** Index of the entry that carries entry i's inode: i itself unless a later hardlink. */
  ownerOf(i: number): number {
    return this.#owner[i]!
  }

  /** Expected link count of entry i's inode. */
  linksOf(i: number): number {
    return this.#links[i]!
  }

  hasXattrs(i: number): boolean {
    return (this.#flags[i]! & HAS_XATTRS) !== 0
  }

  /** Entry i's mtime as ext4 stores it (whole seconds), if it has one. */
  mtimeOf(i: number): number | undefined {
    return this.#flags[i]! & HAS_MTIME ? Math.floor(this.entries[i]!.mtime!) : undefined
  }

  /** Entry i's xattrs, decoded (see decodeXattrs); empty without reading the entry if it has none. */
  xattrsOf(i: number): readonly [string, Buffer][] {
    return this.hasXattrs(i) ? decodeXattrs(this.entries[i]!) : NO_XATTRS
  }
}

const HAS_XATTRS = 1
const HAS_MTIME = 2
