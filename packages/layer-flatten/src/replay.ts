import {
  chmodSync,
  closeSync,
  constants as fsc,
  fchmodSync,
  futimesSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  openSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeSync,
  writevSync,
} from 'node:fs'
import { join } from 'node:path'
import {
  BadHardlinkError,
  BadWhiteoutError,
  MissingLinkTargetError,
  ParentNotDirectoryError,
  UnsafePathError,
  WriteFailedError,
  type ErrorPlace,
} from './errors.js'
import type { LayerEntry } from './read-layer.js'
import { checkEncodable, splitEntryName, toImagePath } from './paths.js'
import type { EntryRecord, EntryType, FlattenResult, FlattenTotals } from './types.js'

/** Metadata lives on the inode: hardlinked names share it, as in a real filesystem. */
export interface Inode {
  type: EntryType
  mode: number
  uid: number
  gid: number
  mtime: number
  size: number
  linkTarget?: string
  devMajor?: number
  devMinor?: number
  xattrs?: Record<string, string>
  /** Names in the current tree that point here. */
  links: number
  /** Regular files: which layer and entry (0-based, in tar order) hold the content. */
  source?: { layer: number; ordinal: number }
}

export interface TreeNode {
  name: string
  parent: TreeNode | null
  inode: Inode
  /** Index of the layer that last wrote this name; whiteouts only delete lower layers' names. */
  layer: number
  children?: Map<string, TreeNode>
}

const OPAQUE = '.wh..wh..opq'
const WHITEOUT = '.wh.'
const IMPLICIT_DIR = { mode: 0o755, uid: 0, gid: 0, mtime: 0 } as const

const implicitDir = (): Inode => ({ type: 'directory', ...IMPLICIT_DIR, size: 0, links: 1 })

/** On-disk permission bits: no setuid/setgid/sticky, and always usable by the (unprivileged) owner. */
export const diskMode = (inode: Inode): number =>
  (inode.mode & 0o777) | (inode.type === 'directory' ? 0o700 : 0o600)

/**
 * The overlay state of the image as layers are applied, kept in memory and mirrored on disk when
 * `dest` is given. Every path is resolved here, component by component: the disk is never asked
 * to follow a symlink, because every parent we hand it is a directory we created ourselves.
 */
export class Replay {
  readonly root: TreeNode = {
    name: '',
    parent: null,
    inode: implicitDir(),
    layer: -1,
    children: new Map(),
  }

  constructor(private readonly dest: string | null) {}

  private disk(parts: readonly string[]): string {
    return join(this.dest!, ...parts)
  }

  private static partsOf(node: TreeNode): string[] {
    const parts: string[] = []
    for (let n: TreeNode | null = node; n && n.parent; n = n.parent) parts.push(n.name)
    return parts.reverse()
  }

  /**
   * Disk calls are synchronous on purpose: each is microseconds on tmpfs or in the page cache,
   * while the promise API costs a thread-pool round trip per call, and this VM charges ~80 µs for
   * each wake-up (Debian, 5.5k round trips: 0.42 s of a 1.0 s flatten were spent idle waiting).
   */
  private async io<T>(path: string, op: () => T | Promise<T>): Promise<T> {
    try {
      return await op()
    } catch (err) {
      // A failure to read the entry body is the layer's, not the disk's: let it through.
      if (err instanceof Error && bodyErrors.has(err)) throw err
      throw new WriteFailedError(path, err)
    }
  }

  /**
   * Walks `parts` as directories. Missing ones are created (implicit, 0755 root:root) in `create`
   * mode, else the walk returns null. A symlink or non-directory on the way is an error, except
   * in `whiteout` mode: nothing can live below a non-directory, so there is nothing to delete.
   * (umoci writes `x/.wh.child` after turning directory `x` into a file in the same layer.)
   */
  private async walkDir(
    parts: readonly string[],
    entryPath: string,
    layer: number,
    place: ErrorPlace,
    mode: 'create' | 'lookup' | 'whiteout',
  ): Promise<TreeNode | null> {
    const create = mode === 'create'
    let dir = this.root
    for (let i = 0; i < parts.length; i++) {
      const name = parts[i]!
      let next = dir.children!.get(name)
      if (next && next.inode.type !== 'directory' && mode === 'whiteout') return null
      if (!next) {
        if (!create) return null
        next = { name, parent: dir, inode: implicitDir(), layer, children: new Map() }
        const path = this.dest !== null ? this.disk(parts.slice(0, i + 1)) : ''
        if (this.dest !== null) await this.io(path, () => mkdirSync(path, 0o700))
        dir.children!.set(name, next)
      } else if (next.inode.type === 'symlink') {
        throw new UnsafePathError(
          entryPath,
          `would be written through the symlink ${toImagePath(parts.slice(0, i + 1))}`,
          place,
        )
      } else if (next.inode.type !== 'directory') {
        throw new ParentNotDirectoryError(entryPath, toImagePath(parts.slice(0, i + 1)), place)
      }
      dir = next
    }
    return dir
  }

  /** Applies one entry of layer `layer`. Reads the body only for regular files. */
  async apply(
    entry: LayerEntry,
    body: AsyncIterable<Buffer>,
    layer: number,
    ordinal: number,
    place: ErrorPlace,
  ): Promise<void> {
    const parts = splitEntryName(entry.name, place)
    const base = parts[parts.length - 1]
    if (base !== undefined && base.startsWith(WHITEOUT)) {
      return this.whiteout(entry, parts, layer, place)
    }
    const path = toImagePath(parts)
    if (parts.length === 0) {
      if (entry.type !== 'directory') {
        throw new UnsafePathError(entry.name, 'names the root but is not a directory', place)
      }
      this.root.inode = this.dirInode(entry)
      this.root.layer = layer
      return
    }
    checkEncodable(path, place)
    // A hardlink's target is resolved before any missing parent is created for the link.
    const linkTo = entry.type === 'link' ? await this.linkTarget(entry, parts, layer, place) : null
    const parent = (await this.walkDir(parts.slice(0, -1), path, layer, place, 'create'))!
    const name = base!
    const existing = parent.children!.get(name)
    const target = this.dest !== null ? this.disk(parts) : ''

    if (entry.type === 'directory') {
      if (existing?.inode.type === 'directory') {
        existing.inode = this.dirInode(entry)
        existing.layer = layer
        return
      }
      if (existing) await this.remove(existing)
      if (this.dest !== null) await this.io(target, () => mkdirSync(target, 0o700))
      parent.children!.set(name, {
        name,
        parent,
        inode: this.dirInode(entry),
        layer,
        children: new Map(),
      })
      return
    }

    if (linkTo || entry.type === 'link') {
      return this.hardlink(linkTo!, parts, parent, existing, layer, place)
    }

    if (existing) await this.remove(existing)
    const inode: Inode = {
      type: entry.type,
      mode: entry.mode,
      uid: entry.uid,
      gid: entry.gid,
      mtime: entry.mtime,
      size: 0,
      links: 1,
      ...(entry.xattrs ? { xattrs: entry.xattrs } : {}),
    }
    if (entry.type === 'file') {
      inode.size = entry.size
      inode.source = { layer, ordinal }
      if (this.dest !== null) {
        if (entry.size <= SMALL_FILE) await this.writeSmall(target, body, inode)
        else await this.io(target, () => writeFile(target, body, inode))
      }
    } else if (entry.type === 'symlink') {
      inode.linkTarget = entry.linkName ?? ''
      if (this.dest !== null) {
        await this.io(target, () => {
          symlinkSync(inode.linkTarget!, target)
          lutimesSync(target, inode.mtime, inode.mtime)
        })
      }
    } else {
      // char, block, fifo: the manifest only; an unprivileged user cannot mknod.
      if (entry.type !== 'fifo') {
        inode.devMajor = entry.devMajor
        inode.devMinor = entry.devMinor
      }
    }
    parent.children!.set(name, { name, parent, inode, layer })
  }

  private dirInode(entry: LayerEntry): Inode {
    return {
      type: 'directory',
      mode: entry.mode,
      uid: entry.uid,
      gid: entry.gid,
      mtime: entry.mtime,
      size: 0,
      links: 1,
      ...(entry.xattrs ? { xattrs: entry.xattrs } : {}),
    }
  }

  private async linkTarget(
    entry: LayerEntry,
    parts: string[],
    layer: number,
    place: ErrorPlace,
  ): Promise<{ node: TreeNode; parts: string[] }> {
    const path = toImagePath(parts)
    await this.walkDir(parts.slice(0, -1), path, layer, place, 'lookup')
    const rawTarget = entry.linkName ?? ''
    let targetParts: string[]
    try {
      targetParts = splitEntryName(rawTarget, place)
    } catch {
      throw new UnsafePathError(
        path,
        `is a hardlink to ${JSON.stringify(rawTarget)}, outside the image`,
        place,
      )
    }
    const targetPath = toImagePath(targetParts)
    const dir = await this.walkDir(targetParts.slice(0, -1), path, layer, place, 'lookup')
    const node =
      targetParts.length === 0
        ? this.root
        : dir?.children!.get(targetParts[targetParts.length - 1]!)
    if (!node) throw new MissingLinkTargetError(path, targetPath, place)
    if (node.inode.type === 'directory') {
      throw new BadHardlinkError(path, targetPath, 'the target is a directory', place)
    }
    return { node, parts: targetParts }
  }

  private async hardlink(
    linkTo: { node: TreeNode; parts: string[] },
    parts: string[],
    parent: TreeNode,
    existing: TreeNode | undefined,
    layer: number,
    place: ErrorPlace,
  ): Promise<void> {
    const path = toImagePath(parts)
    const { node: targetNode, parts: targetParts } = linkTo
    const targetPath = toImagePath(targetParts)
    if (targetNode === existing) {
      existing.layer = layer
      return
    }
    if (existing && targetPath.startsWith(path + '/')) {
      throw new BadHardlinkError(path, targetPath, 'the link would replace its own target', place)
    }
    if (existing) await this.remove(existing)
    const name = parts[parts.length - 1]!
    const target = this.dest !== null ? this.disk(parts) : ''
    if (targetNode.inode.type === 'file') {
      if (this.dest !== null) {
        const from = this.disk(targetParts)
        await this.io(target, () => linkSync(from, target))
      }
      targetNode.inode.links++
      parent.children!.set(name, { name, parent, inode: targetNode.inode, layer })
      return
    }
    // A hardlink to a symlink or device node becomes an independent copy: the later stages
    // create those one name at a time.
    const copy: Inode = { ...targetNode.inode, links: 1 }
    if (copy.type === 'symlink' && this.dest !== null) {
      await this.io(target, () => {
        symlinkSync(copy.linkTarget!, target)
        lutimesSync(target, copy.mtime, copy.mtime)
      })
    }
    parent.children!.set(name, { name, parent, inode: copy, layer })
  }

  private async whiteout(
    entry: LayerEntry,
    parts: string[],
    layer: number,
    place: ErrorPlace,
  ): Promise<void> {
    const path = toImagePath(parts)
    if (entry.type === 'directory') throw new BadWhiteoutError(path, 'is a directory', place)
    const base = parts[parts.length - 1]!
    const dir = await this.walkDir(parts.slice(0, -1), path, layer, place, 'whiteout')
    if (base === OPAQUE) {
      if (!dir) return
      for (const child of [...dir.children!.values()]) await this.purge(child, layer)
      return
    }
    if (base.startsWith('.wh..wh.')) {
      throw new BadWhiteoutError(path, 'is AUFS metadata, not an OCI whiteout', place)
    }
    const victim = base.slice(WHITEOUT.length)
    if (victim === '' || victim === '.' || victim === '..') {
      throw new BadWhiteoutError(path, 'names no file', place)
    }
    const node = dir?.children!.get(victim)
    if (node) await this.purge(node, layer)
  }

  /**
   * Deletes what lower layers put at `node` and below, keeping whatever `layer` itself wrote.
   * A lower directory that still holds entries of this layer stays, as an implicit directory.
   */
  private async purge(node: TreeNode, layer: number): Promise<void> {
    if (node.children) {
      for (const child of [...node.children.values()]) await this.purge(child, layer)
    }
    if (node.layer === layer) return
    if (node.children && node.children.size > 0) {
      node.inode = implicitDir()
      node.layer = layer
      return
    }
    await this.remove(node)
  }

  /** Small files (at most SMALL_FILE bytes) are read whole, then written with one set of calls. */
  private async writeSmall(path: string, body: AsyncIterable<Buffer>, inode: Inode): Promise<void> {
    const chunks: Buffer[] = []
    for await (const chunk of readBody(body)) chunks.push(chunk)
    await this.io(path, () => writeSmallFile(path, chunks, inode))
  }

  /** Unlinks `node` and everything below it, whatever layer wrote them. */
  private async remove(node: TreeNode): Promise<void> {
    const parts = Replay.partsOf(node)
    const forget = (n: TreeNode) => {
      n.inode.links--
      if (n.children) for (const c of n.children.values()) forget(c)
    }
    forget(node)
    node.parent!.children!.delete(node.name)
    if (
      this.dest === null ||
      node.inode.type === 'char' ||
      node.inode.type === 'block' ||
      node.inode.type === 'fifo'
    )
      return
    const path = this.disk(parts)
    if (node.children) {
      if (node.children.size === 0) await this.io(path, () => rmdirSync(path))
      else await this.io(path, () => rmSync(path, { recursive: true }))
    } else {
      await this.io(path, () => unlinkSync(path))
    }
  }

  /** Sets directory modes and mtimes on disk, deepest first, once nothing else is written. */
  async finishDisk(): Promise<void> {
    if (this.dest === null) return
    const visit = async (node: TreeNode, parts: string[]) => {
      for (const child of node.children!.values()) {
        if (child.children) await visit(child, [...parts, child.name])
      }
      const path = this.disk(parts)
      await this.io(path, () => {
        chmodSync(path, diskMode(node.inode))
        utimesSync(path, node.inode.mtime, node.inode.mtime)
      })
    }
    await visit(this.root, [])
  }

  /** Every entry of the final tree, parents before children, siblings by name. */
  manifest(): FlattenResult {
    return this.manifestWithInodes().result
  }

  /** The manifest plus, index for index, the inode behind each entry. */
  manifestWithInodes(): { result: FlattenResult; inodes: Inode[] } {
    const entries: EntryRecord[] = []
    const inodes: Inode[] = []
    const totals: FlattenTotals = {
      bytes: 0,
      inodes: 0,
      directories: 0,
      files: 0,
      symlinks: 0,
      specials: 0,
    }
    const groups = new Map<Inode, number>()
    const seen = new Set<Inode>()
    const visit = (node: TreeNode, path: string) => {
      const inode = node.inode
      const record: EntryRecord = {
        path: path === '' ? '/' : path,
        type: inode.type,
        mode: inode.mode,
        uid: inode.uid,
        gid: inode.gid,
        mtime: inode.mtime,
        size: inode.type === 'file' ? inode.size : 0,
      }
      if (inode.linkTarget !== undefined) record.linkTarget = inode.linkTarget
      if (inode.devMajor !== undefined) {
        record.devMajor = inode.devMajor
        record.devMinor = inode.devMinor
      }
      if (inode.xattrs) record.xattrs = inode.xattrs
      if (inode.type === 'file' && inode.links > 1) {
        let group = groups.get(inode)
        if (group === undefined) groups.set(inode, (group = groups.size + 1))
        record.hardlinkGroup = group
      }
      entries.push(record)
      inodes.push(inode)
      if (!seen.has(inode)) {
        seen.add(inode)
        totals.inodes++
        if (inode.type === 'directory') totals.directories++
        else if (inode.type === 'file') {
          totals.files++
          totals.bytes += inode.size
        } else if (inode.type === 'symlink') totals.symlinks++
        else totals.specials++
      }
      if (node.children) {
        const names = [...node.children.keys()].sort(byCodePoint)
        for (const name of names) visit(node.children.get(name)!, `${path}/${name}`)
      }
    }
    visit(this.root, '')
    return { result: { entries, totals }, inodes }
  }
}

const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/** Files up to this size are buffered and written in one go. */
const SMALL_FILE = 256 * 1024

const WRITE_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW
const BATCH = 1024 * 1024

/**
 * A small file in one go with synchronous calls: each is a few microseconds on tmpfs or a warm
 * disk, where the promise API costs a thread-pool round trip and a FileHandle per call (measured
 * on 54k files: most of the flatten's main-thread time went to those five round trips a file).
 */
function writeSmallFile(path: string, chunks: Buffer[], inode: Inode): void {
  const fd = openSync(path, WRITE_FLAGS, 0o600)
  try {
    writeAll(fd, chunks)
    fchmodSync(fd, diskMode(inode))
    futimesSync(fd, inode.mtime, inode.mtime)
  } finally {
    closeSync(fd)
  }
}

/**
 * Writes every buffer at the file's position: one writev, then whatever a short write left,
 * buffer by buffer.
 */
function writeAll(fd: number, buffers: Buffer[]): void {
  let written = writevSync(fd, buffers)
  for (const buf of buffers) {
    if (written >= buf.length) {
      written -= buf.length
      continue
    }
    for (let off = written; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off)
    written = 0
  }
}

const bodyErrors = new WeakSet<Error>()

/** Iterates an entry body, marking its errors so io() does not take them for disk errors. */
async function* readBody(body: AsyncIterable<Buffer> | Buffer[]): AsyncGenerator<Buffer> {
  const it =
    (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]?.() ??
    (body as Buffer[])[Symbol.iterator]()
  for (;;) {
    let next: IteratorResult<Buffer>
    try {
      next = await it.next()
    } catch (err) {
      if (err instanceof Error) bodyErrors.add(err)
      throw err
    }
    if (next.done) return
    yield next.value
  }
}

/** Creates a new file (never reuses an inode another name shares) and streams `body` into it. */
async function writeFile(
  path: string,
  body: AsyncIterable<Buffer> | Buffer[],
  inode: Inode,
): Promise<void> {
  const fd = openSync(path, WRITE_FLAGS, 0o600)
  try {
    let batch: Buffer[] = []
    let batched = 0
    const flush = () => {
      writeAll(fd, batch)
      batch = []
      batched = 0
    }
    for await (const chunk of readBody(body)) {
      batch.push(chunk)
      batched += chunk.length
      if (batched >= BATCH) flush()
    }
    if (batch.length) flush()
    fchmodSync(fd, diskMode(inode))
    futimesSync(fd, inode.mtime, inode.mtime)
  } finally {
    closeSync(fd)
  }
}
