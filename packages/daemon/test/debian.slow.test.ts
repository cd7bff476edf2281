// A real Debian bookworm (debootstrap, systemd, openssh) pulled through bangerd as the
// unprivileged user: the realistic case, with cold and warm timings printed for the record.
import { statSync } from 'node:fs'
import {
  debianImage,
  e2fsck,
  pushImage,
  readImageFile,
  startRegistry,
  statInode,
} from '@banger/test-support'
import { expect, it, onTestFinished } from 'vitest'
import type { PullProgress } from '../src/rpc/index.js'
import { fakeKernel, startDaemon, userEnv } from './spawn.js'

it('pulls Debian bookworm into a bootable-looking, fsck-clean image; warm re-pull is faster', async () => {
  const registry = await startRegistry()
  onTestFinished(() => registry.stop())
  const ref = await pushImage(await debianImage(), registry, 'debian:bookworm')
  const e = userEnv()
  const d = await startDaemon(e)
  const kernelPath = fakeKernel(e)
  await d.client.call('kernel.add', { name: 'k', kernelPath, default: true })

  const stageAt: Partial<Record<string, number>> = {}
  const t0 = performance.now()
  const onProgress = (p: PullProgress): void => {
    if (p.type === 'stage') stageAt[p.stage] = Math.round(performance.now() - t0)
  }
  const cold = await d.client.call('image.pull', { ref }, { onProgress }).finally(() => {
    console.log(JSON.stringify({ stageAt, untilMs: Math.round(performance.now() - t0) }))
  })
  const coldMs = Math.round(performance.now() - t0)
  const t1 = performance.now()
  const warm = await d.client.call('image.pull', { ref, name: 'debian-warm' })
  const warmMs = Math.round(performance.now() - t1)
  console.log(
    JSON.stringify({
      coldMs,
      warmMs,
      stageAt,
      sizeBytes: cold.sizeBytes,
      onDisk: statSync(cold.rootfsPath).blocks * 512,
    }),
  )

  expect(cold.name).toBe('debian-bookworm')
  for (const rec of [cold, warm]) {
    const fsck = await e2fsck(rec.rootfsPath)
    expect(fsck.clean, fsck.output).toBe(true)
    expect((await statInode(rec.rootfsPath, '/usr/sbin/sshd')).mode & 0o111).not.toBe(0)
    expect(await statInode(rec.rootfsPath, '/root')).toMatchObject({ uid: 0, gid: 0 })
    expect(
      (await readImageFile(rec.rootfsPath, '/root/.ssh/authorized_keys')).toString(),
    ).toContain(e.publicKey)
  }
  expect((await statInode(cold.rootfsPath, '/usr/bin/passwd')).mode & 0o4000).toBe(0o4000)
  expect(warmMs).toBeLessThan(coldMs)
})
