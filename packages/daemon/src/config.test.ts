import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { loadConfig } from './config.js'

function file(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'banger-config-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'config.json')
  writeFileSync(path, text)
  return path
}

describe('loadConfig', () => {
  it('defaults when the file is missing', async () => {
    expect(await loadConfig('/nonexistent/banger/config.json')).toEqual({
      mirrors: {},
      insecureRegistries: [],
      authorizedKeys: [],
      rootfsCache: true,
    })
  })

  it('reads every field', async () => {
    const config = {
      mirrors: { 'docker.io': ['http://127.0.0.1:5001'] },
      insecureRegistries: ['reg.local:5000'],
      defaultKernel: 'k1',
      defaultSizeBytes: 2147483648,
      authorizedKeys: ['ssh-ed25519 AAAA x'],
      rootfsCache: false,
    }
    expect(await loadConfig(file(JSON.stringify(config)))).toEqual(config)
  })

  it('names the bad field, or the JSON error', async () => {
    await expect(loadConfig(file('{"defaultSizeBytes": "4G"}'))).rejects.toMatchObject({
      code: 'E_CONFIG_INVALID',
      message: expect.stringContaining('defaultSizeBytes') as string,
    })
    await expect(loadConfig(file('{"mirror": {}}'))).rejects.toMatchObject({
      code: 'E_CONFIG_INVALID',
    })
    await expect(loadConfig(file('{nope'))).rejects.toMatchObject({
      code: 'E_CONFIG_INVALID',
      message: expect.stringContaining('not valid JSON') as string,
    })
  })
})
