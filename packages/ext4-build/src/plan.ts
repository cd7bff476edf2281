import type { SizePlan, TreeTotals } from './types.js'

/** banger always builds 4 KiB blocks and 256-byte inodes (passed to mkfs explicitly). */
export const BLOCK_SIZE = 4096
export const INODE_SIZE = 256
const BLOCKS_PER_GROUP = 8 * BLOCK_SIZE
/** Inodes 1..10 are reserved; 11 is lost+found. */
const RESERVED_INODES = 11
/** mkfs's default bytes-per-inode ratio (mke2fs.conf inode_ratio). */
const MKFS_INODE_RATIO = 16384
/** A directory entry: 8 bytes + the name, 4-byte aligned; 64 covers names up to 56 bytes on average. */
const DIRENT_BYTES = 64
const MIB = 1024 * 1024

/** Optional totals layer-flatten also reports; sizing is tighter with them. */
export interface DetailedTreeTotals extends TreeTotals {
  /** Regular files (hardlinked inodes once). Default: inodes − directories. */
  files?: number
  /** Symlinks; each is counted as a data block (targets over 59 bytes need one). */
  symlinks?: number
}

/** mkfs's journal size for a filesystem of `blocks` 4 KiB blocks (ext2fs_default_journal_size). */
export function journalBlocks(blocks: number): number {
  if (blocks < 2048) return 0
  if (blocks < 32768) return 1024
  if (blocks < 256 * 1024) return 4096
  if (blocks < 512 * 1024) return 8192
  if (blocks < 4096 * 1024) return 16384
  if (blocks < 8192 * 1024) return 32768
  if (blocks < 16384 * 1024) return 65536
  if (blocks < 32768 * 1024) return 131072
  return 262144
}

/** Blocks the tree's contents take: data with each file's last block rounded up, dirs, symlinks. */
export function contentBlocks(totals: DetailedTreeTotals): number {
  const nonDirs = Math.max(0, totals.inodes - totals.directories)
  const files = totals.files ?? nonDirs
  const data = Math.ceil(totals.bytes / BLOCK_SIZE)
  // Each non-empty file wastes at most one partial block, and a file is non-empty only with ≥1 byte.
  const rounding = Math.min(files, totals.bytes)
  // An inode holds 4 extents; past that an extent block per ~512 MiB of a fragmented file.
  const extents = Math.ceil(totals.bytes / (512 * MIB))
  const dirs = totals.directories + Math.ceil((totals.inodes * DIRENT_BYTES) / BLOCK_SIZE)
  return data + rounding + extents + dirs + (totals.symlinks ?? 0)
}

/** Metadata blocks of a filesystem of `blocks` blocks holding `inodes` inodes. */
export function metadataBlocks(blocks: number, inodes: number, reservedRatio: number): number {
  const groups = Math.ceil(blocks / BLOCKS_PER_GROUP)
  const inodeTables = Math.ceil((inodes * INODE_SIZE) / BLOCK_SIZE) + groups
  const bitmaps = 2 * groups
  // Superblock + descriptors + reserved GDT (for resize) in group 0 and the sparse backups.
  const backups = 1 + Math.min(groups - 1, Math.ceil(3 * Math.log(Math.max(groups, 1)) + 1))
  const gdt = Math.ceil((groups * 64) / BLOCK_SIZE) + Math.min(1024, Math.ceil(groups * 16))
  const perCopy = 1 + gdt
  // orphan_file, lost+found, resize inode's indirect blocks and rounding.
  const misc = 256 + Math.ceil(blocks / 1024)
  return (
    inodeTables +
    bitmaps +
    backups * perCopy +
    journalBlocks(blocks) +
    misc +
    Math.ceil(blocks * reservedRatio)
  )
}

/** Smallest block count where contents × headroom plus metadata fit (a fixed point). */
function fitBlocks(
  content: number,
  inodes: number,
  headroom: number,
  reservedRatio: number,
): number {
  const wanted = Math.ceil(content * headroom)
  let blocks = Math.max(wanted, 2048)
  for (let i = 0; i < 64; i++) {
    const need = wanted + metadataBlocks(blocks, inodes, reservedRatio)
    if (need <= blocks) break
    blocks = need
  }
  return blocks
}

/** The least the tree needs: no headroom, no root reserve. Used to refuse a size before mkfs runs. */
export function minimumBlocks(totals: DetailedTreeTotals, inodes: number): number {
  return Math.max(fitBlocks(contentBlocks(totals), inodes, 1, 0), inodes)
}

/**
 * Plans an image for a tree: a size that holds the contents with `headroom` (default 1.25) of real
 * free space on top of metadata, journal and the 5% root reserve, never below `minBytes` (default
 * 64 MiB), rounded to whole MiB; and an inode count that is mkfs's default for that size but never
 * below inodes × headroom + 64, so trees of many small files cannot run out. Pure: no I/O.
 */
export function planExt4Size(
  totals: TreeTotals,
  options: { headroom?: number; minBytes?: number } = {},
): SizePlan {
  const headroom = options.headroom ?? 1.25
  const minBytes = options.minBytes ?? 64 * MIB
  for (const [k, v] of Object.entries({ ...totals, minBytes })) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
      throw new RangeError(`planExt4Size: ${k} must be a non-negative number, got ${String(v)}`)
  }
  if (!(headroom >= 1)) throw new RangeError(`planExt4Size: headroom must be ≥ 1, got ${headroom}`)
  let inodes = Math.ceil(totals.inodes * headroom) + RESERVED_INODES + 64
  let blocks = fitBlocks(contentBlocks(totals), inodes, headroom, 0.05)
  // mkfs allows at most one inode per block.
  blocks = Math.max(blocks, Math.ceil(minBytes / BLOCK_SIZE), inodes)
  blocks = Math.ceil(blocks / (MIB / BLOCK_SIZE)) * (MIB / BLOCK_SIZE)
  inodes = Math.max(inodes, Math.floor((blocks * BLOCK_SIZE) / MKFS_INODE_RATIO))
  return { sizeBytes: blocks * BLOCK_SIZE, inodes }
}
