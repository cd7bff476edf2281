import { spawn } from 'node:child_process'
import { access, constants, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { CommandScript, listInodes, runDebugfs } from './debugfs.js'
import {
  DebugfsMissingError,
  InodesTooFewError,
  InvalidBuildOptionError,
  MkfsFailedError,
  MkfsMissingError,
  SizeTooSmallError,
  TreeNotFoundError,
  UnencodableNameError,
} from './errors.js'
import { MKE2FS_CONF } from './mke2fs-conf.js'
import { BLOCK_SIZE, type DetailedTreeTotals, INODE_SIZE, minimumBlocks } from './plan.js'
import type { BuildExt4Options, Ext4Image } from './types.js'
import { scanTree } from './walk.js'

/** Paths to e2fsprogs binaries, for hosts where they are not in the usual places (and tests). */
export interface Ext4ToolOptions {
  /** Default: mkfs.ext4 from PATH, then /usr/sbin and /sbin (not on a normal user's PATH). */
  mkfs?: string
  /** Default: debugfs next to mkfs.ext4. */
  debugfs?: string
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const RESERVED_INODES = 11

/** Finds an executable: the PATH first, then the sbin directories e2fsprogs installs into. */
async function findTool(name: string): Promise<{ path?: string; tried: string }> {
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean)
  for (const extra of ['/usr/sbin', '/sbin', '/usr/local/sbin'])
    if (!dirs.includes(extra)) dirs.push(extra)
  for (const dir of dirs) {
    const candidate = join(dir, name)
    try {
      await access(candidate, constants.X_OK)
      return { path: candidate, tried: dirs.join(':') }
    } catch {
      // not here
    }
  }
  return { tried: dirs.map((d) => join(d, name)).join(', ') }
}

function checkOptions(o: BuildExt4Options): void {
  if (!Number.isSafeInteger(o.sizeBytes) || o.sizeBytes <= 0 || o.sizeBytes % BLOCK_SIZE !== 0)
    throw new InvalidBuildOptionError(
      'sizeBytes',
      `${o.sizeBytes} is not a positive multiple of ${BLOCK_SIZE}`,
    )
  if (o.inodes !== undefined && (!Number.isSafeInteger(o.inodes) || o.inodes <= 0))
    throw new InvalidBuildOptionError('inodes', `${o.inodes} is not a positive integer`)
  if (o.label !== undefined && (Buffer.byteLength(o.label) > 16 || /[\0\n]/.test(o.label)))
    throw new InvalidBuildOptionError('label', `${JSON.stringify(o.label)} is longer than 16 bytes`)
  if (o.uuid !== undefined && !UUID.test(o.uuid))
    throw new InvalidBuildOptionError('uuid', `${JSON.stringify(o.uuid)} is not a UUID`)
  if (o.hashSeed !== undefined && !UUID.test(o.hashSeed))
    throw new InvalidBuildOptionError('hashSeed', `${JSON.stringify(o.hashSeed)} is not a UUID`)
  if (o.totals !== undefined) {
    const t = o.totals
    for (const [key, value] of Object.entries({
      bytes: t.bytes,
      inodes: t.inodes,
      directories: t.directories,
      files: t.files ?? 0,
      symlinks: t.symlinks ?? 0,
    }))
      if (!Number.isSafeInteger(value) || value < 0)
        throw new InvalidBuildOptionError('totals', `${key} ${value} is not a count`)
  }
  if (
    o.timestamp !== undefined &&
    (!Number.isSafeInteger(o.timestamp) || o.timestamp < 0 || o.timestamp >= 2 ** 31)
  )
    throw new InvalidBuildOptionError(
      'timestamp',
      `${o.timestamp} is not seconds between 1970 and 2038`,
    )
}

/**
 * Builds an ext4 filesystem of exactly `sizeBytes` in `output` from the tree, without root, mount
 * or loop device: truncates the file to the size, then `mkfs.ext4 -F -q -b 4096 -I 256 -N <n>
 * -d <tree> -E root_owner=0:0` with no positional size (mkfs would read one in 1 KiB units).
 *
 * Modes are copied from the tree as they are on disk, owners are root's (see `owners`);
 * @banger/ownership restores the manifest's afterwards. With `uuid` (the hash seed defaults to
 * it) and `timestamp`, the same tree and options give a byte-identical image: mkfs runs under
 * E2FSPROGS_FAKE_TIME and one debugfs pass sets every inode's atime and ctime (which mkfs copies
 * from the host) to `timestamp`.
 *
 * Rejects, before running mkfs, with E_INVALID_OPTION, E_TREE_NOT_FOUND, E_MKFS_MISSING,
 * E_SIZE_TOO_SMALL (the size cannot hold the tree) or E_INODES_TOO_FEW; then with E_MKFS_FAILED
 * (mkfs's stderr in the message), E_DEBUGFS_MISSING or E_DEBUGFS_COMMAND_FAILED. On any failure
 * after the output was created, the output is removed.
 */
export async function buildExt4(options: BuildExt4Options & Ext4ToolOptions): Promise<Ext4Image> {
  const { tree, output, sizeBytes, signal } = options
  signal?.throwIfAborted()
  checkOptions(options)
  try {
    if (!(await stat(tree)).isDirectory()) throw new TreeNotFoundError(tree)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new TreeNotFoundError(tree, { cause: err })
    throw err
  }
  let mkfs = options.mkfs
  if (mkfs === undefined) {
    const found = await findTool('mkfs.ext4')
    if (!found.path) throw new MkfsMissingError(found.tried)
    mkfs = found.path
  } else {
    try {
      await access(mkfs, constants.X_OK)
    } catch (err) {
      throw new MkfsMissingError(mkfs, { cause: err })
    }
  }

  // The caller's totals spare a second walk of the tree; fixed times need the walk's directories.
  const scan: { totals: DetailedTreeTotals; directories: string[]; unencodable?: string } =
    options.totals !== undefined && options.timestamp === undefined
      ? { totals: options.totals, directories: [] }
      : await scanTree(tree, signal)
  if (options.timestamp !== undefined && scan.unencodable !== undefined)
    throw new UnencodableNameError(scan.unencodable, 'it holds a newline, carriage return or NUL')
  const needInodes = scan.totals.inodes + RESERVED_INODES
  if (options.inodes !== undefined && options.inodes < needInodes)
    throw new InodesTooFewError(options.inodes, needInodes)
  const blocks = sizeBytes / BLOCK_SIZE
  const inodes =
    options.inodes ??
    Math.min(blocks, Math.max(Math.floor(sizeBytes / 16384), Math.ceil(needInodes * 1.25) + 64))
  const need = minimumBlocks(scan.totals, Math.max(inodes, needInodes))
  if (blocks < need) throw new SizeTooSmallError(sizeBytes, need * BLOCK_SIZE)
  if (inodes > blocks)
    throw new SizeTooSmallError(
      sizeBytes,
      inodes * BLOCK_SIZE,
      `${inodes} inodes need one block each at least`,
    )

  const args = [
    '-F',
    '-q',
    '-b',
    String(BLOCK_SIZE),
    '-I',
    String(INODE_SIZE),
    '-N',
    String(inodes),
  ]
  const extended = ['root_owner=0:0']
  const hashSeed = options.hashSeed ?? options.uuid
  if (hashSeed) extended.push(`hash_seed=${hashSeed}`)
  args.push('-E', extended.join(','))
  if (options.label !== undefined) args.push('-L', options.label)
  if (options.uuid !== undefined) args.push('-U', options.uuid)
  args.push('-d', tree, output)

  const file = await open(output, 'w')
  try {
    await file.truncate(sizeBytes)
  } finally {
    await file.close()
  }
  const work = await mkdtemp(join(tmpdir(), 'banger-ext4-'))
  try {
    const conf = join(work, 'mke2fs.conf')
    await writeFile(conf, MKE2FS_CONF)
    const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', MKE2FS_CONFIG: conf }
    if (options.timestamp !== undefined) env.E2FSPROGS_FAKE_TIME = String(options.timestamp)
    const unshare = (options.owners ?? 'root') === 'root' ? await userNamespaceRunner() : null
    const owners = unshare !== null ? 'root' : 'tree'
    await runMkfs(mkfs, args, env, options, need * BLOCK_SIZE, signal, unshare)
    if (options.timestamp !== undefined) {
      const debugfs = options.debugfs ?? (await findDebugfs(mkfs))
      // Address inodes as <ino> from one listing pass: a path lookup costs debugfs a scan of
      // its directory, which grows with the square of the directory's size over a batch.
      const inodes = await listInodes(debugfs, output, scan.directories, work, signal)
      const t = `@${options.timestamp}`
      const commands = new CommandScript()
      for (const ino of inodes) {
        commands.add(`sif <${ino}> atime ${t}`)
        commands.add(`sif <${ino}> ctime ${t}`)
      }
      await runDebugfs({
        binary: debugfs,
        image: output,
        commands,
        write: true,
        workDir: work,
        signal,
        // Should anything dirty the superblock, its write time stays the build's.
        env: { E2FSPROGS_FAKE_TIME: String(options.timestamp) },
      })
    }
    return { ...(await describe(mkfs, output, sizeBytes, signal)), owners }
  } catch (err) {
    await rm(output, { force: true })
    throw err
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

async function findDebugfs(mkfs: string): Promise<string> {
  const beside = join(dirname(mkfs), 'debugfs')
  try {
    await access(beside, constants.X_OK)
    return beside
  } catch {
    const found = await findTool('debugfs')
    if (!found.path) throw new DebugfsMissingError(`${beside}, ${found.tried}`)
    return found.path
  }
}

function runChild(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  signal: AbortSignal | undefined,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env, signal })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.once('error', reject)
    child.once('close', (code, sig) =>
      resolve({
        code,
        signal: sig,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    )
  })
}

let namespaceRunner: Promise<string | null> | undefined
/**
 * `unshare` when it can map this (non-root) user to root in a new user namespace, else null; probed
 * once per process. There the caller's files read as owned by 0:0, so mkfs writes them so: the
 * ownership pass then only fixes what is not root's (Debian: a few dozen of its 8,800 entries)
 * instead of every inode.
 */
function userNamespaceRunner(): Promise<string | null> {
  if (process.getuid?.() === 0) return Promise.resolve(null)
  namespaceRunner ??= (async () => {
    const found = await findTool('unshare')
    if (!found.path) return null
    try {
      const probe = await runChild(
        found.path,
        ['--user', '--map-root-user', 'true'],
        process.env,
        undefined,
      )
      return probe.code === 0 ? found.path : null
    } catch {
      return null
    }
  })()
  return namespaceRunner
}

async function runMkfs(
  mkfs: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  options: BuildExt4Options,
  neededBytes: number,
  signal: AbortSignal | undefined,
  unshare: string | null,
): Promise<void> {
  let result
  try {
    result = unshare
      ? await runChild(unshare, ['--user', '--map-root-user', mkfs, ...args], env, signal)
      : await runChild(mkfs, args, env, signal)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'EACCES') throw new MkfsMissingError(mkfs, { cause: err })
    throw err
  }
  if (result.code === 0) return
  const text = `${result.stderr}${result.stdout}`
  // Our estimate is generous, but say "too small" rather than "mkfs failed" if mkfs ran out.
  if (
    /Could not allocate block|No space left|Could not allocate inode|too many inodes/i.test(text)
  ) {
    const cause = new MkfsFailedError(options.output, text, `exit ${result.code}`)
    if (/inode/i.test(text) && options.inodes !== undefined)
      throw new InodesTooFewError(options.inodes, options.inodes + 1, { cause })
    throw new SizeTooSmallError(
      options.sizeBytes,
      Math.max(neededBytes, options.sizeBytes + BLOCK_SIZE),
      'mkfs ran out of room',
      { cause },
    )
  }
  throw new MkfsFailedError(
    options.output,
    text,
    result.signal ? `killed by ${result.signal}` : `exit ${result.code}`,
  )
}

/** Reads the geometry back from the superblock (dumpe2fs -h, next to mkfs.ext4). */
async function describe(
  mkfs: string,
  output: string,
  sizeBytes: number,
  signal: AbortSignal | undefined,
): Promise<Omit<Ext4Image, 'owners'>> {
  let dumpe2fs = join(dirname(mkfs), 'dumpe2fs')
  try {
    await access(dumpe2fs, constants.X_OK)
  } catch {
    dumpe2fs = (await findTool('dumpe2fs')).path ?? 'dumpe2fs'
  }
  const r = await runChild(dumpe2fs, ['-h', output], { ...process.env, LC_ALL: 'C' }, signal)
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s*(\\d+)`, 'm').exec(r.stdout)
    if (!m)
      throw new MkfsFailedError(
        output,
        `dumpe2fs -h shows no "${name}": ${r.stderr}`,
        `exit ${r.code}`,
      )
    return Number(m[1])
  }
  return {
    path: output,
    sizeBytes,
    blockSize: field('Block size'),
    blockCount: field('Block count'),
    inodeCount: field('Inode count'),
  }
}
