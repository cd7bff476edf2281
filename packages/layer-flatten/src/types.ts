/** Contract of @banger/layer-flatten. Shapes are API: other packages mirror them structurally. */
import type { Readable } from 'node:stream'

export interface LayerInput {
  /**
   * The layer's bytes: gzip, zstd or plain tar, detected by magic. Called once, in layer order
   * (flattenToTar calls it a second time, in order, for the layers that still hold file content).
   */
  open(): Readable | Promise<Readable>
  /** `sha256:<hex>` of the uncompressed tar; checked when given. */
  diffId?: string
  /** Media type, a hint only. */
  mediaType?: string
  /** Shown in errors (e.g. the blob digest). */
  name?: string
}

export interface FlattenLimits {
  /** Total uncompressed bytes across layers. */
  maxBytes?: number
  /** Total tar entries across layers. */
  maxEntries?: number
}

export interface FlattenOptions {
  signal?: AbortSignal
  limits?: FlattenLimits
}

export type EntryType = 'file' | 'directory' | 'symlink' | 'char' | 'block' | 'fifo'

/** One entry of the final tree. The manifest, not the on-disk tree, is authoritative for metadata. */
export interface EntryRecord {
  /** Absolute path inside the image: `/`, `/etc/passwd`. No trailing slash. */
  path: string
  type: EntryType
  /** Permission bits including setuid/setgid/sticky (0o7777), no file-type bits. */
  mode: number
  uid: number
  gid: number
  /** Seconds since the epoch. */
  mtime: number
  /** Bytes, for regular files; 0 otherwise. */
  size: number
  /** Symlink target, as written in the layer. */
  linkTarget?: string
  devMajor?: number
  devMinor?: number
  /** xattr name → value, base64. */
  xattrs?: Record<string, string>
  /** Regular files that share one inode share this id. Absent for single-link files. */
  hardlinkGroup?: number
}

export interface FlattenTotals {
  /** Sum of regular-file sizes, each hardlinked inode counted once. */
  bytes: number
  /** Inodes the tree needs (hardlinks count once), root included. */
  inodes: number
  directories: number
  files: number
  symlinks: number
  /** Device nodes and FIFOs (manifest only: never created on disk). */
  specials: number
}

export interface FlattenResult {
  /** Every entry of the final tree, parents before children. */
  entries: EntryRecord[]
  totals: FlattenTotals
}
