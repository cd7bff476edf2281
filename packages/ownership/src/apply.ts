import { createHash } from 'node:crypto'
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CommandScript, debugfsCandidates, quoteArg, resolveBinary, runDebugfs } from './debugfs.js'
import { checkEntry, isSpecial, splitPath, TYPE_BITS, type CheckedEntry } from './entries.js'
import {
  DebugfsCommandError,
  DebugfsMissingError,
  SpecialExistsError,
  TreeMismatchError,
  type DebugfsFailure,
  type OwnershipMismatch,
} from './errors.js'
import type { ApplyOwnershipOptions, OwnershipEntry, OwnershipReport } from './types.js'
import { listDirectories, type ListedPath } from './listing.js'
import { verifyEntries } from './verify.js'

/** A value debugfs's ea_set takes inline without any interpretation (it C-unescapes others). */
const INLINE_VALUE = /^[A-Za-z0-9._:/=,+@%][A-Za-z0-9._:/=,+@%-]*$/

export interface ApplyOwnershipToolOptions {
  /** Path to debugfs; default: PATH, then /usr/sbin and /sbin. */
  debugfs?: string
}

/**
 * Restores owner, full mode, mtime, device nodes, FIFOs and xattrs of every manifest entry inside
 * an ext4 image, in ONE `debugfs -w` process, then (unless `verify: false`) reads every entry back
 * in one more read-only debugfs process.
 *
 * Preconditions: `imagePath` is an ext4 image built from the manifest's tree (for example by
 * @banger/ext4-build) and not mounted; entries come parents before children; device nodes and FIFOs
 * are absent from the image (they are created here). Rejects with E_INVALID_ENTRY or
 * E_UNENCODABLE_NAME before touching the image, E_SPECIAL_EXISTS when a device path is already
 * taken, E_DEBUGFS_MISSING, E_DEBUGFS_FAILED, E_DEBUGFS_COMMAND_FAILED (naming the path) and
 * E_OWNERSHIP_MISMATCH from the read-back. On a rejection after the write started the image is
 * half-updated: discard it.
 */
export async function applyOwnership(
  imagePath: string,
  entries: Iterable<OwnershipEntry>,
  options: ApplyOwnershipOptions & ApplyOwnershipToolOptions = {},
): Promise<OwnershipReport> {
  const { signal } = options
  signal?.throwIfAborted()
  const checked: CheckedEntry[] = []
  for (const entry of entries) checked.push(checkEntry(entry))

  const binary = options.debugfs ?? (await resolveBinary(debugfsCandidates()))
  if (!binary) throw new DebugfsMissingError(debugfsCandidates().join(', '))

  const workDir = await mkdtemp(join(tmpdir(), 'banger-ownership-'))
  try {
    const dirs = checked.filter((e) => e.type === 'directory').map((e) => e.path)
    // In a function of its own so the listing and the command plan (hundreds of thousands of
    // strings) are garbage before the verification pass builds its own.
    const { inodes, commands } = await writeBatch(binary, imagePath, checked, dirs, workDir, signal)

    let verified = 0
    if (options.verify ?? true) {
      verified = await verifyEntries({
        inodes,
        directories: dirs,
        binary,
        image: imagePath,
        entries: checked,
        workDir,
        signal,
      })
    }
    return { entries: checked.length, commands, verified }
  } finally {
    await rm(workDir, { recursive: true, force: true })
  }
}

/**
 * Lists the image, refuses specials over existing names and type mismatches, then runs the one
 * write batch. Resolves to the inode of every path the batch addressed and the command count.
 */
async function writeBatch(
  binary: string,
  imagePath: string,
  checked: CheckedEntry[],
  dirs: string[],
  workDir: string,
  signal: AbortSignal | undefined,
): Promise<{ inodes: Map<string, number>; commands: number }> {
  const listed = await listDirectories(binary, imagePath, dirs, workDir, signal)
  // mknod over an existing name would add a second directory entry with that name.
  for (const e of checked)
    if (isSpecial(e.type) && listed.has(e.path)) throw new SpecialExistsError(imagePath, e.path)

  // Writing a directory's mode onto a file inode (say) would corrupt the image; refuse first.
  const wrongType: OwnershipMismatch[] = []
  for (const e of checked) {
    const hit = listed.get(e.path)
    if (!hit || (hit.mode & 0o170000) === TYPE_BITS[e.type]) continue
    const found = Object.entries(TYPE_BITS).find(([, bits]) => bits === (hit.mode & 0o170000))
    wrongType.push({
      path: e.path,
      field: 'type',
      expected: e.type,
      actual: found?.[0] ?? `mode 0${hit.mode.toString(8)}`,
    })
  }
  if (wrongType.length) throw new TreeMismatchError(imagePath, wrongType)

  const plan = planCommands(checked, workDir, listed)
  for (const [file, value] of plan.valueFiles) await writeFile(file, value)

  const failures: DebugfsFailure[] = []
  const inodes = new Map<string, number>()
  for (const [path, { ino }] of listed) inodes.set(path, ino)
  // Closing a filesystem it changed, debugfs stamps the superblock's write time with the clock
  // unless E2FSPROGS_FAKE_TIME is set: keep the image's own, so equal inputs give equal images.
  const writeTime = await readWriteTime(imagePath)
  await runDebugfs({
    binary,
    image: imagePath,
    commands: plan.commands,
    write: true,
    ...(writeTime === undefined ? {} : { env: { E2FSPROGS_FAKE_TIME: String(writeTime) } }),
    workDir,
    signal,
    onOutput: (i, lines) => {
      const bad: string[] = []
      for (const line of lines) {
        const made = /^Allocated inode: (\d+)$/.exec(line)
        if (made) inodes.set(plan.owners[i]!, Number(made[1]))
        else if (line.trim() !== '') bad.push(line)
      }
      if (bad.length)
        failures.push({
          path: plan.owners[i],
          command: plan.commands.at(i),
          output: bad.join(' / '),
        })
    },
  })
  if (failures.length) throw new DebugfsCommandError(imagePath, failures)
  return { inodes, commands: plan.commands.length }
}

interface CommandPlan {
  commands: CommandScript
  /** For each command, the manifest path it acts for. */
  owners: (string | undefined)[]
  /** Temp files holding xattr values that cannot go inline, by file name. */
  valueFiles: Map<string, Buffer>
}

function planCommands(
  entries: CheckedEntry[],
  workDir: string,
  listed: Map<string, ListedPath>,
): CommandPlan {
  // `<ino>` for what the listing found (no directory scan per command); the quoted path for what
  // it did not, so debugfs's own "File not found" names the path.
  const spec = (path: string): string => {
    const hit = listed.get(path)
    return hit ? `<${hit.ino}>` : quoteArg(path)
  }
  const commands = new CommandScript()
  const owners: (string | undefined)[] = []
  const valueFiles = new Map<string, Buffer>()
  const add = (path: string, command: string): void => {
    commands.add(command)
    owners.push(path)
  }
  // The first entry of each hardlink group carries the inode; later ones only add names.
  const firstOfGroup = new Map<number, CheckedEntry>()
  const groupSize = new Map<number, number>()
  const inodeOwners: CheckedEntry[] = []
  const extraLinks: CheckedEntry[] = []
  for (const e of entries) {
    if (e.hardlinkGroup === undefined) inodeOwners.push(e)
    else {
      groupSize.set(e.hardlinkGroup, (groupSize.get(e.hardlinkGroup) ?? 0) + 1)
      if (!firstOfGroup.has(e.hardlinkGroup)) {
        firstOfGroup.set(e.hardlinkGroup, e)
        inodeOwners.push(e)
      } else extraLinks.push(e)
    }
  }

  // Device nodes and FIFOs first. debugfs's mknod links the name it is given into the current
  // directory verbatim (a name with slashes would be one bogus entry), so cd to the parent.
  for (const e of inodeOwners) {
    if (!isSpecial(e.type)) continue
    const { parent, base } = splitPath(e.path)
    add(e.path, `cd ${quoteArg(parent)}`)
    // debugfs 1.47's mknod rejects some minors (70000), so make it 0:0 and write the device
    // number the way the kernel encodes it in i_block.
    const how = e.type === 'fifo' ? 'p' : `${e.type === 'char' ? 'c' : 'b'} 0 0`
    add(e.path, `mknod ${quoteArg(base)} ${how}`)
    if (e.type !== 'fifo') {
      const [b0, b1] = encodeDevice(e.devMajor!, e.devMinor!)
      add(e.path, `sif ${quoteArg(e.path)} block[0] ${b0}`)
      add(e.path, `sif ${quoteArg(e.path)} block[1] ${b1}`)
    }
  }
  // Hardlinks to specials: a new name for the mknod'ed inode. `ln` does not count links, so
  // links_count is set below. Hardlinked regular files already share an inode (mkfs -d keeps them).
  const specialGroups = new Set<number>()
  for (const e of extraLinks) {
    const first = firstOfGroup.get(e.hardlinkGroup!)!
    if (!isSpecial(first.type)) continue
    specialGroups.add(e.hardlinkGroup!)
    add(e.path, `ln ${quoteArg(first.path)} ${quoteArg(e.path)}`)
  }

  for (const e of inodeOwners) {
    const p = spec(e.path)
    add(e.path, `sif ${p} mode 0${(TYPE_BITS[e.type] | e.mode).toString(8)}`)
    // sif's uid/gid fields write i_uid_high/i_gid_high too (checked with uid 100000).
    add(e.path, `sif ${p} uid ${e.uid}`)
    add(e.path, `sif ${p} gid ${e.gid}`)
    if (e.mtime !== undefined) add(e.path, `sif ${p} mtime @${e.mtime}`)
    if (isSpecial(e.type)) {
      // mknod stamps the wall clock; pin the other times so the image stays reproducible.
      const t = e.mtime ?? 0
      if (e.mtime === undefined) add(e.path, `sif ${p} mtime @${t}`)
      for (const field of ['atime', 'ctime', 'crtime']) add(e.path, `sif ${p} ${field} @${t}`)
      if (e.hardlinkGroup !== undefined && specialGroups.has(e.hardlinkGroup))
        add(e.path, `sif ${p} links_count ${groupSize.get(e.hardlinkGroup)}`)
    }
    for (const [name, value] of e.values) {
      const text = value.toString('latin1')
      if (INLINE_VALUE.test(text)) add(e.path, `ea_set ${p} ${quoteArg(name)} ${text}`)
      else {
        // Binary or unusual values go through a file: ea_set C-unescapes inline values and
        // splits them on whitespace. One file per distinct value.
        const file = join(workDir, `xattr-${createHash('sha256').update(value).digest('hex')}`)
        valueFiles.set(file, value)
        add(e.path, `ea_set -f ${quoteArg(file)} ${p} ${quoteArg(name)}`)
      }
    }
  }
  return { commands, owners, valueFiles }
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
