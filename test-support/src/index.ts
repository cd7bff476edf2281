export { run, type RunOptions, type RunResult } from './exec.js'
export { freePort } from './ports.js'
export {
  startRegistry,
  type RegistryAuth,
  type RegistryRequest,
  type TestRegistry,
} from './registry.js'
export {
  buildImage,
  debianImage,
  pushImage,
  pushIndex,
  IMAGE_CACHE_DIR,
  type BuildImageOptions,
  type IndexEntry,
  type LayerRecipe,
  type OciImage,
  type PushOptions,
} from './images.js'
export {
  bangerUserHome,
  runAsUser,
  testUser,
  userTempDir,
  type BangerUserHome,
  type RunAsUserOptions,
  type TestUser,
} from './user.js'
export {
  debugfs,
  e2fsck,
  filesystemBytes,
  getImageXattr,
  listImageDir,
  readImageFile,
  statInode,
  type InodeStat,
} from './ext4.js'
export { bootVm, kvmBoots, type BootVmOptions, type SshOptions, type Vm } from './vm.js'
