import { CommandScript, quoteArg, runDebugfs } from './debugfs.js'

/** What the directory listings say about one path. */
export interface ListedPath {
  ino: number
  /** i_mode, file-type bits included. */
  mode: number
  /** Directory entries with this name: more than one means a corrupt (duplicated) name. */
  count: number
}

/** Parses `ls -p` lines: `/ino/mode/uid/gid/name/size/` (size empty for directories). */
export function parseLsP(lines: string[]): { ino: number; mode: number; name: string }[] {
  const out: { ino: number; mode: number; name: string }[] = []
  for (const line of lines) {
    // A name cannot hold '/', so the greedy name stops at the size field.
    const m = /^\/(\d+)\/([0-7]+)\/-?\d+\/-?\d+\/(.*)\/\d*\/$/.exec(line)
    if (!m || m[1] === '0' || m[3] === '.' || m[3] === '..') continue
    out.push({ ino: Number(m[1]), mode: parseInt(m[2]!, 8), name: m[3]! })
  }
  return out
}

export const ROOT_INO = 2

export function lsCommand(dir: string): string {
  return `ls -p ${quoteArg(dir)}`
}

/** Adds one directory's listing to `into` (child path → inode). */
export function absorbListing(into: Map<string, ListedPath>, dir: string, lines: string[]): void {
  for (const { ino, mode, name } of parseLsP(lines)) {
    const path = dir === '/' ? `/${name}` : `${dir}/${name}`
    const seen = into.get(path)
    if (seen) seen.count++
    else into.set(path, { ino, mode, count: 1 })
  }
}

/**
 * Lists every given directory in one read-only debugfs process. Looking a path up costs debugfs a
 * scan of its directory, so the write and verify batches address inodes as `<ino>` from this map
 * instead; listing costs one scan per directory.
 */
export async function listDirectories(
  binary: string,
  image: string,
  dirs: string[],
  workDir: string,
  signal?: AbortSignal,
): Promise<Map<string, ListedPath>> {
  const listed = new Map<string, ListedPath>([['/', { ino: ROOT_INO, mode: 0o040000, count: 1 }]])
  const commands = new CommandScript()
  for (const dir of dirs) commands.add(lsCommand(dir))
  await runDebugfs({
    binary,
    image,
    commands,
    write: false,
    workDir,
    signal,
    onOutput: (i, lines) => absorbListing(listed, dirs[i]!, lines),
  })
  return listed
}
