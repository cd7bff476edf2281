import { existsSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { ensureDir, removeTree } from './files.js'

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
