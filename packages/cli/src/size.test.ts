import { describe, expect, it } from 'vitest'
import { formatBytes, parseSize } from './size.js'

describe('parseSize', () => {
  it.each([
    ['4G', 4 * 1024 ** 3],
    ['512M', 512 * 1024 ** 2],
    ['1.5GiB', 1.5 * 1024 ** 3],
    ['1073741824', 1073741824],
    ['100k', 102400],
    ['2KB', 2048],
    ['1t', 1024 ** 4],
    ['10b', 10],
    ['.5M', 512 * 1024],
    [' 3 G ', 3 * 1024 ** 3],
    ['1.1K', 1126],
  ])('%s → %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes)
  })

  it.each(['', 'lots', '4X', '-1G', '0', '0M', '1.2.3G', 'G', '4 GBs', '1e9', '99999999P'])(
    'rejects %j with E_BAD_SIZE and a hint',
    (text) => {
      let caught: unknown
      try {
        parseSize(text)
      } catch (err) {
        caught = err
      }
      expect(caught).toMatchObject({ code: 'E_BAD_SIZE', exitCode: 2 })
      const err = caught as { message: string; hint: string }
      expect(err.message).toContain(`'${text}'`)
      expect(err.hint).toMatch(/4G, 512M, 1\.5GiB/)
    },
  )
})

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [512, '512 B'],
    [1536, '1.5 KiB'],
    [10 * 1024 * 1024, '10 MiB'],
    [1.25 * 1024 ** 3, '1.3 GiB'],
    [-1, '?'],
  ])('%d → %s', (n, text) => {
    expect(formatBytes(n)).toBe(text)
  })
})
