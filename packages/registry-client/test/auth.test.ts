import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { fakeImage, listen, sha, startFake } from './fake-registry.js'
import { client, drain, hashFile, tempCache } from './helpers.js'

describe('bearer token flow', () => {
  it('answers the challenge once, reuses the token for every blob, and refreshes on a new challenge', async () => {
    const image = fakeImage([3000, 4000, 5000])
    const fake = await startFake({ image, bearer: true })
    const cacheDir = await tempCache()
    const rc = client(cacheDir)
    const paths = await drain(await rc.pull(`${fake.host}/app:1`))
    for (const [i, p] of paths.entries()) expect(await hashFile(p)).toBe(sha(image.layers[i]!))

    expect(fake.tokenRequests).toHaveLength(1)
    const tokenUrl = new URL(fake.tokenRequests[0]!.path, 'http://x')
    expect(tokenUrl.searchParams.get('scope')).toBe('repository:app:pull')
    expect(tokenUrl.searchParams.get('service')).toBe('fake-registry')
    expect(fake.tokenRequests[0]!.headers.authorization).toBeUndefined() // anonymous
    // Only the very first request went without the token.
    expect(fake.requests.filter((r) => !r.headers.authorization)).toHaveLength(1)
    expect(fake.blobRequests()).toHaveLength(4)
    expect(
      fake.blobRequests().every((r) => r.headers.authorization?.startsWith('Bearer tok-')),
    ).toBe(true)

    fake.rotateToken()
    const again = await rc.resolve(`${fake.host}/app:1`)
    expect(again.manifestDigest).toBe(image.manifestDigest)
    expect(fake.tokenRequests).toHaveLength(2)
    await rc.close()
  })

  it('sends the Docker config credentials to the token service', async () => {
    const image = fakeImage([100])
    const fake = await startFake({ image, bearer: true })
    const cacheDir = await tempCache()
    const config = join(cacheDir, '..', `${cacheDir.split('/').pop()}-config.json`)
    writeFileSync(
      config,
      JSON.stringify({ auths: { [fake.host]: { username: 'u', password: 'p:w' } } }),
    )
    await client(cacheDir, { dockerConfigPath: config }).resolve(`${fake.host}/app:1`)
    expect(fake.tokenRequests[0]!.headers.authorization).toBe(
      `Basic ${Buffer.from('u:p:w').toString('base64')}`,
    )
  })

  it('follows a blob redirect to another host without sending it the token', async () => {
    const image = fakeImage([20_000])
    const layer = image.layers[0]!
    const storageSeen: { authorization?: string; path: string }[] = []
    const storage = await listen((req, res) => {
      storageSeen.push({
        path: req.url ?? '',
        ...(req.headers.authorization && { authorization: req.headers.authorization }),
      })
      res.writeHead(200, { 'content-length': layer.length }).end(layer)
    })
    const fake = await startFake({
      image,
      bearer: true,
      blob: (ctx) => {
        if (ctx.data !== layer) return false
        ctx.res
          .writeHead(307, { location: `http://${storage.host}/bucket/${ctx.digest}?sig=abc` })
          .end()
        return true
      },
    })
    const [path] = await drain(await client(await tempCache()).pull(`${fake.host}/app:1`))
    expect(await hashFile(path!)).toBe(sha(layer))
    expect(storageSeen).toEqual([{ path: `/bucket/${sha(layer)}?sig=abc` }])
    expect(
      fake.blobRequests().find((r) => r.path.endsWith(sha(layer)))!.headers.authorization,
    ).toMatch(/^Bearer /)
  })

  it('fails with E_AUTH when the token service refuses', async () => {
    const tokenService = await listen((_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"no"}')
    })
    const gate = await listen((_req, res) => {
      res
        .writeHead(401, {
          'www-authenticate': `Bearer realm="http://${tokenService.host}/token",service="x"`,
        })
        .end()
    })
    await expect(client(await tempCache()).resolve(`${gate.host}/app:1`)).rejects.toMatchObject({
      code: 'E_AUTH',
      message: expect.stringContaining('token service') as string,
    })
  })
})
