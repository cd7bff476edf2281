/** Failures a caller can hit, each with a stable `code` and a `hint` saying what to do. */

export class MkfsMissingError extends Error {
  override name = 'MkfsMissingError'
  readonly code = 'E_MKFS_MISSING'
  readonly hint = 'Install e2fsprogs 1.47 or newer (Debian/Ubuntu: apt-get install e2fsprogs).'
  constructor(
    readonly tried: string,
    options?: ErrorOptions,
  ) {
    super(`mkfs.ext4 not found (tried ${tried})`, options)
  }
}

export class DebugfsMissingError extends Error {
  override name = 'DebugfsMissingError'
  readonly code = 'E_DEBUGFS_MISSING'
  readonly hint = 'Install e2fsprogs 1.47 or newer (Debian/Ubuntu: apt-get install e2fsprogs).'
  constructor(
    readonly tried: string,
    options?: ErrorOptions,
  ) {
    super(`debugfs not found (tried ${tried})`, options)
  }
}

export class MkfsFailedError extends Error {
  override name = 'MkfsFailedError'
  readonly code = 'E_MKFS_FAILED'
  readonly hint = 'mkfs.ext4 said why above; fix that (or report it) and build again.'
  constructor(
    readonly output: string,
    readonly stderr: string,
    exit: string,
  ) {
    super(`mkfs.ext4 for ${output} failed (${exit}): ${stderr.trim() || '(no output)'}`)
  }
}

/** The requested size cannot hold the tree (checked before mkfs runs, or reported by it). */
export class SizeTooSmallError extends Error {
  override name = 'SizeTooSmallError'
  readonly code = 'E_SIZE_TOO_SMALL'
  readonly hint: string
  constructor(
    readonly sizeBytes: number,
    readonly neededBytes: number,
    why = '',
    options?: ErrorOptions,
  ) {
    super(
      `an ext4 of ${sizeBytes} bytes cannot hold this tree: it needs at least ${neededBytes} bytes${why ? ` (${why})` : ''}`,
      options,
    )
    this.hint = `Ask for at least ${neededBytes} bytes, or leave the size to planExt4Size.`
  }
}

/** The requested inode count is below what the tree has. */
export class InodesTooFewError extends Error {
  override name = 'InodesTooFewError'
  readonly code = 'E_INODES_TOO_FEW'
  readonly hint: string
  constructor(
    readonly inodes: number,
    readonly neededInodes: number,
    options?: ErrorOptions,
  ) {
    super(
      `${inodes} inodes cannot hold this tree: it has ${neededInodes} files and directories`,
      options,
    )
    this.hint = `Ask for at least ${neededInodes} inodes, or leave the count to planExt4Size.`
  }
}

/** An option that mkfs would reject or misread (size not a multiple of 4096, bad UUID …). */
export class InvalidBuildOptionError extends Error {
  override name = 'InvalidBuildOptionError'
  readonly code = 'E_INVALID_OPTION'
  readonly hint = 'Fix the option named in the message.'
  constructor(
    readonly option: string,
    why: string,
  ) {
    super(`${option}: ${why}`)
  }
}

export class TreeNotFoundError extends Error {
  override name = 'TreeNotFoundError'
  readonly code = 'E_TREE_NOT_FOUND'
  readonly hint = 'Pass the directory the flattener wrote.'
  constructor(
    readonly tree: string,
    options?: ErrorOptions,
  ) {
    super(`${tree} is not a directory`, options)
  }
}

/** A tree name debugfs's command parser cannot carry (newline, carriage return, NUL). */
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

/** The timestamp pass (debugfs) printed an error or stopped early. */
export class DebugfsCommandError extends Error {
  override name = 'DebugfsCommandError'
  readonly code = 'E_DEBUGFS_COMMAND_FAILED'
  readonly hint = 'Discard the image and build again; report it if it repeats.'
  constructor(
    readonly image: string,
    detail: string,
  ) {
    super(`debugfs on ${image}: ${detail}`)
  }
}
