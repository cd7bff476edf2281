// Times applyOwnership on a 50k-entry tree: node bench/run.mjs [entries] [entriesPerDir]
// (build first: pnpm --filter @banger/ownership build). Prints one JSON line.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { applyOwnership } from '../dist/index.js'
import { makeImage, makeManifest } from './tree.mjs'

const total = Number(process.argv[2] ?? 50_000)
const perDir = Number(process.argv[3] ?? 100)
const work = mkdtempSync(join(tmpdir(), 'banger-ownership-bench-'))
const tree = join(work, 'tree')
const image = join(work, 'rootfs.ext4')
try {
  const entries = makeManifest(total, perDir, tree)
  let t = performance.now()
  makeImage(tree, image, total)
  const mkfsMs = performance.now() - t
  t = performance.now()
  const report = await applyOwnership(image, entries, { verify: false })
  const writeMs = performance.now() - t
  // Full run with verification on a fresh image, to time both passes together.
  makeImage(tree, image, total)
  t = performance.now()
  const full = await applyOwnership(image, entries)
  const fullMs = performance.now() - t
  console.log(
    JSON.stringify({
      entries: entries.length,
      entriesPerDir: perDir,
      commands: report.commands,
      mkfsMs: Math.round(mkfsMs),
      applyWithoutVerifyMs: Math.round(writeMs),
      applyWithVerifyMs: Math.round(fullMs),
      verified: full.verified,
    }),
  )
} finally {
  rmSync(work, { recursive: true, force: true })
}
