// Times applyOwnership: node bench/run.mjs [entries] [entriesPerDir] [mkfs] [owners]
// (build first: pnpm --filter @banger/ownership build). mkfs: self (default), userns or user;
// owners: mixed (default) or root; see tree.mjs. Prints one JSON line.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { userTempDir } from '@banger/test-support'
import { applyOwnership } from '../dist/index.js'
// Internals, to time the read-back on its own: the same call applyOwnership makes.
import { debugfsCandidates, resolveBinary } from '../dist/debugfs.js'
import { Manifest } from '../dist/entries.js'
import { listDirectories } from '../dist/listing.js'
import { verifyEntries } from '../dist/verify.js'
import { makeImage, makeManifest } from './tree.mjs'

const total = Number(process.argv[2] ?? 50_000)
const perDir = Number(process.argv[3] ?? 100)
const mkfs = process.argv[4] ?? 'self'
const owners = process.argv[5] ?? 'mixed'
// The test user's mkfs must reach the tree: a directory it owns.
const work =
  mkfs === 'self'
    ? mkdtempSync(join(tmpdir(), 'banger-ownership-bench-'))
    : userTempDir('banger-ownership-bench')
const tree = join(work, 'tree')
const image = join(work, 'rootfs.ext4')
try {
  const entries = makeManifest(total, perDir, tree, owners)
  let t = performance.now()
  await makeImage(tree, image, total, mkfs)
  const mkfsMs = performance.now() - t
  t = performance.now()
  const report = await applyOwnership(image, entries, { verify: false })
  const writeMs = performance.now() - t
  // The read-back alone, on that image, at the inodes a fresh listing finds (mknod's included).
  const binary = await resolveBinary(debugfsCandidates())
  const manifest = new Manifest(entries)
  const scratch = mkdtempSync(join(work, 'verify-'))
  const listing = await listDirectories(binary, image, manifest, scratch)
  const inodes = Uint32Array.from(manifest.entries, (_, i) => listing.ino[listing.slot(i)])
  t = performance.now()
  await verifyEntries({ binary, image, manifest, inodes, workDir: scratch })
  const verifyMs = performance.now() - t
  // Full run with verification on a fresh image, to time both passes together.
  await makeImage(tree, image, total, mkfs)
  t = performance.now()
  const full = await applyOwnership(image, entries)
  const fullMs = performance.now() - t
  console.log(
    JSON.stringify({
      entries: entries.length,
      entriesPerDir: perDir,
      mkfs,
      owners,
      commands: report.commands,
      mkfsMs: Math.round(mkfsMs),
      applyWithoutVerifyMs: Math.round(writeMs),
      verifyMs: Math.round(verifyMs),
      applyWithVerifyMs: Math.round(fullMs),
      verified: full.verified,
    }),
  )
} finally {
  rmSync(work, { recursive: true, force: true })
}
