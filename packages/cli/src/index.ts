// The CLI's public surface: its entry point and the pure pieces it is built from.
export { main, processIo, type CliIo } from './main.js'
export { parseArgs, type Command, type ParsedArgs, type ParseOptions } from './args.js'
export { parseSize, formatBytes } from './size.js'
export { CliError, EXIT, formatError, usageError } from './errors.js'
export {
  renderTable,
  renderFields,
  renderImageList,
  renderImage,
  renderKernelList,
  renderKernel,
  renderStatus,
  shortDigest,
  formatDuration,
} from './render.js'
export {
  applyProgress,
  finishPullView,
  newPullView,
  plainProgressLine,
  progressFor,
  renderBar,
  renderLayer,
  renderProgress,
  PlainProgress,
  TtyProgress,
  STAGE_LABELS,
  type LayerView,
  type ProgressSink,
  type ProgressStream,
  type PullView,
} from './progress.js'
export {
  connectOrStart,
  daemonBinPath,
  daemonLogPath,
  daemonOutputPath,
  lastDaemonError,
  stopDaemon,
  waitForDaemon,
  tryConnect,
  type Connection,
  type StartOptions,
} from './daemon.js'
