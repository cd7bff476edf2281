import { readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { e2fsck, readImageFile, run, statInode, testUser, userTempDir } from '@banger/test-support'
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import {
  BUSYBOX_TREE,
  SYSTEMD_TREE,
  ensureBuilt,
  injectAsUser,
  makeTree,
  mkfsAsUser,
  type TreeSpec,
} from './helpers.js'
import { injectGuest, inspectGuest } from '../src/index.js'

const ASSETS = resolve(import.meta.dirname, '../assets')
const KEY_A =
  'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPc0u92+8iJztkPQQF/4jTonwa7umjIjBThV5VxEdxkj a@banger'
const KEY_B =
  'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIo5Y8Lkl11BustQApRUnOCL9eZ6iGOv0+npDujpknSP b@banger'

beforeAll(() => ensureBuilt())

async function imageFrom(spec: TreeSpec, name: string, mkfsArgs: string[] = []): Promise<string> {
  const dir = userTempDir(`guest-inject-${name}`)
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const tree = join(dir, 'tree')
  makeTree(tree, spec)
  return mkfsAsUser(tree, join(dir, `${name}.ext4`), 16, mkfsArgs)
}

/** Owner and permission bits of an in-image path, e.g. '0:0 755 file'. */
async function ownerMode(image: string, path: string): Promise<string> {
  const stat = await statInode(image, path)
  return `${stat.uid}:${stat.gid} ${stat.mode.toString(8)} ${stat.type}`
}

describe('injectGuest, run as the unprivileged user', () => {
  it('writes the systemd assets owned 0:0 with their modes and the wants symlink', async () => {
    expect(testUser().uid).not.toBe(0) // so 0:0 below comes from sif, not from write
    const image = await imageFrom(SYSTEMD_TREE, 'systemd')
    const result = await injectAsUser(image, { authorizedKeys: [KEY_A], hostname: 'web-1' })
    if (!result.ok) throw new Error(JSON.stringify(result.error))
    expect(result.value.inspection).toEqual({ initSystem: 'systemd', problems: [] })
    expect(result.value.written.sort()).toEqual(
      [
        '/usr/local',
        '/usr/local/sbin',
        '/usr/local/sbin/banger-first-boot',
        '/usr/local/lib',
        '/usr/local/lib/banger',
        '/usr/local/lib/banger/udhcpc.sh',
        '/root/.ssh',
        '/root/.ssh/authorized_keys',
        '/etc/hostname',
        '/etc/systemd/system/banger-first-boot.service',
        '/etc/systemd/system/multi-user.target.wants/banger-first-boot.service',
      ].sort(),
    )

    const expected: Record<string, string> = {
      '/usr/local/sbin/banger-first-boot': '0:0 755 file',
      '/usr/local/lib/banger': '0:0 755 directory',
      '/usr/local/lib/banger/udhcpc.sh': '0:0 755 file',
      '/root': '0:0 755 directory', // existing: left as the image has it
      '/root/.ssh': '0:0 700 directory',
      '/root/.ssh/authorized_keys': '0:0 600 file',
      '/etc/hostname': '0:0 644 file',
      '/etc/systemd/system/banger-first-boot.service': '0:0 644 file',
      '/etc/systemd/system/multi-user.target.wants/banger-first-boot.service': '0:0 777 symlink',
    }
    for (const [path, want] of Object.entries(expected))
      expect(`${path} ${await ownerMode(image, path)}`).toBe(`${path} ${want}`)

    const link = await statInode(
      image,
      '/etc/systemd/system/multi-user.target.wants/banger-first-boot.service',
    )
    expect(link.linkTarget).toBe('/etc/systemd/system/banger-first-boot.service')
    expect(await readImageFile(image, '/usr/local/sbin/banger-first-boot')).toEqual(
      readFileSync(join(ASSETS, 'first-boot.sh')),
    )
    expect(
      (await readImageFile(image, '/etc/systemd/system/banger-first-boot.service')).toString(),
    ).toMatch(/^ExecStart=\/usr\/local\/sbin\/banger-first-boot systemd$/m)
    expect((await readImageFile(image, '/root/.ssh/authorized_keys')).toString()).toBe(KEY_A + '\n')
    expect((await readImageFile(image, '/etc/hostname')).toString()).toBe('web-1\n')
    expect(await e2fsck(image)).toMatchObject({ clean: true })
  })

  it('is repeatable: a second run replaces the keys and leaves a clean filesystem', async () => {
    const image = await imageFrom(
      { ...SYSTEMD_TREE, 'var/lib/banger/first-boot.done': 'done\n' },
      'again',
    )
    const first = await injectAsUser(image, { authorizedKeys: [KEY_A] })
    const second = await injectAsUser(image, { authorizedKeys: [KEY_B, KEY_A] })
    if (!first.ok || !second.ok) throw new Error(JSON.stringify([first, second]))
    // Directories made by the first run exist now, so only the files are listed again.
    expect(second.value.written).toContain('/usr/local/sbin/banger-first-boot')
    expect(second.value.written).not.toContain('/usr/local/lib/banger')
    expect(second.value.written).not.toContain('/etc/hostname') // no hostname given
    expect((await readImageFile(image, '/root/.ssh/authorized_keys')).toString()).toBe(
      `${KEY_B}\n${KEY_A}\n`,
    )
    expect((await readImageFile(image, '/etc/hostname')).toString()).toBe('baked\n')
    // A marker baked into the image would make the new guest skip its first boot.
    await expect(statInode(image, '/var/lib/banger/first-boot.done')).rejects.toThrow()
    expect(await e2fsck(image)).toMatchObject({ clean: true })
  })

  it('hooks busybox init through inittab after the sysinit entries, creating /root', async () => {
    const image = await imageFrom(BUSYBOX_TREE, 'busybox')
    const result = await injectAsUser(image, { authorizedKeys: [KEY_A] })
    if (!result.ok) throw new Error(JSON.stringify(result.error))
    expect(result.value.inspection).toEqual({ initSystem: 'busybox', problems: [] })
    expect(result.value.written).toEqual(
      expect.arrayContaining(['/root', '/root/.ssh', '/root/.ssh/authorized_keys', '/etc/inittab']),
    )
    expect(result.value.written.some((p) => p.includes('systemd'))).toBe(false)
    for (const [path, want] of Object.entries({
      '/etc/inittab': '0:0 644 file',
      '/root': '0:0 700 directory',
      '/root/.ssh': '0:0 700 directory',
      '/root/.ssh/authorized_keys': '0:0 600 file',
      '/usr/local/sbin/banger-first-boot': '0:0 755 file',
    }))
      expect(`${path} ${await ownerMode(image, path)}`).toBe(`${path} ${want}`)
    expect((await readImageFile(image, '/etc/inittab')).toString().split('\n')).toEqual([
      '# busybox inittab',
      '::sysinit:/bin/mount -a',
      '::sysinit:/etc/init.d/rcS',
      '::wait:/usr/local/sbin/banger-first-boot busybox',
      '::respawn:/sbin/getty -L ttyS0 115200 vt100',
      '::shutdown:/bin/umount -a -r',
      '',
    ])
    // Twice: still one entry.
    await injectAsUser(image, { authorizedKeys: [KEY_A] })
    const inittab = (await readImageFile(image, '/etc/inittab')).toString()
    expect(inittab.match(/banger-first-boot/g)).toHaveLength(1)
    expect(await e2fsck(image)).toMatchObject({ clean: true })
  })

  it('writes busybox init defaults when the image has no inittab', async () => {
    const spec = { ...BUSYBOX_TREE }
    delete spec['etc/inittab']
    const image = await imageFrom(spec, 'busybox-bare')
    const result = await injectAsUser(image, { authorizedKeys: [KEY_A] })
    if (!result.ok) throw new Error(JSON.stringify(result.error))
    const inittab = (await readImageFile(image, '/etc/inittab')).toString()
    expect(inittab).toMatch(
      /^::sysinit:\/etc\/init\.d\/rcS\n::wait:\/usr\/local\/sbin\/banger-first-boot busybox\n/m,
    )
    expect(inittab).toMatch(/^::askfirst:-\/bin\/sh$/m)
  })

  it('hooks openrc with an init script in the default runlevel', async () => {
    const image = await imageFrom(
      {
        ...BUSYBOX_TREE,
        'sbin/openrc': { content: 'openrc\n', mode: 0o755 },
        'etc/runlevels/default': { dir: 0o755 },
      },
      'openrc',
    )
    const result = await injectAsUser(image, { authorizedKeys: [KEY_A] })
    if (!result.ok) throw new Error(JSON.stringify(result.error))
    expect(result.value.inspection.initSystem).toBe('openrc')
    expect(await ownerMode(image, '/etc/init.d/banger-first-boot')).toBe('0:0 755 file')
    const link = await statInode(image, '/etc/runlevels/default/banger-first-boot')
    expect([link.type, link.uid, link.gid, link.linkTarget]).toEqual([
      'symlink',
      0,
      0,
      '/etc/init.d/banger-first-boot',
    ])
    // openrc's own inittab is left alone.
    expect((await readImageFile(image, '/etc/inittab')).toString()).not.toMatch(/banger/)
  })

  it('hooks sysvinit with a bootwait inittab entry', async () => {
    const image = await imageFrom(
      {
        'bin/sh': { content: '#!/bin/sh\n', mode: 0o755 },
        'sbin/init': { content: 'init\n', mode: 0o755 },
        'sbin/dhclient': { content: 'dhclient\n', mode: 0o755 },
        'usr/sbin/sshd': { content: 'sshd\n', mode: 0o755 },
        'etc/inittab':
          'id:2:initdefault:\nsi::sysinit:/etc/init.d/rcS\nl2:2:wait:/etc/init.d/rc 2\n',
      },
      'sysvinit',
    )
    const result = await injectAsUser(image, { authorizedKeys: [KEY_A] })
    if (!result.ok) throw new Error(JSON.stringify(result.error))
    expect(result.value.inspection).toEqual({ initSystem: 'sysvinit', problems: [] })
    expect((await readImageFile(image, '/etc/inittab')).toString()).toBe(
      'id:2:initdefault:\nsi::sysinit:/etc/init.d/rcS\n' +
        'bngr::bootwait:/usr/local/sbin/banger-first-boot sysvinit\nl2:2:wait:/etc/init.d/rc 2\n',
    )
  })

  it('writes no init hook for an unknown init, and says so', async () => {
    const image = await imageFrom(
      {
        'bin/sh': { content: '#!/bin/sh\n', mode: 0o755 },
        'sbin/init': { content: 'tini\n', mode: 0o755 },
      },
      'unknown',
    )
    const result = await injectAsUser(image, { authorizedKeys: [KEY_A] })
    if (!result.ok) throw new Error(JSON.stringify(result.error))
    expect(result.value.inspection.initSystem).toBe('unknown')
    expect(result.value.inspection.problems.map((p) => p.code).sort()).toEqual([
      'GUEST_NO_DHCP_CLIENT',
      'GUEST_NO_SSHD',
      'GUEST_UNKNOWN_INIT',
    ])
    expect(result.value.written).toContain('/usr/local/sbin/banger-first-boot')
    expect(result.value.written.filter((p) => /systemd|inittab|init\.d/.test(p))).toEqual([])
  })
})

describe('injectGuest failures', () => {
  it('rejects with E_DEBUGFS_FAILED when the image runs out of inodes', async () => {
    // Fill the inode table so that only 3 inodes are left; injection needs more than that.
    const probe = await imageFrom(BUSYBOX_TREE, 'probe', ['-N', '64'])
    const free = Number(
      /Free inodes:\s*(\d+)/.exec((await run('dumpe2fs', ['-h', probe])).stdout)?.[1],
    )
    const filler: TreeSpec = {}
    for (let i = 0; i < free - 4; i++) filler[`filler/${i}`] = ''
    const image = await imageFrom({ ...BUSYBOX_TREE, ...filler }, 'full', ['-N', '64'])
    const result = await injectAsUser(image, { authorizedKeys: [KEY_A] })
    expect(result).toMatchObject({ ok: false, error: { code: 'E_DEBUGFS_FAILED' } })
    if (!result.ok) expect(result.error.message).toMatch(/allocate inode/i)
  })

  it('rejects with E_IMAGE_OPEN when the user cannot write the image', async () => {
    const image = await imageFrom(SYSTEMD_TREE, 'readonly')
    await run('chown', ['0:0', image])
    await run('chmod', ['0644', image])
    const result = await injectAsUser(image, { authorizedKeys: [KEY_A] })
    expect(result).toMatchObject({ ok: false, error: { code: 'E_IMAGE_OPEN' } })
    if (!result.ok) expect(result.error.message).toMatch(/Permission denied/)
  })

  it('rejects with E_IMAGE_OPEN for a file that is not ext4 and E_IMAGE_NOT_FOUND for none', async () => {
    const dir = userTempDir('guest-inject-bad')
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    await run('truncate', ['-s', '1M', join(dir, 'zeros.img')])
    expect(await injectAsUser(join(dir, 'zeros.img'), { authorizedKeys: [KEY_A] })).toMatchObject({
      ok: false,
      error: { code: 'E_IMAGE_OPEN' },
    })
    expect(await injectAsUser(join(dir, 'missing.img'), { authorizedKeys: [KEY_A] })).toMatchObject(
      { ok: false, error: { code: 'E_IMAGE_NOT_FOUND' } },
    )
  })

  it('rejects bad keys and hostnames before touching the image', async () => {
    const image = await imageFrom(SYSTEMD_TREE, 'badkeys')
    expect(await injectAsUser(image, { authorizedKeys: [] })).toMatchObject({
      ok: false,
      error: { code: 'E_NO_AUTHORIZED_KEYS' },
    })
    expect(
      await injectAsUser(image, { authorizedKeys: ['-----BEGIN OPENSSH PRIVATE KEY-----'] }),
    ).toMatchObject({ ok: false, error: { code: 'E_INVALID_AUTHORIZED_KEY' } })
    expect(
      await injectAsUser(image, { authorizedKeys: [KEY_A], hostname: 'bad_name' }),
    ).toMatchObject({ ok: false, error: { code: 'E_INVALID_HOSTNAME' } })
    await expect(statInode(image, '/usr/local/sbin/banger-first-boot')).rejects.toThrow()
  })

  it('rejects with the abort reason and leaves the image alone when aborted', async () => {
    const image = await imageFrom(SYSTEMD_TREE, 'abort')
    const signal = AbortSignal.abort()
    await expect(injectGuest(image, { authorizedKeys: [KEY_A], signal })).rejects.toMatchObject({
      name: 'AbortError',
    })
    await expect(inspectGuest(image, { signal })).rejects.toMatchObject({ name: 'AbortError' })
    await expect(statInode(image, '/usr/local/sbin/banger-first-boot')).rejects.toThrow()
  })
})
