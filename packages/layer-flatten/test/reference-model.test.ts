/**
 * Property test: random layer stacks replayed by the library (to disk and to a tar) and by the
 * naive model in model.ts must agree entry for entry, errors included.
 */
import { lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import fc from 'fast-check'
import { afterAll, expect, test } from 'vitest'
import { flattenToDirectory, flattenToTar } from '../src/flatten.js'
import type { EntryRecord, FlattenResult } from '../src/types.js'
import { layerOf, tarLayer, type TestEntry } from './layers.js'
import { runModel, type ModelEntry } from './model.js'

const work = mkdtempSync(join(tmpdir(), 'lf-model-'))
afterAll(() => rmSync(work, { recursive: true, force: true }))

// Directories mostly named a/b, files mostly x/y: collisions (type changes) happen, but not
// so often that most stacks end in an error.
const segment = fc.constantFrom('a', 'b', 'x')
const dirPath = fc.array(fc.constantFrom('a', 'b'), { minLength: 0, maxLength: 2 })
const dirLike = fc.tuple(dirPath, fc.constantFrom('a', 'b', 'x')).map(([d, n]) => [...d, n])
const fileLike = fc.tuple(dirPath, fc.constantFrom('x', 'y', 'a')).map(([d, n]) => [...d, n])
const join2 = (parts: string[]) => parts.join('/')
const prefix = fc.constantFrom('', './')
const meta = fc.record({
  mode: fc.constantFrom(0o644, 0o755, 0o4755, 0o2750, 0o1777, 0o000, 0o555),
  uid: fc.constantFrom(0, 1000, 2 ** 32 - 2),
  gid: fc.constantFrom(0, 42, 2 ** 32 - 2),
  mtime: fc.integer({ min: 0, max: 2_000_000_000 }),
})

const entry: fc.Arbitrary<TestEntry> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(prefix, fileLike, fc.string({ maxLength: 40 }), meta)
      .map(([p, n, content, m]) => ({ name: p + join2(n), content, ...m })),
  },
  {
    weight: 4,
    arbitrary: fc.tuple(prefix, dirLike, fc.boolean(), meta).map(([p, n, slash, m]) => ({
      name: p + join2(n) + (slash ? '/' : ''),
      type: 'directory' as const,
      ...m,
    })),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(prefix, fileLike, fc.constantFrom('a', '../x', '/etc/passwd', 'b/c'), meta)
      .map(([p, n, t, m]) => ({ name: p + join2(n), type: 'symlink' as const, linkname: t, ...m })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(prefix, fileLike, fileLike)
      .map(([p, n, t]) => ({ name: p + join2(n), type: 'link' as const, linkname: join2(t) })),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(prefix, dirPath, segment)
      .map(([p, d, n]) => ({ name: p + join2([...d, '.wh.' + n]) })),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(prefix, dirPath)
      .map(([p, d]) => ({ name: p + join2([...d, '.wh..wh..opq']) })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fileLike, fc.constantFrom('fifo' as const, 'character-device' as const), meta)
      .map(([n, type, m]) => ({ name: join2(n), type, devmajor: 1, devminor: 3, ...m })),
  },
)
// A file followed by a hardlink to it, so most hardlinks find their target.
const linkedPair = fc
  .tuple(fileLike, fileLike, fc.string({ maxLength: 10 }), meta)
  .map(([f, l, content, m]): TestEntry[] => [
    { name: join2(f), content, ...m },
    { name: join2(l), type: 'link', linkname: join2(f) },
  ])
const group = fc.oneof(
  { weight: 8, arbitrary: entry.map((e) => [e]) },
  { weight: 1, arbitrary: linkedPair },
)
const stack = fc.array(
  fc.array(group, { minLength: 1, maxLength: 7 }).map((g) => g.flat()),
  { minLength: 1, maxLength: 4 },
)

let ok = 0
let failed = 0
let seq = 0
const codes = new Map<string, number>()

/** Checks a library manifest against the model's entries, hardlink groups included. */
function compare(actual: EntryRecord[], expected: ModelEntry[]): void {
  expect(actual.map((e) => e.path)).toEqual(expected.map((e) => e.path))
  const groupOf = new Map<number, number | undefined>()
  const names = new Map<number, number>()
  for (const e of expected) names.set(e.ino, (names.get(e.ino) ?? 0) + 1)
  expected.forEach((m, i) => {
    const a = actual[i]!
    expect({
      path: a.path,
      type: a.type,
      mode: a.mode,
      uid: a.uid,
      gid: a.gid,
      mtime: a.mtime,
    }).toEqual({
      path: m.path,
      type: m.kind,
      mode: m.mode,
      uid: m.uid,
      gid: m.gid,
      mtime: m.mtime,
    })
    if (m.kind === 'file') expect(a.size).toBe(Buffer.byteLength(m.content!))
    if (m.kind === 'symlink') expect(a.linkTarget).toBe(m.target)
    if (m.kind === 'char') expect([a.devMajor, a.devMinor]).toEqual([m.devMajor, m.devMinor])
    if (m.kind === 'file' && names.get(m.ino)! > 1) {
      expect(a.hardlinkGroup).toBeDefined()
      if (groupOf.has(m.ino)) expect(a.hardlinkGroup).toBe(groupOf.get(m.ino))
      groupOf.set(m.ino, a.hardlinkGroup)
    } else {
      expect(a.hardlinkGroup).toBeUndefined()
    }
  })
  const groups = [...groupOf.values()]
  expect(new Set(groups).size).toBe(groups.length)
}

/** The disk tree holds exactly the manifest's non-special entries, with the model's content. */
function compareDisk(dest: string, expected: ModelEntry[]): void {
  const onDisk: string[] = []
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir).sort()) {
      onDisk.push(`${rel}/${name}`)
      if (lstatSync(join(dir, name)).isDirectory()) walk(join(dir, name), `${rel}/${name}`)
    }
  }
  walk(dest, '')
  const wanted = expected.filter(
    (e) => !['char', 'block', 'fifo'].includes(e.kind) && e.path !== '/',
  )
  expect(onDisk.sort()).toEqual(wanted.map((e) => e.path).sort())
  const inodeOf = new Map<number, number>()
  for (const e of wanted) {
    const p = join(dest, e.path)
    const st = lstatSync(p)
    if (e.kind === 'directory') {
      expect(st.isDirectory()).toBe(true)
      expect(st.mode & 0o7777).toBe((e.mode & 0o777) | 0o700)
      expect(Math.floor(st.mtimeMs / 1000)).toBe(e.mtime)
    } else if (e.kind === 'symlink') {
      expect(readlinkSync(p)).toBe(e.target)
    } else {
      expect(st.isFile()).toBe(true)
      expect(readFileSync(p, 'utf8')).toBe(e.content)
      expect(st.mode & 0o7777).toBe((e.mode & 0o777) | 0o600)
      expect(Math.floor(st.mtimeMs / 1000)).toBe(e.mtime)
      if (inodeOf.has(e.ino)) expect(st.ino).toBe(inodeOf.get(e.ino))
      inodeOf.set(e.ino, st.ino)
    }
  }
}

test('library and reference model agree on random layer stacks', async () => {
  await fc.assert(
    fc.asyncProperty(stack, async (layersSpec) => {
      const model = runModel(layersSpec)
      const tars = await Promise.all(layersSpec.map((l) => tarLayer(l)))
      const input = () => tars.map((t, i) => layerOf(t, { chunk: 97 + i * 61 }))
      const dest = join(work, String(seq++))
      const run = flattenToDirectory(input(), dest)
      if (!model.ok) {
        failed++
        codes.set(model.code, (codes.get(model.code) ?? 0) + 1)
        await expect(run).rejects.toMatchObject({ code: model.code })
        return
      }
      ok++
      const result = await run
      compare(result.entries, model.entries)
      compareDisk(dest, model.entries)
      rmSync(dest, { recursive: true, force: true })

      // The tar output, replayed as a single layer, gives back the same manifest.
      const out = new PassThrough()
      const chunks: Buffer[] = []
      out.on('data', (c: Buffer) => chunks.push(c))
      const viaTar: FlattenResult = await flattenToTar(input(), out)
      expect(viaTar).toEqual(result)
      const again = await flattenToTar(
        [layerOf(Buffer.concat(chunks), { chunk: 509 })],
        new PassThrough().resume(),
      )
      expect(again.entries).toEqual(result.entries)
    }),
    { seed: 20261125, numRuns: 500 },
  )
  console.log(
    `reference model: ${ok} stacks agreed, ${failed} rejected with the same code`,
    Object.fromEntries(codes),
  )
  // Both outcomes must be exercised, or the property proves little.
  expect(ok).toBeGreaterThan(180)
  expect(failed).toBeGreaterThan(20)
}, 300_000)
