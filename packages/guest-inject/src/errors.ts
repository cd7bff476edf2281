/** Errors a caller of @banger/guest-inject can hit. Match on `code`, not `instanceof`. */

export class ImageNotFoundError extends Error {
  override name = 'ImageNotFoundError'
  readonly code = 'E_IMAGE_NOT_FOUND'
  readonly hint = 'Build the ext4 image first (ext4-build), then inject into it.'
  constructor(
    readonly imagePath: string,
    options?: { cause?: unknown },
  ) {
    super(`no image file at ${imagePath}`, options)
  }
}

export class ImageOpenError extends Error {
  override name = 'ImageOpenError'
  readonly code = 'E_IMAGE_OPEN'
  readonly hint =
    'The file must be an ext4 filesystem you can read and write (not mounted, not in use by a running VM).'
  constructor(
    readonly imagePath: string,
    detail: string,
  ) {
    super(`debugfs cannot open ${imagePath}: ${detail}`)
  }
}

export class DebugfsMissingError extends Error {
  override name = 'DebugfsMissingError'
  readonly code = 'E_DEBUGFS_MISSING'
  readonly hint = 'Install e2fsprogs (apt-get install e2fsprogs); debugfs must be on PATH.'
  constructor(options?: { cause?: unknown }) {
    super('debugfs was not found on PATH', options)
  }
}

/** A debugfs command reported an error (debugfs itself exits 0 in that case). */
export class DebugfsCommandError extends Error {
  override name = 'DebugfsCommandError'
  readonly code = 'E_DEBUGFS_FAILED'
  readonly hint =
    'The image may be full or damaged and may be partly written: rebuild it with more free space and inject again.'
  constructor(
    readonly imagePath: string,
    readonly lines: string[],
  ) {
    super(`debugfs failed on ${imagePath}: ${lines.slice(0, 3).join('; ')}`)
  }
}

export class InvalidAuthorizedKeyError extends Error {
  override name = 'InvalidAuthorizedKeyError'
  readonly code = 'E_INVALID_AUTHORIZED_KEY'
  readonly hint =
    'Pass OpenSSH public key lines, one per entry, e.g. the contents of ~/.ssh/id_ed25519.pub.'
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super(
      `authorized key ${JSON.stringify(key.length > 60 ? key.slice(0, 57) + '...' : key)} ${reason}`,
    )
  }
}

export class NoAuthorizedKeysError extends Error {
  override name = 'NoAuthorizedKeysError'
  readonly code = 'E_NO_AUTHORIZED_KEYS'
  readonly hint =
    'Pass at least one OpenSSH public key, e.g. the contents of ~/.ssh/id_ed25519.pub.'
  constructor() {
    super('no authorized SSH key given: nobody could log in to the guest')
  }
}

export class InvalidHostnameError extends Error {
  override name = 'InvalidHostnameError'
  readonly code = 'E_INVALID_HOSTNAME'
  readonly hint =
    'Use letters, digits and hyphens, dot-separated labels of at most 63 characters, 64 in all.'
  constructor(readonly hostname: string) {
    super(`${JSON.stringify(hostname)} is not a valid hostname`)
  }
}

/** Something in the image is in the way of a file banger must write. */
export class GuestPathError extends Error {
  override name = 'GuestPathError'
  readonly code = 'E_GUEST_PATH'
  readonly hint = 'Fix or remove that path in the image (or the Dockerfile that made it) and retry.'
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`cannot write ${path} in the image: ${reason}`)
  }
}
