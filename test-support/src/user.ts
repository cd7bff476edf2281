import { chownSync, mkdtempSync, rmSync } from 'node:fs'
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
