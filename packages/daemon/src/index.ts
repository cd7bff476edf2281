// The daemon as a library (tests, embedding). The CLI imports only `@banger/daemon/rpc`.
export { startDaemon, VERSION, type Daemon, type StartDaemonOptions } from './daemon.js'
export { loadConfig, type BangerConfig, type DefaultKernel } from './config.js'
export type { PullPipeline, PullJob, PullOutcome, PullEvent, ParsedReference } from './pipeline.js'
export { defaultImageName } from './names.js'
