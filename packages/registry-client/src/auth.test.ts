import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DockerCredentials, parseChallenge } from './auth.js'

describe('parseChallenge', () => {
  it("parses Docker Hub's bearer challenge", () => {
    expect(
      parseChallenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull"',
      ),
    ).toEqual({
      scheme: 'bearer',
      params: {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
        scope: 'repository:library/debian:pull',
      },
    })
  })

  it('handles basic, unquoted values, escapes and spacing', () => {
    expect(parseChallenge('Basic realm="Registry Realm"')).toEqual({
      scheme: 'basic',
      params: { realm: 'Registry Realm' },
    })
    expect(parseChallenge('Bearer realm=https://x/t , service=svc,error="invalid_token"')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://x/t', service: 'svc', error: 'invalid_token' },
    })
    expect(parseChallenge('Bearer realm="a\\"b"')?.params.realm).toBe('a"b')
    expect(parseChallenge('')).toBeUndefined()
  })
})

describe('DockerCredentials', () => {
  const dirs: string[] = []
  const oldPath = process.env.PATH
  afterEach(() => {
    process.env.PATH = oldPath
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
  })
  const configWith = (content: unknown): string => {
    const dir = mkdtempSync(join(tmpdir(), 'banger-rc-creds-'))
    dirs.push(dir)
    writeFileSync(join(dir, 'config.json'), JSON.stringify(content))
    return join(dir, 'config.json')
  }
  const b64 = (s: string): string => Buffer.from(s).toString('base64')

  it('matches auths keys written as URLs, and the Docker Hub legacy key', async () => {
    const creds = new DockerCredentials(
      configWith({
        auths: {
          'https://index.docker.io/v1/': { auth: b64('hub:pw:with:colons') },
          'http://reg.example:5000/v2/': { username: 'u', password: 'p' },
        },
      }),
    )
    expect(await creds.get('docker.io')).toEqual({ username: 'hub', password: 'pw:with:colons' })
    expect(await creds.get('reg.example:5000')).toEqual({ username: 'u', password: 'p' })
    expect(await creds.get('reg.example')).toBeUndefined()
  })

  it('reads nothing from a missing file', async () => {
    expect(await new DockerCredentials('/nonexistent/config.json').get('docker.io')).toBeUndefined()
  })

  it('falls back to auths when the credsStore helper has no entry', async () => {
    const path = configWith({ credsStore: 'empty', auths: { 'reg.example': { auth: b64('a:b') } } })
    const bin = join(path, '..', 'docker-credential-empty')
    writeFileSync(bin, '#!/bin/sh\necho "credentials not found in native keychain"\nexit 1\n')
    chmodSync(bin, 0o755)
    process.env.PATH = `${join(path, '..')}:${oldPath}`
    expect(await new DockerCredentials(path).get('reg.example')).toEqual({
      username: 'a',
      password: 'b',
    })
  })

  it('reports a helper that prints garbage', async () => {
    const path = configWith({ credHelpers: { 'reg.example': 'broken' } })
    const bin = join(path, '..', 'docker-credential-broken')
    writeFileSync(bin, '#!/bin/sh\necho not json\n')
    chmodSync(bin, 0o755)
    process.env.PATH = `${join(path, '..')}:${oldPath}`
    await expect(new DockerCredentials(path).get('reg.example')).rejects.toMatchObject({
      code: 'E_CREDENTIAL_HELPER',
    })
  })
})
