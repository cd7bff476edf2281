import { quoteArg, runDebugfs, type DebugfsCommand } from './debugfs.js'
import type { Manifest } from './entries.js'

export const ROOT_INO = 2

/** One `ls -p` line: `/ino/mode/uid/gid/name/size/` (size empty for directories). */
export interface LsLine {
  ino: number
  /** i_mode, file-type bits included. */
  mode: number
  uid: number
  gid: number
  /** The name as debugfs printed it: raw bytes, as latin1 characters. */
  rawName: string
}

/**
 * Parses one `ls -p` line; undefined for anything else (an error, a deleted entry with inode 0).
 * debugfs prints ids with %d (4294967294 shows as -2) and names raw; a name cannot hold '/', so
 * the name ends at the second-last slash.
 */
export function parseLsLine(line: string): LsLine | undefined {
  if (line.charCodeAt(0) !== 47 || line.charCodeAt(line.length - 1) !== 47) return undefined
  const a = line.indexOf('/', 1)
  const b = line.indexOf('/', a + 1)
  const c = line.indexOf('/', b + 1)
  const d = line.indexOf('/', c + 1)
  const e = line.lastIndexOf('/', line.length - 2)
  if (a < 0 || b < 0 || c < 0 || d < 0 || e <= d) return undefined
  const size = line.slice(e + 1, -1)
  const ino = line.slice(1, a)
  const mode = line.slice(a + 1, b)
  const uid = line.slice(b + 1, c)
  const gid = line.slice(c + 1, d)
  if (!/^\d+$/.test(ino) || !/^[0-7]+$/.test(mode) || !/^\d*$/.test(size)) return undefined
  if (!/^-?\d+$/.test(uid) || !/^-?\d+$/.test(gid)) return undefined
  return {
    ino: Number(ino),
    mode: parseInt(mode, 8),
    uid: Number(uid) >>> 0,
    gid: Number(gid) >>> 0,
    rawName: line.slice(d + 1, e),
  }
}

/** A latin1-decoded byte string as the UTF-8 text it holds. */
function utf8(raw: string): string {
  // eslint-disable-next-line no-control-regex
  return /[^\x00-\x7f]/.test(raw) ? Buffer.from(raw, 'latin1').toString('utf8') : raw
}

export function lsCommand(dir: string): string {
  return `ls -p ${quoteArg(dir)}`
}

/**
 * What the directory listings say about every manifest entry, in typed arrays indexed by the
 * index of the first manifest entry with that path (about 15 bytes an entry, no strings kept).
 */
export class Listing {
  /** Inode number; 0 where no listed directory holds the name. */
  readonly ino: Uint32Array
  /** i_mode, file-type bits included. */
  readonly mode: Uint16Array
  readonly uid: Uint32Array
  readonly gid: Uint32Array
  /** Directory entries with this name (saturating at 255): more than one means a duplicated name. */
  readonly count: Uint8Array
  /**
   * Whether the root's mode and owner were read (from its own `.`): until then its slot holds
   * placeholders (directory type bits, 0:0), not what the image says.
   */
  rootListed = false

  constructor(readonly manifest: Manifest) {
    const n = manifest.length
    this.ino = new Uint32Array(n)
    this.mode = new Uint16Array(n)
    this.uid = new Uint32Array(n)
    this.gid = new Uint32Array(n)
    this.count = new Uint8Array(n)
    const root = manifest.indexOf('/')
    if (root !== undefined) {
      this.ino[root] = ROOT_INO
      this.mode[root] = 0o040000
      this.count[root] = 1
    }
  }

  /** The listing's slot for entry i (duplicate paths share the first one's). */
  slot(i: number): number {
    return this.manifest.slotOf(i)
  }

  /** Whether the listing found entry i's path. */
  has(i: number): boolean {
    return this.count[this.manifest.slotOf(i)]! > 0
  }

  /** Adds the `ls -p` output of directory `dir` (a manifest path). */
  absorb(dir: string, output: string): void {
    const prefix = dir === '/' ? '/' : `${dir}/`
    for (let start = 0; start < output.length;) {
      let end = output.indexOf('\n', start)
      if (end < 0) end = output.length
      const line = parseLsLine(output.slice(start, end))
      start = end + 1
      if (!line || line.ino === 0) continue
      const { rawName } = line
      let i: number | undefined
      if (rawName === '.' || rawName === '..') {
        // The root has no parent listing: take its own `.` for its mode and owner.
        if (dir !== '/' || rawName !== '.') continue
        i = this.manifest.indexOf('/')
        if (i === undefined) continue
        this.mode[i] = line.mode
        this.uid[i] = line.uid
        this.gid[i] = line.gid
        this.rootListed = true
        continue
      }
      i = this.manifest.indexOf(prefix + utf8(rawName))
      if (i === undefined) continue // not in the manifest: not this stage's business
      if (this.count[i] === 0) {
        this.ino[i] = line.ino
        this.mode[i] = line.mode
        this.uid[i] = line.uid
        this.gid[i] = line.gid
      }
      if (this.count[i]! < 255) this.count[i]!++
    }
  }
}

/** `ls -p` of every manifest directory; `entry` is the directory's manifest index. */
export function* lsCommands(manifest: Manifest, part: number): Generator<DebugfsCommand> {
  for (const i of manifest.directories)
    yield { text: lsCommand(manifest.entries[i]!.path), entry: i, part }
}

/**
 * Lists every manifest directory in one read-only debugfs process. Looking a path up costs debugfs a
 * scan of its directory, so the write and verify batches address inodes as `<ino>` from this
 * listing instead; listing costs one scan per directory.
 */
export async function listDirectories(
  binary: string,
  image: string,
  manifest: Manifest,
  workDir: string,
  signal?: AbortSignal,
): Promise<Listing> {
  const listing = new Listing(manifest)
  await runDebugfs({
    binary,
    image,
    commands: lsCommands(manifest, 0),
    write: false,
    workDir,
    signal,
    onOutput: (entry, _part, output) => listing.absorb(manifest.entries[entry]!.path, output),
  })
  return listing
}
