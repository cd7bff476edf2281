import { inspect } from 'node:util'

/**
 * Errors the CLI itself raises. Like every banger error they carry a stable `code` and a `hint`;
 * the top level prints `banger: <message>` and `hint: <hint>` and nothing else (no stack unless
 * `--debug`). Errors from the daemon arrive with the same shape (`RpcError`).
 */
export class CliError extends Error {
  override name = 'CliError'
  constructor(
    readonly code: string,
    message: string,
    readonly hint?: string,
    options?: { cause?: unknown; exitCode?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.exitCode = options?.exitCode ?? 1
  }
  /** The process exit code this error maps to. */
  readonly exitCode: number
}

/** Exit codes: part of the CLI's contract (see README). */
export const EXIT = {
  ok: 0,
  error: 1,
  usage: 2,
  notRunning: 3,
  interrupted: 130,
} as const

/** A bad command line: unknown flag, missing argument, a value that does not parse. Exit 2. */
export function usageError(message: string, hint?: string, code = 'E_USAGE'): CliError {
  return new CliError(code, message, hint, { exitCode: EXIT.usage })
}

interface ErrorLike {
  message?: unknown
  code?: unknown
  hint?: unknown
  stack?: unknown
  cause?: unknown
  data?: unknown
}

function hintOf(err: ErrorLike): string | undefined {
  if (typeof err.hint === 'string' && err.hint) return err.hint
  const data = err.data as ErrorLike | undefined
  if (data && typeof data === 'object' && typeof data.hint === 'string') return data.hint
  return undefined
}

/**
 * The lines printed for a failure: `banger: <message>` and, when the error has one,
 * `hint: <hint>`. With `debug`, the code, stack and cause chain follow.
 */
export function formatError(err: unknown, debug = false): string {
  const e: ErrorLike = err !== null && typeof err === 'object' ? err : {}
  const raw = typeof e.message === 'string' ? e.message : String(err)
  // One line, always: a multi-line message from a foreign error is folded.
  const message = raw.replace(/\s*\n\s*/g, ' ').trim() || 'unknown error'
  const lines = [`banger: ${message}`]
  const hint = hintOf(e)
  if (hint) lines.push(`hint: ${hint.replace(/\s*\n\s*/g, ' ')}`)
  if (debug) {
    if (typeof e.code === 'string' || typeof e.code === 'number') lines.push(`code: ${e.code}`)
    if (typeof e.stack === 'string') lines.push(e.stack)
    let cause = e.cause
    for (let depth = 0; cause !== undefined && depth < 5; depth++) {
      const c = (cause !== null && typeof cause === 'object' ? cause : {}) as ErrorLike
      lines.push(`caused by: ${typeof c.stack === 'string' ? c.stack : inspect(cause)}`)
      cause = c.cause
    }
  }
  return lines.join('\n') + '\n'
}
