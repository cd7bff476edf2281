export {
  allowedAdditions,
  compareTrees,
  formatDifferences,
  hardlinkGroups,
  normalizeAclHex,
  type CompareOptions,
  type Difference,
  type EntryType,
  type Tree,
  type TreeEntry,
} from './tree.js'
export { readXattrs, sha256File, splitDev, walkDirectory } from './walk-dir.js'
export { walkExt4 } from './walk-ext4.js'
export { loopMountUnavailable, mountReadOnly, type Mounted } from './mount.js'
export { umociUnpack, type Unpacked } from './unpack.js'
export { BANGER_BIN, startBanger, type BangerSession, type PulledImage } from './banger.js'
export { archImage, specialFilesImage, whiteoutImage } from './images.js'
