import { spawn } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { DebugfsFailedError, DebugfsMissingError, UnencodableNameError } from './errors.js'

/**
 * debugfs reads its -f script with fgets into an 8 KiB buffer and cuts the line at the first
 * \n or \r; its ss parser knows only whitespace and double quotes, where `""` inside quotes is
 * a literal quote and backslashes are literal. Found by experiment on e2fsprogs 1.47.0.
 */
const MAX_LINE = 8000

/** Quotes one argument for debugfs's command parser. Rejects what it cannot carry. */
export function quoteArg(value: string): string {
  if (/[\n\r\0]/.test(value))
    throw new UnencodableNameError(value, 'it contains a newline, carriage return or NUL')
  if (Buffer.byteLength(value) > MAX_LINE / 2)
    throw new UnencodableNameError(value, `it is longer than ${MAX_LINE / 2} bytes`)
  return `"${value.replaceAll('"', '""')}"`
}

/**
 * Where to find debugfs: on Debian it lives in /usr/sbin, which is not on an unprivileged
 * user's PATH, so fall back to the sbin directories.
 */
export function debugfsCandidates(): string[] {
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean)
  for (const extra of ['/usr/sbin', '/sbin', '/usr/local/sbin'])
    if (!dirs.includes(extra)) dirs.push(extra)
  return dirs.map((d) => join(d, 'debugfs'))
}

export async function resolveBinary(candidates: string[]): Promise<string | undefined> {
  const { access, constants } = await import('node:fs/promises')
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK)
      return c
    } catch {
      // try the next one
    }
  }
  return undefined
}

export interface DebugfsBatch {
  /** Path to the debugfs binary. */
  binary: string
  image: string
  commands: CommandScript
  /** Open the image read-write (-w). */
  write: boolean
  /** A private directory for the script and the captured output. */
  workDir: string
  signal?: AbortSignal
  /** Extra environment for debugfs (E2FSPROGS_FAKE_TIME). */
  env?: Record<string, string>
  /** Each command's output lines (stdout and stderr interleaved, in order), called in order. */
  onOutput: (index: number, lines: string[]) => void
}

/** Lines debugfs prints before the first command whatever the script: its banner. */
const BANNER = /^debugfs \d+\.\d+/

/**
 * Runs the whole batch in one debugfs process. stdout and stderr go to one file descriptor:
 * debugfs flushes stdout after echoing each command (`debugfs: <command>`), so every error line
 * lands between the echo of its command and the next one, which is how an error is pinned to its
 * command (and so to its path) although debugfs exits 0.
 */
export async function runDebugfs(batch: DebugfsBatch): Promise<void> {
  const { binary, image, commands, workDir, signal } = batch
  const script = join(workDir, batch.write ? 'write.debugfs' : 'read.debugfs')
  const outPath = `${script}.out`
  const file = await open(script, 'w')
  try {
    for (const chunk of commands.chunks()) await file.write(chunk)
  } finally {
    await file.close()
  }
  const out = await open(outPath, 'w')
  let code: number | null
  try {
    const args = [...(batch.write ? ['-w'] : []), '-f', script, image]
    code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(binary, args, {
        stdio: ['ignore', out.fd, out.fd],
        env: { ...process.env, ...batch.env, LC_ALL: 'C' },
        signal,
      })
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'EACCES')
          reject(new DebugfsMissingError(binary, { cause: err }))
        else reject(err)
      })
      child.once('close', (exitCode) => resolve(exitCode))
    })
  } finally {
    await out.close()
  }

  const preamble: string[] = []
  let current: string[] = preamble
  let next = 0
  const lines = createInterface({
    input: createReadStream(outPath, { encoding: 'utf8' }),
    crlfDelay: Infinity,
  })
  // The echo of command `next` is looked for at chunks[chunk], from `start` to `end`.
  const chunks = commands.chunks()
  let chunk = 0
  let start = 0
  let end = chunks.length ? chunks[0]!.indexOf('\n') : -1
  for await (const line of lines) {
    const text = chunks[chunk]
    if (
      text !== undefined &&
      line.length === ECHO.length + end - start &&
      line.startsWith(ECHO) &&
      text.startsWith(line.slice(ECHO.length), start)
    ) {
      if (next > 0) batch.onOutput(next - 1, current)
      current = []
      next++
      start = end + 1
      if (start === text.length) {
        chunk++
        start = 0
      }
      end = chunks[chunk]?.indexOf('\n', start) ?? -1
    } else current.push(line)
  }
  const unexpected = preamble.filter((l) => !BANNER.test(l) && l.trim() !== '')
  if (code !== 0 || unexpected.length || next !== commands.length) {
    const tail = (unexpected.length ? unexpected : current).slice(-5).join(' / ')
    const why =
      code !== 0 ? `exit status ${code}` : `stopped after ${next} of ${commands.length} commands`
    throw new DebugfsFailedError(image, `${why}: ${tail || '(no output)'}`)
  }
  if (next > 0) batch.onOutput(next - 1, current)
}

const ECHO = 'debugfs: '

/** Commands per chunk of a CommandScript. */
const SCRIPT_CHUNK = 4096

/**
 * A debugfs script of any length, held as a few large flat strings of whole lines rather than one
 * string per command: a batch has hundreds of thousands of commands, and each built by a template
 * literal is a tree of string pieces several times its length. Commands are checked as they are
 * added (UnencodableNameError for one debugfs would cut).
 */
export class CommandScript {
  readonly #chunks: string[] = []
  #pending: string[] = []
  #length = 0

  get length(): number {
    return this.#length
  }

  add(command: string): void {
    if (command.length > MAX_LINE || /[\n\r]/.test(command))
      throw new UnencodableNameError(command, 'the debugfs command line would be cut')
    this.#pending.push(command)
    this.#length++
    if (this.#pending.length === SCRIPT_CHUNK) this.#seal()
  }

  /** The script, in pieces that each end with a newline. */
  chunks(): readonly string[] {
    this.#seal()
    return this.#chunks
  }

  /** Command `index` (for error messages). */
  at(index: number): string {
    const text = this.chunks()[Math.floor(index / SCRIPT_CHUNK)] ?? ''
    let start = 0
    for (let k = index % SCRIPT_CHUNK; k > 0; k--) start = text.indexOf('\n', start) + 1
    return text.slice(start, text.indexOf('\n', start))
  }

  #seal(): void {
    if (!this.#pending.length) return
    this.#chunks.push(this.#pending.join('\n') + '\n')
    this.#pending = []
  }
}
