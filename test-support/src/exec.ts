import { spawn, type SpawnOptions } from 'node:child_process'

export interface RunResult {
  code: number
  stdout: string
  stderr: string
  /** stdout as raw bytes, for binary output (debugfs cat). */
  stdoutBuffer: Buffer
}

export interface RunOptions {
  cwd?: string
  env?: Record<string, string | undefined>
  input?: string | Buffer
  timeoutMs?: number
  uid?: number
  gid?: number
  /** Reject when the exit code is not 0 (default true). */
  check?: boolean
}

/** Runs a command to completion, collecting output. Rejects with the stderr tail on failure. */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const spawnOptions: SpawnOptions = {
    cwd: options.cwd,
    env: options.env ? { ...options.env } : process.env,
    stdio: ['pipe', 'pipe', 'pipe'],
    timeout: options.timeoutMs,
    killSignal: 'SIGKILL',
  }
  if (options.uid !== undefined) spawnOptions.uid = options.uid
  if (options.gid !== undefined) spawnOptions.gid = options.gid
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, spawnOptions)
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout!.on('data', (b: Buffer) => out.push(b))
    child.stderr!.on('data', (b: Buffer) => err.push(b))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      const stdoutBuffer = Buffer.concat(out)
      const result = {
        code: code ?? 128,
        stdout: stdoutBuffer.toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        stdoutBuffer,
      }
      if ((options.check ?? true) && result.code !== 0) {
        const why = signal ? `killed by ${signal}` : `exit ${result.code}`
        reject(
          new Error(
            `${cmd} ${args.join(' ')}: ${why}\n${result.stderr.slice(-4000)}${result.stdout.slice(-2000)}`,
          ),
        )
      } else resolve(result)
    })
    child.stdin!.on('error', () => {})
    child.stdin!.end(options.input)
  })
}
