import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readImageFile, run, statInode } from '@banger/test-support'
import { describe, expect, it, onTestFinished, vi } from 'vitest'
import { SYSTEMD_TREE, makeTree } from './helpers.js'
import { DebugfsSession, parseStat, withImageReader } from '../src/debugfs.js'

/** A scratch directory with a small systemd-style image, made as root (no test user needed). */
async function scratchImage(): Promise<{ dir: string; image: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'guest-inject-session-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  makeTree(join(dir, 'tree'), SYSTEMD_TREE)
  const image = join(dir, 'image.ext4')
  await run('truncate', ['-s', '16M', image], { check: true })
  await run('mkfs.ext4', ['-q', '-F', '-d', join(dir, 'tree'), image], { check: true })
  return { dir, image }
}

/** Live debugfs processes with the image on their command line. */
function debugfsOn(image: string): number[] {
  const pids: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0')
      if (argv.some((a) => a.endsWith('debugfs')) && argv.includes(image)) pids.push(Number(name))
    } catch {
      // the process exited while we looked
    }
  }
  return pids
}

describe('DebugfsSession', () => {
  it("pins each command's output, errors included, to that command", async () => {
    const { dir, image } = await scratchImage()
    const host = join(dir, 'content')
    writeFileSync(host, 'hello\n')
    const session = await DebugfsSession.open(image, { write: true })
    expect(debugfsOn(image)).toEqual([session.pid])
    const outputs = await session.run([
      'stat "/etc/passwd"',
      'mkdir "/etc"', // fails: exists
      `write "${host}" "/new"`,
      'stat "/missing"', // fails: not found
      'sif "/new" mode 0100600',
      'stat "/new"',
    ])
    await session.close()
    expect(outputs).toHaveLength(6)
    expect(parseStat(outputs[0]!)).toMatchObject({ type: 'file', mode: 0o644 })
    expect(outputs[1]).toMatch(/^ext2fs_mkdir: .*already exists/)
    expect(outputs[1]).not.toMatch(/Inode:|Allocated/)
    expect(outputs[2]).toMatch(/^Allocated inode: \d+\n$/)
    expect(outputs[3]).toMatch(/^\/missing: File not found/)
    expect(outputs[4]).toBe('')
    expect(parseStat(outputs[5]!)).toMatchObject({ type: 'file', mode: 0o600, size: 6 })
    // Written out on close: an independent debugfs sees it.
    expect((await readImageFile(image, '/new')).toString()).toBe('hello\n')
    expect((await statInode(image, '/new')).mode).toBe(0o600)
  })

  it('leaves no process behind after close', async () => {
    const { image } = await scratchImage()
    const session = await DebugfsSession.open(image, { write: false })
    const pid = session.pid!
    expect(debugfsOn(image)).toEqual([pid])
    await session.close()
    expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }))
    expect(debugfsOn(image)).toEqual([])
    await expect(session.run(['stat "/"'])).rejects.toMatchObject({ code: 'E_DEBUGFS_FAILED' })
  })

  it('rejects pending and later commands with the abort reason and leaves no process', async () => {
    const { image } = await scratchImage()
    const controller = new AbortController()
    const session = await DebugfsSession.open(image, { write: true, signal: controller.signal })
    const pid = session.pid!
    const reason = new Error('stop now')
    const pending = session.run(Array.from({ length: 2000 }, () => 'stat "/etc/passwd"'))
    controller.abort(reason)
    await expect(pending).rejects.toBe(reason)
    expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }))
    await expect(session.run(['stat "/"'])).rejects.toBe(reason)
    await expect(session.close()).rejects.toBe(reason)
    expect(debugfsOn(image)).toEqual([])
  })

  it('rejects with E_IMAGE_OPEN on a file that is not ext4, leaving no process', async () => {
    const { dir } = await scratchImage()
    const zeros = join(dir, 'zeros.img')
    writeFileSync(zeros, Buffer.alloc(1 << 20))
    for (const write of [false, true]) {
      const opening = DebugfsSession.open(zeros, { write })
      await expect(opening).rejects.toMatchObject({ code: 'E_IMAGE_OPEN' })
      await expect(opening).rejects.toThrow(/Bad magic number in super-block/)
      expect(debugfsOn(zeros)).toEqual([])
    }
  })

  it('rejects with E_DEBUGFS_MISSING when debugfs is not on PATH', async () => {
    const { dir, image } = await scratchImage()
    vi.stubEnv('PATH', dir)
    onTestFinished(() => void vi.unstubAllEnvs())
    await expect(DebugfsSession.open(image, { write: false })).rejects.toMatchObject({
      code: 'E_DEBUGFS_MISSING',
    })
  })
})

describe('ImageReader over one session', () => {
  it('runs every write command, names the failed one, and still writes the rest out', async () => {
    const { dir, image } = await scratchImage()
    const host = join(dir, 'content')
    writeFileSync(host, 'kept\n')
    const failure = withImageReader(image, { write: true }, async (reader) => {
      await reader.write([
        `write "${host}" "/kept"`,
        'symlink "/sbin" "/elsewhere"', // fails: /sbin exists
        'sif "/kept" mode 0100640',
      ])
    })
    await expect(failure).rejects.toMatchObject({
      code: 'E_DEBUGFS_FAILED',
      lines: [
        'ext2fs_symlink: Ext2 file already exists while creating symlink "sbin" / ' +
          'symlink: Ext2 file already exists (symlink "/sbin" "/elsewhere")',
      ],
    })
    expect(debugfsOn(image)).toEqual([])
    expect((await readImageFile(image, '/kept')).toString()).toBe('kept\n')
    expect((await statInode(image, '/kept')).mode).toBe(0o640)
  })

  it('reads a file through dump, whatever it holds', async () => {
    const { image } = await scratchImage()
    // Contents that look like a prompt at a line start must not cut the transcript.
    const tricky = await scratchFile(image, '/etc/tricky', 'a\ndebugfs:  b\n\0\xff')
    const text = await withImageReader(image, {}, async (reader) => [
      (await reader.readFile('/etc/tricky')).toString('latin1'),
      await reader.readText('/etc/passwd'),
      await reader.readText('/missing'),
    ])
    expect(text).toEqual([
      tricky,
      readFileSync(join(image, '../tree/etc/passwd'), 'utf8'),
      undefined,
    ])
  })
})

/** Writes a file into the image with a separate debugfs; returns its contents (latin1). */
async function scratchFile(image: string, path: string, contents: string): Promise<string> {
  const host = join(image, '..', 'scratch')
  writeFileSync(host, Buffer.from(contents, 'latin1'))
  await run('debugfs', ['-w', '-R', `write ${host} ${path}`, image], { check: true })
  return contents
}
