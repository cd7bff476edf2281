/**
 * One class per failure a user can hit. Match on `err.code` across packages, not `instanceof`:
 * two copies of this package can be installed at once.
 */

abstract class RegistryError extends Error {
  abstract readonly code: string
  abstract readonly hint: string
}

export class BadReferenceError extends RegistryError {
  override name = 'BadReferenceError'
  readonly code = 'E_BAD_REFERENCE'
  readonly hint =
    'Write the image as [registry[:port]/]repository[:tag][@sha256:<64 hex>], e.g. debian:bookworm.'
  constructor(
    readonly input: string,
    reason: string,
  ) {
    super(`invalid image reference ${JSON.stringify(input)}: ${reason}`)
  }
}

export class BadPlatformError extends RegistryError {
  override name = 'BadPlatformError'
  readonly code = 'E_BAD_PLATFORM'
  readonly hint = 'Write the platform as os/architecture[/variant], e.g. linux/arm64.'
  constructor(readonly input: string) {
    super(`invalid platform ${JSON.stringify(input)}`)
  }
}

export class ManifestUnknownError extends RegistryError {
  override name = 'ManifestUnknownError'
  readonly code = 'E_MANIFEST_UNKNOWN'
  readonly hint =
    'Check the repository name and tag; `skopeo list-tags docker://<repo>` lists tags.'
  constructor(
    readonly reference: string,
    detail?: string,
  ) {
    super(`image ${reference} not found in the registry${detail ? ` (${detail})` : ''}`)
  }
}

export class BlobUnknownError extends RegistryError {
  override name = 'BlobUnknownError'
  readonly code = 'E_BLOB_UNKNOWN'
  readonly hint = 'The registry lost a blob its manifest names; push the image again.'
  constructor(
    readonly repository: string,
    readonly digest: string,
  ) {
    super(`blob ${digest} of ${repository} not found in the registry`)
  }
}

export class PlatformNotFoundError extends RegistryError {
  override name = 'PlatformNotFoundError'
  readonly code = 'E_PLATFORM_NOT_FOUND'
  readonly hint: string
  constructor(
    readonly reference: string,
    readonly wanted: string,
    readonly offered: string[],
  ) {
    super(
      `image ${reference} has no ${wanted} variant; it offers: ${offered.length ? offered.join(', ') : '(none)'}`,
    )
    this.hint = offered.length
      ? `Ask for one of the offered platforms (e.g. --platform ${offered[0]}).`
      : 'The image names no usable platform; pick another image.'
  }
}

export class UnsupportedManifestError extends RegistryError {
  override name = 'UnsupportedManifestError'
  readonly code = 'E_UNSUPPORTED_MANIFEST'
  readonly hint: string
  constructor(
    readonly reference: string,
    readonly mediaType: string,
  ) {
    const schema1 = /distribution\.manifest\.v1|schemaVersion 1/.test(mediaType)
    super(
      schema1
        ? `image ${reference} uses the Docker schema1 manifest format, which is not supported`
        : `image ${reference} has an unsupported manifest type ${JSON.stringify(mediaType)}`,
    )
    this.hint = schema1
      ? 'Re-push the image with a current tool (skopeo copy --format v2s2 or oci) to convert it.'
      : 'Only OCI image manifests/indexes and Docker schema2 manifests/lists are supported.'
  }
}

export class ManifestInvalidError extends RegistryError {
  override name = 'ManifestInvalidError'
  readonly code = 'E_MANIFEST_INVALID'
  readonly hint = 'The registry served a malformed manifest or config; re-push the image.'
  constructor(
    readonly reference: string,
    detail: string,
  ) {
    super(`image ${reference}: ${detail}`)
  }
}

export class ManifestTooLargeError extends RegistryError {
  override name = 'ManifestTooLargeError'
  readonly code = 'E_MANIFEST_TOO_LARGE'
  readonly hint = 'A manifest or config this large is not a real image; check the reference.'
  constructor(
    readonly url: string,
    readonly limit: number,
  ) {
    super(`${url} is larger than the ${limit}-byte limit for manifests and configs`)
  }
}

export class AuthError extends RegistryError {
  override name = 'AuthError'
  readonly code = 'E_AUTH'
  readonly hint: string
  constructor(
    readonly registry: string,
    detail: string,
    hint?: string,
  ) {
    super(`registry ${registry} refused access: ${detail}`)
    this.hint =
      hint ??
      `Log in (add credentials for ${registry} to ~/.docker/config.json, e.g. with \`docker login\` or \`skopeo login --authfile\`) and check the repository name.`
  }
}

export class CredentialHelperError extends RegistryError {
  override name = 'CredentialHelperError'
  readonly code = 'E_CREDENTIAL_HELPER'
  readonly hint: string
  constructor(
    readonly helper: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`credential helper docker-credential-${helper} failed: ${detail}`, options)
    this.hint = `Check that docker-credential-${helper} is on PATH and logged in, or remove it from the Docker config.`
  }
}

export class DigestMismatchError extends RegistryError {
  override name = 'DigestMismatchError'
  readonly code = 'E_DIGEST_MISMATCH'
  readonly hint = 'The download was discarded and nothing was cached; run the pull again.'
  constructor(
    readonly url: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${url} hashed to ${actual}, expected ${expected}`)
  }
}

export class SizeMismatchError extends RegistryError {
  override name = 'SizeMismatchError'
  readonly code = 'E_SIZE_MISMATCH'
  readonly hint = 'The download was discarded and nothing was cached; run the pull again.'
  constructor(
    readonly url: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`${url} sent ${actual} bytes, expected ${expected}`)
  }
}

export class RegistryUnreachableError extends RegistryError {
  override name = 'RegistryUnreachableError'
  readonly code = 'E_REGISTRY_UNREACHABLE'
  readonly hint: string
  constructor(
    readonly url: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot reach ${url}: ${detail}`, options)
    this.hint =
      'Check the registry host and port and the network; a plain-HTTP registry must be listed in insecureRegistries.'
  }
}

export class RegistryHttpError extends RegistryError {
  override name = 'RegistryHttpError'
  readonly code = 'E_REGISTRY_HTTP'
  readonly hint = 'The registry answered with an error; retry later or check its logs.'
  constructor(
    readonly url: string,
    readonly status: number,
    detail?: string,
  ) {
    super(`${url} answered HTTP ${status}${detail ? `: ${detail}` : ''}`)
  }
}

export class RangeResponseError extends RegistryError {
  override name = 'RangeResponseError'
  readonly code = 'E_BAD_RANGE_RESPONSE'
  readonly hint = 'The server answered a resumed download incorrectly; run the pull again.'
  constructor(
    readonly url: string,
    detail: string,
  ) {
    super(`${url}: ${detail}`)
  }
}

export class StreamRestartedError extends RegistryError {
  override name = 'StreamRestartedError'
  readonly code = 'E_STREAM_RESTARTED'
  readonly hint =
    'Discard everything read from this layer stream; the download carries on, so read the layer again once it is cached (cachedLayers()).'
  constructor(
    readonly digest: string,
    readonly position: number,
  ) {
    super(
      `the download of layer ${digest} restarted from byte 0 after its stream had handed out ${position} bytes`,
    )
  }
}

export class CacheError extends RegistryError {
  override name = 'CacheError'
  readonly code = 'E_CACHE'
  readonly hint =
    'Check that the cache directory exists, is writable by this user and has free space.'
  constructor(
    readonly path: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`image cache ${path}: ${detail}`, options)
  }
}

export class BadSourceError extends RegistryError {
  override name = 'BadSourceError'
  readonly code = 'E_BAD_SOURCE'
  readonly hint =
    'Give an OCI layout directory (oci:<dir>[:<name>]), an OCI archive (oci-archive:<file>[:<name>]) or a `docker save` archive (docker-archive:<file>[:<repo:tag>]).'
  constructor(
    readonly source: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`image source ${source}: ${detail}`, options)
  }
}
