import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { runAsUser, userTempDir } from '@banger/test-support'
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import {
  SYSTEMD_TREE,
  ensureBuilt,
  inspectAsUser,
  makeTree,
  mkfsAsUser,
  type TreeSpec,
} from './helpers.js'
import type { GuestInspection } from '../src/types.js'

beforeAll(() => ensureBuilt())

async function inspectTree(spec: TreeSpec, rootMode?: number): Promise<GuestInspection> {
  const dir = userTempDir('guest-inject-inspect')
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const tree = join(dir, 'tree')
  makeTree(tree, spec)
  const image = await mkfsAsUser(tree, join(dir, 'image.ext4'))
  // mkfs.ext4 -d run unprivileged makes the root directory 0755 whatever the tree's mode.
  if (rootMode !== undefined)
    await runAsUser(
      'debugfs',
      ['-w', '-R', `sif / mode 0${(0o40000 | rootMode).toString(8)}`, image],
      {
        check: true,
      },
    )
  const result = await inspectAsUser(image)
  if (!result.ok) throw new Error(JSON.stringify(result.error))
  return result.value
}

function codes(inspection: GuestInspection): string[] {
  return inspection.problems.map((p) => `${p.severity}:${p.code}`).sort()
}

function without(spec: TreeSpec, ...paths: string[]): TreeSpec {
  const copy = { ...spec }
  for (const path of paths) delete copy[path]
  return copy
}

describe('inspectGuest, run as the unprivileged user', () => {
  it('finds systemd through /sbin → usr/sbin and /sbin/init → /lib/systemd/systemd', async () => {
    expect(await inspectTree(SYSTEMD_TREE)).toEqual({ initSystem: 'systemd', problems: [] })
  })

  it('follows a long (slow) symlink, whose target debugfs stat does not print', async () => {
    const long = '/usr/lib/systemd/' + './'.repeat(40) + 'systemd'
    expect(long.length).toBeGreaterThan(60)
    const inspection = await inspectTree({ ...SYSTEMD_TREE, 'usr/sbin/init': { link: long } })
    expect(inspection).toEqual({ initSystem: 'systemd', problems: [] })
  })

  it('reports a missing /sbin/init as an error', async () => {
    const inspection = await inspectTree(without(SYSTEMD_TREE, 'usr/sbin/init'))
    expect(codes(inspection)).toEqual(['error:GUEST_NO_INIT'])
    expect(inspection.initSystem).toBe('unknown')
    expect(inspection.problems[0]!.message).toMatch(/\/sbin\/init/)
  })

  it('reports a dangling or looping /sbin/init as missing', async () => {
    const dangling = await inspectTree({ ...SYSTEMD_TREE, 'usr/sbin/init': { link: '/nowhere' } })
    expect(codes(dangling)).toEqual(['error:GUEST_NO_INIT'])
    const loop = await inspectTree({ ...SYSTEMD_TREE, 'usr/sbin/init': { link: '/sbin/init' } })
    expect(codes(loop)).toEqual(['error:GUEST_NO_INIT'])
    expect(loop.problems[0]!.message).toMatch(/too many symlinks/)
  })

  it('reports an init that is not executable', async () => {
    const inspection = await inspectTree({
      ...SYSTEMD_TREE,
      'usr/lib/systemd/systemd': { content: '#!/bin/sh\n', mode: 0o644 },
    })
    expect(codes(inspection)).toEqual(['error:GUEST_INIT_NOT_EXECUTABLE'])
    expect(inspection.problems[0]!.message).toMatch(/\/usr\/lib\/systemd\/systemd/)
  })

  it('reports a root directory that is not 0755', async () => {
    const inspection = await inspectTree(SYSTEMD_TREE, 0o700)
    expect(codes(inspection)).toEqual(['warning:GUEST_ROOT_MODE'])
    expect(inspection.problems[0]!.message).toMatch(/0700/)
  })

  it('reports a missing shell', async () => {
    const inspection = await inspectTree(without(SYSTEMD_TREE, 'usr/bin/sh'))
    expect(codes(inspection)).toEqual(['error:GUEST_NO_SHELL'])
  })

  it('reports an unknown init system, a missing sshd and no DHCP client', async () => {
    const inspection = await inspectTree({
      'bin/sh': { content: '#!/bin/sh\n', mode: 0o755 },
      'sbin/init': { content: 'tini\n', mode: 0o755 },
    })
    expect(inspection.initSystem).toBe('unknown')
    expect(codes(inspection)).toEqual([
      'warning:GUEST_NO_DHCP_CLIENT',
      'warning:GUEST_NO_SSHD',
      'warning:GUEST_UNKNOWN_INIT',
    ])
  })

  it('reports an empty image as having no init, no shell and an unknown init', async () => {
    const inspection = await inspectTree({ etc: { dir: 0o755 } })
    expect(codes(inspection)).toEqual([
      'error:GUEST_NO_INIT',
      'error:GUEST_NO_SHELL',
      'warning:GUEST_NO_DHCP_CLIENT',
      'warning:GUEST_NO_SSHD',
    ])
  })
})
