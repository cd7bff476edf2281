import { lstat, opendir, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { DetailedTreeTotals } from './plan.js'

export interface TreeScan {
  totals: Required<DetailedTreeTotals>
  /** Image paths of every directory ('/', '/etc', …), parents before children. */
  directories: string[]
  /** A name that holds a newline, carriage return or NUL (debugfs cannot address it), if any. */
  unencodable?: string
}

/** Walks the tree with lstat (never following symlinks) and counts what mkfs will copy. */
export async function scanTree(tree: string, signal?: AbortSignal): Promise<TreeScan> {
  const totals = { bytes: 0, inodes: 1, directories: 1, files: 0, symlinks: 0 }
  const directories = ['/']
  let unencodable: string | undefined
  const seen = new Set<string>()
  const pending: { host: string; image: string }[] = [{ host: tree, image: '' }]
  while (pending.length) {
    signal?.throwIfAborted()
    const dir = pending.pop()!
    for await (const dirent of await opendir(dir.host)) {
      const host = join(dir.host, dirent.name)
      const image = `${dir.image}/${dirent.name}`
      if (unencodable === undefined && /[\n\r\0]/.test(dirent.name)) unencodable = image
      if (dirent.isDirectory()) {
        totals.inodes++
        totals.directories++
        directories.push(image)
        pending.push({ host, image })
        continue
      }
      const st = await lstat(host, { bigint: true })
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`
        if (seen.has(key)) continue
        seen.add(key)
      }
      totals.inodes++
      if (st.isFile()) {
        totals.files++
        totals.bytes += Number(st.size)
      } else if (st.isSymbolicLink()) {
        // Targets up to 59 bytes live in the inode; longer ones take a block.
        if ((await readlink(host, { encoding: 'buffer' })).length > 59) totals.symlinks++
      }
    }
  }
  return unencodable === undefined ? { totals, directories } : { totals, directories, unencodable }
}
