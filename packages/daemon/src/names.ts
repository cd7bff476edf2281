import type { ParsedReference } from './pipeline.js'

/**
 * The image name a pull gets when the request gives none: the repository's last path segment
 * and the tag (`debian:bookworm` → `debian-bookworm`, `debian` → `debian-latest`), or the
 * first 12 hex digits of a pinned digest when there is no tag (`x@sha256:ab…` → `x-ab…`).
 */
export function defaultImageName(ref: ParsedReference): string {
  const base = ref.repository.split('/').pop() ?? ref.repository
  const suffix =
    ref.tag ?? (ref.digest ? (ref.digest.split(':')[1] ?? ref.digest).slice(0, 12) : 'latest')
  return `${base}-${suffix}`.replace(/[^a-zA-Z0-9._-]/g, '-')
}

/** A hostname (RFC 1123 label) derived from an image name. */
export function hostnameFor(name: string): string {
  const label = name
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '')
  return label || 'banger'
}
