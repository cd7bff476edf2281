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
  commands: readonly string[]
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
  for (const c of commands) {
    if (c.length > MAX_LINE || /[\n\r]/.test(c))
      throw new UnencodableNameError(c, 'the debugfs command line would be cut')
  }
  const script = join(workDir, batch.write ? 'write.debugfs' : 'read.debugfs')
  const outPath = `${script}.out`
  await writeScript(script, commands)
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
  for await (const line of lines) {
    if (next < commands.length && isEcho(line, commands[next]!)) {
      if (next > 0) batch.onOutput(next - 1, current)
      current = []
      next++
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

/** debugfs echoes each command as `debugfs: <command>`; compared without building that string. */
function isEcho(line: string, command: string): boolean {
  return (
    line.length === ECHO.length + command.length && line.startsWith(ECHO) && line.endsWith(command)
  )
}
const ECHO = 'debugfs: '

/** Lines per write: the script never exists as one string (hundreds of thousands of lines). */
const SCRIPT_CHUNK = 4096

/** Writes one command a line, a chunk at a time. */
async function writeScript(path: string, commands: readonly string[]): Promise<void> {
  const file = await open(path, 'w')
  try {
    for (let i = 0; i < commands.length; i += SCRIPT_CHUNK)
      await file.write(commands.slice(i, i + SCRIPT_CHUNK).join('\n') + '\n')
  } finally {
    await file.close()
  }
}
