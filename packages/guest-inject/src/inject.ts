import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DebugfsCommandError, GuestPathError } from './errors.js'
import { quotePath, withImageReader, type ImageReader, type InodeInfo } from './debugfs.js'
import { FIRST_BOOT_PROGRAM, busyboxInittab, sysvinitInittab } from './inittab.js'
import { inspectImage } from './inspect.js'
import type { GuestInspection, InjectOptions, InjectResult } from './types.js'
import { validateAuthorizedKeys, validateHostname } from './validate.js'

/** In-image paths banger writes, whatever the init system. */
export const GUEST_PATHS = {
  program: FIRST_BOOT_PROGRAM,
  udhcpcScript: '/usr/local/lib/banger/udhcpc.sh',
  systemdUnit: '/etc/systemd/system/banger-first-boot.service',
  systemdWants: '/etc/systemd/system/multi-user.target.wants/banger-first-boot.service',
  openrcScript: '/etc/init.d/banger-first-boot',
  openrcLink: '/etc/runlevels/default/banger-first-boot',
  inittab: '/etc/inittab',
  hostname: '/etc/hostname',
  marker: '/var/lib/banger/first-boot.done',
} as const

const ASSETS = new URL('../assets/', import.meta.url)

/** Host path of a file in the package's assets/ folder. */
export function assetPath(name: string): string {
  return fileURLToPath(new URL(name, ASSETS))
}

type Content = { asset: string } | { text: string }

interface FileSpec {
  kind: 'file'
  path: string
  mode: number
  content: Content
}
interface LinkSpec {
  kind: 'symlink'
  path: string
  target: string
}
interface DirSpec {
  kind: 'dir'
  path: string
  mode: number
}
type Entry = FileSpec | LinkSpec | DirSpec

const TYPE_BITS = { file: 0o100000, dir: 0o040000 } as const

function parentsOf(path: string): string[] {
  const out: string[] = []
  for (let dir = posix.dirname(path); dir !== '/'; dir = posix.dirname(dir)) out.unshift(dir)
  return out
}

function ownerCommands(path: string): string[] {
  return [`sif ${quotePath(path)} uid 0`, `sif ${quotePath(path)} gid 0`]
}

/** The files, directories and links to write, by init system. */
function planEntries(
  inspection: GuestInspection,
  rootHome: string,
  keys: string[],
  hostname: string | undefined,
  inittab: string | undefined,
): Entry[] {
  const sshDir = posix.join(rootHome, '.ssh')
  const entries: Entry[] = [
    { kind: 'file', path: GUEST_PATHS.program, mode: 0o755, content: { asset: 'first-boot.sh' } },
    { kind: 'file', path: GUEST_PATHS.udhcpcScript, mode: 0o755, content: { asset: 'udhcpc.sh' } },
    { kind: 'dir', path: sshDir, mode: 0o700 },
    {
      kind: 'file',
      path: posix.join(sshDir, 'authorized_keys'),
      mode: 0o600,
      content: { text: keys.join('\n') + '\n' },
    },
  ]
  if (hostname !== undefined)
    entries.push({
      kind: 'file',
      path: GUEST_PATHS.hostname,
      mode: 0o644,
      content: { text: hostname + '\n' },
    })
  switch (inspection.initSystem) {
    case 'systemd':
      entries.push(
        {
          kind: 'file',
          path: GUEST_PATHS.systemdUnit,
          mode: 0o644,
          content: { asset: 'banger-first-boot.service' },
        },
        { kind: 'symlink', path: GUEST_PATHS.systemdWants, target: GUEST_PATHS.systemdUnit },
      )
      break
    case 'openrc':
      entries.push(
        {
          kind: 'file',
          path: GUEST_PATHS.openrcScript,
          mode: 0o755,
          content: { asset: 'banger-first-boot.openrc' },
        },
        { kind: 'symlink', path: GUEST_PATHS.openrcLink, target: GUEST_PATHS.openrcScript },
      )
      break
    case 'busybox':
      entries.push({
        kind: 'file',
        path: GUEST_PATHS.inittab,
        mode: 0o644,
        content: { text: busyboxInittab(inittab) },
      })
      break
    case 'sysvinit':
      entries.push({
        kind: 'file',
        path: GUEST_PATHS.inittab,
        mode: 0o644,
        content: { text: sysvinitInittab(inittab ?? '') },
      })
      break
    case 'unknown':
      break
  }
  return entries
}

/** Checks what debugfs left behind: it reports some failures only by not doing the work. */
function verify(imagePath: string, entries: Entry[], infos: (InodeInfo | undefined)[]): void {
  const wrong: string[] = []
  entries.forEach((entry, i) => {
    const info = infos[i]
    const type = entry.kind === 'dir' ? 'directory' : entry.kind
    if (!info) return void wrong.push(`${entry.path} is missing after writing`)
    if (info.type !== type) wrong.push(`${entry.path} is a ${info.type}, expected ${type}`)
    if (info.uid !== 0 || info.gid !== 0)
      wrong.push(`${entry.path} is owned by ${info.uid}:${info.gid}, expected 0:0`)
    if (entry.kind !== 'symlink' && info.mode !== entry.mode)
      wrong.push(
        `${entry.path} has mode ${info.mode.toString(8)}, expected ${entry.mode.toString(8)}`,
      )
  })
  if (wrong.length) throw new DebugfsCommandError(imagePath, wrong)
}

/** Builds the debugfs script; `existing` maps every touched path and parent to its lstat. */
async function buildScript(
  entries: Entry[],
  existing: Map<string, InodeInfo | undefined>,
  privateDirs: Set<string>,
  hostDir: string,
): Promise<{ commands: string[]; createdDirs: string[] }> {
  const commands: string[] = []
  const createdDirs: string[] = []
  const made = new Set<string>()
  const mkdir = (path: string, mode: number): void => {
    commands.push(
      `mkdir ${quotePath(path)}`,
      `sif ${quotePath(path)} mode 0${(TYPE_BITS.dir | mode).toString(8)}`,
      ...ownerCommands(path),
    )
    made.add(path)
  }
  const ensureParents = (path: string): void => {
    for (const dir of parentsOf(path)) {
      if (existing.get(dir) || made.has(dir)) continue
      // A missing home directory is private; everything else is a plain system directory.
      mkdir(dir, privateDirs.has(dir) ? 0o700 : 0o755)
      createdDirs.push(dir)
    }
  }
  let n = 0
  for (const entry of entries) {
    const info = existing.get(entry.path)
    ensureParents(entry.path)
    if (entry.kind === 'dir') {
      if (info?.type === 'directory') {
        commands.push(
          `sif ${quotePath(entry.path)} mode 0${(TYPE_BITS.dir | entry.mode).toString(8)}`,
          ...ownerCommands(entry.path),
        )
        continue
      }
      if (info) commands.push(`rm ${quotePath(entry.path)}`)
      mkdir(entry.path, entry.mode)
      continue
    }
    if (info?.type === 'directory')
      throw new GuestPathError(entry.path, 'a directory is in the way of a file')
    if (info) commands.push(`rm ${quotePath(entry.path)}`)
    if (entry.kind === 'symlink') {
      commands.push(
        `symlink ${quotePath(entry.path)} ${quotePath(entry.target)}`,
        ...ownerCommands(entry.path),
      )
      continue
    }
    let source: string
    if ('asset' in entry.content) source = assetPath(entry.content.asset)
    else {
      source = join(hostDir, `content-${n++}`)
      await writeFile(source, entry.content.text, { mode: 0o600 })
    }
    // write copies the host file's mode and owner: set both explicitly afterwards.
    commands.push(
      `write ${quotePath(source)} ${quotePath(entry.path)}`,
      `sif ${quotePath(entry.path)} mode 0${(TYPE_BITS.file | entry.mode).toString(8)}`,
      ...ownerCommands(entry.path),
    )
  }
  return { commands, createdDirs }
}

/**
 * See index.ts for the contract. One `debugfs -w` session does it all: the inspection, the
 * lstat of every touched path, the writes and the read-back, which sees what a later process
 * will see once this one has written the image out on close.
 */
export async function inject(imagePath: string, options: InjectOptions): Promise<InjectResult> {
  const { signal } = options
  const keys = validateAuthorizedKeys(options.authorizedKeys)
  const hostname = options.hostname === undefined ? undefined : validateHostname(options.hostname)
  return withImageReader(imagePath, { write: true, signal }, (reader) =>
    injectOpened(reader, keys, hostname, signal),
  )
}

async function injectOpened(
  reader: ImageReader,
  keys: string[],
  hostname: string | undefined,
  signal: AbortSignal | undefined,
): Promise<InjectResult> {
  const { imagePath } = reader
  const { inspection, rootHome } = await inspectImage(reader)
  const inittab =
    inspection.initSystem === 'busybox' || inspection.initSystem === 'sysvinit'
      ? await reader.readText(GUEST_PATHS.inittab)
      : undefined
  const entries = planEntries(inspection, rootHome, keys, hostname, inittab)

  const touched = [...new Set(entries.flatMap((e) => [...parentsOf(e.path), e.path]))]
  const infos = await reader.lstatMany([...touched, GUEST_PATHS.marker])
  const existing = new Map(touched.map((path, i) => [path, infos[i]]))
  const markerInfo = infos[touched.length]

  const hostDir = await mkdtemp(join(tmpdir(), 'banger-inject-'))
  try {
    const { commands, createdDirs } = await buildScript(
      entries,
      existing,
      new Set([rootHome]),
      hostDir,
    )
    // An image made from a banger VM carries its marker: the new guest must do its first boot.
    if (markerInfo) commands.push(`rm ${quotePath(GUEST_PATHS.marker)}`)
    signal?.throwIfAborted()
    await reader.write(commands)
    verify(imagePath, entries, await reader.lstatMany(entries.map((e) => e.path)))
    const written = [...new Set([...createdDirs, ...entries.map((e) => e.path)])]
    return { written, inspection }
  } finally {
    await rm(hostDir, { recursive: true, force: true })
  }
}

export async function inspect(
  imagePath: string,
  options: { signal?: AbortSignal } = {},
): Promise<GuestInspection> {
  const facts = await withImageReader(imagePath, { signal: options.signal }, inspectImage)
  return facts.inspection
}
