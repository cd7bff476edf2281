import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { formatReference, parseReference } from '@banger/registry-client'
import { onTestFinished } from 'vitest'
import { startDaemon, type Daemon, type PullJob, type PullPipeline } from '../src/index.js'
import { connectDaemon, type DaemonClient } from '../src/rpc/index.js'

/** A well-formed public key (ssh-keygen output; the private half was thrown away). */
export const TEST_KEY =
  'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0ZXN0a2V5Zm9yYmFuZ2VyZGFlbW9udGVzdHMxMjM0 test@banger'

export interface TestDirs {
  root: string
  stateDir: string
  cacheDir: string
  socketPath: string
  configPath: string
  tmpDir: string
  home: string
}

export function makeDirs(): TestDirs {
  // Short root: unix socket paths are limited to 107 bytes.
  const root = mkdtempSync(join(tmpdir(), 'bd-'))
  onTestFinished(() => rmSync(root, { recursive: true, force: true }))
  return {
    root,
    stateDir: join(root, 'state'),
    cacheDir: join(root, 'cache'),
    socketPath: join(root, 'run', 'bangerd.sock'),
    configPath: join(root, 'config.json'),
    tmpDir: join(root, 'tmp'),
    home: join(root, 'home'),
  }
}

/** A kernel file: any file works as a kernel path for a record. */
export function fakeKernel(dirs: TestDirs, name = 'vmlinuz'): string {
  const path = join(dirs.root, name)
  writeFileSync(path, 'not really a kernel\n')
  return path
}

/** A pull step that never finishes on its own: it rejects with the abort reason when cancelled. */
export function untilAborted(job: PullJob): Promise<never> {
  return new Promise((_, reject) =>
    job.signal.addEventListener('abort', () => reject(job.signal.reason as Error)),
  )
}

/** A pipeline that writes a small rootfs file; `run` can be replaced per test. */
export function fakePipeline(
  run?: (job: PullJob) => Promise<void>,
): PullPipeline & { calls: PullJob[] } {
  const calls: PullJob[] = []
  return {
    calls,
    parseReference: (input) => parseReference(input),
    formatReference: (ref) => formatReference(ref),
    async run(job) {
      calls.push(job)
      job.onProgress({ type: 'stage', stage: 'download' })
      job.onProgress({
        type: 'layer',
        index: 0,
        digest: 'sha256:00',
        bytes: 10,
        total: 10,
        cached: false,
        done: true,
      })
      if (run) await run(job)
      await writeFile(job.rootfsPath, 'ext4 bytes')
      return {
        manifestDigest: 'sha256:' + 'a'.repeat(64),
        platform: job.platform,
        sizeBytes: 1024 ** 3,
        injectedFiles: ['/root/.ssh/authorized_keys'],
      }
    },
  }
}

/** Start an in-process daemon on temp dirs; stopped when the test finishes. */
export async function startTestDaemon(
  opts: { dirs?: TestDirs; pipeline?: PullPipeline; config?: unknown; sshKey?: boolean } = {},
): Promise<{ daemon: Daemon; dirs: TestDirs; client: DaemonClient }> {
  const dirs = opts.dirs ?? makeDirs()
  if (opts.sshKey !== false) {
    mkdirSync(join(dirs.home, '.ssh'), { recursive: true })
    writeFileSync(join(dirs.home, '.ssh', 'id_ed25519.pub'), `${TEST_KEY}\n`)
  }
  if (opts.config !== undefined) writeFileSync(dirs.configPath, JSON.stringify(opts.config))
  const daemon = await startDaemon({
    paths: {
      stateDir: dirs.stateDir,
      cacheDir: dirs.cacheDir,
      socketPath: dirs.socketPath,
      configPath: dirs.configPath,
    },
    tmpDir: dirs.tmpDir,
    home: dirs.home,
    pipeline: opts.pipeline ?? fakePipeline(),
    logLevel: 'debug',
  })
  onTestFinished(() => daemon.stop())
  const client = await connectDaemon(dirs.socketPath)
  onTestFinished(() => client.close())
  return { daemon, dirs, client }
}

/** Resolve when `predicate` holds, polling gently. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, ms = 10_000) {
  const deadline = Date.now() + ms
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition')
    await new Promise((r) => setTimeout(r, 20))
  }
}
