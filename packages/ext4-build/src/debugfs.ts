// A small copy of @banger/ownership's debugfs batch runner, accepted knowingly: stage packages
// never import each other, and this one needs only the timestamp pass.
import { spawn } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { open, writeFile } from 'node:fs/promises'
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
  commands: readonly string[]
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
  await writeFile(script, commands.join('\n') + '\n')
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
        if (line.trim() !== '') errors.push(`\`${commands[next - 1]}\` printed "${line}"`)
  }
  const lines = createInterface({
    input: createReadStream(`${script}.out`, { encoding: 'utf8' }),
    crlfDelay: Infinity,
  })
  for await (const line of lines) {
    if (next < commands.length && line === `debugfs: ${commands[next]}`) {
      flush()
      current = []
      next++
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
  await runDebugfs({
    binary,
    image,
    commands: dirs.map((d) => `ls -p ${quoteArg(d)}`),
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
