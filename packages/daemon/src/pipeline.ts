import type { Logger } from 'pino'
import type { PullProgress } from './rpc/index.js'

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

/** A progress event before the server stamps it with the request id. */
export type PullEvent = DistributiveOmit<PullProgress, 'requestId'>

/** What the daemon needs of a parsed reference; structurally registry-client's ImageReference. */
export interface ParsedReference {
  readonly registry: string
  readonly repository: string
  readonly tag?: string
  readonly digest?: string
}

/** One pull, as the image service hands it to the pipeline. */
export interface PullJob {
  /** The reference as the user typed it (already validated by parseReference). */
  ref: string
  name: string
  /** `linux/amd64` unless the request said otherwise. */
  platform: string
  /** Reach the reference's registry over plain HTTP. */
  insecure: boolean
  /** Filesystem size; absent means max(tree × 1.25, 1 GiB). */
  sizeBytes?: number
  /** Write the finished root filesystem here (inside the staging dir). */
  rootfsPath: string
  /** Base directory for the temporary tree (outside the state dir); the pipeline removes its own. */
  tmpDir: string
  authorizedKeys: string[]
  hostname: string
  signal: AbortSignal
  onProgress: (event: PullEvent) => void
  log: Logger
}

export interface PullOutcome {
  manifestDigest: string
  /** `os/arch[/variant]` of the manifest pulled. */
  platform: string
  sizeBytes: number
  injectedFiles: string[]
}

/**
 * The stage wiring, kept behind an interface so the daemon's bookkeeping (names, staging,
 * publish, cleanup, cancellation) is testable on its own; `createPullPipeline` in pull.ts is
 * the real one.
 */
export interface PullPipeline {
  /** Throws an error with a `code` when the reference does not parse. */
  parseReference(input: string): ParsedReference
  formatReference(ref: ParsedReference): string
  run(job: PullJob): Promise<PullOutcome>
  /** Release connections; called once at daemon stop, after every pull has settled. */
  close?(): Promise<void>
}

/** Prefix of the temporary trees; `<prefix><pid>-` lets a restarted daemon sweep dead ones. */
export const TMP_TREE_PREFIX = 'bangerd-pull-'
