import { spawn } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { fakeImage, sha, startFake, type BlobContext, type FakeImage } from './fake-registry.js'
import { cachedBlobs, client, drain, hashFile, tempCache, tempFiles } from './helpers.js'

export const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url))
export const childScript = fileURLToPath(new URL('./pull-child.mjs', import.meta.url))

/** Serves blobs in 16 KiB pieces every `delayMs` while `slow()` is true. */
function trickle(slow: () => boolean, delayMs = 40) {
  return async (ctx: BlobContext): Promise<boolean> => {
    if (!slow() || ctx.data.length < 50_000) return false
    ctx.res.writeHead(200, { 'content-length': ctx.data.length })
    for (let off = 0; off < ctx.data.length; off += 16_384) {
      if (ctx.res.destroyed) return true
      ctx.res.write(ctx.data.subarray(off, off + 16_384))
      await new Promise((r) => setTimeout(r, delayMs))
    }
    ctx.res.end()
    return true
  }
}

function indexNames(cacheDir: string): string[] {
  const index = JSON.parse(readFileSync(join(cacheDir, 'index.json'), 'utf8')) as {
    manifests: { annotations?: Record<string, string> }[]
  }
  return index.manifests
    .map((m) => m.annotations?.['org.opencontainers.image.ref.name'] ?? '')
    .sort()
}

function startChild(cacheDir: string, ref: string) {
  const child = spawn(process.execPath, [childScript, dist, cacheDir, ref], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
  const exited = new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, out, err })),
  )
  return { child, exited, output: () => out }
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('cache safety', () => {
  it('an aborted pull leaves no visible blob and no temp file; the next pull succeeds', async () => {
    const image = fakeImage([400_000])
    const layer = image.layers[0]!
    let slow = true
    const fake = await startFake({ image, blob: trickle(() => slow) })
    const cacheDir = await tempCache()
    const controller = new AbortController()
    const session = await client(cacheDir).pull(`${fake.host}/app:1`, {
      signal: controller.signal,
      onProgress: (e) => {
        if (e.type === 'layer-progress' && e.bytes > 0) controller.abort()
      },
    })
    await expect(session.done).rejects.toMatchObject({ name: 'AbortError' })
    expect(cachedBlobs(cacheDir)).not.toContain(sha(layer))
    expect(tempFiles(cacheDir)).toEqual([])

    slow = false
    const [path] = await drain(await client(cacheDir).pull(`${fake.host}/app:1`))
    expect(await hashFile(path!)).toBe(sha(layer))
    await expect(
      client(cacheDir).resolve(`${fake.host}/app:1`, { signal: AbortSignal.abort() }),
    ).rejects.toMatchObject({
      name: 'AbortError',
    })
  })

  it('a pull killed (SIGKILL) mid-blob leaves no visible blob; the next pull succeeds', async () => {
    const image = fakeImage([600_000])
    const layer = image.layers[0]!
    let slow = true
    const fake = await startFake({ image, blob: trickle(() => slow, 60) })
    const cacheDir = await tempCache()
    const run = startChild(cacheDir, `${fake.host}/app:1`)
    await waitFor('the child to write part of the blob', () =>
      tempFiles(cacheDir).some((f) => statSync(join(cacheDir, 'tmp', f)).size > 0),
    )
    run.child.kill('SIGKILL')
    await run.exited
    expect(cachedBlobs(cacheDir)).not.toContain(sha(layer))
    expect(tempFiles(cacheDir).length).toBeGreaterThan(0) // the dead process's partial file, invisible

    slow = false
    const [path] = await drain(await client(cacheDir).pull(`${fake.host}/app:1`))
    expect(await hashFile(path!)).toBe(sha(layer))
  })

  it('hands over layer 0 while a later layer is still downloading', async () => {
    const image = fakeImage([10_000, 20_000, 400_000])
    const last = image.layers[2]!
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => (release = resolve))
    const fake = await startFake({
      image,
      blob: async (ctx) => {
        if (ctx.data !== last) return false
        ctx.res.writeHead(200, { 'content-length': last.length })
        ctx.res.write(last.subarray(0, 1000))
        await gate // held until the caller has layer 0 and 1
        ctx.res.end(last.subarray(1000))
        return true
      },
    })
    const cacheDir = await tempCache()
    const session = await client(cacheDir).pull(`${fake.host}/app:1`)
    const seen: number[] = []
    for await (const layer of session.cachedLayers()) {
      seen.push(layer.index)
      expect(layer.diffId).toBe(session.config.rootfs.diff_ids[layer.index])
      if (layer.index === 1) {
        expect(cachedBlobs(cacheDir)).not.toContain(sha(last))
        release()
      }
    }
    expect(seen).toEqual([0, 1, 2])
    await session.done
    expect(cachedBlobs(cacheDir)).toContain(sha(last))
  })

  it('two pulls in one process share each in-flight blob download', async () => {
    const image = fakeImage([300_000, 200_000, 100_000])
    const fake = await startFake({ image, tags: ['1', '2'], blob: trickle(() => true, 10) })
    const cacheDir = await tempCache()
    const [a, b] = await Promise.all([
      client(cacheDir).pull(`${fake.host}/app:1`),
      client(cacheDir).pull(`${fake.host}/app:2`),
    ])
    const [pa, pb] = await Promise.all([drain(a), drain(b)])
    expect(pa).toEqual(pb)
    for (const [i, l] of image.layers.entries()) {
      expect(await hashFile(pa[i]!)).toBe(sha(l))
      expect(fake.blobRequests().filter((r) => r.path.endsWith(sha(l)))).toHaveLength(1)
    }
    expect(indexNames(cacheDir)).toEqual([`${fake.host}/app:1`, `${fake.host}/app:2`])
  })

  it('two processes pulling into one cache at once stay consistent', async () => {
    const image: FakeImage = fakeImage([300_000, 250_000])
    const fake = await startFake({ image, tags: ['1', '2', '3'], blob: trickle(() => true, 25) })
    const cacheDir = await tempCache()
    await client(cacheDir).resolve(`${fake.host}/app:3`) // lay out the cache first, as a daemon would
    const other = startChild(cacheDir, `${fake.host}/app:2`)
    const third = startChild(cacheDir, `${fake.host}/app:3`)
    const mine = await drain(await client(cacheDir).pull(`${fake.host}/app:1`))
    const [theirs, third3] = await Promise.all([other.exited, third.exited])
    expect(theirs.code, theirs.out + theirs.err).toBe(0)
    expect(third3.code, third3.out + third3.err).toBe(0)
    expect(
      (JSON.parse(theirs.out.trim().split('\n').at(-1)!) as { paths: string[] }).paths,
    ).toEqual(mine)
    for (const [i, l] of image.layers.entries()) expect(await hashFile(mine[i]!)).toBe(sha(l))
    expect(cachedBlobs(cacheDir)).toEqual(
      [image.manifestDigest, image.configDigest, ...image.layers.map(sha)].sort(),
    )
    expect(tempFiles(cacheDir)).toEqual([])
    // Three writers of index.json, none lost.
    expect(indexNames(cacheDir)).toEqual([1, 2, 3].map((t) => `${fake.host}/app:${t}`))
  })
})

describe('manifest checks', () => {
  it('refuses schema1, oversized manifests, and a manifest that does not match its digest', async () => {
    const image = fakeImage([100])
    const other = fakeImage([200])
    const schema1 = Buffer.from(
      JSON.stringify({ schemaVersion: 1, name: 'app', tag: 'old', fsLayers: [] }),
    )
    const fake = await startFake({
      image,
      manifests: {
        old: {
          body: schema1,
          contentType: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
        },
        big: {
          body: Buffer.alloc(5 * 1024 * 1024, 32),
          contentType: 'application/vnd.oci.image.manifest.v1+json',
        },
        [other.manifestDigest]: {
          body: image.manifest,
          contentType: 'application/vnd.oci.image.manifest.v1+json',
        },
      },
    })
    const rc = client(await tempCache())
    const err = await rc.resolve(`${fake.host}/app:old`).catch((e: unknown) => e)
    expect(err).toMatchObject({
      code: 'E_UNSUPPORTED_MANIFEST',
      message: expect.stringContaining('schema1') as string,
    })
    await expect(rc.resolve(`${fake.host}/app:big`)).rejects.toMatchObject({
      code: 'E_MANIFEST_TOO_LARGE',
    })
    await expect(rc.resolve(`${fake.host}/app@${other.manifestDigest}`)).rejects.toMatchObject({
      code: 'E_DIGEST_MISMATCH',
    })
    // By tag, a Docker-Content-Digest header that disagrees with the bytes is caught too.
    const lying = await startFake({ image: other, announce: image.manifestDigest })
    await expect(rc.resolve(`${lying.host}/app:1`)).rejects.toMatchObject({
      code: 'E_DIGEST_MISMATCH',
    })
    await rc.close()
  })
})
