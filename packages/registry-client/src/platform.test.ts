import { describe, expect, it } from 'vitest'
import { parsePlatform, platformMatches } from './platform.js'

describe('platforms', () => {
  it('defaults to linux/amd64 and parses variants and aliases', () => {
    expect(parsePlatform(undefined)).toEqual({ os: 'linux', architecture: 'amd64' })
    expect(parsePlatform('linux/arm64/v8')).toEqual({
      os: 'linux',
      architecture: 'arm64',
      variant: 'v8',
    })
    expect(parsePlatform('linux/x86_64')).toEqual({ os: 'linux', architecture: 'amd64' })
  })

  it.each(['linux', 'linux/', 'a/b/c/d', 'linux/am d64'])('rejects %j', (p) => {
    expect(() => parsePlatform(p)).toThrow(expect.objectContaining({ code: 'E_BAD_PLATFORM' }))
  })

  it('matches arm64 with and without the implied v8 variant, never across variants', () => {
    const arm64 = parsePlatform('linux/arm64')
    expect(platformMatches(arm64, { os: 'linux', architecture: 'arm64', variant: 'v8' })).toBe(true)
    expect(
      platformMatches(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' }),
    ).toBe(true)
    expect(
      platformMatches(parsePlatform('linux/arm/v7'), {
        os: 'linux',
        architecture: 'arm',
        variant: 'v6',
      }),
    ).toBe(false)
    expect(platformMatches(arm64, { os: 'linux', architecture: 'amd64' })).toBe(false)
    expect(platformMatches(arm64, { os: 'windows', architecture: 'arm64' })).toBe(false)
  })
})
