import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { testUser, userTempDir } from '@banger/test-support'
import { onTestFinished } from 'vitest'
import { connectDaemon, type DaemonClient } from '../src/rpc/index.js'
import { waitFor } from './helpers.js'

export const BIN = join(import.meta.dirname, '..', 'dist', 'bin.js')

/** Everything a daemon run as the test user needs: all BANGER_* paths in a user-owned dir. */
export interface UserEnv {
  root: string
  env: Record<string, string>
  stateDir: string
  cacheDir: string
  socketPath: string
  tmpDir: string
  home: string
  publicKey: string
}

export function userEnv(): UserEnv {
  const user = testUser()
  const root = userTempDir('bd')
  const home = join(root, 'home')
  const asUser = (dir: string): string => {
    mkdirSync(dir, { recursive: true })
    chownSync(dir, user.uid, user.gid)
    return dir
  }
  asUser(home)
  asUser(join(home, '.ssh'))
  // A real key pair, made as the user, so guest-inject gets a well-formed key.
  execFileSync(
    'ssh-keygen',
    ['-q', '-t', 'ed25519', '-N', '', '-f', join(home, '.ssh', 'id_ed25519')],
    {
      uid: user.uid,
      gid: user.gid,
    },
  )
  const tmpDir = asUser(join(root, 'tmp'))
  const e: UserEnv = {
    root,
    home,
    stateDir: join(root, 'state'),
    cacheDir: join(root, 'cache'),
    socketPath: join(root, 'run', 'bangerd.sock'),
    tmpDir,
    publicKey: readFileSync(join(home, '.ssh', 'id_ed25519.pub'), 'utf8').trim(),
    env: {},
  }
  e.env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin:/usr/sbin:/sbin',
    HOME: home,
    BANGER_STATE_DIR: e.stateDir,
    BANGER_CACHE_DIR: e.cacheDir,
    BANGER_SOCKET: e.socketPath,
    BANGER_CONFIG: join(root, 'config.json'),
    BANGER_TMPDIR: tmpDir,
    TMPDIR: tmpDir,
  }
  return e
}

export interface RunningDaemon {
  child: ChildProcess
  client: DaemonClient
  stderr: () => string
  exited: Promise<number | null>
}

/** Start `bangerd` as the unprivileged test user and connect to it. */
export async function spawnDaemon(e: UserEnv): Promise<RunningDaemon> {
  const user = testUser()
  const child = spawn(process.execPath, [BIN], {
    uid: user.uid,
    gid: user.gid,
    cwd: e.root,
    env: e.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  let stdout = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  )
  let exitCode: number | null | undefined
  void exited.then((c) => (exitCode = c ?? -1))
  // Ready once it says so: a socket file can exist before listen() (or be a dead one's).
  await waitFor(() => exitCode !== undefined || stdout.includes(' listening on '), 20_000)
  if (exitCode !== undefined) throw new Error(`bangerd exited ${exitCode}: ${stderr}`)
  const client = await connectDaemon(e.socketPath)
  return { child, client, stderr: () => stderr, exited }
}

/**
 * Run `bangerd` to completion as the test user (for start-up failures). A daemon still running
 * after `timeoutMs` (default 20 s) is killed and reported with code null.
 */
export function runDaemonOnce(
  e: UserEnv,
  args: string[] = [],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const user = testUser()
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      uid: user.uid,
      gid: user.gid,
      cwd: e.root,
      env: { ...e.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 20_000,
      killSignal: 'SIGKILL',
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** spawnDaemon, stopped (SIGTERM, then waited for) when the test finishes. */
export async function startDaemon(e: UserEnv): Promise<RunningDaemon> {
  const d = await spawnDaemon(e)
  onTestFinished(async () => {
    d.client.close()
    if (d.child.exitCode === null) {
      d.child.kill('SIGTERM')
      await d.exited
    }
  })
  return d
}

/** A kernel file readable by the daemon's user: any file works as a kernel path for a record. */
export function fakeKernel(e: UserEnv): string {
  const path = join(e.root, 'vmlinuz')
  writeFileSync(path, 'fake kernel\n')
  chmodSync(path, 0o644)
  return path
}
