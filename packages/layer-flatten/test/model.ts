/**
 * A deliberately naive reference model of OCI layer replay, for the property test: a flat map
 * from path to (inode, layer), no tree, no disk. Directories without a key are implicit (0755
 * root:root, mtime 0) as long as something lives under them.
 */
import type { TestEntry } from './layers.js'

export interface ModelInode {
  kind: 'file' | 'directory' | 'symlink' | 'char' | 'block' | 'fifo'
  mode: number
  uid: number
  gid: number
  mtime: number
  content?: string
  target?: string
  devMajor?: number
  devMinor?: number
}

interface Slot {
  ino: number
  layer: number
}

export interface ModelEntry extends ModelInode {
  path: string
  ino: number
}

export type ModelResult = { ok: true; entries: ModelEntry[] } | { ok: false; code: string }

const KINDS: Record<string, ModelInode['kind']> = {
  file: 'file',
  directory: 'directory',
  symlink: 'symlink',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
}

class Fail extends Error {
  constructor(readonly code: string) {
    super(code)
  }
}

export function runModel(stack: TestEntry[][]): ModelResult {
  const inodes: ModelInode[] = []
  const keys = new Map<string, Slot>()
  let root: ModelInode = { kind: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 0 }
  const newInode = (i: ModelInode) => inodes.push(i) - 1
  const under = (k: string) => [...keys.keys()].filter((x) => x.startsWith(k + '/'))
  const isDir = (k: string) =>
    k === '' || (keys.has(k) ? inodes[keys.get(k)!.ino]!.kind === 'directory' : under(k).length > 0)
  const exists = (k: string) => k === '' || keys.has(k) || under(k).length > 0
  const split = (name: string) => name.split('/').filter((p) => p !== '' && p !== '.')
  /** Every proper ancestor must be a directory (or absent). */
  const checkAncestors = (parts: string[], upTo: number) => {
    for (let i = 1; i <= upTo; i++) {
      const k = parts.slice(0, i).join('/')
      const slot = keys.get(k)
      if (!slot) continue
      const kind = inodes[slot.ino]!.kind
      if (kind === 'symlink') throw new Fail('E_UNSAFE_PATH')
      if (kind !== 'directory') throw new Fail('E_PARENT_NOT_DIRECTORY')
    }
  }
  const removeAll = (k: string) => {
    keys.delete(k)
    for (const x of under(k)) keys.delete(x)
  }
  try {
    stack.forEach((layer, L) => {
      for (const e of layer) {
        const parts = split(e.name)
        const base = parts[parts.length - 1] ?? ''
        const type = e.type ?? 'file'
        if (base.startsWith('.wh.')) {
          // Below a non-directory nothing can exist: such a whiteout deletes nothing.
          const blocked = parts.slice(0, -1).some((_, i) => {
            const slot = keys.get(parts.slice(0, i + 1).join('/'))
            return slot !== undefined && inodes[slot.ino]!.kind !== 'directory'
          })
          if (blocked) continue
          const dir = parts.slice(0, -1).join('/')
          // The whiteout sits in `dir`, so `dir` outlives it even when emptied: pin an implicit one.
          if (dir !== '' && exists(dir) && !keys.has(dir)) {
            const ino = newInode({ kind: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 0 })
            keys.set(dir, { ino, layer: -1 })
          }
          const doomed =
            base === '.wh..wh..opq'
              ? dir === ''
                ? [...keys.keys()]
                : under(dir)
              : [dir === '' ? base.slice(4) : `${dir}/${base.slice(4)}`].flatMap((v) => [
                  ...(keys.has(v) ? [v] : []),
                  ...under(v),
                ])
          for (const k of doomed) if (keys.get(k)!.layer < L) keys.delete(k)
          continue
        }
        const meta = {
          mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
          uid: e.uid ?? 0,
          gid: e.gid ?? 0,
          mtime: e.mtime ?? 1_700_000_000,
        }
        const key = parts.join('/')
        if (key === '') {
          root = { kind: 'directory', ...meta }
          continue
        }
        checkAncestors(parts, parts.length - 1)
        if (type === 'directory') {
          if (!isDir(key)) removeAll(key)
          keys.set(key, { ino: newInode({ kind: 'directory', ...meta }), layer: L })
          continue
        }
        if (type === 'link') {
          const tparts = split(e.linkname!)
          const t = tparts.join('/')
          checkAncestors(tparts, tparts.length - 1)
          if (!exists(t)) throw new Fail('E_MISSING_LINK_TARGET')
          if (isDir(t)) throw new Fail('E_BAD_HARDLINK')
          if (t === key) {
            keys.get(key)!.layer = L
            continue
          }
          if (exists(key) && t.startsWith(key + '/')) throw new Fail('E_BAD_HARDLINK')
          const target = keys.get(t)!
          removeAll(key)
          const ti = inodes[target.ino]!
          keys.set(key, { ino: ti.kind === 'file' ? target.ino : newInode({ ...ti }), layer: L })
          continue
        }
        removeAll(key)
        const kind = KINDS[type]!
        const inode: ModelInode = { kind, ...meta }
        if (kind === 'file') inode.content = e.content === undefined ? '' : e.content.toString()
        if (kind === 'symlink') inode.target = e.linkname
        if (kind === 'char' || kind === 'block') {
          inode.devMajor = e.devmajor ?? 0
          inode.devMinor = e.devminor ?? 0
        }
        keys.set(key, { ino: newInode(inode), layer: L })
      }
    })
  } catch (err) {
    if (err instanceof Fail) return { ok: false, code: err.code }
    throw err
  }
  const all = new Map<string, ModelEntry>()
  const rootIno = newInode(root)
  all.set('', { ...root, path: '/', ino: rootIno })
  for (const [k, slot] of keys) {
    all.set(k, { ...inodes[slot.ino]!, path: '/' + k, ino: slot.ino })
    const parts = k.split('/')
    for (let i = 1; i < parts.length; i++) {
      const a = parts.slice(0, i).join('/')
      if (!keys.has(a) && !all.has(a)) {
        const ino = newInode({ kind: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 0 })
        all.set(a, { ...inodes[ino]!, path: '/' + a, ino })
      }
    }
  }
  const entries = [...all.entries()]
    .sort(([a], [b]) => compareParts(a.split('/'), b.split('/')))
    .map(([, v]) => v)
  return { ok: true, entries }
}

function compareParts(a: string[], b: string[]): number {
  if (a.length === 1 && a[0] === '') return -1
  if (b.length === 1 && b[0] === '') return 1
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i]! < b[i]!) return -1
    if (a[i]! > b[i]!) return 1
  }
  return a.length - b.length
}
