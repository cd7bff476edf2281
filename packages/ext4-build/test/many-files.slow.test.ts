import { join } from 'node:path'
import { expect, it } from 'vitest'
import { debugfs, e2fsck, listImageDir, userTempDir } from '@banger/test-support'
import { runAsUserScript } from './helpers.js'

// 100 directories × 1000 empty files: mkfs -d's cost grows with the square of a directory's size,
// so the files are spread as a real rootfs spreads them.
it('builds a 100k-empty-file tree at the planned size without running out of inodes', async () => {
  const dir = userTempDir('ext4-100k')
  const output = join(dir, 'many.ext4')
  const out = (await runAsUserScript(
    `for (let d = 0; d < 100; d++) {
       const sub = join('tree', 'd' + d)
       mkdirSync(sub, { recursive: true })
       for (let f = 0; f < 1000; f++) writeFileSync(join(sub, 'f' + f), '')
     }
     const plan = lib.planExt4Size({ bytes: 0, inodes: 100_101, directories: 101 })
     const image = await lib.buildExt4({ tree: 'tree', output: ${JSON.stringify(output)}, sizeBytes: plan.sizeBytes, inodes: plan.inodes })
     return { plan, image }`,
    dir,
  )) as {
    result?: { plan: { sizeBytes: number; inodes: number }; image: { inodeCount: number } }
    error?: unknown
  }
  expect(out.error).toBeUndefined()
  const { plan, image } = out.result!
  expect(image.inodeCount).toBeGreaterThanOrEqual(plan.inodes)
  expect((await listImageDir(output, '/d99')).length).toBe(1000)
  const stats = await debugfs(output, ['stats'])
  const free = Number(/Free inodes:\s+(\d+)/.exec(stats)?.[1])
  expect(free).toBeGreaterThan(20_000) // headroom left for the image's own growth
  expect((await e2fsck(output)).clean).toBe(true)
})
