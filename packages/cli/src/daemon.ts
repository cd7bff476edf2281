import { spawn } from 'node:child_process'
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { connectDaemon, type BangerPaths, type DaemonClient } from '@banger/daemon/rpc'
import { CliError } from './errors.js'

/** The file bangerd's stdout and stderr go to when the CLI starts it. */
export function daemonLogPath(paths: BangerPaths): string {
  return join(paths.logsDir, 'bangerd.log')
}

/** The `bangerd` script of the installed `@banger/daemon`, found through its package.json. */
export function daemonBinPath(): string {
  const pkgUrl = import.meta.resolve('@banger/daemon/package.json')
  const pkg = JSON.parse(readFileSync(new URL(pkgUrl), 'utf8')) as {
    bin?: string | Record<string, string>
  }
  const bin = typeof pkg.bin === 'string' ? pkg.bin : pkg.bin?.bangerd
  if (!bin) throw new Error(`@banger/daemon at ${pkgUrl} declares no bangerd bin`)
  return fileURLToPath(new URL(bin, pkgUrl))
}

function isUnavailable(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'E_DAEMON_UNAVAILABLE'
}

/** A connection to the running daemon, or undefined when none listens on the socket. */
export async function tryConnect(
  paths: BangerPaths,
  signal?: AbortSignal,
): Promise<DaemonClient | undefined> {
  try {
    return await connectDaemon(paths.socketPath, signal ? { signal } : {})
  } catch (err) {
    if (isUnavailable(err)) return undefined
    throw err
  }
}

export interface StartOptions {
  signal?: AbortSignal
  /** Environment for bangerd (its paths come from the same BANGER_* / XDG variables). */
  env: NodeJS.ProcessEnv
  /** How long to wait for the socket to answer; default 30 s. */
  timeoutMs?: number
}

export interface Connection {
  client: DaemonClient
  /** The pid of the daemon this call started, when it started one. */
  startedPid?: number
}

/**
 * Connects to bangerd, starting it first when nothing answers on the socket (absent, or a stale
 * file that refuses connections). The daemon runs detached, in its own process group (so a
 * Ctrl-C at the terminal does not reach it), with stdout and stderr appended to
 * `daemonLogPath(paths)`; this waits until its socket accepts a connection.
 *
 * @throws CliError `E_DAEMON_START` naming the log file when bangerd exits or does not answer
 *   within the timeout.
 */
export async function connectOrStart(paths: BangerPaths, opts: StartOptions): Promise<Connection> {
  const existing = await tryConnect(paths, opts.signal)
  if (existing) return { client: existing }
  return startDaemon(paths, opts)
}

async function startDaemon(paths: BangerPaths, opts: StartOptions): Promise<Connection> {
  const logPath = daemonLogPath(paths)
  const startHint = `read ${logPath}, fix what it reports, then run the command again`
  let logFd: number
  let logStart: number
  try {
    mkdirSync(paths.logsDir, { recursive: true, mode: 0o700 })
    logFd = openSync(logPath, 'a', 0o600)
    logStart = fstatSync(logFd).size
  } catch (err) {
    throw new CliError(
      'E_DAEMON_START',
      `cannot start bangerd: cannot open its log ${logPath} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      'check that the state directory (BANGER_STATE_DIR or XDG_STATE_HOME) is writable',
      { cause: err },
    )
  }
  let exited: string | undefined
  const child = spawn(process.execPath, [daemonBinPath()], {
    detached: true,
    stdio: ['ignore', logFd, logFd],
    env: opts.env,
    cwd: '/',
  })
  closeSync(logFd)
  child.on('error', (err) => {
    exited = `could not be spawned (${err.message})`
  })
  child.on('exit', (code, signal) => {
    exited = signal ? `was killed by ${signal}` : `exited with code ${code}`
  })
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000)
  try {
    for (;;) {
      const client = await tryConnect(paths, opts.signal)
      // Another client may have started a daemon at the same moment; ours then exits, and
      // the socket answers all the same.
      if (client)
        return child.pid === undefined || exited ? { client } : { client, startedPid: child.pid }
      if (exited) {
        // It may have lost a race to another daemon that answers by now.
        const winner = await tryConnect(paths, opts.signal)
        if (winner) return { client: winner }
        const said = lastLogLine(logPath, logStart)
        throw new CliError(
          'E_DAEMON_START',
          `bangerd ${exited} before it answered on ${paths.socketPath}${said ? ` (${said})` : ''}; see ${logPath}`,
          startHint,
        )
      }
      if (Date.now() > deadline) {
        child.kill('SIGTERM')
        throw new CliError(
          'E_DAEMON_START',
          `bangerd did not answer on ${paths.socketPath} within ${Math.round((opts.timeoutMs ?? 30_000) / 1000)}s; see ${logPath}`,
          startHint,
        )
      }
      await sleep(100, undefined, opts.signal ? { signal: opts.signal } : {})
    }
  } finally {
    child.unref()
  }
}

/**
 * The last thing the daemon wrote to its log since `from`: a plain stderr line as is (indented
 * continuation lines skipped), a pino JSON line as its `msg` (and `err.message`). Cut to 200 characters; undefined when there is none.
 */
export function lastLogLine(logPath: string, from: number): string | undefined {
  let text: string
  try {
    text = readFileSync(logPath).subarray(from).toString('utf8')
  } catch {
    return undefined
  }
  // The last line that is not indented: bangerd prints `bangerd: <message>` and then its hint
  // indented on the next line.
  const line = text
    .split('\n')
    .filter((l) => l.trim() && !/^\s/.test(l))
    .at(-1)
    ?.trim()
  if (!line) return undefined
  let said = line
  if (line.startsWith('{')) {
    try {
      const rec = JSON.parse(line) as { msg?: unknown; err?: { message?: unknown } }
      said = [rec.msg, rec.err?.message].filter((x) => typeof x === 'string' && x).join(': ')
    } catch {
      // not JSON after all: show it as it is
    }
  }
  return said.length > 200 ? said.slice(0, 199) + '…' : said || undefined
}

/**
 * Asks the daemon to shut down and waits until its process is gone. Resolves to its pid, or
 * undefined when no daemon was running.
 *
 * @throws CliError `E_DAEMON_STOP` when it still runs after the timeout (default 30 s).
 */
export async function stopDaemon(
  paths: BangerPaths,
  opts: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<number | undefined> {
  const client = await tryConnect(paths, opts.signal)
  if (!client) return undefined
  let pid: number
  try {
    pid = (await client.call('daemon.status', {}, opts.signal ? { signal: opts.signal } : {})).pid
    await client.call('daemon.shutdown', {}, opts.signal ? { signal: opts.signal } : {})
  } finally {
    client.close()
  }
  const timeoutMs = opts.timeoutMs ?? 30_000
  const deadline = Date.now() + timeoutMs
  while (isAlive(pid)) {
    if (Date.now() > deadline)
      throw new CliError(
        'E_DAEMON_STOP',
        `bangerd (pid ${pid}) still runs ${Math.round(timeoutMs / 1000)}s after it was asked to stop`,
        `see ${daemonLogPath(paths)}; to force it: kill ${pid}`,
      )
    await sleep(50, undefined, opts.signal ? { signal: opts.signal } : {})
  }
  return pid
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw err
  }
}
