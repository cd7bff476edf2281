// The daemon's client-facing surface: method map, types, error codes, paths, socket client.
// Imports nothing that loads a stage package, SQLite or pino (the CLI depends on that).
export type * from './types.js'
export { RPC_ERROR, ERROR_CODES, RpcError, type ErrorCode } from './errors.js'
export { resolvePaths, type BangerPaths } from './paths.js'
export {
  connectDaemon,
  PULL_PROGRESS_METHOD,
  CANCEL_REQUEST_METHOD,
  type DaemonClient,
  type CallOptions,
} from './client.js'
