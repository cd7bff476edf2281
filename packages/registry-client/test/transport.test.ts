import { readFileSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { fakeImage, sendThenReset, sha, startFake } from './fake-registry.js'
import { cachedBlobs, client, drain, hashFile, tempCache, tempFiles } from './helpers.js'

describe('transport failures a real registry will not produce on demand', () => {
  it('resumes a blob cut off mid-body with Range and verifies the joined bytes', async () => {
    const image = fakeImage([200_000])
    const layer = image.layers[0]!
    const fake = await startFake({
      image,
      blob: async (ctx) => {
        if (ctx.data !== layer || ctx.attempt > 0) return false
        await sendThenReset(ctx.res, ctx.data, 80_000)
        return true
      },
    })
    const cacheDir = await tempCache()
    const session = await client(cacheDir).pull(`${fake.host}/app:1`)
    const [path] = await drain(session)
    expect(await hashFile(path!)).toBe(sha(layer))
    const gets = fake.blobRequests().filter((r) => r.path.endsWith(sha(layer)))
    expect(gets).toHaveLength(2)
    expect(gets[0]!.headers.range).toBeUndefined()
    // The client asked only for what it was missing (at least some bytes arrived before the reset).
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(gets[1]!.headers.range ?? '')?.[1])
    expect(resumedAt).toBeGreaterThan(0)
    expect(resumedAt).toBeLessThanOrEqual(80_000)
  })

  it('starts over when the server answers a Range request with 200', async () => {
    const image = fakeImage([150_000])
    const layer = image.layers[0]!
    const fake = await startFake({
      image,
      blob: async (ctx) => {
        if (ctx.data !== layer) return false
        if (ctx.attempt === 0) {
          await sendThenReset(ctx.res, ctx.data, 60_000)
          return true
        }
        ctx.res.writeHead(200, { 'content-length': ctx.data.length })
        ctx.res.end(ctx.data) // ignores Range
        return true
      },
    })
    const cacheDir = await tempCache()
    const [path] = await drain(await client(cacheDir).pull(`${fake.host}/app:1`))
    expect(await hashFile(path!)).toBe(sha(layer))
    expect(readFileSync(path!).length).toBe(layer.length)
    expect(
      fake.blobRequests().filter((r) => r.path.endsWith(sha(layer)))[1]!.headers.range,
    ).toMatch(/^bytes=\d+-$/)
  })

  it('rejects a 206 whose Content-Range does not start where it asked', async () => {
    const image = fakeImage([100_000])
    const layer = image.layers[0]!
    const fake = await startFake({
      image,
      blob: async (ctx) => {
        if (ctx.data !== layer) return false
        if (ctx.attempt === 0) {
          await sendThenReset(ctx.res, ctx.data, 30_000)
          return true
        }
        ctx.res.writeHead(206, {
          'content-range': `bytes 0-${ctx.data.length - 1}/${ctx.data.length}`,
        })
        ctx.res.end(ctx.data)
        return true
      },
    })
    const cacheDir = await tempCache()
    const session = await client(cacheDir).pull(`${fake.host}/app:1`)
    await expect(session.done).rejects.toMatchObject({ code: 'E_BAD_RANGE_RESPONSE' })
    expect(cachedBlobs(cacheDir)).not.toContain(sha(layer))
    expect(tempFiles(cacheDir)).toEqual([])
  })

  it('waits as long as 429 Retry-After says, then succeeds', async () => {
    const image = fakeImage([1000])
    const layer = image.layers[0]!
    const fake = await startFake({
      image,
      blob: (ctx) => {
        if (ctx.data !== layer || ctx.attempt > 0) return false
        ctx.res.writeHead(429, { 'retry-after': '1' }).end('slow down')
        return true
      },
    })
    const cacheDir = await tempCache()
    const [path] = await drain(await client(cacheDir).pull(`${fake.host}/app:1`))
    expect(await hashFile(path!)).toBe(sha(layer))
    const gets = fake.blobRequests().filter((r) => r.path.endsWith(sha(layer)))
    expect(gets).toHaveLength(2)
    expect(gets[1]!.at - gets[0]!.at).toBeGreaterThanOrEqual(950)
  })

  it('fails with E_REGISTRY_HTTP when Retry-After asks for more than maxRetryAfterMs', async () => {
    const image = fakeImage([1000])
    const fake = await startFake({
      image,
      blob: (ctx) => {
        ctx.res.writeHead(429, { 'retry-after': '3600' }).end()
        return true
      },
    })
    const started = Date.now()
    await expect(client(await tempCache()).resolve(`${fake.host}/app:1`)).rejects.toMatchObject({
      code: 'E_REGISTRY_HTTP',
      status: 429,
    })
    expect(Date.now() - started).toBeLessThan(3000)
  })

  it('retries a connection reset before any response, and a 503', async () => {
    const image = fakeImage([5000])
    const layer = image.layers[0]!
    const fake = await startFake({
      image,
      blob: (ctx) => {
        if (ctx.data !== layer || ctx.attempt > 1) return false
        if (ctx.attempt === 0) ctx.res.socket?.destroy()
        else ctx.res.writeHead(503).end('busy')
        return true
      },
    })
    const [path] = await drain(await client(await tempCache()).pull(`${fake.host}/app:1`))
    expect(await hashFile(path!)).toBe(sha(layer))
    expect(fake.blobRequests().filter((r) => r.path.endsWith(sha(layer)))).toHaveLength(3)
  })

  it('gives up after the configured attempts with E_REGISTRY_HTTP naming the status', async () => {
    const image = fakeImage([5000])
    const fake = await startFake({
      image,
      blob: (ctx) => {
        ctx.res.writeHead(502, { 'content-type': 'application/json' })
        ctx.res.end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'backend down' }] }))
        return true
      },
    })
    const err = await client(await tempCache())
      .resolve(`${fake.host}/app:1`)
      .catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'E_REGISTRY_HTTP', status: 502 })
    expect((err as Error).message).toContain('backend down')
    expect(fake.blobRequests()).toHaveLength(4) // quickRetry.attempts
  })

  it('skips a failing mirror after two tries instead of retrying it for every blob', async () => {
    const image = fakeImage([1000, 2000, 3000])
    const origin = await startFake({ image })
    const mirror = await startFake({
      image,
      manifests: {},
      tags: [],
      blob: (ctx) => {
        ctx.res.writeHead(503).end()
        return true
      },
    })
    const rc = client(await tempCache(), { mirrors: { [origin.host]: [mirror.url] } })
    await drain(await rc.pull(`${origin.host}/app:1`))
    // The mirror 404s the manifest (kept in use), then 503s the config twice and is benched.
    expect(mirror.requests.filter((r) => r.path.includes('/manifests/'))).toHaveLength(1)
    expect(mirror.blobRequests()).toHaveLength(2)
    expect(origin.blobRequests()).toHaveLength(4)
    await rc.close()
  })

  it('retries 503 with backoff', async () => {
    const image = fakeImage([5000])
    const layer = image.layers[0]!
    const fake = await startFake({
      image,
      blob: (ctx) => {
        if (ctx.data !== layer || ctx.attempt > 1) return false
        ctx.res.writeHead(503).end('busy')
        return true
      },
    })
    const [path] = await drain(await client(await tempCache()).pull(`${fake.host}/app:1`))
    expect(await hashFile(path!)).toBe(sha(layer))
    expect(fake.blobRequests().filter((r) => r.path.endsWith(sha(layer)))).toHaveLength(3)
  })

  it('never makes a blob with the wrong digest visible, and stops the other downloads', async () => {
    const image = fakeImage([4096, 300_000])
    const [bad, slow] = image.layers as [Buffer, Buffer]
    const fake = await startFake({
      image,
      blob: async (ctx) => {
        if (ctx.data === bad) {
          ctx.res.writeHead(200, { 'content-length': bad.length }).end(Buffer.alloc(bad.length, 1))
          return true
        }
        if (ctx.data === slow) {
          // Trickle so that the bad layer fails while this one is still in flight.
          ctx.res.writeHead(200, { 'content-length': slow.length })
          for (let off = 0; off < slow.length && !ctx.res.destroyed; off += 16_384) {
            ctx.res.write(slow.subarray(off, off + 16_384))
            await new Promise((r) => setTimeout(r, 50))
          }
          ctx.res.end()
          return true
        }
        return false
      },
    })
    const cacheDir = await tempCache()
    const rc = client(cacheDir)
    const session = await rc.pull(`${fake.host}/app:1`)
    const iterate = async (): Promise<void> => {
      for await (const layer of session.cachedLayers()) expect(layer.index).toBe(-1) // never reached
    }
    await expect(iterate()).rejects.toMatchObject({ code: 'E_DIGEST_MISMATCH' })
    await expect(session.done).rejects.toMatchObject({ code: 'E_DIGEST_MISMATCH' })
    expect(cachedBlobs(cacheDir)).toEqual([image.configDigest, image.manifestDigest].sort())
    expect(tempFiles(cacheDir)).toEqual([])
    const index = JSON.parse(readFileSync(join(cacheDir, 'index.json'), 'utf8')) as {
      manifests: unknown[]
    }
    expect(index.manifests).toEqual([])
    await rc.close()
  })

  it('never caches a zero-length body (the poisoned-cache bug) and the next pull succeeds', async () => {
    const image = fakeImage([4096])
    const layer = image.layers[0]!
    let broken = true
    const fake = await startFake({
      image,
      blob: (ctx) => {
        if (ctx.data !== layer || !broken) return false
        ctx.res.writeHead(200, { 'content-length': 0 }).end()
        return true
      },
    })
    const cacheDir = await tempCache()
    const first = await client(cacheDir).pull(`${fake.host}/app:1`)
    await expect(first.done).rejects.toMatchObject({ code: 'E_SIZE_MISMATCH' })
    expect(cachedBlobs(cacheDir)).not.toContain(sha(layer))
    expect(tempFiles(cacheDir)).toEqual([])
    broken = false
    const [path] = await drain(await client(cacheDir).pull(`${fake.host}/app:1`))
    expect(await hashFile(path!)).toBe(sha(layer))
  })

  const lanAddress = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && !i.internal && i.family === 'IPv4')?.address

  it.skipIf(!lanAddress)(
    'uses HTTPS for a non-loopback host unless it is in insecureRegistries',
    async () => {
      const image = fakeImage([100])
      const fake = await startFake({ image, address: '0.0.0.0' })
      const host = `${lanAddress}:${fake.host.split(':')[1]}`
      const err = await client(await tempCache())
        .resolve(`${host}/app:1`)
        .catch((e: unknown) => e)
      expect(err).toMatchObject({ code: 'E_REGISTRY_UNREACHABLE' })
      expect((err as Error).message).toContain(`https://${host}/v2/app/manifests/1`)
      expect(fake.requests).toEqual([]) // a TLS hello is not an HTTP request
      const ok = await client(await tempCache(), { insecureRegistries: [host] }).resolve(
        `${host}/app:1`,
      )
      expect(ok.manifestDigest).toBe(image.manifestDigest)
    },
  )
})
