// Measures peak RSS and throughput of one pull of a large layer (default 512 MiB) from a local
// server, in a separate process, to show memory stays flat whatever the layer size.
// Usage: node scripts/measure-memory.mjs [MiB]   (needs `pnpm build` first and /usr/bin/time)
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const mib = Number(process.argv[2] ?? 512)
const chunk = randomBytes(1024 * 1024)
const size = mib * chunk.length
const sha = (b) => `sha256:${createHash('sha256').update(b).digest('hex')}`
const layerHash = createHash('sha256')
for (let i = 0; i < mib; i++) layerHash.update(chunk)
const layerDigest = `sha256:${layerHash.digest('hex')}`
const config = Buffer.from(
  JSON.stringify({
    os: 'linux',
    architecture: 'amd64',
    rootfs: { type: 'layers', diff_ids: [layerDigest] },
  }),
)
const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: sha(config),
      size: config.length,
    },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size }],
  }),
)
const server = createServer(async (req, res) => {
  if (req.url.includes('/manifests/'))
    return res
      .writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' })
      .end(manifest)
  if (req.url.endsWith(sha(config))) return res.writeHead(200).end(config)
  if (req.url.endsWith(layerDigest)) {
    res.writeHead(200, { 'content-length': size })
    for (let i = 0; i < mib; i++)
      if (!res.write(chunk)) await new Promise((r) => res.once('drain', r))
    return res.end()
  }
  res.writeHead(404).end()
})
await new Promise((r) => server.listen(0, '127.0.0.1', r))
const cacheDir = mkdtempSync(join(tmpdir(), 'banger-rc-measure-'))
const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url))
const child = fileURLToPath(new URL('../test/pull-child.mjs', import.meta.url))
const started = Date.now()
execFile(
  '/usr/bin/time',
  ['-f', '%M', process.execPath, child, dist, cacheDir, `127.0.0.1:${server.address().port}/big:1`],
  (err, stdout, stderr) => {
    const seconds = (Date.now() - started) / 1000
    const maxRssKiB = Number(stderr.trim().split('\n').at(-1))
    console.log(
      JSON.stringify({
        layerMiB: mib,
        ok: !err && stdout.includes(layerDigest.slice(7)),
        seconds,
        MiBps: +(mib / seconds).toFixed(1),
        maxRssMiB: +(maxRssKiB / 1024).toFixed(1),
      }),
    )
    rmSync(cacheDir, { recursive: true, force: true })
    server.close()
  },
)
