import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import {
  DebugfsCommandError,
  DebugfsMissingError,
  ImageNotFoundError,
  ImageOpenError,
} from './errors.js'

/*
 * One debugfs process per injectGuest/inspectGuest call, fed commands on stdin. Every spawn
 * re-reads the superblock, group descriptors and (with -w) the bitmaps, which on a freshly
 * copied image means disk reads, so a call that asked ~15 questions through ~15 processes paid
 * for that ~15 times. debugfs exits 0 when a command fails and reports the failure in its
 * output, so every result is judged by what its command printed. ownership has its own batch
 * runner on purpose (stage packages never import each other); this one is much simpler because
 * a call sends tens of commands, not tens of thousands.
 */

/** Quotes an absolute in-image or host path for debugfs's argument parser. */
export function quotePath(path: string): string {
  if (!path.startsWith('/')) throw new Error(`debugfs path must be absolute: ${path}`)
  if (/["\\\n\r\0]/.test(path)) throw new Error(`debugfs cannot quote ${JSON.stringify(path)}`)
  return `"${path}"`
}

/** Lines that are not debugfs's banner or notices, e.g. in the text before the first prompt. */
export function errorLines(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter(
      (line) => line !== '' && !/^debugfs \d/.test(line) && !line.startsWith('catastrophic mode'),
    )
}

/** What debugfs's command loop prints, flushing stdout, before it reads each command. */
export const PROMPT = 'debugfs:  '

/**
 * Cuts debugfs's interactive transcript at its prompts, whatever the chunking. A prompt counts
 * only at a line start (the start, after a newline, or right after another prompt: a command
 * that printed nothing), so a `debugfs:  ` inside a line of output is not taken for one.
 * `onOutput` gets the text before each prompt: first the preamble, then one command's output.
 */
export class PromptSplitter {
  #text = ''
  #scanFrom = 0

  constructor(private readonly onOutput: (output: string) => void) {}

  push(chunk: string): void {
    this.#text += chunk
    for (;;) {
      let at = this.#text.indexOf(PROMPT, this.#scanFrom)
      while (at > 0 && this.#text[at - 1] !== '\n') at = this.#text.indexOf(PROMPT, at + 1)
      if (at < 0) {
        // A prompt not found yet can only start in the last PROMPT.length - 1 characters.
        this.#scanFrom = Math.max(0, this.#text.length - PROMPT.length + 1)
        return
      }
      const output = this.#text.slice(0, at)
      this.#text = this.#text.slice(at + PROMPT.length)
      this.#scanFrom = 0
      this.onOutput(output)
    }
  }

  /** The text after the last prompt. */
  rest(): string {
    return this.#text
  }
}

/** debugfs's own words when it cannot open the image (it then waits for commands all the same). */
const OPEN_FAILURE = /(.*while (?:trying to open|opening filesystem).*)/

interface Waiter {
  resolve: (output: string) => void
  reject: (error: Error) => void
}

export interface DebugfsSessionOptions {
  /** Open the image read-write (`-w`); otherwise read-only in catastrophic mode (`-c`). */
  write: boolean
  /** Kills debugfs; pending and later calls reject with the signal's reason. */
  signal?: AbortSignal
}

/**
 * One interactive debugfs process on an image. stdout and stderr share one pipe (debugfs is
 * started by `sh -c 'exec debugfs … 2>&1'`: Node cannot hand a child one pipe for both), and
 * debugfs flushes stdout when it prints its prompt before reading each command, so whatever a
 * command prints, errors included, lies between its prompt and the next one.
 */
export class DebugfsSession {
  readonly #child: ChildProcessWithoutNullStreams
  readonly #splitter: PromptSplitter
  /** The first waiter takes the preamble (banner and open errors), then one per command. */
  readonly #waiters: Waiter[] = []
  #exitError: Error | undefined
  #abortError: Error | undefined
  /** Set when the transcript stopped making sense and debugfs was killed for it. */
  #broken: Error | undefined
  #exited = false
  readonly #done: Promise<void>
  #onDone: () => void = () => {}

  private constructor(
    readonly imagePath: string,
    private readonly options: DebugfsSessionOptions,
  ) {
    this.#done = new Promise((resolve) => (this.#onDone = resolve))
    this.#child = spawn(
      '/bin/sh',
      ['-c', 'exec debugfs "$@" 2>&1', 'sh', options.write ? '-w' : '-c', imagePath],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
        signal: options.signal,
        // No readline on a pipe, no pager for `stat`; TZ=GMT spares a read of /etc/localtime
        // for every time `stat` prints.
        env: {
          ...process.env,
          LANG: 'C',
          LC_ALL: 'C',
          TZ: 'GMT',
          SS_READLINE_PATH: 'none',
          DEBUGFS_PAGER: '__none__',
          PAGER: 'cat',
        },
      },
    )
    this.#splitter = new PromptSplitter((output) => this.#answer(output))
    this.#child.stdout.setEncoding('utf8')
    this.#child.stdout.on('data', (chunk: string) => this.#splitter.push(chunk))
    let stderr = '' // only sh's own complaints: debugfs's stderr is the stdout pipe
    this.#child.stderr.setEncoding('utf8')
    this.#child.stderr.on('data', (chunk: string) => (stderr += chunk))
    // debugfs may be gone while commands are still being written: EPIPE is expected.
    this.#child.stdin.on('error', () => {})
    this.#child.on('error', (error: NodeJS.ErrnoException) => {
      // An abort kills the child and 'close' follows: wait for it, so nothing outlives us.
      if (error.name === 'AbortError') this.#abortError = error
      else this.#exit(error)
    })
    this.#child.on('close', (code, signal) =>
      this.#exit(this.#exitFailure(code ?? signal ?? 'unknown', stderr)),
    )
  }

  /**
   * Starts debugfs on the image and waits for its first prompt. Rejects with E_IMAGE_OPEN (not
   * ext4, unreadable, or not writable with `write`), E_DEBUGFS_MISSING, E_DEBUGFS_FAILED or the
   * signal's reason; no process is left behind then.
   */
  static async open(imagePath: string, options: DebugfsSessionOptions): Promise<DebugfsSession> {
    options.signal?.throwIfAborted()
    const session = new DebugfsSession(imagePath, options)
    const preamble = await new Promise<string>((resolve, reject) =>
      session.#waiters.push({ resolve, reject }),
    )
    const bad = errorLines(preamble)
    if (bad.length) {
      session.#child.kill()
      await session.#done
      const open = OPEN_FAILURE.exec(preamble)
      throw new ImageOpenError(imagePath, open ? open[1]!.trim() : bad.join('; '))
    }
    return session
  }

  /** The debugfs process id (gone once close() or an abort has settled). */
  get pid(): number | undefined {
    return this.#child.pid
  }

  /**
   * Sends the commands (one line each, quoted by the caller) and resolves to each one's output,
   * stdout and stderr interleaved, '' when it printed nothing. Rejects when debugfs exits
   * before answering them all, or with the signal's reason.
   */
  run(commands: string[]): Promise<string[]> {
    if (this.#exited) return Promise.reject(this.#gone())
    for (const command of commands)
      if (/[\n\r]/.test(command)) throw new Error(`debugfs command spans lines: ${command}`)
    const outputs = commands.map(
      (): Promise<string> =>
        new Promise((resolve, reject) => this.#waiters.push({ resolve, reject })),
    )
    if (commands.length) this.#child.stdin.write(commands.join('\n') + '\n')
    return Promise.all(outputs)
  }

  /**
   * Ends debugfs's input and waits for it to exit; with `write`, that is when debugfs writes
   * its bitmaps and superblock. Rejects with E_DEBUGFS_FAILED if it exited non-zero or printed
   * anything after the last command (a failed flush), or with the signal's reason.
   */
  async close(): Promise<void> {
    this.#child.stdin.end()
    await this.#done
    if (this.#exitError !== undefined) throw this.#exitError
    const rest = errorLines(this.#splitter.rest())
    if (rest.length) throw new DebugfsCommandError(this.imagePath, rest)
  }

  #answer(output: string): void {
    const waiter = this.#waiters.shift()
    if (waiter) return waiter.resolve(output)
    // More prompts than commands: the transcript no longer lines up with the commands.
    this.#broken ??= new DebugfsCommandError(this.imagePath, [
      'debugfs printed an unexpected prompt',
    ])
    this.#child.kill()
  }

  /** What the exit means: undefined for a clean one. `status` is the exit code or signal. */
  #exitFailure(status: number | string, stderr: string): Error | undefined {
    if (this.#broken) return this.#broken
    if (this.options.signal?.aborted) {
      const reason: unknown = this.options.signal.reason
      return reason instanceof Error ? reason : this.#abortError
    }
    const text = this.#splitter.rest() + stderr
    const open = OPEN_FAILURE.exec(text)
    if (open) return new ImageOpenError(this.imagePath, open[1]!.trim())
    if (status === 127 && /not found/.test(text))
      return new DebugfsMissingError({ cause: new Error(text.trim()) })
    if (status !== 0) {
      const why = typeof status === 'number' ? `exit code ${status}` : `killed by ${status}`
      return new DebugfsCommandError(this.imagePath, errorLines(text).concat(why))
    }
    return undefined
  }

  #exit(error: Error | undefined): void {
    if (this.#exited) return
    this.#exited = true
    this.#exitError = error
    for (const waiter of this.#waiters.splice(0)) waiter.reject(this.#gone())
    this.#onDone()
  }

  /** Why a command got no answer. */
  #gone(): Error {
    return (
      this.#exitError ??
      new DebugfsCommandError(this.imagePath, ['debugfs exited before answering every command'])
    )
  }
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

export interface Resolved {
  /** The path with every symlink followed, inside the image. */
  path: string
  info: InodeInfo
}

export type Resolution = Resolved | { missing: string; reason: string }

export interface ImageReaderOptions {
  /** Open read-write (`debugfs -w`) so that write() works; read-only (`-c`) otherwise. */
  write?: boolean
  signal?: AbortSignal
}

/** Success output of a write command: `write` names the inode it made, `rm` prints a newline. */
function isQuietSuccess(command: string, output: string): boolean {
  return command.startsWith('write ')
    ? /^Allocated inode: \d+\n$/.test(output)
    : output.trim() === ''
}

/**
 * An ext4 image through one debugfs session: open() starts it, close() ends it, and every
 * question in between is a few commands sent to the same process.
 */
export class ImageReader {
  #session: DebugfsSession | undefined
  /** Where `dump` puts file contents, made on first use. */
  #dumpDir: string | undefined
  #dumps = 0

  constructor(
    readonly imagePath: string,
    private readonly options: ImageReaderOptions = {},
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
    this.#session = await DebugfsSession.open(this.imagePath, {
      write: this.options.write ?? false,
      signal: this.options.signal,
    })
  }

  /**
   * Ends the session, gracefully even after a failure so that a `-w` session writes out what
   * its commands did (a partly written image stays consistent). See DebugfsSession.close.
   */
  async close(): Promise<void> {
    try {
      await this.#session?.close()
    } finally {
      if (this.#dumpDir) await rm(this.#dumpDir, { recursive: true, force: true })
    }
  }

  #run(commands: string[]): Promise<string[]> {
    if (!this.#session) throw new Error('ImageReader used before open()')
    return this.#session.run(commands)
  }

  /** lstat of many paths in one round trip; undefined where a path does not exist. */
  async lstatMany(paths: string[]): Promise<(InodeInfo | undefined)[]> {
    if (!paths.length) return []
    const outputs = await this.#run(paths.map((p) => `stat ${quotePath(p)}`))
    return outputs.map(parseStat)
  }

  async lstat(path: string): Promise<InodeInfo | undefined> {
    return (await this.lstatMany([path]))[0]
  }

  /**
   * A file's bytes; the caller has checked that it exists. `dump` to a host file rather than
   * `cat`: file contents in the transcript could hold a line that looks like a prompt.
   */
  async readFile(path: string): Promise<Buffer> {
    this.#dumpDir ??= await mkdtemp(join(tmpdir(), 'banger-debugfs-'))
    const host = join(this.#dumpDir, `dump-${this.#dumps++}`)
    const [output] = await this.#run([`dump ${quotePath(path)} ${quotePath(host)}`])
    const bad = errorLines(output!)
    if (bad.length) throw new DebugfsCommandError(this.imagePath, bad)
    try {
      return await readFile(host)
    } finally {
      await rm(host, { force: true })
    }
  }

  /** Reads a text file, or undefined when it is missing or not a regular file. */
  async readText(path: string): Promise<string | undefined> {
    const resolved = await this.resolve(path)
    if ('missing' in resolved || resolved.info.type !== 'file') return undefined
    return (await this.readFile(resolved.path)).toString('utf8')
  }

  /**
   * Runs write commands (`write`, `sif`, `mkdir`, `symlink`, `rm`), all of them even when one
   * fails, and rejects with E_DEBUGFS_FAILED with one line per command that printed more than
   * it prints on success: what it printed, then the command. The changes reach the image file
   * when close() resolves.
   */
  async write(commands: string[]): Promise<void> {
    if (!commands.length) return
    const outputs = await this.#run(commands)
    const failed = commands.flatMap((command, i) =>
      isQuietSuccess(command, outputs[i]!)
        ? []
        : [`${errorLines(outputs[i]!).join(' / ')} (${command})`],
    )
    if (failed.length) throw new DebugfsCommandError(this.imagePath, failed)
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

/**
 * Opens a reader, runs `use` and closes the reader whatever happens. When `use` throws, its
 * error wins over any from close(); the session is still closed gracefully (see close()).
 */
export async function withImageReader<T>(
  imagePath: string,
  options: ImageReaderOptions,
  use: (reader: ImageReader) => Promise<T>,
): Promise<T> {
  const reader = new ImageReader(imagePath, options)
  await reader.open()
  let result: T
  try {
    result = await use(reader)
  } catch (error) {
    await reader.close().catch(() => {})
    throw error
  }
  await reader.close()
  return result
}
