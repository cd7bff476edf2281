import type { Dirent } from 'node:fs'
import { lstat, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { DetailedTreeTotals } from './plan.js'

export interface TreeScan {
  totals: Required<DetailedTreeTotals>
  /** Image paths of every directory ('/', '/etc', …), parents before children. */
  directories: string[]
  /** A name that holds a newline, carriage return or NUL (debugfs cannot address it), if any. */
  unencodable?: string
}

/**
 * How many readdir/lstat calls are in flight at once. One at a time, a scan of Debian's 8,800
 * entries waits ~0.5 s on round trips to libuv's thread pool; 16 keep its 4 threads busy.
 */
const CONCURRENCY = 16

/** Runs `fn` on every item, at most `limit` at a time. */
async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/**
 * Walks the tree with lstat (never following symlinks) and counts what mkfs will copy. Level by
 * level, with the readdir and lstat calls of a level run concurrently.
 */
export async function scanTree(tree: string, signal?: AbortSignal): Promise<TreeScan> {
  const totals = { bytes: 0, inodes: 1, directories: 1, files: 0, symlinks: 0 }
  const directories = ['/']
  let unencodable: string | undefined
  const seen = new Set<string>()
  let level: { host: string; image: string }[] = [{ host: tree, image: '' }]
  while (level.length) {
    signal?.throwIfAborted()
    const subdirs: { host: string; image: string }[] = []
    const others: string[] = []
    // Listings are kept per directory and merged in order, so `directories` (and which name
    // `unencodable` reports) does not depend on which readdir finishes first.
    const listings = new Array<Dirent[]>(level.length)
    await forEachLimit(
      level.map((dir, i) => ({ dir, i })),
      CONCURRENCY,
      async ({ dir, i }) => {
        listings[i] = await readdir(dir.host, { withFileTypes: true })
      },
    )
    level.forEach((dir, i) => {
      for (const dirent of listings[i]!) {
        const host = join(dir.host, dirent.name)
        const image = `${dir.image}/${dirent.name}`
        if (unencodable === undefined && /[\n\r\0]/.test(dirent.name)) unencodable = image
        if (dirent.isDirectory()) {
          totals.inodes++
          totals.directories++
          directories.push(image)
          subdirs.push({ host, image })
        } else others.push(host)
      }
    })
    signal?.throwIfAborted()
    await forEachLimit(others, CONCURRENCY, async (host) => {
      const st = await lstat(host, { bigint: true })
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`
        if (seen.has(key)) return
        seen.add(key)
      }
      totals.inodes++
      if (st.isFile()) {
        totals.files++
        totals.bytes += Number(st.size)
      } else if (st.isSymbolicLink()) {
        // Targets up to 59 bytes live in the inode; longer ones take a block. A symlink's size is
        // the length of its target.
        if (st.size > 59n) totals.symlinks++
      }
    })
    level = subdirs
  }
  return unencodable === undefined ? { totals, directories } : { totals, directories, unencodable }
}
