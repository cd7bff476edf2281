import { spawn } from 'node:child_process'
import { stat } from 'node:fs/promises'
import { posix } from 'node:path'
import {
  DebugfsCommandError,
  DebugfsMissingError,
  ImageNotFoundError,
  ImageOpenError,
} from './errors.js'

/*
 * A small debugfs runner. debugfs exits 0 when a command fails and reports the failure on
 * stderr, so every result is judged by its output. ownership has its own copy on purpose:
 * stage packages never import each other.
 */

interface DebugfsRun {
  stdout: Buffer
  stderr: string
}

/** Quotes an absolute in-image or host path for debugfs's argument parser. */
export function quotePath(path: string): string {
  if (!path.startsWith('/')) throw new Error(`debugfs path must be absolute: ${path}`)
  if (/["\\\n\r\0]/.test(path)) throw new Error(`debugfs cannot quote ${JSON.stringify(path)}`)
  return `"${path}"`
}

/** stderr lines that are not debugfs's banner or notices: each one is a failed command. */
export function errorLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((line) => line.trim())
    .filter(
      (line) => line !== '' && !/^debugfs \d/.test(line) && !line.startsWith('catastrophic mode'),
    )
}

async function runDebugfs(
  imagePath: string,
  args: string[],
  input: string | undefined,
  signal: AbortSignal | undefined,
): Promise<DebugfsRun> {
  signal?.throwIfAborted()
  return new Promise((resolve, reject) => {
    const child = spawn('debugfs', [...args, imagePath], {
      stdio: ['pipe', 'pipe', 'pipe'],
      signal,
      env: { ...process.env, LANG: 'C', LC_ALL: 'C', DEBUGFS_PAGER: '__none__', PAGER: 'cat' },
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk))
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') reject(new DebugfsMissingError({ cause: error }))
      else if (error.name === 'AbortError') {
        const reason: unknown = signal?.reason
        reject(reason instanceof Error ? reason : error)
      } else reject(error)
    })
    child.on('close', (code) => {
      const stderr = Buffer.concat(err).toString('utf8')
      const open = /(.*while (?:trying to open|opening filesystem).*)/.exec(stderr)
      if (open) return reject(new ImageOpenError(imagePath, open[1]!.trim()))
      if (code !== 0) {
        return reject(
          new DebugfsCommandError(imagePath, errorLines(stderr).concat(`exit code ${code}`)),
        )
      }
      resolve({ stdout: Buffer.concat(out), stderr })
    })
    child.stdin.on('error', () => {})
    child.stdin.end(input)
  })
}

export interface InodeInfo {
  type: 'file' | 'directory' | 'symlink' | 'other'
  /** Permission bits (0o7777). */
  mode: number
  uid: number
  gid: number
  size: number
  /** Symlink target when debugfs prints it (fast symlinks). */
  fastLink?: string
}

const TYPES: Record<string, InodeInfo['type']> = {
  regular: 'file',
  directory: 'directory',
  symlink: 'symlink',
}

export function parseStat(text: string): InodeInfo | undefined {
  const head = /Type:\s*(.+?)\s+Mode:\s*([0-7]+)/.exec(text)
  if (!head) return undefined
  const info: InodeInfo = {
    type: TYPES[head[1]!] ?? 'other',
    mode: parseInt(head[2]!, 8) & 0o7777,
    uid: Number(/User:\s*(\d+)/.exec(text)?.[1] ?? NaN),
    gid: Number(/Group:\s*(\d+)/.exec(text)?.[1] ?? NaN),
    size: Number(/Size:\s*(\d+)/.exec(text)?.[1] ?? NaN),
  }
  const link = /^Fast link dest: "(.*)"$/m.exec(text)
  if (link) info.fastLink = link[1]
  return info
}

/** Splits `debugfs -f` stdout into one chunk per echoed command. */
export function splitByCommand(stdout: string): string[] {
  const chunks: string[] = []
  for (const line of stdout.split('\n')) {
    if (line.startsWith('debugfs: ')) chunks.push('')
    else if (chunks.length) chunks[chunks.length - 1] += line + '\n'
  }
  return chunks
}

export interface Resolved {
  /** The path with every symlink followed, inside the image. */
  path: string
  info: InodeInfo
}

export type Resolution = Resolved | { missing: string; reason: string }

/** Read-only access to an ext4 image through `debugfs -c`. */
export class ImageReader {
  constructor(
    readonly imagePath: string,
    private readonly signal?: AbortSignal,
  ) {}

  /** Fails with E_IMAGE_NOT_FOUND / E_IMAGE_OPEN before anything else is tried. */
  async open(): Promise<void> {
    try {
      const st = await stat(this.imagePath)
      if (!st.isFile()) throw new ImageOpenError(this.imagePath, 'not a regular file')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT')
        throw new ImageNotFoundError(this.imagePath, { cause: error })
      throw error
    }
    const { stderr } = await runDebugfs(this.imagePath, ['-c', '-R', 'stats -h'], '', this.signal)
    const bad = errorLines(stderr)
    if (bad.length) throw new ImageOpenError(this.imagePath, bad.join('; '))
  }

  /** lstat of many paths in one debugfs run; undefined where a path does not exist. */
  async lstatMany(paths: string[]): Promise<(InodeInfo | undefined)[]> {
    if (!paths.length) return []
    const script = paths.map((p) => `stat ${quotePath(p)}`).join('\n') + '\n'
    const { stdout } = await runDebugfs(this.imagePath, ['-c', '-f', '-'], script, this.signal)
    const chunks = splitByCommand(stdout.toString('utf8'))
    if (chunks.length !== paths.length)
      throw new DebugfsCommandError(this.imagePath, [
        `expected ${paths.length} stat results, got ${chunks.length}`,
      ])
    return chunks.map(parseStat)
  }

  async lstat(path: string): Promise<InodeInfo | undefined> {
    return (await this.lstatMany([path]))[0]
  }

  /** A file's bytes (debugfs `cat`); the caller has checked that it exists. */
  async readFile(path: string): Promise<Buffer> {
    const { stdout, stderr } = await runDebugfs(
      this.imagePath,
      ['-c', '-R', `cat ${quotePath(path)}`],
      undefined,
      this.signal,
    )
    const bad = errorLines(stderr)
    if (bad.length) throw new DebugfsCommandError(this.imagePath, bad)
    return stdout
  }

  /** Reads a text file, or undefined when it is missing or not a regular file. */
  async readText(path: string): Promise<string | undefined> {
    const resolved = await this.resolve(path)
    if ('missing' in resolved || resolved.info.type !== 'file') return undefined
    return (await this.readFile(resolved.path)).toString('utf8')
  }

  private async linkTarget(path: string, info: InodeInfo): Promise<string> {
    if (info.fastLink !== undefined) return info.fastLink
    // Long targets live in a data block, which `stat` does not print.
    return (await this.readFile(path)).toString('utf8')
  }

  /**
   * Follows symlinks the way the kernel would inside the image: absolute targets start at the
   * image root, relative ones at the link's directory. At most 40 links, like Linux.
   */
  async resolve(path: string): Promise<Resolution> {
    let current = posix.normalize(path)
    for (let hops = 0; ;) {
      const parts = current.split('/').filter(Boolean)
      if (!parts.length) {
        const info = await this.lstat('/')
        return info ? { path: '/', info } : { missing: '/', reason: 'no root directory' }
      }
      const prefixes = parts.map((_, i) => '/' + parts.slice(0, i + 1).join('/'))
      const infos = await this.lstatMany(prefixes)
      let next: string | undefined
      for (let i = 0; i < prefixes.length; i++) {
        const info = infos[i]
        const prefix = prefixes[i]!
        if (!info) return { missing: prefix, reason: `${prefix} does not exist` }
        const last = i === prefixes.length - 1
        if (info.type === 'symlink') {
          if (++hops > 40) return { missing: prefix, reason: `too many symlinks at ${prefix}` }
          const target = await this.linkTarget(prefix, info)
          const parent = posix.dirname(prefix)
          const base = target.startsWith('/') ? target : posix.join(parent, target)
          next = posix.join('/', base, ...parts.slice(i + 1))
          break
        }
        if (last) return { path: prefix, info }
        if (info.type !== 'directory')
          return { missing: prefix, reason: `${prefix} is not a directory` }
      }
      current = next!
    }
  }
}

/** Runs a read-write debugfs script; rejects with E_DEBUGFS_FAILED if any command failed. */
export async function runWriteScript(
  imagePath: string,
  commands: string[],
  signal?: AbortSignal,
): Promise<void> {
  if (!commands.length) return
  const { stderr } = await runDebugfs(
    imagePath,
    ['-w', '-f', '-'],
    commands.join('\n') + '\n',
    signal,
  )
  const bad = errorLines(stderr)
  if (bad.length) throw new DebugfsCommandError(imagePath, bad)
}
