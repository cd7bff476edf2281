import { describe, expect, it } from 'vitest'
import { CliError, formatError } from './errors.js'

describe('formatError', () => {
  it('prints one line, and the hint on a second', () => {
    const err = new CliError('E_X', 'image foo not found', 'list images with: banger image list')
    expect(formatError(err)).toBe(
      'banger: image foo not found\nhint: list images with: banger image list\n',
    )
  })

  it('prints no stack and folds a multi-line message without --debug', () => {
    const err = new Error('first line\n  second line')
    expect(formatError(err)).toBe('banger: first line second line\n')
  })

  it('reads a hint from a JSON-RPC error.data too', () => {
    expect(formatError({ message: 'm', data: { code: 'E_Y', hint: 'do this' } })).toBe(
      'banger: m\nhint: do this\n',
    )
  })

  it('adds code, stack and causes with --debug', () => {
    const cause = new Error('root cause')
    const err = new CliError('E_Z', 'outer', undefined, { cause })
    const text = formatError(err, true)
    expect(text).toMatch(/^banger: outer\ncode: E_Z\nCliError: outer\n\s+at /)
    expect(text).toMatch(/caused by: Error: root cause\n\s+at /)
  })

  it('copes with things that are not errors', () => {
    expect(formatError('plain string')).toBe('banger: plain string\n')
    expect(formatError(undefined)).toBe('banger: undefined\n')
  })
})
