/**
 * Every failure a caller can hit carries a stable `code` and a `hint`. Match on `code`, not on
 * `instanceof`: two copies of this package can be loaded at once.
 */
export type FlattenErrorCode =
  | 'E_UNSAFE_PATH'
  | 'E_UNENCODABLE_NAME'
  | 'E_PARENT_NOT_DIRECTORY'
  | 'E_BAD_WHITEOUT'
  | 'E_MISSING_LINK_TARGET'
  | 'E_BAD_HARDLINK'
  | 'E_UNSUPPORTED_ENTRY'
  | 'E_CORRUPT_LAYER'
  | 'E_UNSUPPORTED_COMPRESSION'
  | 'E_DIFFID_MISMATCH'
  | 'E_LIMIT_EXCEEDED'
  | 'E_DEST_NOT_EMPTY'
  | 'E_WRITE_FAILED'

export class FlattenError extends Error {
  override name = 'FlattenError'
  constructor(
    readonly code: FlattenErrorCode,
    message: string,
    readonly hint: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

const HOSTILE = 'The layer is malformed or hostile; rebuild the image or use a trusted one.'

/** Where in the input an error happened, for messages. */
export interface ErrorPlace {
  layer: string
}

const at = (place: ErrorPlace): string => ` (layer ${place.layer})`

export class UnsafePathError extends FlattenError {
  override name = 'UnsafePathError'
  constructor(
    readonly entryPath: string,
    reason: string,
    place: ErrorPlace,
  ) {
    super('E_UNSAFE_PATH', `entry ${JSON.stringify(entryPath)} ${reason}${at(place)}`, HOSTILE)
  }
}

export class UnencodableNameError extends FlattenError {
  override name = 'UnencodableNameError'
  constructor(
    readonly entryPath: string,
    reason: string,
    place: ErrorPlace,
  ) {
    super(
      'E_UNENCODABLE_NAME',
      `entry ${JSON.stringify(entryPath)} ${reason}${at(place)}`,
      'Such a name cannot be stored in the ext4 image or passed to debugfs; rename it in the image.',
    )
  }
}

export class ParentNotDirectoryError extends FlattenError {
  override name = 'ParentNotDirectoryError'
  constructor(
    readonly entryPath: string,
    readonly parentPath: string,
    place: ErrorPlace,
  ) {
    super(
      'E_PARENT_NOT_DIRECTORY',
      `entry ${JSON.stringify(entryPath)} is under ${JSON.stringify(parentPath)}, which is not a directory${at(place)}`,
      'A layer must replace a file with a directory entry before putting entries under it; rebuild the image.',
    )
  }
}

export class BadWhiteoutError extends FlattenError {
  override name = 'BadWhiteoutError'
  constructor(
    readonly entryPath: string,
    reason: string,
    place: ErrorPlace,
  ) {
    super(
      'E_BAD_WHITEOUT',
      `whiteout ${JSON.stringify(entryPath)} ${reason}${at(place)}`,
      'Only `.wh.<name>` files and `.wh..wh..opq` are valid OCI whiteouts; rebuild the image.',
    )
  }
}

export class MissingLinkTargetError extends FlattenError {
  override name = 'MissingLinkTargetError'
  constructor(
    readonly entryPath: string,
    readonly target: string,
    place: ErrorPlace,
  ) {
    super(
      'E_MISSING_LINK_TARGET',
      `hardlink ${JSON.stringify(entryPath)} points to ${JSON.stringify(target)}, which does not exist at that point${at(place)}`,
      'A hardlink must follow its target in the same layer or a lower one; the image is broken.',
    )
  }
}

export class BadHardlinkError extends FlattenError {
  override name = 'BadHardlinkError'
  constructor(
    readonly entryPath: string,
    readonly target: string,
    reason: string,
    place: ErrorPlace,
  ) {
    super(
      'E_BAD_HARDLINK',
      `hardlink ${JSON.stringify(entryPath)} -> ${JSON.stringify(target)}: ${reason}${at(place)}`,
      HOSTILE,
    )
  }
}

export class UnsupportedEntryError extends FlattenError {
  override name = 'UnsupportedEntryError'
  constructor(
    readonly entryPath: string,
    reason: string,
    place: ErrorPlace,
  ) {
    super(
      'E_UNSUPPORTED_ENTRY',
      `entry ${JSON.stringify(entryPath)}: ${reason}${at(place)}`,
      'Rebuild the image with a standard tar writer (no sparse files, no vendor entry types).',
    )
  }
}

export class CorruptLayerError extends FlattenError {
  override name = 'CorruptLayerError'
  constructor(reason: string, place: ErrorPlace, options?: { cause?: unknown }) {
    super(
      'E_CORRUPT_LAYER',
      `layer ${place.layer} is corrupt: ${reason}`,
      'The blob is damaged or truncated; delete it from the cache and pull again.',
      options,
    )
  }
}

export class UnsupportedCompressionError extends FlattenError {
  override name = 'UnsupportedCompressionError'
  constructor(kind: string, place: ErrorPlace) {
    super(
      'E_UNSUPPORTED_COMPRESSION',
      `layer ${place.layer} is ${kind}, not a tar, gzip or zstd stream`,
      'Only tar, tar+gzip and tar+zstd layers are supported; convert the image (e.g. skopeo copy --dest-compress-format gzip).',
    )
  }
}

export class DiffIdMismatchError extends FlattenError {
  override name = 'DiffIdMismatchError'
  constructor(
    readonly expected: string,
    readonly actual: string,
    place: ErrorPlace,
  ) {
    super(
      'E_DIFFID_MISMATCH',
      `layer ${place.layer} uncompressed to ${actual}, but the image config says ${expected}`,
      'The blob does not match the image config; delete it from the cache and pull again.',
    )
  }
}

export class LimitExceededError extends FlattenError {
  override name = 'LimitExceededError'
  constructor(
    readonly limit: 'maxBytes' | 'maxEntries',
    readonly value: number,
    place: ErrorPlace,
  ) {
    super(
      'E_LIMIT_EXCEEDED',
      `layer ${place.layer} goes past limits.${limit} = ${value}`,
      `If the image is genuine, raise limits.${limit}; otherwise it is a tar bomb.`,
    )
  }
}

export class DestNotEmptyError extends FlattenError {
  override name = 'DestNotEmptyError'
  constructor(readonly dest: string) {
    super(
      'E_DEST_NOT_EMPTY',
      `destination ${dest} exists and is not an empty directory`,
      'Pass a path that does not exist yet or an empty directory you own.',
    )
  }
}

export class WriteFailedError extends FlattenError {
  override name = 'WriteFailedError'
  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    const code = (cause as { code?: string } | undefined)?.code ?? 'error'
    super(
      'E_WRITE_FAILED',
      `writing ${path} failed: ${code}`,
      'Check free space and that the destination is writable and not changed by anyone else meanwhile.',
      { cause },
    )
  }
}
