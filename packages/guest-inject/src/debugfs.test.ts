import { describe, expect, it } from 'vitest'
import { PROMPT, PromptSplitter, errorLines, parseStat, quotePath } from './debugfs.js'

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

  it('cuts the transcript at prompts, empty where a command printed nothing', () => {
    const transcript = `debugfs 1.47.0 (5-Feb-2023)\n${PROMPT}${STAT_LINK}${PROMPT}${PROMPT}Inode: 3\n${PROMPT}`
    // Odd-sized chunks: a prompt may arrive cut in two.
    for (const size of [1, 3, 7, transcript.length]) {
      const chunks: string[] = []
      const splitter = new PromptSplitter((output) => chunks.push(output))
      for (let i = 0; i < transcript.length; i += size) splitter.push(transcript.slice(i, i + size))
      expect(chunks).toHaveLength(4)
      expect(chunks[0]).toBe('debugfs 1.47.0 (5-Feb-2023)\n')
      expect(parseStat(chunks[1]!)?.fastLink).toBe('/lib/systemd/systemd')
      expect(chunks[2]).toBe('')
      expect(chunks[3]).toBe('Inode: 3\n')
      expect(splitter.rest()).toBe('')
    }
  })

  it('takes a prompt only at a line start', () => {
    const chunks: string[] = []
    const splitter = new PromptSplitter((output) => chunks.push(output))
    splitter.push(`${PROMPT}name with ${PROMPT}inside\n${PROMPT}after`)
    expect(chunks).toEqual(['', `name with ${PROMPT}inside\n`])
    expect(splitter.rest()).toBe('after')
  })

  it('treats every line but the banner and notices as a failure', () => {
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
