/** Contract of @banger/ownership. OwnershipEntry mirrors layer-flatten's EntryRecord structurally. */

export interface OwnershipEntry {
  /** Absolute path inside the image. */
  path: string
  type: 'file' | 'directory' | 'symlink' | 'char' | 'block' | 'fifo'
  /** Permission bits including setuid/setgid/sticky (0o7777). */
  mode: number
  uid: number
  gid: number
  mtime?: number
  devMajor?: number
  devMinor?: number
  /** xattr name → value, base64. */
  xattrs?: Record<string, string>
  hardlinkGroup?: number
}

export interface ApplyOwnershipOptions {
  signal?: AbortSignal
  /**
   * Read back every entry and fail on a mismatch: true (default) before resolving; false never;
   * `'later'` leaves it to the report's `readBack`, so the caller can overlap it with other work.
   */
  verify?: boolean | 'later'
  /**
   * The image already holds each entry's mtime: it was built by mkfs -d from the tree the manifest
   * describes, whose files carry the manifest's mtimes (mkfs copies st_mtime). The batch then
   * leaves out `sif mtime`, except for `/` (mkfs keeps its own time there), device nodes and FIFOs
   * (made here) and times from 2038 on (mkfs 1.47 writes only the 32-bit i_mtime). The read-back
   * still checks every mtime. Default false.
   */
  mtimesInImage?: boolean
}

export interface OwnershipReport {
  entries: number
  commands: number
  verified: number
  /**
   * With `verify: 'later'`: the read-back `verify: true` would have run, resolving to the number of
   * entries verified and rejecting with E_OWNERSHIP_MISMATCH as applyOwnership would. The image must
   * not change until it settles (a byte-identical copy may be changed meanwhile).
   */
  readBack?: (signal?: AbortSignal) => Promise<number>
}
