// Throughput of layer replay vs GNU tar, on the same layers.
//   node packages/layer-flatten/bench/bench.mjs [dir ...]     (after `pnpm --filter @banger/layer-flatten build`)
//   node packages/layer-flatten/bench/bench.mjs --layout DIR --tag TAG   (an OCI image's own blobs)
// Each dir becomes one plain tar layer (made with GNU tar). Reports MB/s of uncompressed layer
// data: flattenToDirectory vs `tar -x` of the same layers one after the other, the same with
// gzip and zstd layers (system zstd and fzstd), and flattenToTar into /dev/null.
import { execFileSync } from 'node:child_process'
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const lib = await import(new URL('../dist/index.js', import.meta.url).href)
const args = process.argv.slice(2)
if (args[0] === '--layout') {
  await benchLayout(args[1], args[3])
  process.exit(0)
}
const dirs = args.length
  ? process.argv.slice(2)
  : ['/usr/lib/python3.11', '/usr/share/doc', '/usr/share/perl', '/usr/share/zoneinfo']
const work = mkdtempSync(join(tmpdir(), 'lf-bench-'))
const sh = (cmd, ...args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] })

try {
  const layers = dirs.map((dir, i) => {
    const tar = join(work, `layer${i}.tar`)
    sh('tar', '-cf', tar, '-C', dir, '.')
    sh('gzip', '-k', '-6', tar)
    sh('zstd', '-q', '-3', tar, '-o', `${tar}.zst`)
    return tar
  })
  const bytes = layers.reduce((n, f) => n + statSync(f).size, 0)
  const mb = bytes / 1e6
  console.log(`${layers.length} layers, ${mb.toFixed(1)} MB uncompressed (${dirs.join(', ')})`)

  const best = async (fn) => {
    let min = Infinity
    for (let i = 0; i < 3; i++) {
      const dest = join(work, `out-${i}-${Math.random()}`)
      const t = process.hrtime.bigint()
      await fn(dest)
      min = Math.min(min, Number(process.hrtime.bigint() - t) / 1e9)
      rmSync(dest, { recursive: true, force: true })
    }
    return min
  }
  const row = (label, seconds) =>
    console.log(
      `${label.padEnd(44)} ${(mb / seconds).toFixed(0).padStart(5)} MB/s  (${seconds.toFixed(2)} s)`,
    )
  const inputs = (suffix) =>
    layers.map((f) => ({
      name: f,
      open: () => createReadStream(f + suffix, { highWaterMark: 1 << 20 }),
    }))

  for (const [suffix, label, tarFlag] of [
    ['', 'tar', []],
    ['.gz', 'tar+gzip', ['-z']],
    ['.zst', 'tar+zstd (system zstd)', ['--zstd']],
  ]) {
    row(
      `flattenToDirectory, ${label}`,
      await best((dest) => lib.flattenToDirectory(inputs(suffix), dest)),
    )
    row(
      `tar -x ${tarFlag.join(' ')} --no-same-owner, ${label}`.replace('  ', ' '),
      await best(async (dest) => {
        sh('mkdir', dest)
        for (const f of layers)
          sh('tar', '-x', ...tarFlag, '--no-same-owner', '-f', f + suffix, '-C', dest)
      }),
    )
  }
  process.env.BANGER_FLATTEN_ZSTD = 'js'
  row(
    'flattenToDirectory, tar+zstd (fzstd)',
    await best((dest) => lib.flattenToDirectory(inputs('.zst'), dest)),
  )
  delete process.env.BANGER_FLATTEN_ZSTD
  row(
    'flattenToTar > /dev/null, tar',
    await best(() => lib.flattenToTar(inputs(''), createWriteStream('/dev/null'))),
  )
} finally {
  rmSync(work, { recursive: true, force: true })
}

async function benchLayout(layout, tag) {
  const inputs = await lib.layersFromOciLayout(layout, tag)
  const blobs = inputs.map((l) => join(layout, 'blobs', ...l.name.split(':')))
  let bytes = 0
  for (const blob of blobs)
    bytes += Number(
      execFileSync('sh', [
        '-c',
        `gzip -dc '${blob}' 2>/dev/null | wc -c || zstd -dc '${blob}' | wc -c`,
      ]),
    )
  const mb = bytes / 1e6
  console.log(`${inputs.length} layers, ${mb.toFixed(1)} MB uncompressed (${layout}:${tag})`)
  const work = mkdtempSync(join(tmpdir(), 'lf-bench-'))
  try {
    for (let i = 0; i < 3; i++) {
      let t = process.hrtime.bigint()
      await lib.flattenToDirectory(inputs, join(work, 'ours'))
      const ours = Number(process.hrtime.bigint() - t) / 1e9
      t = process.hrtime.bigint()
      execFileSync('mkdir', [join(work, 'tar')])
      for (const blob of blobs)
        execFileSync('tar', ['-xf', blob, '--no-same-owner', '-C', join(work, 'tar')])
      const theirs = Number(process.hrtime.bigint() - t) / 1e9
      console.log(
        `run ${i + 1}: flattenToDirectory ${(mb / ours).toFixed(0)} MB/s (${ours.toFixed(2)} s), tar -x ${(mb / theirs).toFixed(0)} MB/s (${theirs.toFixed(2)} s)`,
      )
      rmSync(join(work, 'ours'), { recursive: true, force: true })
      rmSync(join(work, 'tar'), { recursive: true, force: true })
    }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}
