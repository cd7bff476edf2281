import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { onTestFinished } from 'vitest'

/**
 * An in-process registry for what a real one will not do on demand: resets mid-blob, ignoring
 * Range, 429, wrong bytes, empty bodies, bearer challenges, redirects. Everything else is tested
 * against the real docker-registry.
 */

export const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

export interface FakeImage {
  manifest: Buffer
  manifestDigest: string
  config: Buffer
  configDigest: string
  layers: Buffer[]
  blobs: Map<string, Buffer>
}

/** An OCI image whose layers are random bytes (the client never looks inside a layer). */
export function fakeImage(layerSizes: number[]): FakeImage {
  const layers = layerSizes.map((n) => randomBytes(n))
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: {
        type: 'layers',
        diff_ids: layers.map((l) => sha(Buffer.concat([l, Buffer.from('diff')]))),
      },
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
      layers: layers.map((l) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: sha(l),
        size: l.length,
      })),
    }),
  )
  const blobs = new Map<string, Buffer>([
    [sha(config), config],
    ...layers.map((l): [string, Buffer] => [sha(l), l]),
  ])
  return {
    manifest,
    manifestDigest: sha(manifest),
    config,
    configDigest: sha(config),
    layers,
    blobs,
  }
}

export interface SeenRequest {
  method: string
  path: string
  headers: IncomingMessage['headers']
  at: number
}

export interface BlobContext {
  digest: string
  data: Buffer
  /** 0 for the first GET of this digest, 1 for the second, … */
  attempt: number
  req: IncomingMessage
  res: ServerResponse
  /** Serves the blob honouring Range, as a correct registry does. */
  serve(): void
}

export interface FakeOptions {
  image: FakeImage
  repo?: string
  tags?: string[]
  /** Return true when handled; otherwise the blob is served normally. */
  blob?: (ctx: BlobContext) => boolean | Promise<boolean>
  /** Raw manifest override (bytes and content type) for a tag. */
  manifests?: Record<string, { body: Buffer; contentType: string }>
  bearer?: boolean
  /** Docker-Content-Digest to announce for tags instead of the true one. */
  announce?: string
  /** Listen address; default 127.0.0.1. `host` still names 127.0.0.1. */
  address?: string
}

export interface FakeRegistry {
  host: string
  url: string
  requests: SeenRequest[]
  blobRequests(): SeenRequest[]
  tokenRequests: SeenRequest[]
  /** Invalidates the issued token, as an expiry would. */
  rotateToken(): void
  close(): Promise<void>
}

export function serveRange(req: IncomingMessage, res: ServerResponse, data: Buffer): void {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
  if (m) {
    const start = Number(m[1])
    res.writeHead(206, {
      'content-length': data.length - start,
      'content-range': `bytes ${start}-${data.length - 1}/${data.length}`,
      'content-type': 'application/octet-stream',
    })
    res.end(data.subarray(start))
    return
  }
  res.writeHead(200, { 'content-length': data.length, 'content-type': 'application/octet-stream' })
  res.end(data)
}

export async function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  address = '127.0.0.1',
): Promise<{ server: Server; host: string }> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, address, resolve))
  const { port } = server.address() as AddressInfo
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  return { server, host: `127.0.0.1:${port}` }
}

export async function startFake(options: FakeOptions): Promise<FakeRegistry> {
  const repo = options.repo ?? 'app'
  const tags = options.tags ?? ['1']
  const requests: SeenRequest[] = []
  const tokenRequests: SeenRequest[] = []
  const attempts = new Map<string, number>()
  let token = `tok-${randomBytes(4).toString('hex')}`
  let host = ''

  const { server, host: h } = await listen(handler, options.address)
  function handler(req: IncomingMessage, res: ServerResponse): void {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x')
      const seen = {
        method: req.method ?? '',
        path: url.pathname + url.search,
        headers: req.headers,
        at: Date.now(),
      }
      if (url.pathname === '/token') {
        tokenRequests.push(seen)
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ token, expires_in: 300 }))
        return
      }
      requests.push(seen)
      if (options.bearer && req.headers.authorization !== `Bearer ${token}`) {
        res.writeHead(401, {
          'www-authenticate': `Bearer realm="http://${host}/token",service="fake-registry",scope="repository:${repo}:pull"`,
          'content-type': 'application/json',
        })
        res.end(
          JSON.stringify({
            errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }],
          }),
        )
        return
      }
      if (url.pathname === '/v2/') {
        res.writeHead(200).end('{}')
        return
      }
      const manifestMatch = new RegExp(`^/v2/${repo}/manifests/(.+)$`).exec(url.pathname)
      if (manifestMatch) {
        const ref = manifestMatch[1]!
        const override = options.manifests?.[ref]
        if (override) {
          res.writeHead(200, {
            'content-type': override.contentType,
            'content-length': override.body.length,
          })
          res.end(override.body)
          return
        }
        if (tags.includes(ref) || ref === options.image.manifestDigest) {
          res.writeHead(200, {
            'content-type': 'application/vnd.oci.image.manifest.v1+json',
            'docker-content-digest': options.announce ?? options.image.manifestDigest,
          })
          res.end(options.image.manifest)
          return
        }
        res.writeHead(404, { 'content-type': 'application/json' })
        res.end(
          JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }),
        )
        return
      }
      const blobMatch = new RegExp(`^/v2/${repo}/blobs/(sha256:[0-9a-f]{64})$`).exec(url.pathname)
      const data = blobMatch && options.image.blobs.get(blobMatch[1]!)
      if (blobMatch && data) {
        const digest = blobMatch[1]!
        const attempt = attempts.get(digest) ?? 0
        attempts.set(digest, attempt + 1)
        const ctx: BlobContext = {
          digest,
          data,
          attempt,
          req,
          res,
          serve: () => serveRange(req, res, data),
        }
        if (!(options.blob && (await options.blob(ctx)))) ctx.serve()
        return
      }
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown' }] }))
    })()
  }
  host = h
  return {
    host,
    url: `http://${host}`,
    requests,
    blobRequests: () => requests.filter((r) => r.path.includes('/blobs/')),
    tokenRequests,
    rotateToken: () => {
      token = `tok-${randomBytes(4).toString('hex')}`
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** Sends `bytes` of `data`, waits until they are flushed, then kills the connection. */
export async function sendThenReset(
  res: ServerResponse,
  data: Buffer,
  bytes: number,
): Promise<void> {
  res.writeHead(200, { 'content-length': data.length, 'content-type': 'application/octet-stream' })
  await new Promise<void>((resolve) => res.write(data.subarray(0, bytes), () => resolve()))
  await new Promise((r) => setTimeout(r, 50))
  res.socket?.destroy()
}
