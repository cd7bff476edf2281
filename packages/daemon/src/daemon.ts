import { readFileSync } from 'node:fs'
import { chmod, link, readFile, unlink, writeFile } from 'node:fs/promises'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino, type Logger } from 'pino'
import { loadConfig, type BangerConfig } from './config.js'
import { ensureDir } from './files.js'
import { ImageService } from './images.js'
import { KernelService } from './kernels.js'
import type { PullPipeline } from './pipeline.js'
import {
  ERROR_CODES,
  RpcError,
  resolvePaths,
  type BangerPaths,
  type DaemonStatus,
} from './rpc/index.js'
import { RpcServer, type Handlers } from './server.js'
import { Store } from './store.js'

export interface StartDaemonOptions {
  /** Environment to resolve paths from (see resolvePaths); default process.env. */
  env?: NodeJS.ProcessEnv
  /** Override single paths after resolution (e.g. `--socket`). */
  paths?: Partial<
    Pick<BangerPaths, 'stateDir' | 'cacheDir' | 'socketPath' | 'configPath' | 'rootfsCacheDir'>
  >
  /** Base for temporary trees; default `$BANGER_TMPDIR`, else os.tmpdir(). Never the state dir. */
  tmpDir?: string
  /** The stage wiring; default the real one from pull.ts (loaded lazily). */
  pipeline?: PullPipeline
  /** Home directory for `~/.ssh/*.pub`; default os.homedir(). */
  home?: string
  /** pino level; default `$BANGER_LOG_LEVEL` or 'info'. */
  logLevel?: string
}

export interface Daemon {
  readonly paths: BangerPaths
  readonly config: BangerConfig
  readonly log: Logger
  /** What the crash sweep removed at start. */
  readonly swept: string[]
  status(): DaemonStatus
  /** Stop: refuse new work, cancel pulls (they clean up), close the socket and the db. Idempotent. */
  stop(): Promise<void>
  /** Resolves once stop() has finished, whoever called it (`daemon.shutdown`, a signal). */
  readonly stopped: Promise<void>
}

export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string
  }
).version

/**
 * Start bangerd: create the dirs (0700), load config, open SQLite, sweep what a crash left,
 * then listen on the socket (0600). Rejects with E_DAEMON_RUNNING when another daemon serves
 * the socket or the state dir, E_CONFIG_INVALID for a bad config file.
 */
export async function startDaemon(options: StartDaemonOptions = {}): Promise<Daemon> {
  const env = options.env ?? process.env
  const resolved = resolvePaths(env)
  const o = options.paths ?? {}
  const paths = resolvePaths({
    ...env,
    BANGER_STATE_DIR: o.stateDir ?? resolved.stateDir,
    BANGER_CACHE_DIR: o.cacheDir ?? resolved.cacheDir,
    BANGER_SOCKET: o.socketPath ?? resolved.socketPath,
    BANGER_CONFIG: o.configPath ?? resolved.configPath,
    BANGER_ROOTFS_CACHE_DIR: o.rootfsCacheDir ?? (o.cacheDir ? '' : resolved.rootfsCacheDir),
  })
  const tmpDir = options.tmpDir ?? (env.BANGER_TMPDIR || tmpdir())
  // An explicit temp dir is obeyed; otherwise small enough trees go to memory (see pull.ts).
  // Per user: /dev/shm is shared, and the sweep must only ever see this user's trees.
  const memoryDir =
    options.tmpDir !== undefined || env.BANGER_TMPDIR
      ? undefined
      : join(env.BANGER_MEMORY_TMPDIR ?? '/dev/shm', `banger-${process.getuid?.() ?? 0}`)
  if (Buffer.byteLength(paths.socketPath) > MAX_SOCKET_PATH) {
    throw new RpcError(
      ERROR_CODES.SOCKET_PATH_TOO_LONG,
      `socket path ${paths.socketPath} is ${Buffer.byteLength(paths.socketPath)} bytes; unix sockets allow ${MAX_SOCKET_PATH}`,
      { hint: 'Point BANGER_SOCKET (or --socket) at a shorter path.' },
    )
  }

  const stateHint = 'Point BANGER_STATE_DIR (or --state-dir) at a directory you can write.'
  const socketHint =
    'Point BANGER_SOCKET (or --socket) at a path in a directory you can write, e.g. under $XDG_RUNTIME_DIR.'
  const dirs: [dir: string, what: string, hint: string][] = [
    [paths.stateDir, 'state directory', stateHint],
    [paths.imagesDir, 'images directory', stateHint],
    [paths.kernelsDir, 'kernels directory', stateHint],
    [paths.logsDir, 'logs directory', stateHint],
    [
      paths.cacheDir,
      'cache directory',
      'Point BANGER_CACHE_DIR (or --cache-dir) at a directory you can write.',
    ],
    [dirname(paths.socketPath), `directory for the socket ${paths.socketPath}`, socketHint],
    [tmpDir, 'temporary directory', 'Point BANGER_TMPDIR at a directory you can write.'],
  ]
  for (const [dir, what, hint] of dirs) {
    await ensureDir(dir).catch((err: unknown) => {
      throw unusable(`cannot create ${dir}, the ${what}`, err, hint)
    })
  }

  const log = pino(
    { level: options.logLevel ?? env.BANGER_LOG_LEVEL ?? 'info', base: { pid: process.pid } },
    pino.destination({ dest: join(paths.logsDir, 'bangerd.log'), sync: true, mkdir: true }),
  )
  const config = await loadConfig(paths.configPath)
  const pidFile = join(paths.stateDir, 'bangerd.pid')
  await claimPidFile(pidFile, paths.socketPath).catch((err: unknown) => {
    throw (err as { code?: unknown }).code === ERROR_CODES.DAEMON_RUNNING
      ? err
      : unusable(`cannot write the pid file ${pidFile}`, err, stateHint)
  })
  let store: Store | undefined
  try {
    await claimSocket(paths.socketPath).catch((err: unknown) => {
      throw (err as { code?: unknown }).code === ERROR_CODES.DAEMON_RUNNING
        ? err
        : unusable(`cannot remove the stale socket ${paths.socketPath}`, err, socketHint)
    })
    store = new Store(paths.dbPath)
    const pipeline =
      options.pipeline ??
      (await import('./pull.js')).createPullPipeline({
        cacheDir: paths.cacheDir,
        config,
        ...(config.rootfsCache ? { rootfsCacheDir: paths.rootfsCacheDir } : {}),
        ...(memoryDir ? { memoryDir } : {}),
      })
    const kernels = new KernelService(store, paths.kernelsDir, config, log)
    const images = new ImageService({
      store,
      kernels,
      config,
      pipeline,
      imagesDir: paths.imagesDir,
      tmpDir,
      ...(memoryDir ? { scratchDirs: [memoryDir] } : {}),
      rootfsCacheDir: paths.rootfsCacheDir,
      log,
      ...(options.home !== undefined ? { home: options.home } : {}),
    })
    const swept = [...(await images.sweep()), ...(await kernels.sweep())]
    if (swept.length) log.warn({ swept }, 'removed what an interrupted run left behind')

    const startedAt = Date.now()
    const db = store
    const status = (): DaemonStatus => ({
      pid: process.pid,
      version: VERSION,
      socketPath: paths.socketPath,
      stateDir: paths.stateDir,
      cacheDir: paths.cacheDir,
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      images: db.countImages(),
      kernels: db.countKernels(),
      pullsInProgress: images.pullsInProgress,
    })

    let stopping: Promise<void> | undefined
    let markStopped!: () => void
    const stopped = new Promise<void>((resolve) => (markStopped = resolve))
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        log.info('stopping')
        server.abortAll()
        await images.close()
        await pipeline.close?.().catch((err: unknown) => log.warn({ err }, 'pipeline close'))
        await server.close()
        db.close()
        await unlink(paths.socketPath).catch(() => undefined)
        await releasePidFile(pidFile)
        log.info('stopped')
        markStopped()
      })()
      return stopping
    }

    const handlers: Handlers = {
      'image.pull': (p, ctx) => images.pull(p, { signal: ctx.signal, onProgress: ctx.progress }),
      'image.register': (p) => images.register(p),
      'image.list': async () => ({ images: await images.list() }),
      'image.show': (p) => images.show(p.name),
      'image.delete': (p) => images.delete(p.name),
      'kernel.add': (p) => kernels.add(p),
      'kernel.list': () => ({ kernels: kernels.list() }),
      'kernel.show': (p) => kernels.show(p.name),
      'kernel.delete': (p) => kernels.delete(p.name),
      'daemon.status': () => status(),
      'daemon.shutdown': () => {
        setImmediate(() => void stop())
        return { stopping: true }
      },
    }
    const server = new RpcServer(handlers, log)
    try {
      await server.listen(paths.socketPath)
      await chmod(paths.socketPath, 0o600)
    } catch (err) {
      await server.close().catch(() => undefined)
      throw unusable(`cannot listen on the socket ${paths.socketPath}`, err, socketHint)
    }
    log.info({ socket: paths.socketPath, version: VERSION, tmpDir }, 'listening')
    return { paths, config, log, swept, status, stop, stopped }
  } catch (err) {
    store?.close()
    await releasePidFile(pidFile)
    throw err
  }
}

/** A start-up failure on a path: one line naming it and the system's reason, and what to do. */
function unusable(what: string, err: unknown, hint: string): RpcError {
  const e = err as NodeJS.ErrnoException & { address?: string }
  // `EACCES: permission denied, mkdir '/x'`, `listen EACCES: permission denied /x.sock`
  //   → `permission denied (EACCES)`
  let text = (e.message ?? String(err)).replace(/^(\w+ )?[A-Z]+: /, '').split(',')[0]!
  if (e.address && text.endsWith(` ${e.address}`)) text = text.slice(0, -e.address.length - 1)
  const reason = e.code && !text.includes(e.code) ? `${text} (${e.code})` : text
  // The level that failed, when it is not the path the message already ends with.
  const at = e.path && !what.split(',')[0]!.endsWith(` ${e.path}`) ? `${e.path}: ` : ''
  return new RpcError(ERROR_CODES.PATH_UNUSABLE, `${what}: ${at}${reason}`, { hint, cause: err })
}

/** sizeof(sockaddr_un.sun_path) - 1 on Linux. */
const MAX_SOCKET_PATH = 107

/** Pid files this process holds (in-process daemons in tests share one pid). */
const heldPidFiles = new Set<string>()

/** One daemon per state dir: a pid file, taken over when its owner is gone. */
async function claimPidFile(path: string, socketPath: string): Promise<void> {
  if (heldPidFiles.has(path)) {
    throw new RpcError(
      ERROR_CODES.DAEMON_RUNNING,
      `another bangerd in this process already uses state dir ${dirname(path)}`,
      { hint: 'Stop it first.' },
    )
  }
  await takePidFile(path, socketPath)
  heldPidFiles.add(path)
}

async function releasePidFile(path: string): Promise<void> {
  heldPidFiles.delete(path)
  await unlink(path).catch(() => undefined)
}

/**
 * Create the pid file atomically with its content (write a temp file, then link(2), which fails
 * with EEXIST), so a reader never sees it empty. When a live daemon holds it, wait until that
 * daemon answers on `socketPath` (it may still be starting: two CLIs racing to autostart) and
 * then refuse with E_DAEMON_RUNNING; a dead holder's file is replaced.
 */
async function takePidFile(path: string, socketPath: string): Promise<void> {
  const temp = `${path}.${process.pid}.tmp`
  await writeFile(temp, `${process.pid}\n`, { mode: 0o600 })
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(temp, path)
        return
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim())
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        const deadline = Date.now() + 10_000
        while (Date.now() < deadline && isAlive(pid) && !(await answers(socketPath))) {
          await sleep(50)
        }
        if (!isAlive(pid)) continue
        throw new RpcError(
          ERROR_CODES.DAEMON_RUNNING,
          `another bangerd (pid ${pid}) already uses state dir ${dirname(path)}`,
          { hint: 'Use it, or stop it first with `banger daemon stop`.' },
        )
      }
      await unlink(path).catch(() => undefined) // stale: its owner died without cleaning up
    }
    throw new RpcError(ERROR_CODES.DAEMON_RUNNING, `could not claim pid file ${path}`, {
      hint: 'Another bangerd is starting at the same time; try again.',
    })
  } finally {
    await unlink(temp).catch(() => undefined)
  }
}

function answers(socketPath: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const probe = createConnection({ path: socketPath })
    probe.once('connect', () => {
      probe.destroy()
      resolve(true)
    })
    probe.once('error', () => resolve(false))
  })
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Fail when a live daemon answers on the socket; remove a stale socket file. */
async function claimSocket(path: string): Promise<void> {
  const live = await answers(path)
  if (live) {
    throw new RpcError(ERROR_CODES.DAEMON_RUNNING, `a daemon already listens on ${path}`, {
      hint: 'Use it, or stop it first with `banger daemon stop`.',
    })
  }
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err
  })
}
