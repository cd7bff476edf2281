import { describe, expect, it } from 'vitest'
import { encodeDevice } from './apply.js'
import { CommandScript, quoteArg } from './debugfs.js'
import { checkEntry, splitPath } from './entries.js'
import { parseEaGetHex, parseStat, sameXattrValue } from './verify.js'

describe('quoteArg', () => {
  it('wraps in double quotes, doubles inner quotes, keeps backslashes literal', () => {
    expect(quoteArg('/a b')).toBe('"/a b"')
    expect(quoteArg('/q"uote')).toBe('"/q""uote"')
    expect(quoteArg('/back\\slash\t<12>')).toBe('"/back\\slash\t<12>"')
  })
  it('refuses newline, carriage return and NUL with E_UNENCODABLE_NAME', () => {
    for (const bad of ['/a\nb', '/a\rb', '/a\0b'])
      expect(() => quoteArg(bad)).toThrow(expect.objectContaining({ code: 'E_UNENCODABLE_NAME' }))
  })
})

describe('CommandScript', () => {
  it('holds every command once, in order, across chunk boundaries', () => {
    const script = new CommandScript()
    const commands = Array.from({ length: 10_000 }, (_, i) => `stat <${i}>`)
    for (const c of commands) script.add(c)
    expect(script.length).toBe(10_000)
    expect(script.chunks().length).toBeGreaterThan(1)
    for (const chunk of script.chunks()) expect(chunk.endsWith('\n')).toBe(true)
    expect(script.chunks().join('')).toBe(commands.join('\n') + '\n')
    for (const i of [0, 1, 4095, 4096, 4097, 8191, 8192, 9999])
      expect(script.at(i)).toBe(commands[i])
  })
  it('is empty with no commands', () => {
    expect(new CommandScript().chunks().join('')).toBe('')
  })
  it('refuses a command debugfs would cut with E_UNENCODABLE_NAME', () => {
    for (const bad of ['stat "/a\nb"', `stat "${'x'.repeat(8001)}"`])
      expect(() => new CommandScript().add(bad)).toThrow(
        expect.objectContaining({ code: 'E_UNENCODABLE_NAME' }),
      )
  })
})

describe('checkEntry', () => {
  it('decodes xattrs and floors mtimes', () => {
    const e = checkEntry({
      path: '/x',
      type: 'file',
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtime: 12.7,
      xattrs: { 'user.a': 'aGk=' },
    })
    expect(e.mtime).toBe(12)
    expect(e.values.get('user.a')?.toString()).toBe('hi')
  })
  it('refuses xattr names that would be read as options or split', () => {
    for (const name of ['-f', 'user.a b', 'noNamespace'])
      expect(() =>
        checkEntry({
          path: '/',
          type: 'directory',
          mode: 0,
          uid: 0,
          gid: 0,
          xattrs: { [name]: '' },
        }),
      ).toThrow(expect.objectContaining({ code: 'E_INVALID_ENTRY' }))
  })
})

describe('splitPath', () => {
  it('splits at the last slash', () => {
    expect(splitPath('/dev/null')).toEqual({ parent: '/dev', base: 'null' })
    expect(splitPath('/x')).toEqual({ parent: '/', base: 'x' })
  })
})

describe('encodeDevice', () => {
  it('uses the old form when both numbers fit in a byte, else the new one', () => {
    expect(encodeDevice(1, 3)).toEqual([0x103, 0])
    expect(encodeDevice(259, 70000)).toEqual([0, 286327664]) // debugfs shows 259:70000
    expect(encodeDevice(4095, 0xfffff)).toEqual([0, 0xffffffff])
  })
})

describe('parseStat', () => {
  const out = `Inode: 15   Type: regular    Mode:  04755   Flags: 0x80000
Generation: 0    Version: 0x00000000:00000000
User: 100000   Group: 200000   Project:     0   Size: 3
File ACL: 0
Links: 2   Blockcount: 2
Fragment:  Address: 0    Number: 0    Size: 0
 ctime: 0x6b06e034:00000000 -- Wed Nov 25 13:18:44 2026
 atime: 0xee6b2800:00000001 -- Tue Oct  2 07:06:40 2096
 mtime: 0xee6b2800:00000001 -- Tue Oct  2 07:06:40 2096
crtime: 0x6b06e034:00000000 -- Wed Nov 25 13:18:44 2026
Size of extra inode fields: 32
Extended attributes:
  security.capability (20) = 01 00 00 02 00 20 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  user.big (300)
Inode checksum: 0xc6d3fa68
EXTENTS:
(0):4387`.split('\n')
  it('reads owner, mode, links, post-2038 mtime and xattr names', () => {
    expect(parseStat(out)).toEqual({
      inode: 15,
      type: 'regular',
      mode: 0o4755,
      uid: 100000,
      gid: 200000,
      links: 2,
      mtime: 4_000_000_000,
      xattrs: ['security.capability', 'user.big'],
    })
  })
  it('reads new-style device numbers and returns undefined for not-found', () => {
    const dev = [
      'Inode: 20   Type: block special    Mode:  0660   Flags: 0x0',
      'User: 0 Group: 6',
      'Links: 1',
      '(New-style) Device major/minor number: 259:70000 (hex 103:11170)',
    ]
    expect(parseStat(dev)).toMatchObject({ type: 'block special', devMajor: 259, devMinor: 70000 })
    expect(parseStat(['/x: File not found by ext2_lookup '])).toBeUndefined()
    // debugfs prints ids with %d
    expect(
      parseStat(['Inode: 3 Type: regular Mode: 0644', 'User: 100000   Group:    -2', 'Links: 1']),
    ).toMatchObject({ gid: 4294967294 })
  })
})

describe('parseEaGetHex', () => {
  it('decodes hex and empty values and rejects a length mismatch', () => {
    expect(parseEaGetHex(['user.b (2) = 71 00 ', ''])).toEqual(Buffer.from('q\0'))
    expect(parseEaGetHex(['user.d (0)'])).toEqual(Buffer.alloc(0))
    expect(parseEaGetHex(['user.b (3) = 71 '])).toBeUndefined()
    expect(parseEaGetHex(['ea_get: Extended attribute key not found'])).toBeUndefined()
  })
})

describe('sameXattrValue', () => {
  // The demo pull of Debian failed verification on /var/log/journal's ACL: debugfs reads the
  // id-less ACL entries back with id 0 where the tar had 0xffffffff.
  const acl = (ids: [number, number, number]): Buffer => {
    const b = Buffer.alloc(4 + 3 * 8)
    b.writeUInt32LE(2, 0)
    const entries: [number, number][] = [
      [0x01, 7], // USER_OBJ
      [0x08, 5], // GROUP (named: keeps its id)
      [0x20, 5], // OTHER
    ]
    entries.forEach(([tag, perm], i) => {
      b.writeUInt16LE(tag, 4 + i * 8)
      b.writeUInt16LE(perm, 6 + i * 8)
      b.writeUInt32LE(ids[i]!, 8 + i * 8)
    })
    return b
  }
  it('treats the ids of id-less ACL entries as equal', () => {
    expect(
      sameXattrValue('system.posix_acl_access', acl([0xffffffff, 4, 0xffffffff]), acl([0, 4, 0])),
    ).toBe(true)
  })
  it('still catches a different named-group id or another xattr', () => {
    expect(
      sameXattrValue('system.posix_acl_access', acl([0xffffffff, 4, 0xffffffff]), acl([0, 5, 0])),
    ).toBe(false)
    expect(sameXattrValue('user.x', acl([0xffffffff, 4, 0]), acl([0, 4, 0]))).toBe(false)
  })
})
