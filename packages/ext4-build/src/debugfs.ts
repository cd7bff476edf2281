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

/**
 * Runs every command in one `debugfs -w` process and rejects on any line of output: the commands
 * it is used for (sif) print nothing when they work. stdout and stderr share one file, and
 * debugfs flushes its echo of each command, so an error sits right after its command.
 */
export async function runDebugfsWrite(
  binary: string,
  image: string,
  commands: readonly string[],
  workDir: string,
  signal?: AbortSignal,
): Promise<void> {
  const script = join(workDir, 'times.debugfs')
  await writeFile(script, commands.join('\n') + '\n')
  const out = await open(`${script}.out`, 'w')
  let code: number | null
  try {
    code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(binary, ['-w', '-f', script, image], {
        stdio: ['ignore', out.fd, out.fd],
        env: { ...process.env, LC_ALL: 'C' },
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
  const errors: string[] = []
  const lines = createInterface({
    input: createReadStream(`${script}.out`, { encoding: 'utf8' }),
    crlfDelay: Infinity,
  })
  for await (const line of lines) {
    if (next < commands.length && line === `debugfs: ${commands[next]}`) next++
    else if (!/^debugfs \d+\.\d+/.test(line) && line.trim() !== '')
      errors.push(next > 0 ? `\`${commands[next - 1]}\` printed "${line}"` : line)
  }
  if (code !== 0) errors.unshift(`exit status ${code}`)
  if (next !== commands.length) errors.push(`stopped after ${next} of ${commands.length} commands`)
  if (errors.length)
    throw new DebugfsCommandError(
      image,
      errors.slice(0, 3).join('; ') + (errors.length > 3 ? ` (and ${errors.length - 3} more)` : ''),
    )
}
