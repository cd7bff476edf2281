// A small copy of @banger/ownership's debugfs batch runner, accepted knowingly: stage packages
// never import each other, and this one needs only the timestamp pass.
import { spawn } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { DebugfsCommandError, DebugfsMissingError, UnencodableNameError } from './errors.js'

/**
 * debugfs reads a -f script with fgets into an 8 KiB buffer and ends a line at the first \n or
 * \r; its parser knows only whitespace and double quotes (`""` inside quotes is a quote,
 * backslashes are literal). Found by experiment on e2fsprogs 1.47.0.
 */
export function quoteArg(value: string): string {
  if (/[\n\r\0]/.test(value))
    throw new UnencodableNameError(value, 'it contains a newline, carriage return or NUL')
  if (Buffer.byteLength(value) > 4000)
    throw new UnencodableNameError(value, 'it is longer than 4000 bytes')
  return `"${value.replaceAll('"', '""')}"`
}

export interface DebugfsBatch {
  binary: string
  image: string
  commands: CommandScript
  write: boolean
  workDir: string
  signal?: AbortSignal
  /** Extra environment for debugfs (E2FSPROGS_FAKE_TIME). */
  env?: Record<string, string>
  /** Each command's output lines, in order. Default: any line is an error. */
  onOutput?: (index: number, lines: string[]) => void
}

/**
 * Runs every command in one debugfs process. stdout and stderr share one file, and debugfs
 * flushes its `debugfs: <command>` echo before running each command, so every line between two
 * echoes belongs to the first. Without `onOutput`, any such line is an error (sif prints nothing
 * when it works).
 */
export async function runDebugfs(batch: DebugfsBatch): Promise<void> {
  const { binary, image, commands, workDir, signal } = batch
  const script = join(workDir, batch.write ? 'write.debugfs' : 'read.debugfs')
  const scriptFile = await open(script, 'w')
  try {
    for (const chunk of commands.chunks()) await scriptFile.write(chunk)
  } finally {
    await scriptFile.close()
  }
  const out = await open(`${script}.out`, 'w')
  let code: number | null
  try {
    code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(binary, [...(batch.write ? ['-w'] : []), '-f', script, image], {
        stdio: ['ignore', out.fd, out.fd],
        env: { ...process.env, ...batch.env, LC_ALL: 'C' },
        signal,
      })
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'EACCES')
          reject(new DebugfsMissingError(binary, { cause: err }))
        else reject(err)
      })
      child.once('close', resolve)
    })
  } finally {
    await out.close()
  }
  let next = 0
  let current: string[] = []
  const errors: string[] = []
  const flush = (): void => {
    if (next === 0) return
    if (batch.onOutput) batch.onOutput(next - 1, current)
    else
      for (const line of current)
        if (line.trim() !== '') errors.push(`\`${commands.at(next - 1)}\` printed "${line}"`)
  }
  const lines = createInterface({
    input: createReadStream(`${script}.out`, { encoding: 'utf8' }),
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
      flush()
      current = []
      next++
      start = end + 1
      if (start === text.length) {
        chunk++
        start = 0
      }
      end = chunks[chunk]?.indexOf('\n', start) ?? -1
    } else if (next === 0) {
      if (!/^debugfs \d+\.\d+/.test(line) && line.trim() !== '') errors.push(line)
    } else current.push(line)
  }
  flush()
  if (code !== 0) errors.unshift(`exit status ${code}`)
  if (next !== commands.length) errors.push(`stopped after ${next} of ${commands.length} commands`)
  if (errors.length)
    throw new DebugfsCommandError(
      image,
      errors.slice(0, 3).join('; ') + (errors.length > 3 ? ` (and ${errors.length - 3} more)` : ''),
    )
}

/** Inode numbers of everything in the given directories (`ls -p`), the root included. */
export async function listInodes(
  binary: string,
  image: string,
  dirs: string[],
  workDir: string,
  signal?: AbortSignal,
): Promise<Set<number>> {
  const inodes = new Set<number>([2])
  const commands = new CommandScript()
  for (const d of dirs) commands.add(`ls -p ${quoteArg(d)}`)
  await runDebugfs({
    binary,
    image,
    commands,
    write: false,
    workDir,
    signal,
    onOutput: (_i, lines) => {
      for (const line of lines) {
        // /ino/mode/uid/gid/name/size/ — a name cannot hold '/'.
        const m = /^\/(\d+)\/[0-7]+\/-?\d+\/-?\d+\/(.*)\/\d*\/$/.exec(line)
        if (m && m[1] !== '0' && m[2] !== '.' && m[2] !== '..') inodes.add(Number(m[1]))
      }
    },
  })
  return inodes
}

const ECHO = 'debugfs: '

/** Commands per chunk of a CommandScript. */
const SCRIPT_CHUNK = 4096

/**
 * A debugfs script held as a few large flat strings of whole lines rather than one string per
 * command (a copy of @banger/ownership's): a batch has a hundred thousand commands or more, and
 * each built by a template literal is a tree of string pieces several times its length.
 */
export class CommandScript {
  readonly #chunks: string[] = []
  #pending: string[] = []
  #length = 0

  get length(): number {
    return this.#length
  }

  add(command: string): void {
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
