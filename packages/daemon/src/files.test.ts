import { randomBytes } from 'node:crypto'
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { copySparse, ensureDir, removeTree } from './files.js'

function temp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'bd-files-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

describe('ensureDir', () => {
  it('creates every missing level with the mode, and accepts an existing dir', async () => {
    const root = temp()
    const deep = join(root, 'a', 'b', 'c')
    await ensureDir(deep, 0o700)
    expect(statSync(deep).isDirectory()).toBe(true)
    expect(statSync(join(root, 'a')).mode & 0o777).toBe(0o700)
    await ensureDir(deep)
  })

  it('ends with the failing level where recursive mkdir spins (/proc)', async () => {
    // node 20's mkdir({ recursive: true }) never settles for /proc/x (issue 8 cross-review).
    await expect(ensureDir('/proc/banger-x/y')).rejects.toMatchObject({
      code: 'ENOENT',
      path: '/proc/banger-x',
    })
  })

  it('refuses a path whose level is a file', async () => {
    const file = join(temp(), 'f')
    writeFileSync(file, '')
    await expect(ensureDir(join(file, 'sub'))).rejects.toMatchObject({ code: 'ENOTDIR' })
    await expect(ensureDir(file)).rejects.toMatchObject({ code: 'ENOTDIR', path: file })
  })
})

describe('removeTree', () => {
  it('removes a nested tree with read-only files and symlinks, and accepts a missing path', async () => {
    const root = temp()
    const tree = join(root, 'tree')
    await ensureDir(join(tree, 'a', 'b'))
    writeFileSync(join(tree, 'a', 'b', 'f'), 'x', { mode: 0o400 })
    symlinkSync('/etc/passwd', join(tree, 'a', 'link'))
    await removeTree(tree)
    expect(existsSync(tree)).toBe(false)
    expect(existsSync('/etc/passwd')).toBe(true)
    await expect(removeTree(join(root, 'never-there'))).resolves.toBeUndefined()
  })
})

describe('copySparse', () => {
  /** A file with data at both ends and a 10 MiB hole between. */
  function holey(path: string, dataBytes: number): Buffer {
    const head = randomBytes(dataBytes)
    const tail = randomBytes(dataBytes)
    const size = 2 * dataBytes + 10 * 1024 * 1024
    const fd = openSync(path, 'w')
    writeSync(fd, head, 0, head.length, 0)
    writeSync(fd, tail, 0, tail.length, size - tail.length)
    closeSync(fd)
    return readFileSync(path)
  }

  it.each([
    ['a mostly allocated file, direct (dd on ext4)', 16 * 1024 * 1024],
    ['a mostly empty file, direct (cp keeps its holes)', 512 * 1024],
  ])('copies %s byte for byte and keeps the hole', async (_what, dataBytes) => {
    const root = temp()
    const want = holey(join(root, 'src'), dataBytes)
    expect(await copySparse(join(root, 'src'), join(root, 'dest'), undefined, true)).toBe(true)
    expect(readFileSync(join(root, 'dest')).equals(want)).toBe(true)
    const st = statSync(join(root, 'dest'))
    // The hole holds at least one whole aligned 4 MiB block (dd's unit): 4 MiB at least stay
    // unallocated, with room for the extent blocks the filesystem counts in st_blocks.
    expect(st.blocks * 512).toBeLessThanOrEqual(st.size - 4 * 1024 * 1024)
  })

  it('resolves false for a missing source', async () => {
    const root = temp()
    expect(await copySparse(join(root, 'nope'), join(root, 'dest'))).toBe(false)
    expect(existsSync(join(root, 'dest'))).toBe(false)
  })
})
