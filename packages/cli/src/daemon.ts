import { spawn } from 'node:child_process'
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { connectDaemon, type BangerPaths, type DaemonClient } from '@banger/daemon/rpc'
import { CliError } from './errors.js'

/** bangerd's own log: pino JSON lines, written by the daemon. */
export function daemonLogPath(paths: BangerPaths): string {
  return join(paths.logsDir, 'bangerd.log')
}

/**
 * Where the stdout and stderr of a bangerd the CLI starts go: its `listening on` line and any
 * start-up failure (`bangerd: <message>` and an indented hint). Kept apart from
 * `daemonLogPath`, which holds nothing but pino's JSON lines.
 */
export function daemonOutputPath(paths: BangerPaths): string {
  return join(paths.logsDir, 'bangerd.stderr.log')
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
  /** How long to wait for the daemon to answer; default 30 s. */
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
 * `daemonOutputPath(paths)`; this waits until it answers a request (see waitForDaemon).
 *
 * @throws CliError `E_DAEMON_START` when bangerd exits first (quoting what it printed, and its
 *   hint) or does not answer within the timeout, naming the file its output went to.
 */
export async function connectOrStart(paths: BangerPaths, opts: StartOptions): Promise<Connection> {
  const existing = await tryConnect(paths, opts.signal)
  if (existing) return { client: existing }
  return startDaemon(paths, opts)
}

async function startDaemon(paths: BangerPaths, opts: StartOptions): Promise<Connection> {
  const outPath = daemonOutputPath(paths)
  const startHint = `read ${outPath}, fix what it reports, then run the command again`
  let outFd: number
  let outStart: number
  try {
    makeDirs(paths.logsDir)
    outFd = openSync(outPath, 'a', 0o600)
    outStart = fstatSync(outFd).size
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new CliError(
      'E_DAEMON_START',
      `cannot start bangerd: cannot create ${e.path ?? outPath} (${e.code ?? String(err)})`,
      'point BANGER_STATE_DIR (or XDG_STATE_HOME) at a directory you can write',
      { cause: err },
    )
  }
  let exited: string | undefined
  const child = spawn(process.execPath, [daemonBinPath()], {
    detached: true,
    stdio: ['ignore', outFd, outFd],
    env: opts.env,
    cwd: '/',
  })
  closeSync(outFd)
  child.on('error', (err) => {
    exited = `could not be spawned (${err.message})`
  })
  child.on('exit', (code, signal) => {
    exited = signal ? `was killed by ${signal}` : `exited with code ${code}`
  })
  const timeoutMs = opts.timeoutMs ?? 30_000
  try {
    const ready = await waitForDaemon(paths, {
      deadline: Date.now() + timeoutMs,
      exited: () => exited,
      ...(opts.signal ? { signal: opts.signal } : {}),
    })
    if (ready === 'timeout') {
      child.kill('SIGTERM')
      throw new CliError(
        'E_DAEMON_START',
        `bangerd did not answer on ${paths.socketPath} within ${Math.round(timeoutMs / 1000)}s; see ${outPath} and ${daemonLogPath(paths)}`,
        startHint,
      )
    }
    if (ready === 'exited') {
      const said = lastDaemonError(outPath, outStart)
      if (said) {
        // bangerd's own line names the path and says what to do: pass both on as they are.
        throw new CliError(
          'E_DAEMON_START',
          `bangerd ${exited}: ${said.message}`,
          `${said.hint ?? startHint}${said.hint ? ` (bangerd's output: ${outPath})` : ''}`,
        )
      }
      throw new CliError(
        'E_DAEMON_START',
        `bangerd ${exited} before it answered on ${paths.socketPath}; see ${outPath}`,
        startHint,
      )
    }
    // Another client may have started a daemon at the same moment; ours then lost the race and
    // exits, and the winner answers all the same.
    return ready.pid === child.pid ? { client: ready.client, startedPid: ready.pid } : ready
  } finally {
    child.unref()
  }
}

/**
 * Waits for a daemon that is starting to answer: connects to the socket and asks
 * `daemon.status`, retrying every 100 ms while the connection is refused, the socket is missing,
 * or the connection closes before the answer (`E_DAEMON_UNAVAILABLE`): the socket file exists a
 * moment before the daemon accepts, and a stale one refuses until it is replaced. Resolves to the
 * connected client and the daemon's pid, `'exited'` when `exited()` reports the process gone
 * and nothing answers, or `'timeout'` after `deadline` (ms since the epoch).
 */
export async function waitForDaemon(
  paths: BangerPaths,
  opts: { deadline: number; exited?: () => string | undefined; signal?: AbortSignal },
): Promise<{ client: DaemonClient; pid: number } | 'exited' | 'timeout'> {
  for (;;) {
    // Read before trying: a daemon that exits after a failed try is tried once more.
    const gone = opts.exited?.() !== undefined
    const client = await tryConnect(paths, opts.signal)
    if (client) {
      const signals = [AbortSignal.timeout(Math.max(1, opts.deadline - Date.now()))]
      if (opts.signal) signals.push(opts.signal)
      try {
        const { pid } = await client.call('daemon.status', {}, { signal: AbortSignal.any(signals) })
        return { client, pid }
      } catch (err) {
        client.close()
        opts.signal?.throwIfAborted()
        if ((err as { code?: unknown }).code === 'E_CANCELLED') return 'timeout'
        if (!isUnavailable(err)) throw err
      }
    }
    if (gone) return 'exited'
    if (Date.now() > opts.deadline) return 'timeout'
    await sleep(100, undefined, opts.signal ? { signal: opts.signal } : {})
  }
}

/**
 * What a bangerd that failed to start said on stderr since offset `from` of its output file:
 * the last `bangerd: <message>` line (the prefix dropped) and the indented hint line after it.
 * Lines are cut to 300 characters; undefined when it printed no such line.
 */
export function lastDaemonError(
  outPath: string,
  from: number,
): { message: string; hint?: string } | undefined {
  let text: string
  try {
    text = readFileSync(outPath).subarray(from).toString('utf8')
  } catch {
    return undefined
  }
  const lines = text.split('\n')
  let at = -1
  for (let i = lines.length - 1; i >= 0 && at < 0; i--)
    if (lines[i]!.startsWith('bangerd: ')) at = i
  if (at < 0) return undefined
  const cut = (t: string) => (t.length > 300 ? t.slice(0, 299) + '…' : t)
  const message = cut(lines[at]!.slice('bangerd: '.length).trim())
  const next = lines[at + 1]
  return next && /^\s+\S/.test(next) ? { message, hint: cut(next.trim()) } : { message }
}

/**
 * `mkdir -p` for the CLI's one directory (`logs/`), one level at a time: node 20's
 * `mkdirSync(path, { recursive: true })` never returns when mkdir(2) answers ENOENT under a
 * parent that exists (`/proc/x`). The daemon has the same helper (`ensureDir`); the CLI may not
 * import it, and ten lines are cheaper than a package. Throws the failing level's error.
 */
function makeDirs(path: string): void {
  const missing: string[] = []
  for (let dir = resolve(path); !existsSync(dir); dir = dirname(dir)) {
    missing.push(dir)
    if (dirname(dir) === dir) break
  }
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir, { mode: 0o700 })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
  }
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
