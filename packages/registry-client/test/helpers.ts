import { createHash } from 'node:crypto'
import { createReadStream, readdirSync, readlinkSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { rm } from 'node:fs/promises'
import { onTestFinished } from 'vitest'
import { RegistryClient, type PullSession, type RegistryClientOptions } from '../src/index.js'

export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256')
  await pipeline(createReadStream(path), hash)
  return `sha256:${hash.digest('hex')}`
}

/** Digests of every blob file in an OCI layout. */
export function cachedBlobs(cacheDir: string): string[] {
  try {
    return readdirSync(join(cacheDir, 'blobs', 'sha256'))
      .map((hex) => `sha256:${hex}`)
      .sort()
  } catch {
    return []
  }
}

export function tempFiles(cacheDir: string): string[] {
  try {
    return readdirSync(join(cacheDir, 'tmp'))
  } catch {
    return []
  }
}

export async function tempCache(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'banger-rc-cache-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Fast retries so failure paths do not make the suite slow. */
export const quickRetry = { attempts: 4, baseDelayMs: 20, maxRetryAfterMs: 5_000 }

/** A client on `cacheDir` with quick retries and no Docker config, unless `extra` says otherwise. */
export function client(
  cacheDir: string,
  extra: Partial<RegistryClientOptions> = {},
): RegistryClient {
  return new RegistryClient({
    cacheDir,
    retry: quickRetry,
    dockerConfigPath: '/nonexistent/config.json',
    ...extra,
  })
}

/** Consumes a pull session's layers in order; resolves to their cached paths once it is done. */
export async function drain(session: PullSession): Promise<string[]> {
  const paths: string[] = []
  for await (const layer of session.cachedLayers()) paths.push(layer.path)
  await session.done
  return paths
}

/** sha256 of everything a stream yields; rejects with the stream's error. */
export async function hashStream(stream: Readable): Promise<string> {
  const hash = createHash('sha256')
  await pipeline(stream, hash)
  return `sha256:${hash.digest('hex')}`
}

/** Paths this process holds open under `dir` (read from /proc/self/fd). */
export function openFilesUnder(dir: string): string[] {
  const open: string[] = []
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(join('/proc/self/fd', fd))
      if (target.startsWith(dir)) open.push(target)
    } catch {
      // closed between readdir and readlink (the readdir's own descriptor, for one)
    }
  }
  return open
}
