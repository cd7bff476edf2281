import { describe, expect, it } from 'vitest'
import { errorLines, parseStat, quotePath, splitByCommand } from './debugfs.js'

const STAT_LINK = `Inode: 2522   Type: symlink    Mode:  0777   Flags: 0x0
Generation: 0    Version: 0x00000000:00000000
User:     0   Group:     0   Project:     0   Size: 20
Fast link dest: "/lib/systemd/systemd"
`

describe('debugfs output parsing', () => {
  it('parses stat: type, mode bits, owner, size and a fast link target', () => {
    expect(parseStat(STAT_LINK)).toEqual({
      type: 'symlink',
      mode: 0o777,
      uid: 0,
      gid: 0,
      size: 20,
      fastLink: '/lib/systemd/systemd',
    })
    const file = parseStat(
      'Inode: 12   Type: regular    Mode:  4755   Flags: 0x80000\nUser:  1000   Group:   100   Project:     0   Size: 5\n',
    )
    expect(file).toEqual({ type: 'file', mode: 0o4755, uid: 1000, gid: 100, size: 5 })
    expect(parseStat('')).toBeUndefined()
  })

  it('splits -f output per echoed command, empty where a command printed nothing', () => {
    const out = `debugfs: stat "/a"\n${STAT_LINK}debugfs: stat "/missing"\ndebugfs: stat "/b"\nInode: 3\n`
    const chunks = splitByCommand(out)
    expect(chunks).toHaveLength(3)
    expect(parseStat(chunks[0]!)?.fastLink).toBe('/lib/systemd/systemd')
    expect(chunks[1]).toBe('')
  })

  it('treats every stderr line but the banner as a failure', () => {
    const stderr =
      'debugfs 1.47.0 (5-Feb-2023)\ncatastrophic mode - not reading inode or group bitmaps\n' +
      'write: Could not allocate inode in ext2 filesystem \n'
    expect(errorLines(stderr)).toEqual(['write: Could not allocate inode in ext2 filesystem'])
    expect(errorLines('debugfs 1.47.0 (5-Feb-2023)\n')).toEqual([])
  })

  it('quotes absolute paths and refuses what debugfs cannot quote', () => {
    expect(quotePath('/a b/c')).toBe('"/a b/c"')
    expect(() => quotePath('relative')).toThrow(/absolute/)
    expect(() => quotePath('/a"b')).toThrow(/quote/)
    expect(() => quotePath('/a\nb')).toThrow(/quote/)
  })
})
