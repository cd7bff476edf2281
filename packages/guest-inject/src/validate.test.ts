import { describe, expect, it } from 'vitest'
import { validateAuthorizedKeys, validateHostname } from './validate.js'

const KEY =
  'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPc0u92+8iJztkPQQF/4jTonwa7umjIjBThV5VxEdxkj me@host'

describe('validateAuthorizedKeys', () => {
  it('accepts key lines, with options and trailing newlines', () => {
    expect(validateAuthorizedKeys([KEY + '\n', `no-pty,from="10.0.0.0/8" ${KEY}`])).toEqual([
      KEY,
      `no-pty,from="10.0.0.0/8" ${KEY}`,
    ])
    expect(
      validateAuthorizedKeys(['ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= x']),
    ).toHaveLength(1)
  })

  it('rejects an empty list, blank lines, several keys in one entry, private keys', () => {
    expect(() => validateAuthorizedKeys([])).toThrow(
      expect.objectContaining({ code: 'E_NO_AUTHORIZED_KEYS' }),
    )
    for (const bad of ['', '  ', `${KEY}\n${KEY}`, '-----BEGIN OPENSSH PRIVATE KEY-----']) {
      expect(() => validateAuthorizedKeys([bad])).toThrow(
        expect.objectContaining({ code: 'E_INVALID_AUTHORIZED_KEY' }),
      )
    }
  })

  it('rejects a line with no key type or no base64 data', () => {
    expect(() => validateAuthorizedKeys(['AAAAC3NzaC1lZDI1NTE5 me@host'])).toThrow(/key type/)
    expect(() => validateAuthorizedKeys(['ssh-ed25519'])).toThrow(/base64/)
    expect(() => validateAuthorizedKeys(['ssh-ed25519 not*base64'])).toThrow(/base64/)
  })
})

describe('validateHostname', () => {
  it('accepts RFC 1123 names up to 64 characters', () => {
    for (const name of ['web-1', 'a', 'vm.example.org', '1abc', 'x'.repeat(63)])
      expect(validateHostname(name)).toBe(name)
  })

  it('rejects the rest with E_INVALID_HOSTNAME', () => {
    for (const name of ['', 'bad_name', '-lead', 'trail-', 'a..b', 'x'.repeat(64), 'é', 'a b'])
      expect(() => validateHostname(name)).toThrow(
        expect.objectContaining({ code: 'E_INVALID_HOSTNAME' }),
      )
  })
})
