// Times applyOwnership on a 50k-entry tree: node bench/run.mjs [entries] [entriesPerDir]
// (build first: pnpm --filter @banger/ownership build). Prints one JSON line.
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { applyOwnership } from '../dist/index.js'

const total = Number(process.argv[2] ?? 50_000)
const perDir = Number(process.argv[3] ?? 100)
const work = mkdtempSync(join(tmpdir(), 'banger-ownership-bench-'))
const tree = join(work, 'tree')
const image = join(work, 'rootfs.ext4')
const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex').toString('base64')
const label = Buffer.from('system_u:object_r:usr_t:s0').toString('base64')
try {
  const entries = [
    { path: '/', type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 1_700_000_000 },
  ]
  mkdirSync(tree)
  let dir = ''
  for (let i = 0; entries.length < total; i++) {
    if (i % perDir === 0) {
      dir = `/d${i / perDir}`
      mkdirSync(join(tree, dir))
      entries.push({
        path: dir,
        type: 'directory',
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
      })
      continue
    }
    const path = `${dir}/e${i}`
    const common = { path, uid: 100_000 + (i % 7), gid: i % 5, mtime: 1_600_000_000 + i }
    if (i % 50 === 0)
      entries.push({ ...common, type: 'char', mode: 0o666, devMajor: 1, devMinor: i % 256 })
    else if (i % 10 === 0) {
      symlinkSync('target', join(tree, path))
      entries.push({ ...common, type: 'symlink', mode: 0o777 })
    } else {
      writeFileSync(join(tree, path), '')
      const xattrs =
        i % 20 === 1
          ? { 'security.capability': cap }
          : i % 3 === 0
            ? { 'security.selinux': label }
            : undefined
      entries.push({
        ...common,
        type: 'file',
        mode: i % 11 === 0 ? 0o4755 : 0o644,
        ...(xattrs ? { xattrs } : {}),
      })
    }
  }
  writeFileSync(image, '')
  truncateSync(image, 1024 * 1024 * 1024)
  let t = performance.now()
  execFileSync('mkfs.ext4', [
    '-F',
    '-q',
    '-N',
    String(total * 2),
    '-d',
    tree,
    '-E',
    'root_owner=0:0',
    image,
  ])
  const mkfsMs = performance.now() - t
  t = performance.now()
  const report = await applyOwnership(image, entries, { verify: false })
  const writeMs = performance.now() - t
  // Full run with verification on a fresh image, to time both passes together.
  execFileSync('mkfs.ext4', [
    '-F',
    '-q',
    '-N',
    String(total * 2),
    '-d',
    tree,
    '-E',
    'root_owner=0:0',
    image,
  ])
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
