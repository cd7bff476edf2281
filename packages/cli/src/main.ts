import { resolvePaths, type DaemonClient } from '@banger/daemon/rpc'
import { parseArgs, type Command } from './args.js'
import { connectOrStart, daemonLogPath, stopDaemon, tryConnect } from './daemon.js'
import { CliError, EXIT, formatError } from './errors.js'
import { progressFor, type ProgressStream } from './progress.js'
import {
  renderImage,
  renderImageList,
  renderKernel,
  renderKernelList,
  renderStatus,
  shortDigest,
} from './render.js'
import { formatBytes } from './size.js'

/** Where the CLI reads and writes; `process` by default, something else in tests. */
export interface CliIo {
  stdout: ProgressStream
  stderr: ProgressStream
  env: NodeJS.ProcessEnv
  cwd: string
  /** Registers a handler for SIGINT/SIGTERM; returns the unregister function. */
  onInterrupt: (handler: (signal: 'SIGINT' | 'SIGTERM') => void) => () => void
}

export function processIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    onInterrupt(handler) {
      process.on('SIGINT', handler)
      process.on('SIGTERM', handler)
      return () => {
        process.off('SIGINT', handler)
        process.off('SIGTERM', handler)
      }
    },
  }
}

/**
 * Runs one `banger` invocation. Resolves to the exit code (see README: 0 ok, 1 error, 2 bad
 * command line, 3 daemon not running for `daemon status`, 130 interrupted); never rejects.
 * Output goes to `io.stdout`, progress and errors to `io.stderr`.
 */
export async function main(args: string[], io: CliIo = processIo()): Promise<number> {
  const debug = args.includes('--debug')
  try {
    const parsed = await parseArgs(args, { cwd: io.cwd, width: io.stdout.columns ?? 100 })
    if (!parsed.command) {
      if (parsed.output)
        io.stdout.write(parsed.output.endsWith('\n') ? parsed.output : parsed.output + '\n')
      return EXIT.ok
    }
    return await runCommand(parsed.command, io)
  } catch (err) {
    io.stderr.write(formatError(err, debug))
    return err instanceof CliError ? err.exitCode : EXIT.error
  }
}

function json(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n'
}

async function runCommand(cmd: Command, io: CliIo): Promise<number> {
  const paths = resolvePaths(io.env)
  const out = (text: string) => io.stdout.write(text)

  if (cmd.kind === 'daemon.status') {
    const client = await tryConnect(paths)
    if (!client) {
      // Exit 3 either way; with --json a script gets JSON it can parse, never a sentence.
      out(
        cmd.json
          ? json({ running: false, socketPath: paths.socketPath })
          : `bangerd is not running (no daemon on ${paths.socketPath})\n`,
      )
      return EXIT.notRunning
    }
    try {
      const status = await client.call('daemon.status', {})
      out(cmd.json ? json(status) : renderStatus(status))
      return EXIT.ok
    } finally {
      client.close()
    }
  }

  if (cmd.kind === 'daemon.stop') {
    const pid = await stopDaemon(paths)
    out(pid === undefined ? 'bangerd is not running\n' : `bangerd stopped (pid ${pid})\n`)
    return EXIT.ok
  }

  const { client, startedPid } = await connectOrStart(paths, { env: io.env })
  try {
    switch (cmd.kind) {
      case 'daemon.start': {
        if (startedPid !== undefined)
          out(`bangerd started (pid ${startedPid}, log ${daemonLogPath(paths)})\n`)
        else {
          const { pid } = await client.call('daemon.status', {})
          out(`bangerd is already running (pid ${pid})\n`)
        }
        return EXIT.ok
      }
      case 'image.pull':
        return await pull(client, cmd, io)
      case 'image.register': {
        const img = await client.call('image.register', cmd.params)
        out(cmd.json ? json(img) : `registered image ${img.name}: ${img.rootfsPath}\n`)
        return EXIT.ok
      }
      case 'image.list': {
        const result = await client.call('image.list', {})
        out(cmd.json ? json(result) : renderImageList(result.images))
        return EXIT.ok
      }
      case 'image.show': {
        const img = await client.call('image.show', { name: cmd.name })
        out(cmd.json ? json(img) : renderImage(img))
        return EXIT.ok
      }
      case 'image.rm': {
        const { deleted } = await client.call('image.delete', { name: cmd.name })
        out(`removed image ${deleted}\n`)
        return EXIT.ok
      }
      case 'kernel.add': {
        const k = await client.call('kernel.add', cmd.params)
        out(cmd.json ? json(k) : `added kernel ${k.name}${k.isDefault ? ' (default)' : ''}\n`)
        return EXIT.ok
      }
      case 'kernel.list': {
        const result = await client.call('kernel.list', {})
        out(cmd.json ? json(result) : renderKernelList(result.kernels))
        return EXIT.ok
      }
      case 'kernel.show': {
        const k = await client.call('kernel.show', { name: cmd.name })
        out(cmd.json ? json(k) : renderKernel(k))
        return EXIT.ok
      }
      case 'kernel.rm': {
        const { deleted } = await client.call('kernel.delete', { name: cmd.name })
        out(`removed kernel ${deleted}\n`)
        return EXIT.ok
      }
    }
  } finally {
    client.close()
  }
}

/**
 * `image pull`: progress on stderr while the call runs; SIGINT/SIGTERM abort the call (the client
 * sends `$/cancelRequest`, and closing the connection cancels it too), print one line and exit
 * 130 (143 for SIGTERM). A second signal exits at once.
 */
async function pull(
  client: DaemonClient,
  cmd: Extract<Command, { kind: 'image.pull' }>,
  io: CliIo,
): Promise<number> {
  const controller = new AbortController()
  let interrupted: 'SIGINT' | 'SIGTERM' | undefined
  const unregister = io.onInterrupt((signal) => {
    if (interrupted) process.exit(signal === 'SIGINT' ? EXIT.interrupted : 143)
    interrupted = signal
    controller.abort()
  })
  const progress = progressFor(io.stderr)
  try {
    const img = await client.call('image.pull', cmd.params, {
      signal: controller.signal,
      onProgress: (ev) => progress.update(ev),
    })
    progress.end(true)
    io.stdout.write(
      cmd.json
        ? json(img)
        : `pulled ${img.sourceRef ?? cmd.params.ref} as image ${img.name}: ${img.rootfsPath} ` +
            `(${formatBytes(img.sizeBytes)}${img.manifestDigest ? `, ${shortDigest(img.manifestDigest)}` : ''})\n`,
    )
    return EXIT.ok
  } catch (err) {
    progress.end(false)
    if (interrupted) {
      // Let the cancel notification and the close reach the daemon before the process exits.
      client.close()
      await Promise.race([client.closed, new Promise((r) => setTimeout(r, 1000).unref())])
      io.stderr.write(`banger: pull of ${cmd.params.ref} cancelled\n`)
      return interrupted === 'SIGINT' ? EXIT.interrupted : 143
    }
    throw err
  } finally {
    unregister()
  }
}
