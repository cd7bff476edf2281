// Proof on real images: what `banger image pull` (as an unprivileged user) writes into its ext4
// must be exactly what `umoci unpack` (as root) makes of the same image, entry by entry, except
// the files banger injects. Read two ways: debugfs alone, and a read-only loop mount.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  debianImage,
  e2fsck,
  pushImage,
  pushIndex,
  startRegistry,
  type OciImage,
  type TestRegistry,
} from '../test-support/dist/index.js'
import {
  allowedAdditions,
  archImage,
  compareTrees,
  formatDifferences,
  loopMountUnavailable,
  mountReadOnly,
  specialFilesImage,
  startBanger,
  umociUnpack,
  walkDirectory,
  walkExt4,
  whiteoutImage,
  type BangerSession,
  type PulledImage,
  type Tree,
} from './equivalence/index.js'

const once = <T>(make: () => Promise<T>): (() => Promise<T>) => {
  let p: Promise<T> | undefined
  return () => (p ??= make())
}

const images = {
  debian: once(debianImage),
  whiteouts: once(whiteoutImage),
  special: once(specialFilesImage),
  amd64: once(() => archImage('amd64')),
  arm64: once(() => archImage('arm64')),
}

let registry: TestRegistry
let banger: BangerSession
const scratch = mkdtempSync(join(tmpdir(), 'banger-eqv-'))

afterAll(() => rmSync(scratch, { recursive: true, force: true }))

const pushIndexOnce = once(async () =>
  pushIndex(registry, 'eqv/multi:latest', [
    { image: await images.amd64(), platform: { os: 'linux', architecture: 'amd64' } },
    { image: await images.arm64(), platform: { os: 'linux', architecture: 'arm64' } },
  ]),
)

interface Case {
  name: string
  image: () => Promise<OciImage>
  push: (image: OciImage) => Promise<string>
  pullArgs?: string[]
  platform?: string
}

const cases: Case[] = [
  {
    name: 'debian',
    image: images.debian,
    push: (i) => pushImage(i, registry, 'eqv/debian:bookworm'),
  },
  {
    name: 'whiteouts',
    image: images.whiteouts,
    push: (i) => pushImage(i, registry, 'eqv/whiteouts:latest'),
  },
  {
    name: 'special-gzip',
    image: images.special,
    push: (i) => pushImage(i, registry, 'eqv/special:gzip'),
  },
  {
    name: 'special-zstd',
    image: images.special,
    push: (i) => pushImage(i, registry, 'eqv/special:zstd', { compress: 'zstd' }),
  },
  {
    name: 'special-uncompressed',
    image: images.special,
    push: (i) => pushImage(i, registry, 'eqv/special:none', { compress: 'none' }),
  },
  {
    name: 'multi-amd64',
    image: images.amd64,
    push: () => pushIndexOnce(),
    pullArgs: ['--platform', 'linux/amd64'],
    platform: 'linux/amd64',
  },
  {
    name: 'multi-arm64',
    image: images.arm64,
    push: () => pushIndexOnce(),
    pullArgs: ['--platform', 'linux/arm64'],
    platform: 'linux/arm64',
  },
]

interface Prepared {
  record: PulledImage
  expected: Tree
  allowed: string[]
}

/** Pull with banger and unpack with umoci, once per case; both readers share the result. */
const preparedByCase = new Map<string, () => Promise<Prepared>>()
function prepare(c: Case): () => Promise<Prepared> {
  const known = preparedByCase.get(c.name)
  if (known) return known
  const made = once(async () => {
    const image = await c.image()
    const ref = await c.push(image)
    const record = await banger.pull(ref, `eqv-${c.name}`, c.pullArgs)
    const unpacked = await umociUnpack(`${image.layout}:${image.tag}`, scratch)
    try {
      const expected = await walkDirectory(unpacked.rootfs)
      const allowed = allowedAdditions(expected, record.injectedFiles)
      // The allowed differences, listed: banger's injected files and the dirs made for them.
      console.log(
        `${c.name}: injected ${JSON.stringify(record.injectedFiles)}; allowed ${JSON.stringify(allowed)}`,
      )
      return { record, expected, allowed }
    } finally {
      unpacked.remove()
    }
  })
  preparedByCase.set(c.name, made)
  return made
}

describe('banger image pull equals umoci unpack', () => {
  beforeAll(async () => {
    registry = await startRegistry()
    banger = await startBanger()
  })

  afterAll(async () => {
    await banger?.stop()
    await registry?.stop()
  })

  for (const c of cases) {
    const prepared = prepare(c)

    it(`${c.name}: record, e2fsck -fn, and the ext4 read by debugfs alone`, async () => {
      const { record, expected, allowed } = await prepared()
      // Not a vacuous pass: the reference holds the image (Debian: thousands of entries).
      expect(expected.size).toBeGreaterThan(c.name === 'debian' ? 5000 : 3)
      expect(record.manifestDigest).toMatch(/^sha256:[0-9a-f]{64}$/)
      if (c.platform) expect(record.platform).toBe(c.platform)
      expect(record.injectedFiles.length).toBeGreaterThan(0)
      for (const f of record.injectedFiles) expect(f).toMatch(/^\//)
      const fsck = await e2fsck(record.rootfsPath)
      expect(fsck.clean, fsck.output).toBe(true)
      const actual = await walkExt4(record.rootfsPath, { scratchDir: scratch })
      const diffs = compareTrees(expected, actual, { allowed })
      expect(formatDifferences(diffs)).toBe('')
      // Every allowed addition really is in the image (nothing is allowed by accident).
      for (const p of allowed) if (p !== '/lost+found') expect(actual.has(p), p).toBe(true)
    })

    it(`${c.name}: the ext4 mounted read-only (loop)`, async (ctx) => {
      const why = await loopMountUnavailable()
      if (why) ctx.skip(why)
      const { record, expected, allowed } = await prepared()
      const mounted = await mountReadOnly(record.rootfsPath)
      try {
        const actual = await walkDirectory(mounted.dir)
        expect(formatDifferences(compareTrees(expected, actual, { allowed }))).toBe('')
      } finally {
        await mounted.unmount()
      }
    })
  }

  it('a change made inside a banger image shows as exactly that difference', async () => {
    const { record, expected, allowed } = await prepare(
      cases.find((c) => c.name === 'special-gzip')!,
    )()
    const copy = join(scratch, 'tampered.ext4')
    execFileSync('cp', ['--sparse=always', record.rootfsPath, copy])
    try {
      execFileSync('debugfs', ['-w', '-R', 'ea_rm /bin/capped security.capability', copy], {
        stdio: 'pipe',
      })
      execFileSync('debugfs', ['-w', '-R', 'sif /home/big/owned uid 100001', copy], {
        stdio: 'pipe',
      })
      const diffs = compareTrees(expected, await walkExt4(copy, { scratchDir: scratch }), {
        allowed,
      })
      expect(diffs.map((d) => `${d.path} ${d.field}`)).toEqual([
        '/bin/capped xattr security.capability',
        '/home/big/owned uid',
      ])
    } finally {
      rmSync(copy, { force: true })
    }
  })

  it('multi-platform pulls got different images', async () => {
    const amd = await prepare(cases.find((c) => c.name === 'multi-amd64')!)()
    const arm = await prepare(cases.find((c) => c.name === 'multi-arm64')!)()
    expect(amd.record.manifestDigest).not.toBe(arm.record.manifestDigest)
    expect(amd.expected.has('/etc/only-amd64')).toBe(true)
    expect(arm.expected.has('/etc/only-arm64')).toBe(true)
  })
})

// The method itself, independent of banger: mkfs.ext4 -d of umoci's own unpack must compare
// equal through both readers on these image kinds (mkfs.ext4 -d keeps whole seconds only and
// touches the root's mtime when it adds lost+found; those two are the only allowances).
describe('control: mkfs.ext4 -d of the umoci unpack', () => {
  for (const [name, image] of [
    ['whiteouts', images.whiteouts],
    ['special', images.special],
  ] as const) {
    it(`${name}`, async () => {
      const img = await image()
      const unpacked = await umociUnpack(`${img.layout}:${img.tag}`, scratch)
      const ext4 = join(scratch, `control-${name}.ext4`)
      try {
        const expected = await walkDirectory(unpacked.rootfs)
        execFileSync('truncate', ['-s', '64M', ext4])
        execFileSync('mkfs.ext4', ['-q', '-F', '-d', unpacked.rootfs, ext4])
        const options = {
          allowed: ['/lost+found'],
          allowedFields: ['/ mtime'],
          mtimePrecision: 's' as const,
        }
        const actual = await walkExt4(ext4, { scratchDir: scratch })
        expect(formatDifferences(compareTrees(expected, actual, options))).toBe('')
        // and the image kinds are what this suite claims to cover
        if (name === 'special') {
          expect(expected.get('/bin/suid')?.mode).toBe(0o4750)
          expect(expected.get('/home/big/owned')).toMatchObject({ uid: 100000, gid: 200000 })
          expect(expected.get('/dev/wide')).toMatchObject({ type: 'char', devMinor: 70000 })
          expect(expected.get('/run/fifo')?.type).toBe('fifo')
          expect(expected.get('/bin/capped')?.xattrs['security.capability']).toBeDefined()
          expect(expected.get('/data/acl-dir')?.xattrs['system.posix_acl_default']).toBeDefined()
          expect(expected.get('/locked')?.mode).toBe(0)
          expect(expected.get('/ro')?.mode).toBe(0o555)
          expect(expected.get('/data/hl-next-layer')?.inode).toBe(
            expected.get('/data/hl-src')?.inode,
          )
        } else {
          expect(expected.has('/etc/a')).toBe(false)
          expect(expected.has('/var/lib/thing/1')).toBe(false)
          expect(expected.get('/file-to-dir')?.type).toBe('directory')
          expect(expected.get('/dir-to-file')?.type).toBe('file')
          expect(expected.has('/opt/app/x')).toBe(false)
          expect(expected.has('/opt/app/again')).toBe(true)
        }
      } finally {
        unpacked.remove()
        rmSync(ext4, { force: true })
      }
    })
  }
})
