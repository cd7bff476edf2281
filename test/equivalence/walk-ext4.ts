import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { lstat, readlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { EntryType, Tree, TreeEntry } from './tree.js'
import { sha256File } from './walk-dir.js'

/** Runs one read-only debugfs over a whole batch of commands; returns each command's output. */
async function debugfsBatch(image: string, commands: string[], scratch: string): Promise<string[]> {
  if (!commands.length) return []
  const file = join(scratch, 'commands')
  writeFileSync(file, commands.join('\n') + '\n')
  const child = spawn('debugfs', ['-c', '-f', file, image], { stdio: ['ignore', 'pipe', 'pipe'] })
  const out: Buffer[] = []
  const err: Buffer[] = []
  child.stdout.on('data', (b: Buffer) => out.push(b))
  child.stderr.on('data', (b: Buffer) => err.push(b))
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (c) => resolve(c ?? 1))
  })
  if (code !== 0)
    throw new Error(`debugfs ${image}: exit ${code}: ${Buffer.concat(err).toString()}`)
  // debugfs echoes each command read from a file as `debugfs: <command>` before its output.
  const results: string[] = []
  let current: string[] | undefined
  for (const line of Buffer.concat(out).toString('utf8').split('\n')) {
    if (line.startsWith('debugfs: ')) {
      if (current) results.push(current.join('\n'))
      current = []
    } else current?.push(line)
  }
  if (current) results.push(current.join('\n'))
  if (results.length !== commands.length)
    throw new Error(`debugfs answered ${results.length} of ${commands.length} commands on ${image}`)
  return results
}

const TYPES: Record<string, EntryType> = {
  regular: 'file',
  directory: 'directory',
  symlink: 'symlink',
  'character special': 'char',
  'block special': 'block',
  FIFO: 'fifo',
  socket: 'socket',
}

interface Stat {
  type: EntryType
  mode: number
  uid: number
  gid: number
  size: number
  mtimeSec: number
  mtimeNsec: number
  devMajor?: number
  devMinor?: number
  xattrNames: string[]
}

function parseStat(text: string, ino: number): Stat {
  const head = /Inode:\s*(\d+)\s+Type:\s*(.+?)\s+Mode:\s*(\d+)/.exec(text)
  const type = head && TYPES[head[2]!]
  if (!head || !type) throw new Error(`debugfs stat <${ino}>: ${text.slice(0, 300)}`)
  const num = (re: RegExp): number => {
    const m = re.exec(text)
    if (!m) throw new Error(`debugfs stat <${ino}>: no ${re.source}`)
    return Number(m[1])
  }
  // `mtime: 0xSECONDS:EXTRA`; EXTRA's low two bits extend the seconds, the rest are ns << 2.
  const mtime = /\bmtime: 0x([0-9a-f]+)(?::([0-9a-f]+))?/.exec(text)
  if (!mtime) throw new Error(`debugfs stat <${ino}>: no mtime`)
  const extra = mtime[2] ? parseInt(mtime[2], 16) : 0
  const stat: Stat = {
    type,
    mode: parseInt(head[3]!, 8) & 0o7777,
    uid: num(/User:\s*(\d+)/),
    gid: num(/Group:\s*(\d+)/),
    size: num(/Size:\s*(\d+)/),
    mtimeSec: parseInt(mtime[1]!, 16) + (extra & 3) * 2 ** 32,
    mtimeNsec: extra >>> 2,
    xattrNames: [],
  }
  const dev = /Device major\/minor number:\s*(\d+):(\d+)/.exec(text)
  if (dev) {
    stat.devMajor = Number(dev[1])
    stat.devMinor = Number(dev[2])
  }
  const ea = text.indexOf('Extended attributes:\n')
  if (ea >= 0) {
    for (const line of text.slice(ea).split('\n').slice(1)) {
      const m = /^ {2}(.+?) \((\d+)\)/.exec(line)
      if (!m) break
      stat.xattrNames.push(m[1]!)
    }
  }
  return stat
}

function quote(name: string): string {
  if (/["\n]/.test(name)) throw new Error(`cannot pass ${JSON.stringify(name)} to debugfs`)
  return `"${name}"`
}

/**
 * Reads a whole ext4 image without mounting it: the tree through `ls -p` batches (one debugfs
 * process per directory depth), metadata through one batch of `stat <inode>`, xattr values
 * through `ea_get -f`, and file contents and symlink targets from one `rdump` of the root into a
 * scratch directory (run as root, which rdump needs to write every file). ext4's internal
 * `system.data` xattr (inline data) is left out.
 */
export async function walkExt4(
  image: string,
  options: { scratchDir?: string } = {},
): Promise<Tree> {
  const scratch = mkdtempSync(join(options.scratchDir ?? tmpdir(), 'banger-walk-ext4-'))
  try {
    const pathOf = new Map<string, number>([['/', 2]])
    let level: string[] = ['/']
    while (level.length) {
      const outputs = await debugfsBatch(
        image,
        level.map((dir) => `ls -p <${pathOf.get(dir)}>`),
        scratch,
      )
      const next: string[] = []
      outputs.forEach((output, i) => {
        const dir = level[i]!
        for (const line of output.split('\n')) {
          const m = /^\/(\d+)\/(\d+)\/(\d+)\/(\d+)\/(.*)\/(\d*)\/$/.exec(line)
          if (!m || m[1] === '0' || m[5] === '.' || m[5] === '..') continue
          const path = dir === '/' ? `/${m[5]}` : `${dir}/${m[5]}`
          pathOf.set(path, Number(m[1]))
          if ((parseInt(m[2]!, 8) & 0o170000) === 0o040000) next.push(path)
        }
      })
      level = next
    }
    const inodes = [...new Set(pathOf.values())]
    const stats = new Map<number, Stat>()
    const statOutputs = await debugfsBatch(
      image,
      inodes.map((ino) => `stat <${ino}>`),
      scratch,
    )
    inodes.forEach((ino, i) => stats.set(ino, parseStat(statOutputs[i]!, ino)))

    const xattrJobs: { ino: number; name: string; file: string }[] = []
    for (const [ino, stat] of stats) {
      for (const name of stat.xattrNames) {
        if (name === 'system.data') continue
        xattrJobs.push({ ino, name, file: join(scratch, `ea-${xattrJobs.length}`) })
      }
    }
    await debugfsBatch(
      image,
      xattrJobs.map((j) => `ea_get -f ${j.file} <${j.ino}> ${quote(j.name)}`),
      scratch,
    )
    const xattrs = new Map<number, Record<string, string>>()
    for (const job of xattrJobs) {
      const attrs = xattrs.get(job.ino) ?? {}
      attrs[job.name] = readFileSync(job.file).toString('hex')
      xattrs.set(job.ino, attrs)
    }

    const dump = join(scratch, 'rootfs')
    // rdump writes the root's children into an existing directory.
    mkdirSync(dump)
    await debugfsBatch(image, [`rdump / ${dump}`], scratch)

    const tree: Tree = new Map()
    for (const [path, ino] of [...pathOf].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const stat = stats.get(ino)!
      const entry: TreeEntry = {
        path,
        type: stat.type,
        mode: stat.mode,
        uid: stat.uid,
        gid: stat.gid,
        mtimeSec: stat.mtimeSec,
        mtimeNsec: stat.mtimeNsec,
        xattrs: xattrs.get(ino) ?? {},
        inode: ino,
      }
      if (stat.type === 'file' || stat.type === 'symlink') entry.size = stat.size
      if (stat.devMajor !== undefined) {
        entry.devMajor = stat.devMajor
        entry.devMinor = stat.devMinor
      }
      const host = join(dump, path)
      if (stat.type === 'file') {
        const dumped = await lstat(host).catch(() => undefined)
        if (!dumped?.isFile()) throw new Error(`debugfs rdump did not write ${path}`)
        entry.sha256 = await sha256File(host)
      }
      if (stat.type === 'symlink') entry.linkTarget = await readlink(host)
      tree.set(path, entry)
    }
    return tree
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}
