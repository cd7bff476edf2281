import { BadReferenceError } from './errors.js'
import type { ImageReference } from './types.js'

// Grammar from distribution/reference (the code Docker itself uses to parse image names).
const pathComponent = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const domainRe = new RegExp(
  `^(?:${domainComponent}(?:\\.${domainComponent})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`,
)
const tagRe = /^[\w][\w.-]{0,127}$/
const anyDigestRe = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/
const sha256Re = /^sha256:[0-9a-f]{64}$/
const nameMaxLength = 255

export const DOCKER_HUB = 'docker.io'

/**
 * Parses an image reference with Docker's normalisation rules: `debian` →
 * `docker.io/library/debian:latest`, `localhost:5000/app` keeps its host, a first component
 * with a `.` or `:` or equal to `localhost` is a registry host. Throws `BadReferenceError`
 * (`E_BAD_REFERENCE`) naming the bad part.
 */
export function parseReference(input: string): ImageReference {
  const fail = (reason: string): never => {
    throw new BadReferenceError(input, reason)
  }
  if (input === '') fail('it is empty')
  if (/\s/.test(input)) fail('it contains whitespace')
  if (/^[a-f0-9]{64}$/.test(input))
    fail('a bare 64-character hex string is an image ID, not a reference; add a repository name')

  let rest = input
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!anyDigestRe.test(digest)) fail(`digest ${JSON.stringify(digest)} is not algorithm:hex`)
    if (!sha256Re.test(digest))
      fail(`digest ${JSON.stringify(digest)} is not sha256 with 64 lowercase hex digits`)
  }

  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!tagRe.test(tag))
      fail(
        `tag ${JSON.stringify(tag)} must be 1-128 characters of letters, digits, _ . - and not start with . or -`,
      )
  }
  if (rest === '') fail('the repository name is missing')

  let registry = DOCKER_HUB
  let repository = rest
  const slash = rest.indexOf('/')
  if (slash !== -1) {
    const first = rest.slice(0, slash)
    if (
      first.includes('.') ||
      first.includes(':') ||
      first === 'localhost' ||
      first !== first.toLowerCase()
    ) {
      registry = first
      repository = rest.slice(slash + 1)
      if (!domainRe.test(registry))
        fail(`registry host ${JSON.stringify(registry)} is not a valid host[:port]`)
    }
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`
  if (repository !== repository.toLowerCase())
    fail(`repository name ${JSON.stringify(repository)} must be lowercase`)
  for (const component of repository.split('/')) {
    if (!pathComponent.test(component))
      fail(
        component === ''
          ? `repository name ${JSON.stringify(repository)} has an empty path component`
          : `repository path component ${JSON.stringify(component)} must be lowercase letters and digits separated by single . _ __ or -`,
      )
  }
  if (registry.length + 1 + repository.length > nameMaxLength)
    fail(`the name is longer than ${nameMaxLength} characters`)

  if (tag === undefined && digest === undefined) tag = 'latest'
  return {
    registry,
    repository,
    ...(tag !== undefined && { tag }),
    ...(digest !== undefined && { digest }),
  }
}

/** The canonical form `host/repo:tag@digest` (tag and digest each only when present). */
export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`
}
