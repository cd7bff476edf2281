import { chownSync, mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { runAsUser, testUser, userTempDir, type RunResult } from '@banger/test-support'
import { onTestFinished } from 'vitest'

/** The built CLI, run exactly as a user would run `banger`. */
export const BANGER_BIN = resolve(import.meta.dirname, '../dist/bin.js')

export interface BangerHome {
  /** A temp dir owned by the test user holding state, cache, config, socket and files. */
  dir: string
  env: Record<string, string>
  stateDir: string
  socketPath: string
  logPath: string
  /** Runs `banger ARGS` as the unprivileged test user with this home's environment. */
  banger(...args: string[]): Promise<RunResult>
  /** Creates a file owned by the test user under `dir` and returns its path. */
  file(name: string, content?: string): string
}

/**
 * A private banger installation for one test: every BANGER_* and XDG path points into a fresh
 * dir owned by the test user, so each test talks to its own daemon. When the test finishes the
 * daemon is stopped with `banger daemon stop`, and killed if that did not work.
 */
export function bangerHome(extraEnv: Record<string, string> = {}): BangerHome {
  const dir = userTempDir('banger-cli')
  const stateDir = join(dir, 'state')
  const socketPath = join(dir, 'run', 'bangerd.sock')
  const user = testUser()
  for (const sub of ['run', 'xdg-config', 'xdg-cache', 'xdg-state']) {
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
    ...extraEnv,
  }
  const banger = (...args: string[]) =>
    runAsUser(process.execPath, [BANGER_BIN, ...args], { env, cwd: dir, timeoutMs: 120_000 })
  onTestFinished(async () => {
    const status = await banger('daemon', 'status', '--json')
    if (status.code !== 0) return
    const { pid } = JSON.parse(status.stdout) as { pid: number }
    await banger('daemon', 'stop')
    try {
      process.kill(pid, 0)
      process.kill(pid, 'SIGKILL') // `daemon stop` failed; the test that follows will say so
    } catch {
      // gone, as it should be
    }
  })
  return {
    dir,
    env,
    stateDir,
    socketPath,
    logPath: join(stateDir, 'logs', 'bangerd.log'),
    banger,
    file(name, content = '') {
      const path = join(dir, name)
      writeFileSync(path, content)
      chownSync(path, user.uid, user.gid)
      return path
    },
  }
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
