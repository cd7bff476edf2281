import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import {
  buildImage,
  e2fsck,
  filesystemBytes,
  getImageXattr,
  listImageDir,
  pushImage,
  readImageFile,
  run,
  runAsUser,
  startRegistry,
  statInode,
  testUser,
  userTempDir,
} from '../src/index.js'

describe('test harness', () => {
  it('runs commands as an unprivileged user', async () => {
    const user = testUser()
    expect(user.uid).not.toBe(0)
    const { stdout } = await runAsUser('id', ['-u'], { check: true })
    expect(Number(stdout.trim())).toBe(user.uid)
    const dir = userTempDir('harness')
    const touched = await runAsUser('touch', [join(dir, 'mine')])
    expect(touched.code).toBe(0)
    const denied = await runAsUser('touch', ['/etc/banger-harness-should-fail'])
    expect(denied.code).not.toBe(0)
  })

  it('serves pushes from a real registry and logs each request', async () => {
    const registry = await startRegistry()
    onTestFinished(() => registry.stop())
    const image = await buildImage([
      (rootfs) => {
        mkdirSync(join(rootfs, 'etc'))
        writeFileSync(join(rootfs, 'etc/hello'), 'hello\n')
      },
    ])
    const ref = await pushImage(image, registry, 'harness/hello:1')
    expect(ref).toBe(`${registry.host}/harness/hello:1`)
    registry.clearRequests()
    const res = await fetch(`${registry.url}/v2/harness/hello/manifests/1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    })
    const manifest = (await res.json()) as { layers: unknown[] }
    expect(manifest.layers).toHaveLength(1)
    expect(registry.requests()).toEqual([
      { method: 'GET', path: '/v2/harness/hello/manifests/1', status: 200 },
    ])
  })

  it('starts a registry that demands basic auth', async () => {
    const auth = { username: 'alice', password: 's3cret' }
    const registry = await startRegistry({ auth })
    onTestFinished(() => registry.stop())
    expect((await fetch(`${registry.url}/v2/`)).status).toBe(401)
    const basic = Buffer.from('alice:s3cret').toString('base64')
    expect(
      (await fetch(`${registry.url}/v2/`, { headers: { authorization: `Basic ${basic}` } })).status,
    ).toBe(200)
  })

  it('turns umoci deletions into whiteouts', async () => {
    const image = await buildImage([
      (rootfs) => {
        mkdirSync(join(rootfs, 'gone'))
        writeFileSync(join(rootfs, 'gone/file'), 'x')
      },
      async (rootfs) => {
        await run('rm', ['-rf', join(rootfs, 'gone')])
      },
    ])
    const out = userTempDir('unpacked')
    await run('umoci', ['unpack', '--image', image.ref.slice('oci:'.length), join(out, 'bundle')])
    expect(existsSync(join(out, 'bundle/rootfs/gone'))).toBe(false)
  })

  it('reads an ext4 image back through debugfs', async () => {
    const dir = userTempDir('ext4')
    const tree = join(dir, 'tree')
    mkdirSync(join(tree, 'etc'), { recursive: true })
    writeFileSync(join(tree, 'etc/motd'), 'hi there\n')
    await run('setfattr', ['-n', 'user.banger', '-v', 'yes', join(tree, 'etc/motd')], {
      check: false,
    })
    const image = join(dir, 'fs.ext4')
    await run('truncate', ['-s', '64M', image])
    await run('mkfs.ext4', ['-q', '-F', '-d', tree, '-E', 'root_owner=0:0', image])
    expect(await listImageDir(image, '/')).toEqual(['etc', 'lost+found'])
    expect((await readImageFile(image, '/etc/motd')).toString()).toBe('hi there\n')
    const stat = await statInode(image, '/etc/motd')
    expect(stat).toMatchObject({ type: 'file', size: 9, links: 1 })
    expect((await getImageXattr(image, '/etc/motd', 'user.banger'))?.toString()).toBe('yes')
    expect(await getImageXattr(image, '/etc/motd', 'user.nothing')).toBeUndefined()
    expect(await filesystemBytes(image)).toBe(64 * 1024 * 1024)
    expect((await e2fsck(image)).clean).toBe(true)
    await expect(statInode(image, '/missing')).rejects.toThrow(/missing/)
  })
})

describe('statInode', () => {
  it('reads ids above 2^31, names with quotes and post-2038 mtimes', async () => {
    const dir = userTempDir('ext4-ids')
    const tree = join(dir, 'tree')
    mkdirSync(tree)
    writeFileSync(join(tree, 'say "hi"'), 'x')
    const image = join(dir, 'fs.ext4')
    await run('truncate', ['-s', '64M', image])
    await run('mkfs.ext4', ['-q', '-F', '-I', '256', '-d', tree, image])
    const mtime = 2 ** 32 + 12345 // 2106: needs the extra epoch bits
    await run('debugfs', ['-w', '-f', '-', image], {
      input: [
        'sif "/say ""hi""" uid 4294967294',
        'sif "/say ""hi""" gid 3000000000',
        `sif "/say ""hi""" mtime @${mtime}`,
      ].join('\n'),
    })
    const stat = await statInode(image, '/say "hi"')
    expect(stat).toMatchObject({ uid: 4294967294, gid: 3000000000, mtime })
  })
})
