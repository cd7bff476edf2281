import { readdirSync, rmSync } from 'node:fs'
import { resolve } from 'node:path'
import { bangerUserHome, runAsUser } from '../../test-support/dist/index.js'

export const BANGER_BIN = resolve(import.meta.dirname, '../../packages/cli/dist/bin.js')

/** The fields of `banger image show --json` this suite reads (daemon ImageRecord). */
export interface PulledImage {
  name: string
  rootfsPath: string
  manifestDigest?: string
  platform?: string
  sizeBytes: number
  injectedFiles: string[]
}

export interface BangerSession {
  env: Record<string, string>
  /** `banger …` as the unprivileged test user; rejects with its stderr on a non-zero exit. */
  cli(args: string[]): Promise<string>
  pull(ref: string, name: string, extra?: string[]): Promise<PulledImage>
  stop(): Promise<void>
}

/**
 * A private banger for the unprivileged test user: its own XDG state, cache, config and runtime
 * dirs, a config naming an SSH public key (banger refuses to build an image nobody can log in
 * to), and the host's kernel (or any file) as the default kernel.
 */
export async function startBanger(): Promise<BangerSession> {
  const { home, env } = await bangerUserHome('banger-eqv')

  const cli = async (args: string[]): Promise<string> => {
    const r = await runAsUser('node', [BANGER_BIN, ...args], { env, timeoutMs: 20 * 60_000 })
    if (r.code !== 0)
      throw new Error(`banger ${args.join(' ')}: exit ${r.code}\n${r.stderr.trim()}`)
    return r.stdout
  }
  const vmlinuz = readdirSync('/boot').find((f) => f.startsWith('vmlinuz-'))
  await cli([
    'kernel',
    'add',
    'eqv',
    '--kernel-path',
    vmlinuz ? `/boot/${vmlinuz}` : '/etc/hostname',
    '--default',
  ])
  return {
    env,
    cli,
    async pull(ref, name, extra = []) {
      await cli(['image', 'pull', ref, '--name', name, '--insecure', ...extra])
      return JSON.parse(await cli(['image', 'show', name, '--json'])) as PulledImage
    },
    async stop() {
      await runAsUser('node', [BANGER_BIN, 'daemon', 'stop'], { env })
      rmSync(home, { recursive: true, force: true })
    },
  }
}
