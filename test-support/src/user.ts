import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { run, type RunResult } from './exec.js'

export interface TestUser {
  uid: number
  gid: number
  name: string
  home: string
}

const USER_NAME = 'banger-test'
let cached: TestUser | undefined

/**
 * The unprivileged account tests run banger as. The machines run tests as root, and banger must
 * not need root, so the pipeline is exercised as this user. Created on first use when root.
 */
export function testUser(): TestUser {
  if (cached) return cached
  if (process.getuid?.() !== 0) {
    // Already unprivileged: run as ourselves.
    const uid = process.getuid!()
    const gid = process.getgid!()
    cached = { uid, gid, name: process.env.USER ?? String(uid), home: process.env.HOME ?? tmpdir() }
    return cached
  }
  const lookup = (): string | undefined => {
    try {
      return execFileSync('getent', ['passwd', USER_NAME], { encoding: 'utf8' }).trim()
    } catch {
      return undefined
    }
  }
  let line = lookup()
  if (!line) {
    try {
      execFileSync('useradd', ['--create-home', '--shell', '/bin/sh', USER_NAME], { stdio: 'pipe' })
    } catch (err) {
      // Another worker may have created it at the same moment.
      if (!lookup()) throw err
    }
    line = lookup()
  }
  const [, , uid, gid, , home] = line!.split(':')
  cached = { uid: Number(uid), gid: Number(gid), name: USER_NAME, home: home! }
  return cached
}

const madeDirs = new Set<string>()
process.on('exit', () => {
  for (const dir of madeDirs) rmSync(dir, { recursive: true, force: true })
})

/** A fresh temp dir owned by the test user; removed at process exit (or earlier by the caller). */
export function userTempDir(prefix: string): string {
  const user = testUser()
  const dir = mkdtempSync(join(tmpdir(), `${prefix.replace(/[^\w.-]/g, '_')}-`))
  chownSync(dir, user.uid, user.gid)
  madeDirs.add(dir)
  return dir
}

export interface RunAsUserOptions {
  cwd?: string
  env?: Record<string, string>
  input?: string | Buffer
  timeoutMs?: number
  /** Reject on a non-zero exit (default false: callers assert on `code`). */
  check?: boolean
}

/** Runs a command as the unprivileged test user, with a clean environment and its own HOME. */
export function runAsUser(
  cmd: string,
  args: string[],
  options: RunAsUserOptions = {},
): Promise<RunResult> {
  const user = testUser()
  const env: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    LANG: 'C.UTF-8',
    TMPDIR: tmpdir(),
    ...options.env,
  }
  return run(cmd, args, {
    cwd: options.cwd ?? tmpdir(),
    env,
    input: options.input,
    timeoutMs: options.timeoutMs,
    uid: user.uid,
    gid: user.gid,
    check: options.check ?? false,
  })
}

export interface BangerUserHome {
  /** The user-owned directory holding everything below. */
  home: string
  /** XDG_STATE_HOME, XDG_CACHE_HOME, XDG_CONFIG_HOME and XDG_RUNTIME_DIR, all inside `home`. */
  env: Record<string, string>
  /** A fresh ed25519 private key (no passphrase); its public half is in banger's config. */
  keyPath: string
  publicKey: string
}

/**
 * A private banger for the test user: its own XDG state, cache, config and runtime dirs under a
 * new user-owned temp dir, and a `banger/config.json` listing a fresh SSH public key (banger
 * refuses to build an image nobody can log in to). Pass `env` to `runAsUser`.
 */
export async function bangerUserHome(prefix: string): Promise<BangerUserHome> {
  const user = testUser()
  const home = userTempDir(prefix)
  const env = {
    XDG_STATE_HOME: join(home, 'state'),
    XDG_CACHE_HOME: join(home, 'cache'),
    XDG_CONFIG_HOME: join(home, 'config'),
    XDG_RUNTIME_DIR: join(home, 'run'),
  }
  const keyPath = join(home, 'id_ed25519')
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', prefix, '-f', keyPath], {
    check: true,
  })
  const publicKey = readFileSync(`${keyPath}.pub`, 'utf8').trim()
  mkdirSync(join(env.XDG_CONFIG_HOME, 'banger'), { recursive: true })
  writeFileSync(
    join(env.XDG_CONFIG_HOME, 'banger', 'config.json'),
    JSON.stringify({ authorizedKeys: [publicKey] }),
  )
  // ssh only objects to a key others can read when it is the caller's own: root may use it.
  await run('chown', ['-R', `${user.uid}:${user.gid}`, home], { check: true })
  return { home, env, keyPath, publicKey }
}
