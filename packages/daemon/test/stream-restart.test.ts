// Flattening reads each layer while it downloads. A registry (or proxy) that answers a resumed
// download with the whole blob makes the download start over under the flattener: the daemon
// must notice, replay the layers from the blob cache once they are in, and still publish a
// correct image. A real registry will not do that on demand, so a proxy in front of one does.
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { request, createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import {
  buildImage,
  e2fsck,
  pushImage,
  readImageFile,
  startRegistry,
  type TestRegistry,
} from '@banger/test-support'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { fakeKernel, startDaemon, userEnv } from './spawn.js'

let registry: TestRegistry
let proxy: Server
let proxyHost: string
let payload: Buffer
/** GETs of layer blobs the proxy saw, with the Range header each asked for. */
const blobRequests: { path: string; range: string | undefined }[] = []

beforeAll(async () => {
  registry = await startRegistry()
  payload = randomBytes(6 * 1024 * 1024) // incompressible: the layer blob is ~6 MiB
  const image = await buildImage([
    (root) => {
      mkdirSync(join(root, 'etc'))
      writeFileSync(join(root, 'etc', 'os-release'), 'ID=restart\n')
      writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
      writeFileSync(join(root, 'payload'), payload)
    },
  ])
  await pushImage(image, registry, 'restart/img:1')
  const [upstreamHost, upstreamPort] = registry.host.split(':')
  let cut = false
  proxy = createServer((req, res) => {
    const isLayer = req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '')
    const headers = { ...req.headers }
    if (isLayer) {
      blobRequests.push({ path: req.url!, range: req.headers.range })
      // Ignore Range: every resumed download gets the whole blob again, as a 200.
      delete headers.range
    }
    const up = request(
      {
        host: upstreamHost,
        port: Number(upstreamPort),
        path: req.url,
        method: req.method,
        headers,
      },
      (upRes) => {
        const length = Number(upRes.headers['content-length'] ?? 0)
        res.writeHead(upRes.statusCode ?? 502, upRes.headers)
        // The first big blob breaks off after 2 MiB: the client resumes, with Range.
        if (isLayer && !cut && length > 4 * 1024 * 1024) {
          cut = true
          let sent = 0
          upRes.on('data', (chunk: Buffer) => {
            sent += chunk.length
            res.write(chunk)
            if (sent >= 2 * 1024 * 1024 && !upRes.isPaused()) {
              // Hold the cut a moment so the flattener has surely read some of those bytes.
              upRes.pause()
              setTimeout(() => {
                upRes.destroy()
                res.socket?.destroy()
              }, 500)
            }
          })
          return
        }
        upRes.pipe(res)
      },
    )
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  proxyHost = `127.0.0.1:${(proxy.address() as AddressInfo).port}`
}, 120_000)

afterAll(async () => {
  await new Promise((resolve) => proxy?.close(resolve))
  await registry?.stop()
})

it('replays from the cache when a layer download restarts mid-flatten, and publishes a correct image', async () => {
  const e = userEnv()
  const kernel = fakeKernel(e)
  const d = await startDaemon(e)
  const record = await d.client.call('image.pull', {
    ref: `${proxyHost}/restart/img:1`,
    kernelPath: kernel,
  })
  // The proxy did its part: a resume was asked for and answered with the whole blob.
  expect(blobRequests.some((r) => r.range?.startsWith('bytes='))).toBe(true)
  const log = readFileSync(join(e.stateDir, 'logs', 'bangerd.log'), 'utf8')
  expect(log).toContain('a layer download restarted; flattening again from the cache')
  expect((await e2fsck(record.rootfsPath)).clean).toBe(true)
  const inImage = await readImageFile(record.rootfsPath, '/payload')
  expect(createHash('sha256').update(inImage).digest('hex')).toBe(
    createHash('sha256').update(payload).digest('hex'),
  )
})
