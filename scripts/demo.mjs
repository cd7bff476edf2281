#!/usr/bin/env node
// The main job on a fresh machine, which reaches no public registry: start a real registry on
// loopback, push a Debian bookworm image built with debootstrap into it, then run the real
// `banger` CLI (as an unprivileged user when started as root) to pull it into a bootable ext4.
import { readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import {
  bangerUserHome,
  debianImage,
  e2fsck,
  pushImage,
  run,
  runAsUser,
  startRegistry,
} from '../test-support/dist/index.js'

const repo = resolve(import.meta.dirname, '..')
const banger = join(repo, 'packages/cli/dist/bin.js')
// A private banger for the test user, whose config names a throwaway SSH key (a real user's
// ~/.ssh/id_ed25519.pub is picked up instead).
const { env } = await bangerUserHome('banger-demo')

async function step(title, cmd, args) {
  console.log(`\n$ ${[cmd, ...args].join(' ')}`)
  const result = await runAsUser(cmd, args, { env, timeoutMs: 30 * 60_000 })
  process.stdout.write(result.stdout)
  process.stderr.write(result.stderr)
  if (result.code !== 0) throw new Error(`${title} failed (exit ${result.code})`)
  return result
}

console.log('building the sample image (debootstrap, cached after the first run)…')
const image = await debianImage()
const registry = await startRegistry()
try {
  const ref = await pushImage(image, registry, 'debian:bookworm')
  console.log(`pushed ${ref}`)
  const boot = readdirSync('/boot')
  const kernel = boot.find((f) => f.startsWith('vmlinuz-'))
  const initrd = boot.find((f) => f.startsWith('initrd.img-'))
  if (kernel) {
    const args = ['kernel', 'add', 'host', '--kernel-path', `/boot/${kernel}`, '--default']
    if (initrd) args.push('--initrd', `/boot/${initrd}`)
    await step('kernel add', 'node', [banger, ...args])
  }
  const started = Date.now()
  await step('image pull', 'node', [banger, 'image', 'pull', ref])
  console.log(`pulled in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  const shown = await step('image show', 'node', [
    banger,
    'image',
    'show',
    'debian-bookworm',
    '--json',
  ])
  const record = JSON.parse(shown.stdout)
  const check = await e2fsck(record.rootfsPath)
  console.log(`\ne2fsck -fn ${record.rootfsPath}: ${check.clean ? 'clean' : 'PROBLEMS'}`)
  const { stdout } = await run('debugfs', ['-c', '-R', 'stats', record.rootfsPath])
  console.log(
    stdout
      .split('\n')
      .filter((l) => /Inode count|Free inodes|Block count|Block size/.test(l))
      .join('\n'),
  )
  await step('image list', 'node', [banger, 'image', 'list'])
  if (!check.clean) process.exitCode = 1
} finally {
  await runAsUser('node', [banger, 'daemon', 'stop'], { env })
  await registry.stop()
}
