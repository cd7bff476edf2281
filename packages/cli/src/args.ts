import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import yargs, { type Argv } from 'yargs'
import type {
  ImagePullParams,
  ImageRegisterParams,
  KernelAddParams,
  KernelRef,
} from '@banger/daemon/rpc'
import { CliError, usageError } from './errors.js'
import { parseSize } from './size.js'

/** What the command line asked for, once parsed and validated. Paths are absolute. */
export type Command =
  | { kind: 'image.pull'; params: ImagePullParams; json: boolean }
  | { kind: 'image.register'; params: ImageRegisterParams; json: boolean }
  | { kind: 'image.list'; json: boolean }
  | { kind: 'image.show'; name: string; json: boolean }
  | { kind: 'image.rm'; name: string }
  | { kind: 'kernel.add'; params: KernelAddParams; json: boolean }
  | { kind: 'kernel.list'; json: boolean }
  | { kind: 'kernel.show'; name: string; json: boolean }
  | { kind: 'kernel.rm'; name: string }
  | { kind: 'daemon.start' }
  | { kind: 'daemon.stop' }
  | { kind: 'daemon.status'; json: boolean }

export interface ParsedArgs {
  /** Undefined when yargs answered by itself (`--help`, `--version`, `completion`). */
  command?: Command
  debug: boolean
  /** What yargs printed (help, version, completion script), for stdout. */
  output: string
}

export interface ParseOptions {
  /** Relative paths on the command line are resolved against this (the daemon has its own cwd). */
  cwd: string
  /** Help text width; default 100. */
  width?: number
}

interface KernelFlags {
  kernel?: string
  'kernel-path'?: string
  initrd?: string
  modules?: string
}

function kernelOptions<T>(y: Argv<T>) {
  return y
    .option('kernel', {
      type: 'string',
      describe: 'Kernel from the catalog, by name (default: the catalog default)',
    })
    .option('kernel-path', { type: 'string', describe: 'Kernel image file (instead of --kernel)' })
    .option('initrd', { type: 'string', describe: 'Initrd file, with --kernel-path' })
    .option('modules', { type: 'string', describe: 'Kernel modules directory, with --kernel-path' })
    .conflicts('kernel', ['kernel-path', 'initrd', 'modules'])
    .implies('initrd', 'kernel-path')
    .implies('modules', 'kernel-path')
}

function kernelRef(argv: KernelFlags, cwd: string): KernelRef {
  const ref: KernelRef = {}
  if (argv.kernel !== undefined) ref.kernel = argv.kernel
  if (argv['kernel-path'] !== undefined) ref.kernelPath = resolve(cwd, argv['kernel-path'])
  if (argv.initrd !== undefined) ref.initrdPath = resolve(cwd, argv.initrd)
  if (argv.modules !== undefined) ref.modulesDir = resolve(cwd, argv.modules)
  return ref
}

const jsonOption = {
  type: 'boolean',
  default: false,
  describe: 'Print the RPC result as JSON',
} as const

function nonEmpty(what: string) {
  return (value: unknown): string => {
    if (typeof value !== 'string' || value.trim() === '')
      throw usageError(`${what} must not be empty`, `give a ${what}; see --help`)
    return value
  }
}

/** This package's version, for `banger --version` (as docker, skopeo and crane answer it). */
const CLI_VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string
  }
).version

/**
 * Builds the yargs parser. Handlers only record the command; nothing runs here, so parsing is a
 * pure function of the arguments (unit-tested without a daemon).
 */
function buildParser(args: string[], opts: ParseOptions, found: { command?: Command }) {
  const cwd = opts.cwd
  const set = (command: Command) => {
    found.command = command
  }
  return yargs(args)
    .scriptName('banger')
    .usage(
      '$0 <command>\n\nTurn OCI/Docker images into bootable ext4 root filesystems for microVMs.',
    )
    .option('debug', {
      type: 'boolean',
      default: false,
      global: true,
      describe: 'Show stack traces and error codes on failure',
    })
    .command('image', 'Pull, register, list, show and remove images', (y) =>
      y
        .command(
          'pull <ref>',
          'Pull an image from a registry and build its root filesystem',
          (y) =>
            kernelOptions(
              y
                .positional('ref', {
                  type: 'string',
                  describe: 'Image reference, e.g. debian:bookworm or 127.0.0.1:5000/app@sha256:…',
                })
                .coerce('ref', nonEmpty('reference'))
                .option('name', {
                  type: 'string',
                  describe:
                    'Image name (default: from the reference, debian:bookworm → debian-bookworm)',
                })
                .option('size', {
                  type: 'string',
                  describe:
                    'Filesystem size: 4G, 512M, 1.5GiB or bytes (default: tree × 1.25, at least 1 GiB)',
                })
                .option('platform', {
                  type: 'string',
                  describe: 'Platform to pull from a multi-platform image (default: linux/amd64)',
                })
                .option('insecure', {
                  type: 'boolean',
                  default: false,
                  describe: 'Reach the registry over plain HTTP',
                })
                .option('json', jsonOption),
            ),
          (argv) => {
            const params: ImagePullParams = { ref: argv.ref!, ...kernelRef(argv, cwd) }
            if (argv.name !== undefined) params.name = argv.name
            if (argv.size !== undefined) params.sizeBytes = parseSize(argv.size)
            if (argv.platform !== undefined) params.platform = argv.platform
            if (argv.insecure) params.insecure = true
            set({ kind: 'image.pull', params, json: argv.json })
          },
        )
        .command(
          'register <name>',
          'Record an existing ext4 root filesystem as an image (banger never deletes it)',
          (y) =>
            kernelOptions(
              y
                .positional('name', { type: 'string', describe: 'Image name' })
                .option('rootfs', {
                  type: 'string',
                  demandOption: true,
                  describe: 'The ext4 root filesystem file',
                })
                .option('json', jsonOption),
            ),
          (argv) => {
            const params: ImageRegisterParams = {
              name: argv.name!,
              rootfsPath: resolve(cwd, argv.rootfs),
              ...kernelRef(argv, cwd),
            }
            set({ kind: 'image.register', params, json: argv.json })
          },
        )
        .command(
          ['list', 'ls'],
          'List images',
          (y) => y.option('json', jsonOption),
          (argv) => set({ kind: 'image.list', json: argv.json }),
        )
        .command(
          'show <name>',
          'Show one image: digest, size, paths, kernel',
          (y) =>
            y
              .positional('name', { type: 'string', describe: 'Image name' })
              .option('json', jsonOption),
          (argv) => set({ kind: 'image.show', name: argv.name!, json: argv.json }),
        )
        .command(
          ['rm <name>', 'delete'],
          'Remove an image (and its files, when banger built them)',
          (y) => y.positional('name', { type: 'string', describe: 'Image name' }),
          (argv) => set({ kind: 'image.rm', name: argv.name! }),
        )
        .demandCommand(1, 'name an image subcommand'),
    )
    .command('kernel', 'Manage the kernel catalog', (y) =>
      y
        .command(
          'add <name>',
          'Add a kernel (with its initrd and modules) to the catalog',
          (y) =>
            y
              .positional('name', { type: 'string', describe: 'Catalog name' })
              .option('kernel-path', {
                type: 'string',
                demandOption: true,
                describe: 'Kernel image file',
              })
              .option('initrd', { type: 'string', describe: 'Initrd file' })
              .option('modules', { type: 'string', describe: 'Kernel modules directory' })
              .option('default', {
                type: 'boolean',
                default: false,
                describe: 'Use this kernel when a pull names none',
              })
              .option('json', jsonOption),
          (argv) => {
            const params: KernelAddParams = {
              name: argv.name!,
              kernelPath: resolve(cwd, argv['kernel-path']),
            }
            if (argv.initrd !== undefined) params.initrdPath = resolve(cwd, argv.initrd)
            if (argv.modules !== undefined) params.modulesDir = resolve(cwd, argv.modules)
            if (argv.default) params.default = true
            set({ kind: 'kernel.add', params, json: argv.json })
          },
        )
        .command(
          ['list', 'ls'],
          'List kernels',
          (y) => y.option('json', jsonOption),
          (argv) => set({ kind: 'kernel.list', json: argv.json }),
        )
        .command(
          'show <name>',
          'Show one kernel',
          (y) =>
            y
              .positional('name', { type: 'string', describe: 'Catalog name' })
              .option('json', jsonOption),
          (argv) => set({ kind: 'kernel.show', name: argv.name!, json: argv.json }),
        )
        .command(
          ['rm <name>', 'delete'],
          'Remove a kernel from the catalog (its files are left alone)',
          (y) => y.positional('name', { type: 'string', describe: 'Catalog name' }),
          (argv) => set({ kind: 'kernel.rm', name: argv.name! }),
        )
        .demandCommand(1, 'name a kernel subcommand'),
    )
    .command('daemon', 'Start, stop or query bangerd', (y) =>
      y
        .command('start', 'Start bangerd in the background (other commands do this too)', {}, () =>
          set({ kind: 'daemon.start' }),
        )
        .command('stop', 'Ask bangerd to stop and wait for it to exit', {}, () =>
          set({ kind: 'daemon.stop' }),
        )
        .command(
          'status',
          'Show whether bangerd runs, and what it holds (exit 3 when it does not run)',
          (y) => y.option('json', jsonOption),
          (argv) => set({ kind: 'daemon.status', json: argv.json }),
        )
        .demandCommand(1, 'name a daemon subcommand'),
    )
    .completion('completion', 'Print a bash/zsh completion script: banger completion >> ~/.bashrc')
    .demandCommand(1, 'name a command')
    .recommendCommands()
    .strict()
    .help()
    .alias('help', 'h')
    .version(CLI_VERSION)
    .wrap(Math.min(opts.width ?? 100, 100))
    .exitProcess(false)
}

const SUBCOMMANDS: Record<string, string[]> = {
  image: ['pull', 'register', 'list', 'ls', 'show', 'rm', 'delete'],
  kernel: ['add', 'list', 'ls', 'show', 'rm', 'delete'],
  daemon: ['start', 'stop', 'status'],
}

/** Each command's required positional, to say which one is missing. */
const POSITIONALS: Record<string, string> = {
  'image pull ': 'REF',
  'image register ': 'NAME',
  'image show ': 'NAME',
  'image rm ': 'NAME',
  'image delete ': 'NAME',
  'kernel add ': 'NAME',
  'kernel show ': 'NAME',
  'kernel rm ': 'NAME',
  'kernel delete ': 'NAME',
}

/** yargs' message on one line, lower-cased like every other banger message; a missing positional named. */
function usageMessage(message: string, path: string): string {
  const positional = POSITIONALS[path]
  if (positional && message.startsWith('Not enough non-option arguments'))
    return `banger ${path}needs ${positional}`
  const oneLine = message.replace(/\s*\n\s*/g, ' ').trim()
  return oneLine.charAt(0).toLowerCase() + oneLine.slice(1)
}

/** `['image', 'pull', 'x', '--bad']` → `'image pull '`: the known command words, for hints. */
function commandPath(args: string[]): string {
  const words = args.filter((a) => !a.startsWith('-'))
  const [group, sub] = words
  if (group === undefined || !(group in SUBCOMMANDS)) return ''
  if (sub !== undefined && SUBCOMMANDS[group]!.includes(sub)) return `${group} ${sub} `
  return `${group} `
}

/**
 * Parses `args` (without `node` and the script). Resolves to the command to run, or to no
 * command when yargs answered by itself (help, completion), with what it printed.
 *
 * @throws CliError with exit code 2 for a bad command line (`E_USAGE`, `E_BAD_SIZE`).
 */
export async function parseArgs(args: string[], opts: ParseOptions): Promise<ParsedArgs> {
  const found: { command?: Command } = {}
  const debug = args.includes('--debug')
  const parser = buildParser(args, opts, found)
  // yargs may call back more than once (a completion request answers on the second call), and
  // with synchronous handlers it does so before parse() returns; collect every call.
  let error: Error | undefined
  let output = ''
  await parser.parse(args, {}, (err: Error | undefined | null, _argv: unknown, out: string) => {
    error ??= err ?? undefined
    if (out) output += (output && !output.endsWith('\n') ? '\n' : '') + out
  })
  await new Promise((r) => setImmediate(r))
  if (error) {
    if (error instanceof CliError) throw error
    const path = commandPath(args)
    throw usageError(usageMessage(error.message, path), `run 'banger ${path}--help' for usage`)
  }
  return { command: found.command, debug, output }
}
