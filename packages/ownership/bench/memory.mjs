// Peak RSS of applyOwnership's stage: node bench/memory.mjs <entries> <entriesPerDir> <mode> <dir>
// Run each mode under `/usr/bin/time -f '%M KB'`; the stage's increment is apply minus manifest.
// Both modes build the same manifest in this process; `manifest` then stops without applying. The
// tree and image come from `prepare` beforehand, so mkfs and the file writes stay out of the figure.
//   node bench/memory.mjs 54000 100 prepare /tmp/w
//   /usr/bin/time -f '%M KB' node bench/memory.mjs 54000 100 manifest /tmp/w
//   /usr/bin/time -f '%M KB' node bench/memory.mjs 54000 100 apply /tmp/w
import { copyFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { makeImage, makeManifest } from './tree.mjs'

const [total, perDir] = [Number(process.argv[2] ?? 54_000), Number(process.argv[3] ?? 100)]
const [mode, work] = [process.argv[4], process.argv[5]]
if (!work || !['prepare', 'manifest', 'apply'].includes(mode))
  throw new Error('usage: memory.mjs <entries> <entriesPerDir> prepare|manifest|apply <dir>')
if (mode === 'prepare') {
  makeManifest(total, perDir, join(work, 'tree'))
  await makeImage(join(work, 'tree'), join(work, 'pristine.ext4'), total)
  rmSync(join(work, 'tree'), { recursive: true, force: true })
} else {
  const image = join(work, 'rootfs.ext4')
  copyFileSync(join(work, 'pristine.ext4'), image)
  const entries = makeManifest(total, perDir)
  const { applyOwnership } = await import('../dist/index.js')
  const report = mode === 'apply' ? await applyOwnership(image, entries) : undefined
  rmSync(image)
  console.log(
    JSON.stringify({
      mode,
      entries: entries.length,
      verified: report?.verified,
      maxRssKB: process.resourceUsage().maxRSS,
    }),
  )
}
