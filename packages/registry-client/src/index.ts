export type * from './types.js'
export { parseReference, formatReference } from './reference.js'
export { parsePlatform, formatPlatform } from './platform.js'
export { RegistryClient, type ResolvedImage } from './client.js'
export {
  AuthError,
  BadPlatformError,
  BadReferenceError,
  BadSourceError,
  BlobUnknownError,
  CacheError,
  CredentialHelperError,
  DigestMismatchError,
  ManifestInvalidError,
  ManifestTooLargeError,
  ManifestUnknownError,
  PlatformNotFoundError,
  RangeResponseError,
  RegistryHttpError,
  RegistryUnreachableError,
  SizeMismatchError,
  StreamRestartedError,
  UnsupportedManifestError,
} from './errors.js'
