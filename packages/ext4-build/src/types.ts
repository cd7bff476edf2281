/** Contract of @banger/ext4-build. */

/** What sizing needs from a tree; structurally the flattener's totals. */
export interface TreeTotals {
  bytes: number
  inodes: number
  directories: number
}

export interface SizePlan {
  sizeBytes: number
  inodes: number
}

export interface BuildExt4Options {
  /** Directory whose contents become the filesystem root. */
  tree: string
  /** Image file to create or overwrite. */
  output: string
  /** Exact size of the image file and the filesystem, bytes, multiple of 4096. */
  sizeBytes: number
  /** Inode count; default from mkfs's ratio, never fewer than the tree needs. */
  inodes?: number
  /**
   * The tree's totals when the caller has just counted it (layer-flatten's fit as they are):
   * the size and inode checks use them instead of walking the tree again. Ignored with
   * `timestamp`, which needs the walk's directory list.
   */
  totals?: TreeTotals & { files?: number; symlinks?: number }
  label?: string
  /** Fixed filesystem UUID (and hash seed) for reproducible images. */
  uuid?: string
  hashSeed?: string
  /** Seconds since the epoch used for every mkfs timestamp. */
  timestamp?: number
  /**
   * `'root'` (default): a caller other than root runs mkfs in a user namespace that maps it to root
   * (`unshare --map-root-user`), where its own files read as root's, so every inode is written 0:0
   * (files of other users would read as 65534). Root, and hosts without user namespaces, run mkfs
   * as is: owners stay the tree's (`Ext4Image.owners` says which). `'tree'`: always as is.
   */
  owners?: 'root' | 'tree'
  signal?: AbortSignal
}

export interface Ext4Image {
  path: string
  sizeBytes: number
  blockSize: number
  blockCount: number
  inodeCount: number
  /**
   * `'root'`: every inode mkfs wrote is 0:0 (built in a user namespace); `'tree'`: owners are the
   * tree's as on disk (run as root, asked for, or no user namespaces here).
   */
  owners: 'root' | 'tree'
}
