export type * from './types.js'
export {
  flattenToDirectory,
  flattenToTar,
  DEFAULT_MAX_BYTES,
  DEFAULT_MAX_ENTRIES,
} from './flatten.js'
export {
  FlattenError,
  UnsafePathError,
  UnencodableNameError,
  ParentNotDirectoryError,
  BadWhiteoutError,
  MissingLinkTargetError,
  BadHardlinkError,
  UnsupportedEntryError,
  CorruptLayerError,
  UnsupportedCompressionError,
  DiffIdMismatchError,
  LimitExceededError,
  DestNotEmptyError,
  WriteFailedError,
  type FlattenErrorCode,
} from './errors.js'
export { checkEncodable, MAX_NAME_BYTES, MAX_PATH_BYTES } from './paths.js'
export { layersFromOciLayout } from './oci-layout.js'
