import { InvalidAuthorizedKeyError, InvalidHostnameError, NoAuthorizedKeysError } from './errors.js'

const KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-rsa',
  'ssh-dss',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
])

/**
 * Checks authorized_keys lines: one key per entry, an optional options field, a known key type
 * and base64 key data. Returns the lines trimmed.
 */
export function validateAuthorizedKeys(keys: readonly string[]): string[] {
  if (!keys.length) throw new NoAuthorizedKeysError()
  return keys.map((raw) => {
    const key = raw.trim()
    if (!key) throw new InvalidAuthorizedKeyError(raw, 'is empty')
    if (/[\n\r\0]/.test(key))
      throw new InvalidAuthorizedKeyError(raw, 'spans several lines: pass one key per entry')
    if (key.startsWith('-----') || key.includes('PRIVATE KEY'))
      throw new InvalidAuthorizedKeyError(raw, 'looks like a private key: pass the .pub file')
    const fields = key.split(/\s+/)
    const at = fields.findIndex((field) => KEY_TYPES.has(field))
    if (at < 0) throw new InvalidAuthorizedKeyError(raw, 'has no known key type (e.g. ssh-ed25519)')
    const data = fields[at + 1]
    if (!data || !/^[A-Za-z0-9+/]+={0,3}$/.test(data))
      throw new InvalidAuthorizedKeyError(raw, 'has no base64 key data after its type')
    return key
  })
}

/** A hostname the kernel accepts (64 bytes) made of RFC 1123 labels. */
export function validateHostname(hostname: string): string {
  const labels = hostname.split('.')
  const ok =
    hostname.length > 0 &&
    hostname.length <= 64 &&
    labels.every((label) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label))
  if (!ok) throw new InvalidHostnameError(hostname)
  return hostname
}
