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
  signal?: AbortSignal
}

export interface Ext4Image {
  path: string
  sizeBytes: number
  blockSize: number
  blockCount: number
  inodeCount: number
}
