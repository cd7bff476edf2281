import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { run } from './exec.js'
import { freePort } from './ports.js'

export interface RegistryAuth {
  username: string
  password: string
}

export interface RegistryRequest {
  method: string
  path: string
  status: number
}

export interface TestRegistry {
  /** `127.0.0.1:PORT`, the host part of image references. */
  host: string
  url: string
  auth?: RegistryAuth
  /** Every request the registry has completed so far, from its own access log. */
  requests(): RegistryRequest[]
  /** Forget the requests seen so far (to count those of one step). */
  clearRequests(): void
  stop(): Promise<void>
}

const REGISTRY_BIN = '/usr/bin/docker-registry'

/**
 * Starts Debian's docker-registry (CNCF distribution 2.8) on a free loopback port with temporary
 * storage, optionally behind htpasswd basic auth. The caller stops it (`onTestFinished` or
 * `afterAll`); a process exit kills it too.
 */
export async function startRegistry(options: { auth?: RegistryAuth } = {}): Promise<TestRegistry> {
  let lastError: unknown
  // The free port can be taken between probing and binding; try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return await startOnce(options)
    } catch (err) {
      lastError = err
    }
  }
  throw lastError
}

async function startOnce(options: { auth?: RegistryAuth }): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'banger-registry-'))
  const port = await freePort()
  const host = `127.0.0.1:${port}`
  let authYaml = ''
  if (options.auth) {
    const htpasswd = join(dir, 'htpasswd')
    await run('htpasswd', ['-Bbc', htpasswd, options.auth.username, options.auth.password])
    authYaml = `auth:\n  htpasswd:\n    realm: banger-test\n    path: ${htpasswd}\n`
  }
  const config = join(dir, 'config.yml')
  writeFileSync(
    config,
    `version: 0.1
log:
  level: info
  formatter: json
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${join(dir, 'data')}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: ${host}
  secret: banger-test-secret
${authYaml}`,
  )
  const child = spawn(REGISTRY_BIN, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] })
  const requests: RegistryRequest[] = []
  let log = ''
  let pending = ''
  const onData = (b: Buffer): void => {
    const text = pending + b.toString('utf8')
    const lines = text.split('\n')
    pending = lines.pop() ?? ''
    for (const line of lines) {
      if (log.length < 200_000) log += line + '\n'
      const request = parseLogLine(line)
      if (request) requests.push(request)
    }
  }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const killOnExit = (): void => void child.kill('SIGKILL')
  process.on('exit', killOnExit)

  const stop = async (): Promise<void> => {
    process.off('exit', killOnExit)
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await Promise.race([exited, sleep(5000).then(() => child.kill('SIGKILL'))])
    }
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    await waitReady(child, `http://${host}/v2/`, () => log)
  } catch (err) {
    await stop()
    throw err
  }
  return {
    host,
    url: `http://${host}`,
    auth: options.auth,
    requests: () => [...requests],
    clearRequests: () => void requests.splice(0),
    stop,
  }
}

function parseLogLine(line: string): RegistryRequest | undefined {
  if (!line.startsWith('{')) return undefined
  try {
    const entry = JSON.parse(line) as Record<string, unknown>
    if (entry.msg !== 'response completed') return undefined
    return {
      method: String(entry['http.request.method']),
      path: String(entry['http.request.uri']),
      status: Number(entry['http.response.status']),
    }
  } catch {
    return undefined
  }
}

async function waitReady(child: ChildProcess, url: string, log: () => string): Promise<void> {
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`docker-registry exited ${child.exitCode}:\n${log()}`)
    try {
      const res = await fetch(url)
      await res.arrayBuffer()
      if (res.status === 200 || res.status === 401) return
    } catch {
      // not listening yet
    }
    await sleep(100)
  }
  throw new Error(`docker-registry did not answer on ${url} within 20 s:\n${log()}`)
}
