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
  /** Read back every entry and fail on a mismatch; default true. */
  verify?: boolean
}

export interface OwnershipReport {
  entries: number
  commands: number
  verified: number
}
