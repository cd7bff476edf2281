export type * from './types.js'
export { buildExt4, type Ext4ToolOptions } from './build.js'
export { planExt4Size, type DetailedTreeTotals } from './plan.js'
export {
  DebugfsCommandError,
  DebugfsMissingError,
  InodesTooFewError,
  InvalidBuildOptionError,
  MkfsFailedError,
  MkfsMissingError,
  SizeTooSmallError,
  TreeNotFoundError,
  UnencodableNameError,
} from './errors.js'
