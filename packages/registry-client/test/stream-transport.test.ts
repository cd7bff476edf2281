import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import type { PullOptions, PullSession, StreamedLayer } from '../src/index.js'
import {
  fakeImage,
  sendThenReset,
  sha,
  startFake,
  type BlobContext,
  type FakeRegistry,
  type SeenRequest,
} from './fake-registry.js'
import {
  cachedBlobs,
  client,
  hashFile,
  hashStream,
  openFilesUnder,
  tempCache,
  tempFiles,
} from './helpers.js'

/** The first layer `streamLayers` yields. */
async function firstLayer(session: PullSession): Promise<StreamedLayer> {
  for await (const layer of session.streamLayers()) return layer
  throw new Error('no layers')
}

/** Pulls the fake's image into a fresh cache and opens its first layer's stream. */
async function pullAndStream(
  fake: FakeRegistry,
  options?: PullOptions,
): Promise<{ cacheDir: string; session: PullSession; stream: Readable }> {
  const cacheDir = await tempCache()
  const session = await client(cacheDir).pull(`${fake.host}/app:1`, options)
  const stream = (await firstLayer(session)).open()
  return { cacheDir, session, stream }
}

/** The GETs the fake saw for `layer`'s blob. */
const blobGets = (fake: FakeRegistry, layer: Buffer): SeenRequest[] =>
  fake.blobRequests().filter((r) => r.path.endsWith(sha(layer)))

/** Answers with the whole blob, as a 200, whatever Range asked for. */
function sendWhole(ctx: BlobContext): true {
  ctx.res.writeHead(200, { 'content-length': ctx.data.length })
  ctx.res.end(ctx.data)
  return true
}

/** Resolves with the stream's first chunk's length, once it has been read. */
function firstData(stream: Readable): Promise<number> {
  return new Promise((resolve) => stream.once('data', (chunk: Buffer) => resolve(chunk.length)))
}

/** Sends the first `bytes` of the blob, waits until `until` settles, then kills the connection. */
async function sendUntilThenReset(
  ctx: BlobContext,
  bytes: number,
  until: Promise<unknown>,
): Promise<void> {
  ctx.res.writeHead(200, { 'content-length': ctx.data.length })
  ctx.res.write(ctx.data.subarray(0, bytes))
  await until
  ctx.res.socket?.destroy()
}

/** A gate the test opens by hand. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void
  const opened = new Promise<void>((resolve) => (open = resolve))
  return { opened, open }
}

describe('streamLayers under transport failures', () => {
  it(
    'keeps streaming correct bytes across a reset resumed with 206',
    { timeout: 20_000 },
    async () => {
      const image = fakeImage([400_000])
      const layer = image.layers[0]!
      const streamed = gate()
      const fake = await startFake({
        image,
        blob: async (ctx) => {
          if (ctx.data !== layer || ctx.attempt > 0) return false
          await sendUntilThenReset(ctx, 150_000, streamed.opened)
          return true
        },
      })
      const { cacheDir, session, stream } = await pullAndStream(fake)
      const first = firstData(stream)
      const digest = hashStream(stream)
      // The stream has handed bytes out before the connection breaks.
      expect(await first).toBeGreaterThan(0)
      streamed.open()
      expect(await digest).toBe(sha(layer))
      await session.done
      const gets = blobGets(fake, layer)
      expect(gets).toHaveLength(2)
      expect(Number(/^bytes=(\d+)-$/.exec(gets[1]!.headers.range ?? '')?.[1])).toBeGreaterThan(0)
      expect(openFilesUnder(cacheDir)).toEqual([])
    },
  )

  it(
    'errors with E_STREAM_RESTARTED when a server ignores Range after bytes were handed out',
    { timeout: 20_000 },
    async () => {
      const image = fakeImage([300_000])
      const layer = image.layers[0]!
      const streamed = gate()
      const fake = await startFake({
        image,
        blob: async (ctx) => {
          if (ctx.data !== layer) return false
          if (ctx.attempt === 0) {
            await sendUntilThenReset(ctx, 100_000, streamed.opened)
            return true
          }
          return sendWhole(ctx)
        },
      })
      const { cacheDir, session, stream } = await pullAndStream(fake)
      let ended = false
      stream.on('end', () => (ended = true))
      const first = firstData(stream)
      const digest = hashStream(stream)
      expect(await first).toBeGreaterThan(0)
      streamed.open()
      await expect(digest).rejects.toMatchObject({
        code: 'E_STREAM_RESTARTED',
        digest: sha(layer),
      })
      expect(ended).toBe(false)
      // The download itself restarts and succeeds; only the follower had to give up.
      await session.done
      expect(await hashFile(join(cacheDir, 'blobs', 'sha256', sha(layer).slice(7)))).toBe(
        sha(layer),
      )
      expect(blobGets(fake, layer)[1]!.headers.range).toMatch(/^bytes=\d+-$/)
      expect(openFilesUnder(cacheDir)).toEqual([])
    },
  )

  it(
    'follows a restart from zero silently while it has handed out nothing',
    { timeout: 20_000 },
    async () => {
      const image = fakeImage([300_000])
      const layer = image.layers[0]!
      const fake = await startFake({
        image,
        blob: async (ctx) => {
          if (ctx.data !== layer) return false
          if (ctx.attempt === 0) {
            await sendThenReset(ctx.res, ctx.data, 100_000)
            return true
          }
          return sendWhole(ctx)
        },
      })
      // Opened (it holds the download's descriptor) but not read until the restart is over.
      const { cacheDir, session, stream } = await pullAndStream(fake)
      await session.done
      const gets = blobGets(fake, layer)
      expect(gets).toHaveLength(2)
      expect(gets[1]!.headers.range).toMatch(/^bytes=\d+-$/)
      expect(await hashStream(stream)).toBe(sha(layer))
      expect(openFilesUnder(cacheDir)).toEqual([])
    },
  )

  it('errors, never ends, when the bytes fail verification', { timeout: 20_000 }, async () => {
    const image = fakeImage([300_000])
    const layer = image.layers[0]!
    const wrong = Buffer.from(layer)
    wrong[wrong.length - 1]! ^= 0xff
    const allRead = gate()
    const fake = await startFake({
      image,
      blob: async (ctx) => {
        if (ctx.data !== layer) return false
        // Chunked, so the body (and the verdict) ends only when the follower has every byte.
        ctx.res.writeHead(200)
        ctx.res.write(wrong)
        await allRead.opened
        ctx.res.end()
        return true
      },
    })
    const { cacheDir, session, stream } = await pullAndStream(fake)
    let ended = false
    let bytes = 0
    stream.on('end', () => (ended = true))
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      if (bytes === layer.length) allRead.open()
    })
    const err = await hashStream(stream).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'E_DIGEST_MISMATCH' })
    await expect(session.done).rejects.toBe(err)
    // Every byte was handed out before the verdict; the stream still must not end.
    expect(bytes).toBe(layer.length)
    expect(ended).toBe(false)
    expect(cachedBlobs(cacheDir)).not.toContain(sha(layer))
    expect(tempFiles(cacheDir)).toEqual([])
    expect(openFilesUnder(cacheDir)).toEqual([])
  })

  it(
    'aborting the pull errors the stream and leaves no temp file or descriptor',
    { timeout: 20_000 },
    async () => {
      const image = fakeImage([2_000_000])
      const layer = image.layers[0]!
      const fake = await startFake({
        image,
        blob: (ctx) => {
          if (ctx.data !== layer) return false
          // Half the blob, then nothing until the client gives up.
          ctx.res.writeHead(200, { 'content-length': layer.length })
          ctx.res.write(layer.subarray(0, 1_000_000))
          return true
        },
      })
      const controller = new AbortController()
      const { cacheDir, session, stream } = await pullAndStream(fake, {
        signal: controller.signal,
      })
      const first = firstData(stream)
      const digest = hashStream(stream)
      expect(await first).toBeGreaterThan(0)
      expect(tempFiles(cacheDir)).toHaveLength(1)
      const reason = new Error('user pressed ^C')
      controller.abort(reason)
      await expect(digest).rejects.toBe(reason)
      await expect(session.done).rejects.toBe(reason)
      expect(tempFiles(cacheDir)).toEqual([])
      expect(cachedBlobs(cacheDir)).not.toContain(sha(layer))
      expect(openFilesUnder(cacheDir)).toEqual([])
      await fake.close()
    },
  )

  it(
    'destroying the stream releases its descriptor while the download carries on',
    { timeout: 20_000 },
    async () => {
      const image = fakeImage([3_000_000])
      const layer = image.layers[0]!
      const resume = gate()
      const fake = await startFake({
        image,
        blob: async (ctx) => {
          if (ctx.data !== layer) return false
          ctx.res.writeHead(200, { 'content-length': layer.length })
          ctx.res.write(layer.subarray(0, 500_000))
          await resume.opened
          ctx.res.end(layer.subarray(500_000))
          return true
        },
      })
      const { cacheDir, session, stream } = await pullAndStream(fake)
      expect(await firstData(stream)).toBeGreaterThan(0)
      // The download's descriptor and ours are one; destroying must not close it under the writer.
      await new Promise<void>((resolve) => stream.destroy().once('close', resolve))
      resume.open()
      await session.done
      expect(await hashFile(join(cacheDir, 'blobs', 'sha256', sha(layer).slice(7)))).toBe(
        sha(layer),
      )
      expect(openFilesUnder(cacheDir)).toEqual([])
    },
  )

  it(
    'holds at most about one chunk for a consumer that does not read (backpressure)',
    { timeout: 20_000 },
    async () => {
      const image = fakeImage([8 * 1024 * 1024])
      const layer = image.layers[0]!
      const fake = await startFake({ image })
      const { cacheDir, session, stream } = await pullAndStream(fake)
      stream.read(0) // start reading, then stop consuming
      await session.done
      await new Promise((r) => setTimeout(r, 100))
      expect(stream.readableLength).toBeGreaterThan(0)
      expect(stream.readableLength).toBeLessThanOrEqual(2 * 1024 * 1024)
      // The download finished and let go; the stream still reads the renamed file through its
      // own reference, to the last byte.
      expect(await hashStream(stream)).toBe(sha(layer))
      expect(blobGets(fake, layer)).toHaveLength(1)
      expect(openFilesUnder(cacheDir)).toEqual([])
    },
  )
})
