import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { access, constants, open, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { DebugfsFailedError, DebugfsMissingError, UnencodableNameError } from './errors.js'

/**
 * debugfs reads each command with fgets into an 8 KiB buffer; its ss parser knows only whitespace
 * and double quotes, where `""` inside quotes is a literal quote and backslashes are literal.
 * Found by experiment on e2fsprogs 1.47.0.
 */
const MAX_LINE = 8000

/** Quotes one argument for debugfs's command parser. Rejects what it cannot carry. */
export function quoteArg(value: string): string {
  if (/[\n\r\0]/.test(value))
    throw new UnencodableNameError(value, 'it contains a newline, carriage return or NUL')
  if (value.length > MAX_LINE / 6 && Buffer.byteLength(value) > MAX_LINE / 2)
    throw new UnencodableNameError(value, `it is longer than ${MAX_LINE / 2} bytes`)
  return `"${value.replaceAll('"', '""')}"`
}

/** Refuses a command line debugfs would cut (UnencodableNameError). */
export function checkCommand(command: string): void {
  if (
    (command.length > MAX_LINE / 3 && Buffer.byteLength(command) > MAX_LINE) ||
    /[\n\r]/.test(command)
  )
    throw new UnencodableNameError(command, 'the debugfs command line would be cut')
}

/**
 * Where to find debugfs: on Debian it lives in /usr/sbin, which is not on an unprivileged
 * user's PATH, so fall back to the sbin directories.
 */
export function debugfsCandidates(): string[] {
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean)
  for (const extra of ['/usr/sbin', '/sbin', '/usr/local/sbin'])
    if (!dirs.includes(extra)) dirs.push(extra)
  return dirs.map((d) => join(d, 'debugfs'))
}

export async function resolveBinary(candidates: string[]): Promise<string | undefined> {
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK)
      return c
    } catch {
      // try the next one
    }
  }
  return undefined
}

/**
 * One command of a batch, with two numbers saying what it is for (say, a manifest index and which
 * of its checks). Only the numbers are remembered while the command is in flight: a batch has
 * hundreds of thousands of commands, and objects kept until debugfs answers would outlive V8's
 * young generation and pile up as old-generation garbage.
 */
export interface DebugfsCommand {
  text: string
  entry: number
  part: number
}

export interface DebugfsBatch {
  /** Path to the debugfs binary. */
  binary: string
  image: string
  /** Pulled lazily, as debugfs takes them in; each is checked with checkCommand. */
  commands: Iterable<DebugfsCommand>
  /** Open the image read-write (-w). */
  write: boolean
  /** A private directory for the output file. */
  workDir: string
  signal?: AbortSignal
  /** Extra environment for debugfs (E2FSPROGS_FAKE_TIME). */
  env?: Record<string, string>
  /**
   * Each command's output (stdout and stderr interleaved, in order, decoded as latin1 so that byte
   * offsets are character offsets; '' when it printed nothing) with the command's `entry`, `part`
   * and position in the batch, called in command order as debugfs prints it. Must not throw.
   */
  onOutput: (entry: number, part: number, output: string, index: number) => void
}

/** What debugfs's command loop prints before reading each command, flushing stdout. */
export const PROMPT = 'debugfs:  '

/** Lines debugfs prints before the first command whatever the input: its banner. */
const BANNER = /^debugfs \d+\.\d+/

/** Commands per write to debugfs's stdin. */
const WRITE_BATCH = 512
/** Commands sent whose output has not been read yet, at most. */
const MAX_IN_FLIGHT = 4096
/** Bytes read from the output file at a time. */
const READ_CHUNK = 64 * 1024
/** How long the reader waits for more output before looking again. */
const POLL_MS = 2

/**
 * Runs a whole batch in one debugfs process fed on stdin: debugfs's interactive loop (not `-f`,
 * which makes stdout unbuffered: one write(2) per printf, eight times slower on `stat`). stdout and
 * stderr share one file, and the loop flushes stdout with its prompt before reading each command,
 * so everything a command prints, errors included, lies between its prompt and the next one: that
 * is how output, and failures, are pinned to commands although debugfs exits 0.
 *
 * Commands are generated as debugfs consumes them and the output file is read as it grows (a file,
 * not a pipe: a pipe read by Node as eagerly as debugfs flushes its prompts made the batch four
 * times slower), so neither the script nor the transcript is held whole, and at most
 * MAX_IN_FLIGHT commands are remembered. Resolves to the number of commands run; rejects with
 * E_DEBUGFS_MISSING, E_DEBUGFS_FAILED (could not open the image, exited non-zero, printed
 * something outside any command or stopped early) or the signal's reason.
 */
export async function runDebugfs(batch: DebugfsBatch): Promise<number> {
  const { binary, image, signal } = batch
  signal?.throwIfAborted()
  const outPath = join(
    batch.workDir,
    `${batch.write ? 'write' : 'read'}-${process.hrtime.bigint()}.out`,
  )
  const out = await open(outPath, 'w+')
  try {
    const args = [...(batch.write ? ['-w'] : []), image]
    const child = spawn(binary, args, {
      stdio: ['pipe', out.fd, out.fd],
      // SS_READLINE_PATH=none: never load readline on a pipe; TZ=GMT spares a stat of
      // /etc/localtime per timestamp `stat` prints.
      env: { ...process.env, ...batch.env, LC_ALL: 'C', TZ: 'GMT', SS_READLINE_PATH: 'none' },
      signal,
    })
    let exitedFlag = false
    let onExit: () => void = () => {}
    /** Settles when debugfs has gone, however: the writer waits on it as well as on stdin. */
    const gone = new Promise<void>((resolve) => (onExit = resolve))
    const exited = new Promise<number | null>((resolve, reject) => {
      child.once('error', (err: NodeJS.ErrnoException) => {
        exitedFlag = true
        onExit()
        if (err.code === 'ENOENT' || err.code === 'EACCES')
          reject(new DebugfsMissingError(binary, { cause: err }))
        else reject(err)
      })
      child.once('close', (code) => {
        exitedFlag = true
        onExit()
        resolve(code)
      })
    })
    const stdin = child.stdin! // stdio[0] is 'pipe'
    // debugfs may exit before reading everything (it could not open the image): EPIPE is expected.
    stdin.on('error', () => {})

    // In-flight commands' numbers, in rings: command k is at k % MAX_IN_FLIGHT.
    const entries = new Int32Array(MAX_IN_FLIGHT)
    const parts = new Int32Array(MAX_IN_FLIGHT)
    let answered = 0
    let sent = 0
    let done = false
    let wakeWriter: (() => void) | undefined
    const writer = (async () => {
      let lines: string[] = []
      const flush = async (): Promise<void> => {
        if (!lines.length) return
        const text = lines.join('\n') + '\n'
        lines = []
        if (!stdin.write(text) && !stdin.destroyed)
          // An EPIPE ends the wait too; the loop then stops on `destroyed`.
          await Promise.race([once(stdin, 'drain').catch(() => {}), gone])
      }
      try {
        for (const command of batch.commands) {
          if (stdin.destroyed || exitedFlag) break
          checkCommand(command.text)
          while (sent - answered === MAX_IN_FLIGHT && !exitedFlag) {
            await flush()
            await Promise.race([new Promise<void>((resolve) => (wakeWriter = resolve)), gone])
          }
          if (exitedFlag) break
          entries[sent % MAX_IN_FLIGHT] = command.entry
          parts[sent % MAX_IN_FLIGHT] = command.part
          sent++
          lines.push(command.text)
          if (lines.length === WRITE_BATCH) await flush()
        }
        await flush()
        done = true
      } finally {
        stdin.end()
      }
    })()

    const splitter = new PromptSplitter()
    const preamble: string[] = []
    let prompts = 0
    splitter.onPrompt = (output) => {
      prompts++
      if (prompts === 1) preamble.push(output)
      else if (answered < sent) {
        const k = answered++
        batch.onOutput(entries[k % MAX_IN_FLIGHT]!, parts[k % MAX_IN_FLIGHT]!, output, k)
      } // else more prompts than commands: reported below
    }
    const reader = (async () => {
      const buf = Buffer.allocUnsafe(READ_CHUNK)
      let offset = 0
      for (;;) {
        const finished = exitedFlag
        const { bytesRead } = await out.read(buf, 0, buf.length, offset)
        offset += bytesRead
        if (bytesRead > 0) {
          splitter.push(buf.toString('latin1', 0, bytesRead))
          if (wakeWriter && sent - answered <= MAX_IN_FLIGHT / 2) {
            wakeWriter()
            wakeWriter = undefined
          }
        } else if (finished) break
        else await new Promise((resolve) => setTimeout(resolve, POLL_MS))
      }
      wakeWriter?.()
      return splitter.end()
    })()
    // Every side settles before the output file goes, whichever fails first.
    const [exit, written, read] = await Promise.allSettled([exited, writer, reader])
    for (const side of [exit, written, read]) if (side.status === 'rejected') throw side.reason
    const code = (exit as PromiseFulfilledResult<number | null>).value
    const epilogue = (read as PromiseFulfilledResult<string>).value

    const unexpected = [...preamble, epilogue]
      .join('\n')
      .split('\n')
      .filter((l) => !BANNER.test(l) && l.trim() !== '')
    if (code !== 0 || unexpected.length || !done || prompts !== sent + 1) {
      const tail = unexpected.slice(-5).join(' / ')
      const why =
        code !== 0
          ? `exit status ${code}`
          : prompts !== sent + 1
            ? `stopped after ${Math.max(prompts - 1, 0)} of ${sent} commands`
            : 'unexpected output'
      throw new DebugfsFailedError(image, `${why}: ${tail || '(no output)'}`)
    }
    return sent
  } finally {
    await out.close()
    await rm(outPath, { force: true })
  }
}

/**
 * Cuts debugfs's interactive transcript at its prompts. A prompt counts only where a line starts
 * (at the start, after a newline or right after another prompt: a command that printed nothing),
 * so a file name holding `debugfs:  ` inside an `ls -p` line is not mistaken for one. Feed it any
 * chunking; `onPrompt` gets the text since the previous prompt (the first call: the preamble).
 */
export class PromptSplitter {
  onPrompt: (output: string) => void = () => {}
  /** Text held back: a line start that may be the beginning of a prompt. */
  #held = ''
  /** Whether the start of #held (or of the next chunk) is a line start. */
  #atLineStart = true
  #pieces: string[] = []

  push(chunk: string): void {
    const buf = this.#held + chunk
    this.#held = ''
    let segment = 0
    let lineStart = this.#atLineStart ? 0 : -1
    for (let from = 0; ;) {
      const i = buf.indexOf(PROMPT, from)
      if (i < 0) break
      if (i !== lineStart && buf.charCodeAt(i - 1) !== 10) {
        from = i + 1
        continue
      }
      if (i > segment) this.#pieces.push(buf.slice(segment, i))
      this.#emit()
      segment = from = lineStart = i + PROMPT.length
    }
    // Hold back a tail that is a line start and a proper prefix of a prompt.
    let keep = 0
    for (let k = Math.min(PROMPT.length - 1, buf.length - segment); k > 0; k--) {
      const s = buf.length - k
      if ((s === lineStart || buf.charCodeAt(s - 1) === 10) && PROMPT.startsWith(buf.slice(s))) {
        keep = k
        break
      }
    }
    const end = buf.length - keep
    if (end > segment) this.#pieces.push(buf.slice(segment, end))
    this.#held = buf.slice(end)
    this.#atLineStart = keep > 0 || end === lineStart || buf.charCodeAt(end - 1) === 10
  }

  /** Ends the transcript; returns what followed the last prompt. */
  end(): string {
    if (this.#held) this.#pieces.push(this.#held)
    this.#held = ''
    const rest = this.#pieces.join('')
    this.#pieces = []
    return rest
  }

  #emit(): void {
    const text = this.#pieces.length === 1 ? this.#pieces[0]! : this.#pieces.join('')
    this.#pieces = []
    this.onPrompt(text)
  }
}
