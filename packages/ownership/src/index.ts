export type * from './types.js'
export { applyOwnership, type ApplyOwnershipToolOptions } from './apply.js'
export {
  DebugfsCommandError,
  DebugfsFailedError,
  DebugfsMissingError,
  InvalidEntryError,
  OwnershipMismatchError,
  SpecialExistsError,
  TreeMismatchError,
  UnencodableNameError,
  type DebugfsFailure,
  type OwnershipMismatch,
} from './errors.js'
export { quoteArg as quoteDebugfsArg } from './debugfs.js'
