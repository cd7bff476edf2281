import { lstat, opendir, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { DetailedTreeTotals } from './plan.js'

export interface TreeScan {
  totals: Required<DetailedTreeTotals>
  /** Image paths ('/', '/etc', …) of every inode, hardlinks once, parents before children. */
  paths: string[]
}

/** Walks the tree with lstat (never following symlinks) and counts what mkfs will copy. */
export async function scanTree(tree: string, signal?: AbortSignal): Promise<TreeScan> {
  const totals = { bytes: 0, inodes: 1, directories: 1, files: 0, symlinks: 0 }
  const paths = ['/']
  const seen = new Set<string>()
  const pending: { host: string; image: string }[] = [{ host: tree, image: '' }]
  while (pending.length) {
    signal?.throwIfAborted()
    const dir = pending.pop()!
    for await (const dirent of await opendir(dir.host)) {
      const host = join(dir.host, dirent.name)
      const image = `${dir.image}/${dirent.name}`
      if (dirent.isDirectory()) {
        totals.inodes++
        totals.directories++
        paths.push(image)
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
      paths.push(image)
      if (st.isFile()) {
        totals.files++
        totals.bytes += Number(st.size)
      } else if (st.isSymbolicLink()) {
        // Targets up to 59 bytes live in the inode; longer ones take a block.
        if ((await readlink(host, { encoding: 'buffer' })).length > 59) totals.symlinks++
      }
    }
  }
  return { totals, paths }
}
