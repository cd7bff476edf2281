import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { lstat, readdir, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import type { EntryType, Tree, TreeEntry } from './tree.js'

function typeOf(mode: number): EntryType {
  switch (mode & 0o170000) {
    case 0o100000:
      return 'file'
    case 0o040000:
      return 'directory'
    case 0o120000:
      return 'symlink'
    case 0o020000:
      return 'char'
    case 0o060000:
      return 'block'
    case 0o010000:
      return 'fifo'
    case 0o140000:
      return 'socket'
    default:
      throw new Error(`unknown file type in mode ${mode.toString(8)}`)
  }
}

/** Linux's dev_t split (glibc major()/minor()). */
export function splitDev(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)
  return { major: Number(major), minor: Number(minor) }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  await pipeline(createReadStream(path), hash)
  return hash.digest('hex')
}

/** getfattr escapes odd bytes in names as `\ooo` and a backslash as `\\`. */
function unescapeGetfattr(name: string): string {
  const bytes: number[] = []
  for (let i = 0; i < name.length; i++) {
    if (name[i] === '\\' && /^[0-7]{3}$/.test(name.slice(i + 1, i + 4))) {
      bytes.push(parseInt(name.slice(i + 1, i + 4), 8))
      i += 3
    } else if (name[i] === '\\' && name[i + 1] === '\\') {
      bytes.push(0x5c)
      i += 1
    } else bytes.push(...Buffer.from(name[i]!, 'utf8'))
  }
  return Buffer.from(bytes).toString('utf8')
}

/**
 * Every xattr under `root` (no symlinks followed), one `getfattr` process for the whole tree:
 * absolute host path → name → hex value.
 */
export async function readXattrs(root: string): Promise<Map<string, Record<string, string>>> {
  const child = spawn(
    'getfattr',
    ['--absolute-names', '-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', root],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  const out: Buffer[] = []
  const err: Buffer[] = []
  child.stdout.on('data', (b: Buffer) => out.push(b))
  child.stderr.on('data', (b: Buffer) => err.push(b))
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (c) => resolve(c ?? 1))
  })
  // getfattr exits 1 when some file has no xattrs support (e.g. a dangling symlink): keep going
  // unless it printed something other than that.
  const stderr = Buffer.concat(err).toString('utf8')
  if (code !== 0 && stderr.trim()) throw new Error(`getfattr ${root}: ${stderr.trim()}`)
  const result = new Map<string, Record<string, string>>()
  let current: Record<string, string> | undefined
  for (const line of Buffer.concat(out).toString('utf8').split('\n')) {
    if (line.startsWith('# file: ')) {
      current = {}
      result.set(unescapeGetfattr(line.slice(8)), current)
    } else if (current && line.includes('=')) {
      const eq = line.indexOf('=')
      const value = line.slice(eq + 1)
      current[unescapeGetfattr(line.slice(0, eq))] = value.startsWith('0x')
        ? value.slice(2).toLowerCase()
        : Buffer.from(value.replace(/^"|"$/g, ''), 'utf8').toString('hex')
    }
  }
  return result
}

/**
 * Reads a directory tree (an `umoci unpack` rootfs, a mounted ext4) as root: every entry's
 * type, mode, owner, size, content hash, mtime, link target, device numbers, xattrs and inode.
 * `exclude` lists in-tree paths not to descend into or record (e.g. nothing, or `/proc`).
 */
export async function walkDirectory(
  root: string,
  options: { exclude?: string[]; concurrency?: number } = {},
): Promise<Tree> {
  const exclude = new Set(options.exclude ?? [])
  const tree: Tree = new Map()
  const hashes: { entry: TreeEntry; host: string }[] = []
  const visit = async (rel: string, host: string): Promise<void> => {
    const st = await lstat(host, { bigint: true })
    const mode = Number(st.mode)
    const entry: TreeEntry = {
      path: rel,
      type: typeOf(mode),
      mode: mode & 0o7777,
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtimeSec: Number(st.mtimeNs / 1_000_000_000n),
      mtimeNsec: Number(st.mtimeNs % 1_000_000_000n),
      xattrs: {},
      inode: Number(st.ino),
    }
    if (entry.type === 'file' || entry.type === 'symlink') entry.size = Number(st.size)
    if (entry.type === 'symlink') entry.linkTarget = await readlink(host)
    if (entry.type === 'char' || entry.type === 'block') {
      const { major, minor } = splitDev(st.rdev)
      entry.devMajor = major
      entry.devMinor = minor
    }
    if (entry.type === 'file') hashes.push({ entry, host })
    tree.set(rel, entry)
    if (entry.type === 'directory') {
      const names = (await readdir(host)).sort()
      for (const name of names) {
        const childRel = rel === '/' ? `/${name}` : `${rel}/${name}`
        if (!exclude.has(childRel)) await visit(childRel, join(host, name))
      }
    }
  }
  await visit('/', root)
  const xattrs = await readXattrs(root)
  const prefix = root.replace(/\/+$/, '')
  for (const [hostPath, attrs] of xattrs) {
    const rel = hostPath === prefix ? '/' : hostPath.slice(prefix.length)
    const entry = tree.get(rel)
    if (entry) entry.xattrs = attrs
  }
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < hashes.length) {
      const job = hashes[next++]!
      job.entry.sha256 = await sha256File(job.host)
    }
  }
  await Promise.all(Array.from({ length: options.concurrency ?? 4 }, worker))
  return tree
}
