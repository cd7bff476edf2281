import { parseReference } from '@banger/registry-client'
import { describe, expect, it } from 'vitest'
import { defaultImageName, hostnameFor } from './names.js'

describe('defaultImageName', () => {
  it.each([
    ['debian:bookworm', 'debian-bookworm'],
    ['debian', 'debian-latest'],
    ['127.0.0.1:5000/team/app:v1.2', 'app-v1.2'],
    [`alpine@sha256:${'ab'.repeat(32)}`, 'alpine-abababababab'],
    [`alpine:3.20@sha256:${'ab'.repeat(32)}`, 'alpine-3.20'],
  ])('%s → %s', (ref, name) => {
    expect(defaultImageName(parseReference(ref))).toBe(name)
  })
})

describe('hostnameFor', () => {
  it('makes an RFC 1123 label', () => {
    expect(hostnameFor('Debian_Bookworm.1')).toBe('debian-bookworm-1')
    expect(hostnameFor('___')).toBe('banger')
    expect(hostnameFor('a'.repeat(80))).toHaveLength(63)
  })
})
