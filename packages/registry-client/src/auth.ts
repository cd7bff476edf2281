import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { CredentialHelperError } from './errors.js'

export interface Credentials {
  username: string
  password: string
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string }>
  credHelpers?: Record<string, string>
  credsStore?: string
}

export function defaultDockerConfigPath(): string {
  return join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json')
}

/** `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/x` → `host:5000`. */
function normalizeAuthKey(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, '').split('/')[0] ?? ''
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host
}

/**
 * Credentials from a Docker config file, looked up per registry host the way docker does:
 * `credHelpers[host]`, then `credsStore`, then `auths` (base64 `user:pass` or username/password).
 * Identity tokens (`identitytoken`, helper username `<token>`) are not supported and ignored.
 */
export class DockerCredentials {
  private config: Promise<DockerConfigFile> | undefined
  private readonly cache = new Map<string, Promise<Credentials | undefined>>()

  constructor(private readonly path: string) {}

  get(host: string, signal?: AbortSignal): Promise<Credentials | undefined> {
    const key = normalizeAuthKey(host)
    let found = this.cache.get(key)
    if (!found) {
      found = this.lookup(key, signal)
      this.cache.set(key, found)
      found.catch(() => this.cache.delete(key))
    }
    return found
  }

  private async load(): Promise<DockerConfigFile> {
    this.config ??= readFile(this.path, 'utf8').then(
      (text) => JSON.parse(text) as DockerConfigFile,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return {}
        throw err
      },
    )
    return this.config
  }

  private async lookup(host: string, signal?: AbortSignal): Promise<Credentials | undefined> {
    const config = await this.load()
    const helper =
      Object.entries(config.credHelpers ?? {}).find(([k]) => normalizeAuthKey(k) === host)?.[1] ??
      config.credsStore
    if (helper) {
      const fromHelper = await runHelper(helper, host, signal)
      if (fromHelper) return fromHelper
    }
    for (const [key, entry] of Object.entries(config.auths ?? {})) {
      if (normalizeAuthKey(key) !== host) continue
      if (entry.auth) {
        const decoded = Buffer.from(entry.auth, 'base64').toString('utf8')
        const colon = decoded.indexOf(':')
        if (colon > 0)
          return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
      }
      if (entry.username && entry.password !== undefined)
        return { username: entry.username, password: entry.password }
    }
    return undefined
  }
}

/** Runs `docker-credential-<name> get` with the server URL on stdin (docker's helper protocol). */
async function runHelper(
  name: string,
  host: string,
  signal?: AbortSignal,
): Promise<Credentials | undefined> {
  const serverUrl = host === 'docker.io' ? 'https://index.docker.io/v1/' : host
  const { code, stdout, stderr } = await new Promise<{
    code: number
    stdout: string
    stderr: string
  }>((resolve, reject) => {
    const child = spawn(`docker-credential-${name}`, ['get'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 30_000,
      ...(signal && { signal }),
    })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'ENOENT'
          ? new CredentialHelperError(name, 'not found on PATH', { cause: e })
          : ((signal?.aborted
              ? signal.reason
              : new CredentialHelperError(name, e.message, { cause: e })) as Error),
      ),
    )
    child.on('close', (c) => resolve({ code: c ?? 1, stdout: out, stderr: err }))
    child.stdin.on('error', () => {})
    child.stdin.end(serverUrl)
  })
  if (code !== 0) {
    if (/credentials not found/i.test(stdout + stderr)) return undefined
    throw new CredentialHelperError(
      name,
      `exit ${code}: ${(stderr || stdout).trim().slice(0, 200)}`,
    )
  }
  let parsed: { Username?: string; Secret?: string }
  try {
    parsed = JSON.parse(stdout) as { Username?: string; Secret?: string }
  } catch (e) {
    throw new CredentialHelperError(name, 'printed something that is not JSON', { cause: e })
  }
  if (!parsed.Username || parsed.Secret === undefined || parsed.Username === '<token>')
    return undefined
  return { username: parsed.Username, password: parsed.Secret }
}

export interface Challenge {
  scheme: string
  params: Record<string, string>
}

/** Parses `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (RFC 7235 auth-params). */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z][\w-]*)\s*(.*)$/s.exec(header)
  if (!m) return undefined
  const params: Record<string, string> = {}
  const re = /([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/g
  for (const p of (m[2] ?? '').matchAll(re)) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '')
  }
  return { scheme: m[1]!.toLowerCase(), params }
}
