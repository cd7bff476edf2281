import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from './exec.js'

/** debugfs's quoting: inside double quotes a literal quote is doubled; CR and LF cannot be carried. */
function quote(path: string): string {
  if (/[\n\r\0]/.test(path)) throw new Error(`debugfs cannot carry ${JSON.stringify(path)}`)
  return `"${path.replaceAll('"', '""')}"`
}

/** Runs read-only debugfs requests against an image and returns stdout. */
export async function debugfs(image: string, commands: string[]): Promise<string> {
  // debugfs takes only one -R; several go through -f on stdin.
  if (commands.length === 1) return (await run('debugfs', ['-c', '-R', commands[0]!, image])).stdout
  const { stdout } = await run('debugfs', ['-c', '-f', '-', image], {
    input: commands.join('\n') + '\n',
  })
  return stdout
}

export interface InodeStat {
  inode: number
  /** file, directory, symlink, char, block, fifo, socket, or debugfs's own word for others. */
  type: string
  /** Permission bits including setuid/setgid/sticky. */
  mode: number
  uid: number
  gid: number
  size: number
  links: number
  mtime: number
  devMajor?: number
  devMinor?: number
  /** Symlink target, when debugfs shows it (fast symlinks). */
  linkTarget?: string
}

const TYPES: Record<string, string> = {
  regular: 'file',
  directory: 'directory',
  symlink: 'symlink',
  'character special': 'char',
  'block special': 'block',
  FIFO: 'fifo',
  socket: 'socket',
}

/** `debugfs stat`, parsed. Rejects when the path does not exist in the image. */
export async function statInode(image: string, path: string): Promise<InodeStat> {
  const { stdout, stderr } = await run('debugfs', ['-c', '-R', `stat ${quote(path)}`, image])
  const m = /Inode:\s*(\d+)\s+Type:\s*(.+?)\s+Mode:\s*(\d+)/.exec(stdout)
  if (!m) throw new Error(`debugfs stat ${path} in ${image}: ${stderr.trim() || stdout.trim()}`)
  const num = (re: RegExp): number => Number(re.exec(stdout)?.[1] ?? NaN)
  // debugfs prints ids as signed 32-bit numbers: 4294967294 shows as -2.
  const id = (re: RegExp): number => num(re) >>> 0
  const stat: InodeStat = {
    inode: Number(m[1]),
    type: TYPES[m[2]!] ?? m[2]!,
    mode: parseInt(m[3]!, 8),
    uid: id(/User:\s*(-?\d+)/),
    gid: id(/Group:\s*(-?\d+)/),
    size: num(/Size:\s*(\d+)/),
    links: num(/Links:\s*(\d+)/),
    mtime: parseMtime(stdout),
  }
  const dev = /Device major\/minor number:\s*(\d+):(\d+)/.exec(stdout)
  if (dev) {
    stat.devMajor = Number(dev[1])
    stat.devMinor = Number(dev[2])
  }
  const link = /Fast link dest:\s*"(.*)"/.exec(stdout)
  if (link) stat.linkTarget = link[1]
  return stat
}

/**
 * `mtime: 0xSSSSSSSS[:0xEEEEEEEE]`: signed 32-bit seconds, and in large inodes an extra word whose
 * low two bits extend the epoch past 2038.
 */
function parseMtime(stat: string): number {
  const m = /mtime:\s*0x([0-9a-f]+)(?::([0-9a-f]+))?/.exec(stat)
  if (!m) return NaN
  const seconds = parseInt(m[1]!, 16) | 0
  const epoch = m[2] ? parseInt(m[2], 16) & 3 : 0
  return seconds + epoch * 2 ** 32
}

/** A file's bytes from the image (`debugfs dump`). */
export async function readImageFile(image: string, path: string): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'banger-dump-'))
  try {
    const out = join(dir, 'out')
    const { stderr, stdout } = await run('debugfs', [
      '-c',
      '-R',
      `dump ${quote(path)} ${out}`,
      image,
    ])
    try {
      return readFileSync(out)
    } catch {
      throw new Error(`debugfs dump ${path} in ${image}: ${stderr.trim() || stdout.trim()}`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Names in a directory of the image, without `.` and `..`, sorted. */
export async function listImageDir(image: string, path: string): Promise<string[]> {
  const { stdout, stderr } = await run('debugfs', ['-c', '-R', `ls -p ${quote(path)}`, image])
  const names: string[] = []
  for (const line of stdout.split('\n')) {
    // /inode/mode/uid/gid/name/size/
    const m = /^\/(\d+)\/(\d+)\/(\d+)\/(\d+)\/(.*)\/(\d*)\/$/.exec(line)
    if (m && m[5] !== '.' && m[5] !== '..' && m[1] !== '0') names.push(m[5]!)
  }
  if (!names.length && /not found|File not found/i.test(stderr))
    throw new Error(`debugfs ls ${path}: ${stderr.trim()}`)
  return names.sort()
}

/** An xattr's value, or undefined when the file has no such attribute. */
export async function getImageXattr(
  image: string,
  path: string,
  name: string,
): Promise<Buffer | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'banger-ea-'))
  try {
    const out = join(dir, 'value')
    const { stderr } = await run('debugfs', [
      '-c',
      '-R',
      `ea_get -f ${out} ${quote(path)} ${name}`,
      image,
    ])
    // debugfs creates the output file even when the key is missing; its stderr tells.
    if (/not found/i.test(stderr)) return undefined
    try {
      return readFileSync(out)
    } catch {
      return undefined
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** `e2fsck -fn`: a full, read-only check. */
export async function e2fsck(image: string): Promise<{ clean: boolean; output: string }> {
  const { code, stdout, stderr } = await run('e2fsck', ['-fn', image], { check: false })
  return { clean: code === 0, output: stdout + stderr }
}

/** Block count × block size from dumpe2fs: the size of the filesystem itself, not the file. */
export async function filesystemBytes(image: string): Promise<number> {
  const { stdout } = await run('dumpe2fs', ['-h', image])
  const blocks = Number(/Block count:\s*(\d+)/.exec(stdout)?.[1])
  const size = Number(/Block size:\s*(\d+)/.exec(stdout)?.[1])
  return blocks * size
}
