import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createConnection, createServer, type Socket } from 'node:net'
import { join, resolve } from 'node:path'
import { runAsUser, testUser, userTempDir, type RunResult } from '@banger/test-support'
import { onTestFinished } from 'vitest'

/** The built CLI, run exactly as a user would run `banger`. */
export const BANGER_BIN = resolve(import.meta.dirname, '../dist/bin.js')

/** A public key with no private half anywhere: only its presence in an image matters here. */
export const TEST_PUBLIC_KEY =
  'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA4KU1dv8gJZ5HxGT73r/GDAiZAZLlVgGE7de0TLfLFl banger-cli-test'

export interface BangerHome {
  /** A temp dir owned by the test user holding state, cache, config, socket and files. */
  dir: string
  env: Record<string, string>
  stateDir: string
  socketPath: string
  /** bangerd's pino log (JSON lines only). */
  logPath: string
  /** Where the stdout/stderr of a bangerd the CLI started go. */
  outputPath: string
  /** Runs `banger ARGS` as the unprivileged test user with this home's environment. */
  banger(...args: string[]): Promise<RunResult>
  /** Starts `banger ARGS` the same way and hands back the process (to signal it). */
  spawn(...args: string[]): ChildProcessWithoutNullStreams
  /** Staging dirs and pull temp trees the daemon left behind. */
  leftovers(): string[]
  /** Creates a file owned by the test user under `dir` and returns its path. */
  file(name: string, content?: string): string
}

/**
 * A private banger installation for one test: every BANGER_* and XDG path points into a fresh
 * dir owned by the test user, so each test talks to its own daemon. When the test finishes the
 * daemon is stopped with `banger daemon stop`, and killed if that did not work.
 */
export function bangerHome(extraEnv: Record<string, string> = {}): BangerHome {
  if (!existsSync(BANGER_BIN)) throw new Error(`${BANGER_BIN} is missing: run \`pnpm build\` first`)
  const dir = userTempDir('banger-cli')
  const stateDir = join(dir, 'state')
  const socketPath = join(dir, 'run', 'bangerd.sock')
  const user = testUser()
  for (const sub of ['run', 'tmp', 'xdg-config', 'xdg-cache', 'xdg-state']) {
    mkdirSync(join(dir, sub))
    chownSync(join(dir, sub), user.uid, user.gid)
  }
  const env = {
    BANGER_STATE_DIR: stateDir,
    BANGER_CACHE_DIR: join(dir, 'cache'),
    BANGER_SOCKET: socketPath,
    BANGER_CONFIG: join(dir, 'config.json'),
    XDG_CONFIG_HOME: join(dir, 'xdg-config'),
    XDG_CACHE_HOME: join(dir, 'xdg-cache'),
    XDG_STATE_HOME: join(dir, 'xdg-state'),
    XDG_RUNTIME_DIR: join(dir, 'run'),
    BANGER_TMPDIR: join(dir, 'tmp'),
    ...extraEnv,
  }
  // Every pull installs an SSH key for root; without one the daemon refuses to build an image.
  writeFileSync(env.BANGER_CONFIG, JSON.stringify({ authorizedKeys: [TEST_PUBLIC_KEY] }))
  chownSync(env.BANGER_CONFIG, user.uid, user.gid)
  const banger = (...args: string[]) =>
    runAsUser(process.execPath, [BANGER_BIN, ...args], { env, cwd: dir, timeoutMs: 120_000 })
  onTestFinished(async () => {
    if ((await banger('daemon', 'status')).code === 0) await banger('daemon', 'stop')
    // Whatever `daemon stop` missed (a daemon that never answered, a crashed stop) is killed.
    for (const pid of daemonPids(socketPath)) process.kill(pid, 'SIGKILL')
  })
  return {
    dir,
    env,
    stateDir,
    socketPath,
    logPath: join(stateDir, 'logs', 'bangerd.log'),
    outputPath: join(stateDir, 'logs', 'bangerd.stderr.log'),
    banger,
    spawn: (...args) =>
      spawn(process.execPath, [BANGER_BIN, ...args], {
        uid: user.uid,
        gid: user.gid,
        cwd: dir,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: user.home,
          LANG: 'C.UTF-8',
          ...env,
        },
      }),
    leftovers() {
      const images = join(stateDir, 'images')
      return [
        ...(existsSync(images) ? readdirSync(images).filter((n) => n.endsWith('.staging')) : []),
        ...readdirSync(join(dir, 'tmp')),
      ]
    },
    file(name, content = '') {
      const path = join(dir, name)
      writeFileSync(path, content)
      chownSync(path, user.uid, user.gid)
      return path
    },
  }
}

/** bangerd processes (of any user) whose environment names this socket. */
export function daemonPids(socketPath: string): number[] {
  const pids: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8')
      if (!cmdline.includes('daemon/dist/bin.js')) continue
      if (
        readFileSync(`/proc/${name}/environ`, 'utf8')
          .split('\0')
          .includes(`BANGER_SOCKET=${socketPath}`)
      )
        pids.push(Number(name))
    } catch {
      // exited while we looked
    }
  }
  return pids
}

/** The process is alive (signal 0 succeeds). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Asserts the shape every failure must have: one `banger:` line, maybe a hint, no stack. */
export function errorLines(stderr: string): { message: string; hint?: string } {
  const lines = stderr.trimEnd().split('\n')
  if (
    lines.length > 2 ||
    !lines[0]?.startsWith('banger: ') ||
    (lines[1] && !lines[1].startsWith('hint: '))
  )
    throw new Error(`not a one-line banger error:\n${stderr}`)
  return {
    message: lines[0].slice('banger: '.length),
    ...(lines[1] ? { hint: lines[1].slice(6) } : {}),
  }
}

/**
 * A TCP proxy in front of the real registry that sends responses at `bytesPerSecond`, so a pull
 * of a few MiB takes seconds on loopback and progress (or a Ctrl-C) can be watched mid-download.
 * The registry itself has no such knob.
 */
export async function throttledProxy(
  target: string,
  bytesPerSecond: number,
): Promise<{ host: string; close(): Promise<void> }> {
  const [targetHost, targetPort] = target.split(':') as [string, string]
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = createConnection({ host: targetHost, port: Number(targetPort) })
    sockets.add(client).add(upstream)
    const closeBoth = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    for (const s of [client, upstream]) s.on('error', closeBoth).on('close', closeBoth)
    client.on('data', (chunk: Buffer) => upstream.write(chunk))
    upstream.on('data', (chunk: Buffer) => {
      // At most 16 KiB at a time, then a pause as long as the rate asks for.
      upstream.pause()
      let offset = 0
      const next = () => {
        if (client.destroyed) return
        if (offset >= chunk.length) return void upstream.resume()
        const piece = chunk.subarray(offset, offset + 16384)
        offset += piece.length
        client.write(piece)
        setTimeout(next, (piece.length / bytesPerSecond) * 1000)
      }
      next()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return {
    host: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}
