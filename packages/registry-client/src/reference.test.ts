import { describe, expect, it } from 'vitest'
import { formatReference, parseReference } from './reference.js'

const hex = 'a'.repeat(64)
const digest = `sha256:${hex}`

// Expected values follow distribution/reference's ParseNormalizedNamed (what `docker pull` does).
const valid: [string, string][] = [
  ['debian', 'docker.io/library/debian:latest'],
  ['debian:bookworm', 'docker.io/library/debian:bookworm'],
  ['library/debian', 'docker.io/library/debian:latest'],
  ['docker.io/debian', 'docker.io/library/debian:latest'],
  ['index.docker.io/library/debian:12', 'docker.io/library/debian:12'],
  ['foo/bar', 'docker.io/foo/bar:latest'],
  ['foo/bar/baz:v1.2', 'docker.io/foo/bar/baz:v1.2'],
  ['localhost/foo', 'localhost/foo:latest'],
  ['localhost:5000/foo/bar:tag', 'localhost:5000/foo/bar:tag'],
  ['127.0.0.1:5000/app', '127.0.0.1:5000/app:latest'],
  ['[::1]:5000/app:x', '[::1]:5000/app:x'],
  ['quay.io/coreos/etcd:v3.5.0', 'quay.io/coreos/etcd:v3.5.0'],
  ['ghcr.io/a-b/c_d/e.f:latest', 'ghcr.io/a-b/c_d/e.f:latest'],
  ['Registry/app', 'Registry/app:latest'], // an uppercase first component can only be a host
  ['localhost:5000', 'docker.io/library/localhost:5000'], // host:port alone is repo:tag
  ['foo__bar', 'docker.io/library/foo__bar:latest'],
  ['foo--bar', 'docker.io/library/foo--bar:latest'],
  [`debian@${digest}`, `docker.io/library/debian@${digest}`],
  [`debian:12@${digest}`, `docker.io/library/debian:12@${digest}`],
  [`example.com:443/a/b:t@${digest}`, `example.com:443/a/b:t@${digest}`],
  ['debian:_under', 'docker.io/library/debian:_under'],
  [`debian:${'t'.repeat(128)}`, `docker.io/library/debian:${'t'.repeat(128)}`],
]

const invalid: [string, RegExp][] = [
  ['', /empty/],
  [' debian', /whitespace/],
  [hex, /image ID/],
  ['debian:', /tag ""/],
  [':tag', /repository name is missing/],
  ['debian:-bad', /tag "-bad"/],
  [`debian:${'t'.repeat(129)}`, /tag/],
  ['foo/Bar', /"foo\/Bar" must be lowercase|"Bar"/],
  ['Debian', /must be lowercase/],
  ['foo//bar', /empty path component/],
  ['foo___bar', /component "foo___bar"/],
  ['-foo', /component "-foo"/],
  ['foo/bar-', /component "bar-"/],
  ['debian@sha256:abc', /digest "sha256:abc"/],
  [`debian@md5:${'0'.repeat(32)}`, /digest "md5:.*" is not sha256/],
  [`debian@sha256:${'A'.repeat(64)}`, /lowercase hex/],
  ['bad_host.com:x/foo', /registry host "bad_host.com:x"|tag/],
  ['-host.com/foo', /registry host "-host.com"/],
  [`example.com/${'a'.repeat(250)}`, /longer than 255/],
]

describe('parseReference', () => {
  it.each(valid)('%s → %s', (input, canonical) => {
    expect(formatReference(parseReference(input))).toBe(canonical)
  })

  it.each(invalid)('rejects %j naming the bad part', (input, message) => {
    expect(() => parseReference(input)).toThrow(message)
    expect(() => parseReference(input)).toThrow(
      expect.objectContaining({ code: 'E_BAD_REFERENCE' }),
    )
  })

  it('splits registry, repository, tag and digest', () => {
    expect(parseReference(`localhost:5000/a/b:t@${digest}`)).toEqual({
      registry: 'localhost:5000',
      repository: 'a/b',
      tag: 't',
      digest,
    })
    expect(parseReference(`a@${digest}`)).not.toHaveProperty('tag')
  })

  it('round-trips its own canonical form', () => {
    for (const [input] of valid) {
      const ref = parseReference(input)
      expect(parseReference(formatReference(ref))).toEqual(ref)
    }
  })
})
