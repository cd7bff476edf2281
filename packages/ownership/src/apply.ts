import { createHash } from 'node:crypto'
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  checkCommand,
  debugfsCandidates,
  quoteArg,
  resolveBinary,
  runDebugfs,
  type DebugfsCommand,
} from './debugfs.js'
import { isSpecial, Manifest, splitPath, TYPE_BITS } from './entries.js'
import {
  DebugfsCommandError,
  DebugfsMissingError,
  SpecialExistsError,
  TreeMismatchError,
  type DebugfsFailure,
  type OwnershipMismatch,
} from './errors.js'
import type { ApplyOwnershipOptions, OwnershipEntry, OwnershipReport } from './types.js'
import { listDirectories, ROOT_INO, type Listing } from './listing.js'
import { verifyEntries } from './verify.js'

/** A value debugfs's ea_set takes inline without any interpretation (it C-unescapes others). */
const INLINE_VALUE = /^[A-Za-z0-9._:/=,+@%][A-Za-z0-9._:/=,+@%-]*$/

export interface ApplyOwnershipToolOptions {
  /** Path to debugfs; default: PATH, then /usr/sbin and /sbin. */
  debugfs?: string
}

/**
 * Restores owner, full mode, mtime, device nodes, FIFOs and xattrs of every manifest entry inside
 * an ext4 image, in ONE `debugfs -w` process (leaving out the modes and owners a first read-only
 * listing shows right already), then reads every entry back in one more read-only debugfs
 * process: before resolving, or with `verify: 'later'` when the caller runs the report's
 * `readBack`, or never with `verify: false`. The report's `commands` counts the write batch.
 *
 * Preconditions: `imagePath` is an ext4 image built from the manifest's tree (for example by
 * @banger/ext4-build) and not mounted; entries come parents before children; device nodes and FIFOs
 * are absent from the image (they are created here). The entry objects are read, never modified,
 * and referenced until this settles. Rejects with E_INVALID_ENTRY or E_UNENCODABLE_NAME before
 * touching the image, E_SPECIAL_EXISTS when a device path is already taken, E_DEBUGFS_MISSING,
 * E_DEBUGFS_FAILED, E_DEBUGFS_COMMAND_FAILED (naming the path) and E_OWNERSHIP_MISMATCH from the
 * read-back. On a rejection after the write started the image is half-updated: discard it.
 */
export async function applyOwnership(
  imagePath: string,
  entries: Iterable<OwnershipEntry>,
  options: ApplyOwnershipOptions & ApplyOwnershipToolOptions = {},
): Promise<OwnershipReport> {
  const { signal } = options
  signal?.throwIfAborted()
  const manifest = new Manifest(entries)

  const binary = options.debugfs ?? (await resolveBinary(debugfsCandidates()))
  if (!binary) throw new DebugfsMissingError(debugfsCandidates().join(', '))

  const workDir = await mkdtemp(join(tmpdir(), 'banger-ownership-'))
  let batch
  try {
    batch = await writeBatch(
      binary,
      imagePath,
      manifest,
      workDir,
      options.mtimesInImage ?? false,
      signal,
    )
  } finally {
    await rm(workDir, { recursive: true, force: true })
  }
  const { inodes, commands } = batch
  const readBack = async (readSignal?: AbortSignal): Promise<number> => {
    const dir = await mkdtemp(join(tmpdir(), 'banger-ownership-'))
    try {
      return await verifyEntries({
        binary,
        image: imagePath,
        manifest,
        inodes,
        workDir: dir,
        signal: readSignal,
      })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }
  const report: OwnershipReport = { entries: manifest.length, commands, verified: 0 }
  const verify = options.verify ?? true
  if (verify === true) report.verified = await readBack(signal)
  else if (verify === 'later') report.readBack = readBack
  return report
}

/**
 * Lists the image, refuses specials over existing names and type mismatches, then runs the one
 * write batch. Resolves to the inode each entry's path was addressed at (0: by path, not found)
 * and the command count.
 */
async function writeBatch(
  binary: string,
  imagePath: string,
  manifest: Manifest,
  workDir: string,
  mtimesInImage: boolean,
  signal: AbortSignal | undefined,
): Promise<{ inodes: Uint32Array; commands: number }> {
  const listing = await listDirectories(binary, imagePath, manifest, workDir, signal)
  const { entries } = manifest
  // mknod over an existing name would add a second directory entry with that name.
  for (let i = 0; i < entries.length; i++)
    if (isSpecial(entries[i]!.type) && listing.has(i))
      throw new SpecialExistsError(imagePath, entries[i]!.path)

  // Writing a directory's mode onto a file inode (say) would corrupt the image; refuse first.
  const wrongType: OwnershipMismatch[] = []
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    const s = listing.slot(i)
    if (!listing.count[s] || (listing.mode[s]! & 0o170000) === TYPE_BITS[e.type]) continue
    const bits = listing.mode[s]! & 0o170000
    const found = Object.entries(TYPE_BITS).find(([, b]) => b === bits)
    wrongType.push({
      path: e.path,
      field: 'type',
      expected: e.type,
      actual: found?.[0] ?? `mode 0${listing.mode[s]!.toString(8)}`,
    })
  }
  if (wrongType.length) throw new TreeMismatchError(imagePath, wrongType)

  // The inode each entry is addressed at: the listing's, or mknod's for device nodes and FIFOs.
  const inodes = new Uint32Array(entries.length)
  for (let i = 0; i < entries.length; i++) inodes[i] = listing.ino[listing.slot(i)]!

  const settled = settledFields(manifest, listing, mtimesInImage)
  // Values ea_set cannot take inline go through files, one per distinct value.
  const valueFiles = await writeValueFiles(manifest, workDir)
  // A command debugfs would cut must be refused before the image is touched: generate, ahead, the
  // commands of every entry whose path or xattrs are long enough for that (none, usually).
  for (const command of writeCommands(manifest, listing, settled, valueFiles, (i) =>
    mayBeLong(manifest, i),
  ))
    checkCommand(command.text)

  const failures: DebugfsFailure[] = []
  // Closing a filesystem it changed, debugfs stamps the superblock's write time with the clock
  // unless E2FSPROGS_FAKE_TIME is set: keep the image's own, so equal inputs give equal images.
  const writeTime = await readWriteTime(imagePath)
  const commands = await runDebugfs({
    binary,
    image: imagePath,
    commands: writeCommands(manifest, listing, settled, valueFiles),
    write: true,
    workDir,
    ...(writeTime === undefined ? {} : { env: { E2FSPROGS_FAKE_TIME: String(writeTime) } }),
    signal,
    onOutput: (entry, _part, output, index) => {
      if (output === '') return
      const bad: string[] = []
      for (const line of output.split('\n')) {
        const made = /^Allocated inode: (\d+)$/.exec(line)
        if (made) inodes[entry] = Number(made[1])
        else if (line.trim() !== '') bad.push(line)
      }
      if (bad.length)
        failures.push({
          path: entries[entry]!.path,
          command: String(index), // replaced by the command's text below
          output: Buffer.from(bad.join(' / '), 'latin1').toString('utf8'),
        })
    },
  })
  if (failures.length) {
    // Only positions were kept in flight; the batch is deterministic, so generate it again.
    const wanted = new Map(failures.map((f) => [Number(f.command), f]))
    let index = 0
    for (const command of writeCommands(manifest, listing, settled, valueFiles)) {
      const failure = wanted.get(index++)
      if (failure) failure.command = command.text
    }
    throw new DebugfsCommandError(imagePath, failures)
  }
  return { inodes, commands }
}

/** Bits of settledFields: the listing already shows the manifest's value. */
export const SETTLED_MODE = 1
export const SETTLED_UID = 2
export const SETTLED_GID = 4
export const SETTLED_MTIME = 8

/** mkfs 1.47 copies st_mtime into the 32-bit i_mtime only: times from 2038 on need sif. */
const MAX_MKFS_TIME = 2 ** 31 - 1

/**
 * Per entry, which of mode (type bits included), uid and gid the image already holds, by the
 * listing: the write batch leaves those out. mkfs run in a user namespace writes every inode 0:0
 * with the tree's own mode, so for a typical image most entries need neither. Only the first
 * entry to address an inode may rely on the listing: a later one (a second record for a path)
 * comes after the batch's own writes, so it writes everything, as before. Specials (mknod'ed
 * by the batch), paths the listing did not find, and a root whose `.` it did not read settle
 * nothing. With `mtimesInImage`, the mtime is settled too where mkfs could copy it (not `/`).
 */
export function settledFields(
  manifest: Manifest,
  listing: Listing,
  mtimesInImage = false,
): Uint8Array {
  const { entries } = manifest
  const settled = new Uint8Array(entries.length)
  let maxIno = 0
  for (let i = 0; i < entries.length; i++) maxIno = Math.max(maxIno, listing.ino[listing.slot(i)]!)
  /** Inodes an earlier entry's commands address: one bit each. */
  const addressed = new Uint32Array((maxIno >>> 5) + 1)
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    const s = listing.slot(i)
    const ino = listing.ino[s]!
    if (manifest.ownerOf(i) !== i || isSpecial(e.type) || ino === 0) continue
    if (ino === ROOT_INO && !listing.rootListed) continue
    const bit = 1 << (ino & 31)
    if (addressed[ino >>> 5]! & bit) continue
    addressed[ino >>> 5]! |= bit
    settled[i] =
      (listing.mode[s] === (TYPE_BITS[e.type] | e.mode) ? SETTLED_MODE : 0) |
      (listing.uid[s] === e.uid ? SETTLED_UID : 0) |
      (listing.gid[s] === e.gid ? SETTLED_GID : 0)
    const mtime = manifest.mtimeOf(i)
    if (mtimesInImage && ino !== ROOT_INO && mtime !== undefined && mtime <= MAX_MKFS_TIME)
      settled[i]! |= SETTLED_MTIME
  }
  return settled
}

/**
 * The write batch, generated as debugfs consumes it; `entry` is the manifest index each command
 * acts for. Deterministic: the same arguments give the same commands. Leaves out the fields
 * `settled` (settledFields) marks. With `only`, just the commands of the entries it accepts.
 * Writes each distinct xattr value that cannot go inline to a file in `workDir` (once;
 * `valueFiles` remembers which) before yielding its `ea_set -f`.
 */
function* writeCommands(
  manifest: Manifest,
  listing: Listing,
  settled: Uint8Array,
  valueFiles: ReadonlyMap<string, string>,
  only: (i: number) => boolean = () => true,
): Generator<DebugfsCommand> {
  const { entries } = manifest
  // `<ino>` for what the listing found (no directory scan per command); the quoted path for what
  // it did not, so debugfs's own "File not found" names the path.
  const spec = (i: number): string => {
    const ino = listing.ino[listing.slot(i)]!
    return ino ? `<${ino}>` : quoteArg(entries[i]!.path)
  }
  const isOwner = (i: number): boolean => manifest.ownerOf(i) === i && only(i)

  // Device nodes and FIFOs first. debugfs's mknod links the name it is given into the current
  // directory verbatim (a name with slashes would be one bogus entry), so cd to the parent.
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    if (!isSpecial(e.type) || !isOwner(i)) continue
    const { parent, base } = splitPath(e.path)
    yield { text: `cd ${quoteArg(parent)}`, entry: i, part: 0 }
    // debugfs 1.47's mknod rejects some minors (70000), so make it 0:0 and write the device
    // number the way the kernel encodes it in i_block.
    const how = e.type === 'fifo' ? 'p' : `${e.type === 'char' ? 'c' : 'b'} 0 0`
    yield { text: `mknod ${quoteArg(base)} ${how}`, entry: i, part: 0 }
    if (e.type !== 'fifo') {
      const [b0, b1] = encodeDevice(e.devMajor!, e.devMinor!)
      yield { text: `sif ${quoteArg(e.path)} block[0] ${b0}`, entry: i, part: 0 }
      yield { text: `sif ${quoteArg(e.path)} block[1] ${b1}`, entry: i, part: 0 }
    }
  }
  // Hardlinks to specials: a new name for the mknod'ed inode. `ln` does not count links, so
  // links_count is set below. Hardlinked regular files already share an inode (mkfs -d keeps them).
  for (let i = 0; i < entries.length; i++) {
    const owner = manifest.ownerOf(i)
    if (owner === i || !isSpecial(entries[owner]!.type) || !only(i)) continue
    yield {
      text: `ln ${quoteArg(entries[owner]!.path)} ${quoteArg(entries[i]!.path)}`,
      entry: i,
      part: 0,
    }
  }

  for (let i = 0; i < entries.length; i++) {
    if (!isOwner(i)) continue
    const e = entries[i]!
    const p = spec(i)
    const mtime = manifest.mtimeOf(i)
    const done = settled[i]!
    if (!(done & SETTLED_MODE))
      yield {
        text: `sif ${p} mode 0${(TYPE_BITS[e.type] | e.mode).toString(8)}`,
        entry: i,
        part: 0,
      }
    // sif's uid/gid fields write i_uid_high/i_gid_high too (checked with uid 100000).
    if (!(done & SETTLED_UID)) yield { text: `sif ${p} uid ${e.uid}`, entry: i, part: 0 }
    if (!(done & SETTLED_GID)) yield { text: `sif ${p} gid ${e.gid}`, entry: i, part: 0 }
    if (mtime !== undefined && !(done & SETTLED_MTIME))
      yield { text: `sif ${p} mtime @${mtime}`, entry: i, part: 0 }
    if (isSpecial(e.type)) {
      // mknod stamps the wall clock; pin the other times so the image stays reproducible.
      const t = mtime ?? 0
      if (mtime === undefined) yield { text: `sif ${p} mtime @${t}`, entry: i, part: 0 }
      for (const field of ['atime', 'ctime', 'crtime'])
        yield { text: `sif ${p} ${field} @${t}`, entry: i, part: 0 }
      const links = manifest.linksOf(i)
      if (links > 1) yield { text: `sif ${p} links_count ${links}`, entry: i, part: 0 }
    }
    if (!manifest.hasXattrs(i)) continue
    for (const [name, value] of manifest.xattrsOf(i)) {
      const text = value.toString('latin1')
      if (INLINE_VALUE.test(text))
        yield { text: `ea_set ${p} ${quoteArg(name)} ${text}`, entry: i, part: 0 }
      else {
        // Binary or unusual values go through a file: ea_set C-unescapes inline values and
        // splits them on whitespace.
        const file = valueFiles.get(e.xattrs![name]!)!
        yield { text: `ea_set -f ${quoteArg(file)} ${p} ${quoteArg(name)}`, entry: i, part: 0 }
      }
    }
  }
}

/**
 * Writes each distinct xattr value ea_set cannot take inline to a file of its own in `workDir`.
 * Resolves to the file of each such value, by its base64 (the manifest's own strings).
 */
async function writeValueFiles(manifest: Manifest, workDir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>()
  const inline = new Set<string>()
  for (let i = 0; i < manifest.length; i++) {
    if (!manifest.hasXattrs(i)) continue
    const { xattrs } = manifest.entries[i]!
    for (const name in xattrs) {
      const b64 = xattrs[name]!
      if (!Object.hasOwn(xattrs, name) || files.has(b64) || inline.has(b64)) continue
      const value = Buffer.from(b64, 'base64')
      if (INLINE_VALUE.test(value.toString('latin1'))) {
        inline.add(b64)
        continue
      }
      const file = join(workDir, `xattr-${createHash('sha256').update(value).digest('hex')}`)
      await writeFile(file, value)
      files.set(b64, file)
    }
  }
  return files
}

/**
 * Whether an entry's commands could reach debugfs's 8000-byte line: a quoted path of at most 1000
 * characters is at most 3002 bytes (three per character), two of them fit, and so do a name and an
 * inline value of 1000 characters together.
 */
function mayBeLong(manifest: Manifest, i: number): boolean {
  const e = manifest.entries[i]!
  if (e.path.length > 1000 || manifest.entries[manifest.ownerOf(i)]!.path.length > 1000) return true
  if (!manifest.hasXattrs(i)) return false
  const { xattrs } = e
  for (const name in xattrs) if (name.length + xattrs[name]!.length > 1000) return true
  return false
}

/**
 * i_block[0..1] of a device inode as Linux's ext4 writes them: the old 16-bit form when major and
 * minor both fit in a byte, else 0 and the new 32-bit form (12-bit major, 20-bit minor).
 */
export function encodeDevice(major: number, minor: number): [number, number] {
  if (major < 256 && minor < 256) return [major * 256 + minor, 0]
  return [0, (minor & 0xff) + major * 256 + (minor - (minor & 0xff)) * 4096]
}

/** s_wtime of an ext4 superblock (with its high byte), or undefined if this is not one. */
export async function readWriteTime(image: string): Promise<number | undefined> {
  const buf = Buffer.alloc(1024)
  let file
  try {
    file = await open(image, 'r')
    await file.read(buf, 0, 1024, 1024)
  } catch {
    return undefined // debugfs reports the unreadable image itself
  } finally {
    await file?.close()
  }
  if (buf.readUInt16LE(0x38) !== 0xef53) return undefined
  const time = buf.readUInt32LE(0x30) + buf.readUInt8(0x274) * 2 ** 32
  return time > 0 ? time : undefined
}
