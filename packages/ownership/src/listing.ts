import { quoteArg, runDebugfs } from './debugfs.js'

/** What the directory listings say about one path. */
export interface ListedPath {
  ino: number
  /** Directory entries with this name: more than one means a corrupt (duplicated) name. */
  count: number
}

/** Parses `ls -p` lines: `/ino/mode/uid/gid/name/size/` (size empty for directories). */
export function parseLsP(lines: string[]): { ino: number; name: string }[] {
  const out: { ino: number; name: string }[] = []
  for (const line of lines) {
    // A name cannot hold '/', so the greedy name stops at the size field.
    const m = /^\/(\d+)\/[0-7]+\/-?\d+\/-?\d+\/(.*)\/\d*\/$/.exec(line)
    if (!m || m[1] === '0' || m[2] === '.' || m[2] === '..') continue
    out.push({ ino: Number(m[1]), name: m[2]! })
  }
  return out
}

export const ROOT_INO = 2

export function lsCommand(dir: string): string {
  return `ls -p ${quoteArg(dir)}`
}

/** Adds one directory's listing to `into` (child path → inode). */
export function absorbListing(into: Map<string, ListedPath>, dir: string, lines: string[]): void {
  for (const { ino, name } of parseLsP(lines)) {
    const path = dir === '/' ? `/${name}` : `${dir}/${name}`
    const seen = into.get(path)
    if (seen) seen.count++
    else into.set(path, { ino, count: 1 })
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
  const listed = new Map<string, ListedPath>([['/', { ino: ROOT_INO, count: 1 }]])
  await runDebugfs({
    binary,
    image,
    commands: dirs.map(lsCommand),
    write: false,
    workDir,
    signal,
    onOutput: (i, lines) => absorbListing(listed, dirs[i]!, lines),
  })
  return listed
}
