#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { startDaemon, VERSION } from './daemon.js'

const usage = `Usage: bangerd [options]

Runs the banger daemon in the foreground: JSON-RPC on a unix socket, state in SQLite.

Options:
  --socket PATH      socket to listen on (default $BANGER_SOCKET, else $XDG_RUNTIME_DIR/banger/bangerd.sock)
  --state-dir DIR    state directory (default $BANGER_STATE_DIR, else $XDG_STATE_HOME/banger)
  --cache-dir DIR    OCI blob cache (default $BANGER_CACHE_DIR, else $XDG_CACHE_HOME/banger/oci)
  --config FILE      config file (default $BANGER_CONFIG, else $XDG_CONFIG_HOME/banger/config.json)
  --log-level LEVEL  pino level for <state>/logs/bangerd.log (default info)
  --version          print the version
  -h, --help         show this help

Stops cleanly on SIGTERM, SIGINT or the daemon.shutdown method.`

async function main(): Promise<number> {
  let values
  try {
    ;({ values } = parseArgs({
      options: {
        socket: { type: 'string' },
        'state-dir': { type: 'string' },
        'cache-dir': { type: 'string' },
        config: { type: 'string' },
        'log-level': { type: 'string' },
        version: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }))
  } catch (err) {
    process.stderr.write(`bangerd: ${(err as Error).message}\n  Run \`bangerd --help\`.\n`)
    return 2
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`)
    return 0
  }
  if (values.version) {
    process.stdout.write(`${VERSION}\n`)
    return 0
  }
  // Everything the daemon creates is private to the user (dirs 0700, files 0600).
  process.umask(0o077)
  const daemon = await startDaemon({
    paths: {
      ...(values.socket ? { socketPath: values.socket } : {}),
      ...(values['state-dir'] ? { stateDir: values['state-dir'] } : {}),
      ...(values['cache-dir'] ? { cacheDir: values['cache-dir'] } : {}),
      ...(values.config ? { configPath: values.config } : {}),
    },
    ...(values['log-level'] ? { logLevel: values['log-level'] } : {}),
  })
  const onSignal = (signal: string): void => {
    daemon.log.info({ signal }, 'signal received')
    void daemon.stop()
  }
  process.on('uncaughtException', (err) => {
    daemon.log.fatal({ err }, 'uncaught exception; exiting')
    process.stderr.write(`bangerd: internal error: ${err.message}\n`)
    process.exit(70)
  })
  process.once('SIGTERM', onSignal)
  process.once('SIGINT', onSignal)
  process.stdout.write(`bangerd ${VERSION} listening on ${daemon.paths.socketPath}\n`)
  await daemon.stopped
  return 0
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    const e = err as { message?: string; hint?: string; code?: string }
    process.stderr.write(`bangerd: ${e.message ?? String(err)}\n`)
    if (e.hint) process.stderr.write(`  ${e.hint}\n`)
    if (process.env.BANGER_DEBUG && err instanceof Error && err.stack) {
      process.stderr.write(`${err.stack}\n`)
    }
    process.exitCode = 1
  },
)
