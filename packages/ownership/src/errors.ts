/** Failures a caller can hit, each with a stable `code` and a `hint` saying what to do. */

export class DebugfsMissingError extends Error {
  override name = 'DebugfsMissingError'
  readonly code = 'E_DEBUGFS_MISSING'
  readonly hint =
    'Install e2fsprogs (Debian/Ubuntu: apt-get install e2fsprogs); banger needs debugfs 1.47 or newer.'
  constructor(
    readonly binary: string,
    options?: ErrorOptions,
  ) {
    super(`debugfs not found (tried ${binary})`, options)
  }
}

/** debugfs ran but a command in the batch printed an error (debugfs itself still exits 0). */
export class DebugfsCommandError extends Error {
  override name = 'DebugfsCommandError'
  readonly code = 'E_DEBUGFS_COMMAND_FAILED'
  readonly hint =
    'The image may be half-updated: discard it and rebuild it. If the path is missing, the tree and the manifest disagree.'
  constructor(
    readonly image: string,
    readonly failures: DebugfsFailure[],
  ) {
    const first = failures[0]
    const more = failures.length > 1 ? ` (and ${failures.length - 1} more)` : ''
    super(
      first
        ? `debugfs failed on ${first.path ?? image}: \`${first.command}\` printed "${first.output}"${more}`
        : `debugfs failed on ${image}`,
    )
  }
}

export interface DebugfsFailure {
  /** The entry path the command was for, when it was for one. */
  path?: string
  command: string
  output: string
}

/** The read-back found an entry whose owner, mode, type, device, times, links or xattrs differ. */
export class OwnershipMismatchError extends Error {
  override name = 'OwnershipMismatchError'
  readonly code = 'E_OWNERSHIP_MISMATCH'
  readonly hint =
    'The image does not hold what the manifest says; discard it and rebuild. If it persists, report it with the mismatch list.'
  constructor(
    readonly image: string,
    readonly mismatches: OwnershipMismatch[],
  ) {
    const first = mismatches[0]
    const more = mismatches.length > 1 ? ` (and ${mismatches.length - 1} more)` : ''
    super(
      first
        ? `${image}: ${first.path} has ${first.field} ${first.actual}, expected ${first.expected}${more}`
        : `${image}: verification failed`,
    )
  }
}

export interface OwnershipMismatch {
  path: string
  field: string
  expected: string
  actual: string
}

/** A path or xattr name debugfs's command parser cannot carry (newline, carriage return, NUL, too long). */
export class UnencodableNameError extends Error {
  override name = 'UnencodableNameError'
  readonly code = 'E_UNENCODABLE_NAME'
  readonly hint =
    'debugfs reads one command per line and has no escapes for these characters; rename the file in the image source.'
  constructor(
    readonly value: string,
    why: string,
  ) {
    super(`cannot pass ${JSON.stringify(value)} to debugfs: ${why}`)
  }
}

/** A manifest entry that is not well formed (relative path, bad mode, missing device numbers …). */
export class InvalidEntryError extends Error {
  override name = 'InvalidEntryError'
  readonly code = 'E_INVALID_ENTRY'
  readonly hint = 'The manifest is produced by layer-flatten; this is a bug in whatever built it.'
  constructor(
    readonly path: string,
    why: string,
  ) {
    super(`manifest entry ${JSON.stringify(path)}: ${why}`)
  }
}

/** A device node or FIFO from the manifest already exists in the image; mknod would add a second name. */
export class SpecialExistsError extends Error {
  override name = 'SpecialExistsError'
  readonly code = 'E_SPECIAL_EXISTS'
  readonly hint =
    'Device nodes and FIFOs must not be in the tree given to mkfs (or ownership was already applied to this image); rebuild the image from a fresh tree.'
  constructor(
    readonly image: string,
    readonly path: string,
  ) {
    super(`${image}: ${path} already exists, refusing to mknod over it`)
  }
}

/** debugfs could not open the image or stopped before running the whole batch. */
export class DebugfsFailedError extends Error {
  override name = 'DebugfsFailedError'
  readonly code = 'E_DEBUGFS_FAILED'
  readonly hint = 'Check that the image exists, is an ext4 filesystem and is writable by this user.'
  constructor(
    readonly image: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`debugfs on ${image}: ${detail}`, options)
  }
}

/** Before any write: an image path holds another file type than the manifest says. */
export class TreeMismatchError extends Error {
  override name = 'TreeMismatchError'
  readonly code = 'E_TREE_MISMATCH'
  readonly hint =
    'The image was not built from the tree this manifest describes; rebuild it from the flattener output that came with the manifest.'
  constructor(
    readonly image: string,
    readonly mismatches: OwnershipMismatch[],
  ) {
    const first = mismatches[0]!
    const more = mismatches.length > 1 ? ` (and ${mismatches.length - 1} more)` : ''
    super(
      `${image}: ${first.path} is a ${first.actual} in the image, the manifest says ${first.expected}${more}`,
    )
  }
}
