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

export function isSpecial(type: OwnershipEntry['type']): boolean {
  return type === 'char' || type === 'block' || type === 'fifo'
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const MAX_UINT32 = 0xffffffff
/** ext4 stores seconds in 32 signed bits plus two epoch bits: up to year 2446. */
const MAX_TIME = 2 ** 34 - 1

export interface CheckedEntry extends Omit<OwnershipEntry, 'xattrs'> {
  /** xattr values decoded from base64. */
  values: ReadonlyMap<string, Buffer>
}

const NO_VALUES: ReadonlyMap<string, Buffer> = new Map()

function isUint(n: unknown, max: number): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max
}

/**
 * Validates one manifest entry and checks debugfs can carry its path and xattr names.
 * Throws InvalidEntryError or UnencodableNameError.
 */
export function checkEntry(entry: OwnershipEntry): CheckedEntry {
  const { path } = entry
  if (typeof path !== 'string' || !path.startsWith('/'))
    throw new InvalidEntryError(String(path), 'path must be absolute')
  if (path !== '/') {
    if (path.endsWith('/')) throw new InvalidEntryError(path, 'path must not end with /')
    for (const part of path.slice(1).split('/')) {
      if (part === '' || part === '.' || part === '..')
        throw new InvalidEntryError(path, 'path must be normalised (no empty, . or .. components)')
    }
  }
  quoteArg(path)
  if (!(entry.type in TYPE_BITS))
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
  if (isSpecial(entry.type) && path === '/')
    throw new InvalidEntryError(path, 'the root cannot be a device')
  const values = new Map<string, Buffer>()
  for (const [name, b64] of Object.entries(entry.xattrs ?? {})) {
    if (!/^[^\s"\\-][^\s"\\]*$/.test(name) || !name.includes('.'))
      throw new InvalidEntryError(
        path,
        `xattr name ${JSON.stringify(name)} is not a plain namespace.name`,
      )
    quoteArg(name)
    if (typeof b64 !== 'string' || !BASE64.test(b64))
      throw new InvalidEntryError(path, `xattr ${name} value is not base64`)
    values.set(name, Buffer.from(b64, 'base64'))
  }
  // One literal of one shape: `{ ...entry }` over manifests whose entries differ in which optional
  // fields they carry made ~400-byte dictionary objects (21 MiB for 54k entries).
  return {
    path,
    type: entry.type,
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    mtime: entry.mtime === undefined ? undefined : Math.floor(entry.mtime),
    devMajor: entry.devMajor,
    devMinor: entry.devMinor,
    hardlinkGroup: entry.hardlinkGroup,
    // Most entries have no xattrs: share one empty map rather than hold tens of thousands.
    values: values.size ? values : NO_VALUES,
  }
}

/** The parent directory and last component of an absolute, normalised path. */
export function splitPath(path: string): { parent: string; base: string } {
  const i = path.lastIndexOf('/')
  return { parent: i === 0 ? '/' : path.slice(0, i), base: path.slice(i + 1) }
}
