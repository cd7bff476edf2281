import { describe, expect, it } from 'vitest'
import { encodeDevice, SETTLED_GID, SETTLED_MODE, SETTLED_UID, settledFields } from './apply.js'
import { checkCommand, PromptSplitter, quoteArg } from './debugfs.js'
import { checkEntry, decodeXattrs, Manifest, mtimeOf, splitPath } from './entries.js'
import { Listing, parseLsLine } from './listing.js'
import type { OwnershipEntry } from './types.js'
import {
  decodeCString,
  decodeStatValue,
  parseEaGetHex,
  parseStat,
  sameXattrValue,
} from './verify.js'

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

describe('checkCommand', () => {
  it('passes a long but whole command', () => {
    expect(() => checkCommand(`stat "${'x'.repeat(7990)}"`)).not.toThrow()
  })
  it('refuses a command debugfs would cut with E_UNENCODABLE_NAME', () => {
    // 2700 three-byte characters: 8100 bytes although only 2700 UTF-16 units.
    for (const bad of ['stat "/a\nb"', `stat "${'x'.repeat(8001)}"`, `stat "${'€'.repeat(2700)}"`])
      expect(() => checkCommand(bad)).toThrow(
        expect.objectContaining({ code: 'E_UNENCODABLE_NAME' }),
      )
  })
})

describe('PromptSplitter', () => {
  // What debugfs's loop prints for: banner; `ls -p /x` (a name holding the prompt text); two
  // commands that print nothing; `stat` failing; then the last prompt before EOF.
  const transcript =
    'debugfs 1.47.0 (5-Feb-2023)\n' +
    'debugfs:  /12/100644/0/0/debugfs:  odd/0/\n/13/100644/0/0/b/0/\n' +
    'debugfs:  debugfs:  debugfs:  stat: File not found by ext2_lookup while\n' +
    'debugfs:  '
  const expected = [
    'debugfs 1.47.0 (5-Feb-2023)\n',
    '/12/100644/0/0/debugfs:  odd/0/\n/13/100644/0/0/b/0/\n',
    '',
    '',
    'stat: File not found by ext2_lookup while\n',
  ]
  const split = (chunks: string[]): { outputs: string[]; rest: string } => {
    const splitter = new PromptSplitter()
    const outputs: string[] = []
    splitter.onPrompt = (o) => outputs.push(o)
    for (const c of chunks) splitter.push(c)
    return { outputs, rest: splitter.end() }
  }
  it('cuts at prompts that start a line, whole', () => {
    expect(split([transcript])).toEqual({ outputs: expected, rest: '' })
  })
  it('gives the same cut for every chunking, prompts split across chunks included', () => {
    for (const size of [1, 2, 3, 7, 9, 10, 11, 13]) {
      const chunks: string[] = []
      for (let i = 0; i < transcript.length; i += size) chunks.push(transcript.slice(i, i + size))
      expect(split(chunks), `chunks of ${size}`).toEqual({ outputs: expected, rest: '' })
    }
  })
  it('returns what follows the last prompt, and holds back no partial prompt at the end', () => {
    expect(split(['debugfs:  a\ndebug', 'fs: x'])).toEqual({
      outputs: [''],
      rest: 'a\ndebugfs: x',
    })
  })
})

describe('checkEntry', () => {
  it('decodes xattrs and floors mtimes, leaving the entry as it was', () => {
    const e: OwnershipEntry = {
      path: '/x',
      type: 'file',
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtime: 12.7,
      xattrs: { 'user.a': 'aGk=' },
    }
    const before = structuredClone(e)
    checkEntry(e)
    expect(mtimeOf(e)).toBe(12)
    expect(decodeXattrs(e).map(([n, v]) => [n, v.toString()])).toEqual([['user.a', 'hi']])
    expect(e).toEqual(before)
  })
  it('refuses non-normalised paths', () => {
    for (const path of ['/a//b', '/a/./b', '/a/../b', '/a/.', '/a/..', '/./a', '/a/'])
      expect(() => checkEntry({ path, type: 'file', mode: 0, uid: 0, gid: 0 })).toThrow(
        expect.objectContaining({ code: 'E_INVALID_ENTRY' }),
      )
    for (const path of ['/a/.b', '/a/..b', '/a/b.', '/...'])
      expect(() => checkEntry({ path, type: 'file', mode: 0, uid: 0, gid: 0 })).not.toThrow()
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
(0):4387
`
  it('reads owner, mode, links, post-2038 mtime, xattr names and short values', () => {
    expect(parseStat(out)).toEqual({
      inode: 15,
      type: 'regular',
      mode: 0o4755,
      uid: 100000,
      gid: 200000,
      links: 2,
      mtime: 4_000_000_000,
      xattrs: [
        {
          name: 'security.capability',
          length: 20,
          value: Buffer.from('0100000200200000000000000000000000000000', 'hex'),
        },
        { name: 'user.big', length: 300 },
      ],
    })
  })
  it('decodes quoted values with C escapes, and refuses a value of the wrong length', () => {
    const text = [
      'Inode: 16   Type: regular    Mode:  0644   Flags: 0x80000',
      'User:     0   Group:     0   Project:     0   Size: 0',
      'Links: 1   Blockcount: 0',
      ' mtime: 0x5f5e1000:00000000 -- Sun Sep 13 12:26:40 2020',
      'Extended attributes:',
      '  security.selinux (27) = "system_u:object_r:bin_t:s0\\000"',
      '  user.comment (18) = "two words \\"quoted\\""',
      '  user.short (5) = "abc"',
      '  system.data (0)',
      'Inode checksum: 0x1',
      '',
    ].join('\n')
    expect(parseStat(text)).toEqual({
      inode: 16,
      type: 'regular',
      mode: 0o644,
      uid: 0,
      gid: 0,
      links: 1,
      mtime: 1_600_000_000,
      xattrs: [
        {
          name: 'security.selinux',
          length: 27,
          value: Buffer.from('system_u:object_r:bin_t:s0\0'),
        },
        { name: 'user.comment', length: 18, value: Buffer.from('two words "quoted"') },
        { name: 'user.short', length: 5 },
        { name: 'system.data', length: 0 },
      ],
    })
  })
  it('reads new-style device numbers and returns undefined for not-found', () => {
    const dev = [
      'Inode: 20   Type: block special    Mode:  0660   Flags: 0x0',
      'User: 0 Group: 6',
      'Links: 1',
      '(New-style) Device major/minor number: 259:70000 (hex 103:11170)',
    ].join('\n')
    expect(parseStat(dev)).toMatchObject({ type: 'block special', devMajor: 259, devMinor: 70000 })
    expect(parseStat('/x: File not found by ext2_lookup \n')).toBeUndefined()
    // debugfs prints ids with %d
    expect(
      parseStat('Inode: 3 Type: regular Mode: 0644\nUser: 100000   Group:    -2\nLinks: 1\n'),
    ).toMatchObject({ gid: 4294967294 })
  })
})

describe('parseEaGetHex', () => {
  it('decodes hex and empty values and rejects a length mismatch', () => {
    expect(parseEaGetHex('user.b (2) = 71 00 \n')).toEqual(Buffer.from('q\0'))
    expect(parseEaGetHex('user.d (0)\n')).toEqual(Buffer.alloc(0))
    expect(parseEaGetHex('user.b (3) = 71 \n')).toBeUndefined()
    expect(parseEaGetHex('ea_get: Extended attribute key not found\n')).toBeUndefined()
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

describe('decodeStatValue and decodeCString', () => {
  it('undoes every escape print_c_string writes', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    // print_c_string's output for bytes 0..255, built independently of the decoder.
    const named: Record<number, string> = { 7: 'a', 8: 'b', 12: 'f', 10: 'n', 9: 't', 11: 'v' }
    let printed = ''
    for (const b of all) {
      if (named[b]) printed += `\\${named[b]}`
      else if (b === 92 || b === 39 || b === 34) printed += `\\${String.fromCharCode(b)}`
      else if (b < 32 || b > 126) printed += `\\${b.toString(8).padStart(3, '0')}`
      else printed += String.fromCharCode(b)
    }
    expect(decodeCString(printed)).toEqual(all)
    expect(decodeStatValue(`"${printed}"`)).toEqual(all)
  })
  it('reads hex with or without the trailing space, and refuses anything else', () => {
    expect(decodeStatValue('01 ff 00 ')).toEqual(Buffer.from([1, 255, 0]))
    expect(decodeStatValue('01 ff 00')).toEqual(Buffer.from([1, 255, 0]))
    expect(decodeStatValue('01 f')).toBeUndefined()
    expect(decodeStatValue('"unterminated')).toBeUndefined()
  })
})

describe('parseLsLine', () => {
  it('reads inode, full mode, ids (printed signed) and the raw name', () => {
    expect(parseLsLine('/15/104755/100000/-2/su/3/')).toEqual({
      ino: 15,
      mode: 0o104755,
      uid: 100000,
      gid: 4294967294,
      rawName: 'su',
    })
    // Directories have no size; names may hold anything but '/'.
    expect(parseLsLine('/44067/040755/0/0/a "b" debugfs:  c//')).toMatchObject({
      ino: 44067,
      mode: 0o40755,
      rawName: 'a "b" debugfs:  c',
    })
  })
  it('refuses other lines', () => {
    for (const line of [
      'ls: File not found by ext2_lookup',
      '/x/0644/0/0/a/0/',
      '/1/0644/0/0/a/0',
      '',
    ])
      expect(parseLsLine(line)).toBeUndefined()
  })
})

describe('Listing', () => {
  const entries: OwnershipEntry[] = [
    { path: '/', type: 'directory', mode: 0o755, uid: 0, gid: 0 },
    { path: '/d', type: 'directory', mode: 0o755, uid: 0, gid: 0 },
    { path: '/d/caf\u00e9', type: 'file', mode: 0o644, uid: 5, gid: 6 },
    { path: '/d/twice', type: 'file', mode: 0o644, uid: 0, gid: 0 },
    { path: '/d/caf\u00e9', type: 'file', mode: 0o600, uid: 5, gid: 6 },
  ]
  it('maps names to entries by index, UTF-8 names and duplicate records included', () => {
    const manifest = new Manifest(entries)
    const listing = new Listing(manifest)
    listing.absorb('/', '/2/040700/1/1/.//\n/2/040700/1/1/..//\n/12/040755/0/0/d//\n')
    // 'café' as debugfs prints it: raw UTF-8 bytes, read as latin1.
    const cafe = Buffer.from('café').toString('latin1')
    listing.absorb(
      '/d',
      `/12/040755/0/0/.//\n/13/100644/5/6/${cafe}/0/\n/14/100644/0/0/twice/0/\n/14/100644/0/0/twice/0/\n/0/000000/0/0/gone/0/\n/15/100644/0/0/extra/0/\n`,
    )
    expect([...listing.ino]).toEqual([2, 12, 13, 14, 0])
    expect([...listing.count]).toEqual([1, 1, 1, 2, 0])
    expect(listing.mode[0]).toBe(0o40700) // the root's own `.`
    expect(listing.uid[2]).toBe(5)
    expect(listing.gid[2]).toBe(6)
    expect(listing.slot(4)).toBe(2)
    expect(listing.has(4)).toBe(true)
  })
})

describe('settledFields', () => {
  const entries: OwnershipEntry[] = [
    { path: '/', type: 'directory', mode: 0o755, uid: 0, gid: 0 },
    { path: '/a', type: 'file', mode: 0o644, uid: 0, gid: 0 }, // all three as listed
    { path: '/b', type: 'file', mode: 0o4755, uid: 0, gid: 5 }, // mode and gid differ
    { path: '/a', type: 'file', mode: 0o644, uid: 0, gid: 0 }, // a second record for /a
    { path: '/c', type: 'file', mode: 0o644, uid: 0, gid: 0, hardlinkGroup: 1 },
    { path: '/c2', type: 'file', mode: 0o644, uid: 0, gid: 0, hardlinkGroup: 1 },
    { path: '/fifo', type: 'fifo', mode: 0o644, uid: 0, gid: 0 },
    { path: '/unlisted', type: 'file', mode: 0o644, uid: 0, gid: 0 },
  ]
  const listed =
    '/12/100644/0/0/a/0/\n/13/100755/0/0/b/0/\n/14/100644/0/0/c/0/\n/14/100644/0/0/c2/0/\n'
  const ALL = SETTLED_MODE | SETTLED_UID | SETTLED_GID

  it('marks what the listing shows; later records for an inode and unlisted paths get nothing', () => {
    const manifest = new Manifest(entries)
    const listing = new Listing(manifest)
    listing.absorb('/', `/2/040755/0/0/.//\n/2/040755/0/0/..//\n${listed}`)
    // /a's second record comes after the batch wrote the first: it cannot trust the listing.
    // /c2 is written through /c. Specials are mknod'ed; /unlisted is addressed by path.
    expect([...settledFields(manifest, listing)]).toEqual([ALL, ALL, SETTLED_UID, 0, ALL, 0, 0, 0])
  })

  it('trusts nothing about the root until its `.` was read', () => {
    const manifest = new Manifest(entries)
    const listing = new Listing(manifest)
    listing.absorb('/', listed) // no `.` line: the root's slot holds placeholders
    expect(settledFields(manifest, listing)[0]).toBe(0)
    expect(settledFields(manifest, listing)[1]).toBe(ALL)
  })
})
