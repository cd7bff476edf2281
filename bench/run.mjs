#!/usr/bin/env node
// `pnpm bench`: banger against what users would script instead, on this machine, in one run.
// See bench/README.md for what each row measures. Never a timed test: figures go to a table and
// to bench/results/<date>.md, and targets are reported, not asserted.
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  bangerUserHome,
  debianImage,
  pushImage,
  run,
  startRegistry,
  testUser,
  userTempDir,
} from '../test-support/dist/index.js'
import { syntheticImage, SYNTHETIC_RECIPE } from './synthetic.mjs'

const repo = resolve(import.meta.dirname, '..')
const banger = join(repo, 'packages/cli/dist/bin.js')
const GiB = 1024 ** 3
const MiB = 1024 ** 2

// `pnpm bench -- --reps 5` hands the script a literal `--`: drop it.
const argv = process.argv.slice(2).filter((a) => a !== '--')
const { values: opts } = parseArgs({
  args: argv,
  options: {
    reps: { type: 'string', default: '3' },
    scale: { type: 'boolean', default: false },
    'scale-only': { type: 'boolean', default: false },
    out: { type: 'string' },
    methods: { type: 'string', default: 'banger,root,rootless,floor' },
    help: { type: 'boolean', default: false },
  },
})
if (opts.help) {
  console.log(`usage: pnpm bench [-- --reps N] [--scale | --scale-only] [--out FILE]
  --reps N      repetitions per method (default 3); medians are reported
  --scale       also run the synthetic ≥1 GiB / ≥50k-file image (adds many minutes)
  --scale-only  only the synthetic image
  --methods L   comma-separated subset of banger,root,rootless,floor (default: all); for quick
                looks while working, the ratios of the methods left out read n/a
  --out FILE    results file (default bench/results/<YYYY-MM-DD>.md)`)
  process.exit(0)
}
const methods = new Set(opts.methods.split(',').map((m) => m.trim()))
for (const m of methods)
  if (!['banger', 'root', 'rootless', 'floor'].includes(m)) {
    console.error(
      `bench: --methods takes banger, root, rootless and floor, not ${JSON.stringify(m)}`,
    )
    process.exit(2)
  }
const reps = Number(opts.reps)
if (!Number.isInteger(reps) || reps < 1) {
  console.error(`bench: --reps must be a positive integer, got ${JSON.stringify(opts.reps)}`)
  process.exit(2)
}

if (process.getuid?.() !== 0) {
  console.error(
    'bench: run as root: the scripted alternative needs `umoci unpack` as root and banger runs as an unprivileged test user',
  )
  process.exit(2)
}

const user = testUser()
const log = (msg) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`)

// ---------------------------------------------------------------------------------------------
// small helpers

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const secs = (ms) => (ms === undefined ? 'n/a' : `${(ms / 1000).toFixed(2)} s`)
const fmtBytes = (n) => (n >= GiB ? `${(n / GiB).toFixed(2)} GiB` : `${(n / MiB).toFixed(1)} MiB`)

/** Spawns a command (optionally as the test user), timing it and every stderr line it prints. */
function spawnTimed(cmd, args, { asUser = false, env, cwd } = {}) {
  const start = performance.now()
  const spawnEnv = asUser
    ? {
        PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: user.home,
        USER: user.name,
        LANG: 'C.UTF-8',
        TMPDIR: tmpdir(),
        ...env,
      }
    : { ...process.env, ...env }
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, {
      cwd: cwd ?? tmpdir(),
      env: spawnEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(asUser ? { uid: user.uid, gid: user.gid } : {}),
    })
    const out = []
    const lines = []
    let partial = ''
    child.stdout.on('data', (b) => out.push(b))
    child.stderr.on('data', (b) => {
      const t = performance.now() - start
      partial += b.toString('utf8')
      const parts = partial.split('\n')
      partial = parts.pop()
      for (const line of parts) lines.push({ t, line })
    })
    child.on('error', reject)
    child.on('close', (code) => {
      if (partial) lines.push({ t: performance.now() - start, line: partial })
      resolvePromise({
        code,
        ms: performance.now() - start,
        stdout: Buffer.concat(out).toString('utf8'),
        stderrLines: lines,
        stderr: lines.map((l) => l.line).join('\n'),
      })
    })
  })
}

async function must(cmd, args, options) {
  const r = await spawnTimed(cmd, args, options)
  if (r.code !== 0)
    throw new Error(`${cmd} ${args.join(' ')}: exit ${r.code}\n${r.stderr.slice(-2000)}`)
  return r
}

function firstLine(err) {
  return String(err?.message ?? err)
    .split('\n')
    .find((l) => l.trim())
    ?.slice(0, 300)
}

/** Resident set of a process and its descendants now (bytes), from /proc. */
function treeRss(rootPid) {
  const children = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      const list = children.get(ppid) ?? []
      list.push(Number(name))
      children.set(ppid, list)
    } catch {
      // the process ended meanwhile
    }
  }
  let total = 0
  const stack = [rootPid]
  while (stack.length) {
    const pid = stack.pop()
    total += procStatusKb(pid, 'VmRSS') * 1024
    stack.push(...(children.get(pid) ?? []))
  }
  return total
}

function procStatusKb(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    )
    return m ? Number(m[1]) : 0
  } catch {
    return 0
  }
}

// ---------------------------------------------------------------------------------------------
// the subject image, prepared once per run (untimed)

async function prepare(label, image, registry, repoTag) {
  log(`${label}: pushing to the local registry`)
  const ref = await pushImage(image, registry, repoTag)
  const work = join(tmpdir(), `banger-bench-ref-${process.pid}-${repoTag.replace(/\W/g, '_')}`)
  rmSync(work, { recursive: true, force: true })
  mkdirSync(work, { recursive: true })
  // A local copy of exactly what the registry serves: the floor decompresses these blobs.
  await must('skopeo', [
    'copy',
    '--quiet',
    '--src-tls-verify=false',
    `docker://${ref}`,
    `oci:${work}/oci:img`,
  ])
  const layoutIndex = JSON.parse(readFileSync(join(work, 'oci/index.json'), 'utf8'))
  const blob = (digest) => join(work, 'oci/blobs', ...digest.split(':'))
  const manifest = JSON.parse(readFileSync(blob(layoutIndex.manifests[0].digest), 'utf8'))
  const layers = manifest.layers.map((l) => ({
    path: blob(l.digest),
    size: l.size,
    mediaType: l.mediaType,
  }))
  await must('umoci', ['unpack', '--image', `${work}/oci:img`, `${work}/bundle`])
  const tree = `${work}/bundle/rootfs`
  const treeBytes = Number((await run('du', ['-sb', tree])).stdout.split('\t')[0])
  const files = Number((await run('sh', ['-c', `find "${tree}" | wc -l`])).stdout.trim())
  // banger's default size rule, used for the scripted alternative too: max(tree × 1.25, 1 GiB).
  const sizeBytes = Math.max(Math.ceil((treeBytes * 1.25) / MiB) * MiB, GiB)
  return { label, ref, work, layers, tree, treeBytes, files, sizeBytes }
}

// ---------------------------------------------------------------------------------------------
// the methods; each returns { ms, stages?: {name: ms} } or throws

/**
 * Unpacked trees of the scripted runs, removed only when the run is over. This machine's root
 * ext4 has no journal, and then the inode allocator skips every inode freed in the last 60 s
 * (longer while its table block is dirty): unpacking 54k files right after deleting the previous
 * run's 54k took umoci 2-3 times as long, by repetition (perf: ext4's recently_deleted under
 * umoci's openat). A user's one-off run does not pay that, so the bench must not either.
 */
const deferredTrees = []

async function scripted(subject, { rootless }) {
  const asUser = rootless
  const work = rootless
    ? userTempDir('banger-bench-scripted')
    : join(tmpdir(), `banger-bench-scripted-${process.pid}-${deferredTrees.length}`)
  mkdirSync(join(work, 'x'), { recursive: true })
  if (rootless) await run('chown', [`${user.uid}:${user.gid}`, join(work, 'x')])
  const d = join(work, 'x')
  const stages = {}
  const step = async (name, cmd, args) => {
    const r = await must(cmd, args, { asUser })
    stages[name] = r.ms
  }
  try {
    await step('skopeo copy', 'skopeo', [
      'copy',
      '--quiet',
      '--src-tls-verify=false',
      `docker://${subject.ref}`,
      `oci:${d}/oci:img`,
    ])
    await step(rootless ? 'umoci unpack --rootless' : 'umoci unpack', 'umoci', [
      'unpack',
      ...(rootless ? ['--rootless'] : []),
      '--image',
      `${d}/oci:img`,
      `${d}/bundle`,
    ])
    await step('truncate', 'truncate', ['-s', String(subject.sizeBytes), `${d}/rootfs.ext4`])
    await step('mkfs.ext4 -d', 'mkfs.ext4', [
      '-q',
      '-F',
      '-d',
      `${d}/bundle/rootfs`,
      `${d}/rootfs.ext4`,
    ])
    return { ms: Object.values(stages).reduce((a, b) => a + b, 0), stages }
  } finally {
    // The big files go now (few inodes); the tree of small files at the end of the run.
    rmSync(join(d, 'oci'), { recursive: true, force: true })
    rmSync(join(d, 'rootfs.ext4'), { force: true })
    deferredTrees.push(work)
  }
}

async function floor(subject) {
  const stages = { 'decompress layers': 0 }
  for (const layer of subject.layers) {
    const tool = /zstd/.test(layer.mediaType)
      ? 'zstd -dc'
      : /gzip/.test(layer.mediaType)
        ? 'gzip -dc'
        : 'cat'
    const r = await must('sh', ['-c', `${tool} < "${layer.path}" > /dev/null`])
    stages['decompress layers'] += r.ms
  }
  const img = join(tmpdir(), `banger-bench-floor-${process.pid}.ext4`)
  rmSync(img, { force: true })
  try {
    await must('truncate', ['-s', String(subject.sizeBytes), img])
    const r = await must('mkfs.ext4', ['-q', '-F', '-d', subject.tree, img])
    stages['mkfs.ext4 -d'] = r.ms
  } finally {
    rmSync(img, { force: true })
  }
  return { ms: stages['decompress layers'] + stages['mkfs.ext4 -d'], stages }
}

let stageLabels
async function bangerStageOf(line) {
  stageLabels ??= await import(join(repo, 'packages/cli/dist/progress.js'))
    .then((m) => Object.entries(m.STAGE_LABELS))
    .catch(() => [])
  return stageLabels.find(([, label]) => line.trim() === label)?.[0]
}

/** The error a failed CLI run printed: its `banger: …` lines, else its last line. */
function cliError(what, r) {
  const lines = r.stderr.trim().split('\n')
  const said = lines.filter((l) => /^(banger|error|hint)/i.test(l.trim()))
  return `${what}: exit ${r.code}: ${(said.length ? said : lines.slice(-1)).join(' ')}`
}

/** Cold pull into an empty state/cache, then a warm re-pull under a new name, as the test user. */
async function bangerPulls(subject) {
  if (!existsSync(banger)) throw new Error(`${banger} is not built`)
  // Own XDG dirs, and a config naming an SSH public key (a pull needs one to inject).
  const { home, env } = await bangerUserHome('banger-bench-home')
  const cli = (args) => spawnTimed('node', [banger, ...args], { asUser: true, env })
  const kernel = readdirSync('/boot').find((f) => f.startsWith('vmlinuz-'))
  let sampler
  try {
    // The daemon autostarts here, before the timed pull; the kernel is the host's, no initrd.
    const k = await cli([
      'kernel',
      'add',
      'bench',
      '--kernel-path',
      kernel ? `/boot/${kernel}` : '/etc/hostname',
      '--default',
    ])
    if (k.code !== 0) throw new Error(cliError('kernel add', k))
    const status = await cli(['daemon', 'status', '--json'])
    const pid = status.code === 0 ? JSON.parse(status.stdout).pid : undefined
    let peakTree = 0
    const samples = []
    if (pid)
      sampler = setInterval(() => {
        peakTree = Math.max(peakTree, treeRss(pid))
        samples.push({ at: performance.now(), rss: procStatusKb(pid, 'VmRSS') * 1024 })
      }, 100)
    const coldStart = performance.now()

    const cold = await cli(['image', 'pull', subject.ref, '--name', 'bench-cold', '--insecure'])
    if (cold.code !== 0) throw new Error(cliError('cold image pull', cold))
    const hwmCold = pid ? procStatusKb(pid, 'VmHWM') * 1024 : undefined
    const stages = {}
    const marks = []
    stages['(before the first stage line)'] = undefined
    for (const { t, line } of cold.stderrLines) {
      const stage = await bangerStageOf(line)
      if (stage) marks.push({ stage, t })
    }
    marks.forEach((m, i) => (stages[m.stage] = (marks[i + 1]?.t ?? cold.ms) - m.t))
    // bangerd's resident set at its highest within each stage (100 ms samples).
    const stageRss = {}
    marks.forEach((m, i) => {
      const from = coldStart + m.t
      const to = coldStart + (marks[i + 1]?.t ?? cold.ms)
      const inStage = samples.filter((x) => x.at >= from && x.at <= to).map((x) => x.rss)
      if (inStage.length) stageRss[m.stage] = Math.max(...inStage)
    })
    if (marks.length) stages['(before the first stage line)'] = marks[0].t
    else delete stages['(before the first stage line)']

    const shown = await cli(['image', 'show', 'bench-cold', '--json'])
    const record = shown.code === 0 ? JSON.parse(shown.stdout) : undefined

    const warm = await cli(['image', 'pull', subject.ref, '--name', 'bench-warm', '--insecure'])
    if (warm.code !== 0) throw new Error(cliError('warm image pull', warm))
    const hwm = pid ? procStatusKb(pid, 'VmHWM') * 1024 : undefined
    return {
      cold: { ms: cold.ms, stages, stageRss },
      warm: { ms: warm.ms },
      rss: { pid, hwmCold, hwm, peakTree },
      record,
    }
  } finally {
    if (sampler) clearInterval(sampler)
    await cli(['daemon', 'stop']).catch(() => {})
    // BENCH_KEEP_LOG=<file>: keep bangerd's log (its lines carry per-step times) for a closer look.
    if (process.env.BENCH_KEEP_LOG)
      try {
        writeFileSync(
          process.env.BENCH_KEEP_LOG,
          readFileSync(join(env.XDG_STATE_HOME, 'banger/logs/bangerd.log')),
        )
      } catch (err) {
        log(`could not keep the daemon log: ${firstLine(err)}`)
      }
    rmSync(home, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Untimed, before every method: write back what the previous one left dirty (a scripted run leaves
 * its unpacked tree, 1 GiB at scale, in the page cache), so no method pays for another's writeback.
 */
async function settle() {
  await must('sync', [])
}

async function benchSubject(subject) {
  const results = { cold: [], warm: [], root: [], rootless: [], floor: [], rss: [], errors: {} }
  for (let rep = 1; rep <= reps; rep++) {
    log(`${subject.label}: repetition ${rep}/${reps}`)
    if (methods.has('banger'))
      try {
        await settle()
        const b = await bangerPulls(subject)
        results.cold.push(b.cold)
        results.warm.push(b.warm)
        results.rss.push(b.rss)
        results.record = b.record
        log(`  banger cold ${secs(b.cold.ms)}, warm ${secs(b.warm.ms)}`)
      } catch (err) {
        results.errors.banger = firstLine(err)
        log(`  banger: ${results.errors.banger}`)
      }
    for (const [key, fn] of [
      ['root', () => scripted(subject, { rootless: false })],
      ['rootless', () => scripted(subject, { rootless: true })],
      ['floor', () => floor(subject)],
    ]) {
      if (!methods.has(key)) continue
      try {
        await settle()
        const r = await fn()
        results[key].push(r)
        log(`  ${key} ${secs(r.ms)}`)
      } catch (err) {
        results.errors[key] = firstLine(err)
        log(`  ${key}: ${results.errors[key]}`)
      }
    }
  }
  return results
}

function summarize(runs) {
  if (!runs.length) return undefined
  const ms = runs.map((r) => r.ms)
  const stageNames = [...new Set(runs.flatMap((r) => Object.keys(r.stages ?? {})))]
  const stages = Object.fromEntries(
    stageNames.map((n) => [
      n,
      median(runs.map((r) => r.stages?.[n]).filter((x) => x !== undefined)),
    ]),
  )
  return { median: median(ms), min: Math.min(...ms), max: Math.max(...ms), n: ms.length, stages }
}

function section(subject, results) {
  const s = {
    cold: summarize(results.cold),
    warm: summarize(results.warm),
    root: summarize(results.root),
    rootless: summarize(results.rootless),
    floor: summarize(results.floor),
  }
  const na = (key, errKey) => `n/a (${results.errors[errKey ?? key] ?? 'not run'})`
  const row = (id, name, sum, errKey) =>
    sum
      ? `| ${id} | ${name} | **${secs(sum.median)}** | ${secs(sum.min)} | ${secs(sum.max)} | ${sum.n} |`
      : `| ${id} | ${name} | ${na(errKey)} | | | 0 |`
  const lines = []
  lines.push(`## ${subject.label}`, '')
  lines.push(
    `Reference \`${subject.ref}\` (gzip, pushed by the harness to a local docker-registry): ` +
      `${subject.layers.length} layer(s), ${fmtBytes(subject.layers.reduce((a, l) => a + l.size, 0))} compressed, ` +
      `tree ${fmtBytes(subject.treeBytes)} in ${subject.files} entries; ext4 size ${fmtBytes(subject.sizeBytes)} ` +
      `(banger's rule, max(tree × 1.25, 1 GiB), given to the scripted runs too)` +
      (results.record ? `; banger chose ${fmtBytes(results.record.sizeBytes)}` : '') +
      '.',
    '',
  )
  lines.push('| # | method | median | min | max | runs |', '|---|---|---|---|---|---|')
  lines.push(
    row(
      '1',
      'banger image pull, cold (empty state and cache; daemon already up)',
      s.cold,
      'banger',
    ),
  )
  lines.push(row('2', 'banger image pull, warm re-pull under a new name', s.warm, 'banger'))
  lines.push(
    row('3', 'scripted: skopeo copy + umoci unpack (root) + truncate + mkfs.ext4 -d', s.root),
  )
  lines.push(
    row('3r', 'scripted rootless: same with umoci unpack --rootless (test user)', s.rootless),
  )
  lines.push(
    row('4', 'floor: decompress every layer to /dev/null + mkfs.ext4 -d of the tree', s.floor),
  )
  lines.push('')
  const ratio = (a, b) => (a && b ? a.median / b.median : undefined)
  const fmtRatio = (r) => (r === undefined ? 'n/a' : r.toFixed(2))
  const met = (r, target) => (r === undefined ? 'n/a' : r <= target ? 'yes' : '**no**')
  lines.push('| ratio | value | target | met |', '|---|---|---|---|')
  lines.push(
    `| 1/3 cold ÷ scripted (root) | ${fmtRatio(ratio(s.cold, s.root))} | ≤ 0.50 | ${met(ratio(s.cold, s.root), 0.5)} |`,
  )
  lines.push(
    `| 1/3r cold ÷ scripted (rootless) | ${fmtRatio(ratio(s.cold, s.rootless))} | ≤ 0.50 | ${met(ratio(s.cold, s.rootless), 0.5)} |`,
  )
  lines.push(`| 1/4 cold ÷ floor | ${fmtRatio(ratio(s.cold, s.floor))} | — | — |`)
  lines.push(
    `| 2/1 warm ÷ cold | ${fmtRatio(ratio(s.warm, s.cold))} | ≤ 0.20 | ${met(ratio(s.warm, s.cold), 0.2)} |`,
  )
  lines.push('')
  const rss = results.rss
  if (rss.length) {
    const hwm = Math.max(...rss.map((r) => r.hwm ?? 0))
    const tree = Math.max(...rss.map((r) => r.peakTree ?? 0))
    lines.push(
      `Peak RSS of bangerd (VmHWM over a cold and a warm pull, worst of ${rss.length} runs): **${fmtBytes(hwm)}** ` +
        `(target < 200 MiB: ${hwm && hwm < 200 * MiB ? 'met' : '**not met**'}); ` +
        `bangerd plus its child processes (mkfs.ext4, debugfs, …), sampled every 100 ms: ${fmtBytes(tree)}.`,
      '',
    )
  } else lines.push(`Peak RSS of bangerd: ${na('banger')}.`, '')
  if (s.cold && Object.keys(s.cold.stages).length) {
    lines.push(
      "banger cold pull by stage (median; from the CLI's plain progress lines on stderr, timed as they arrive):",
      '',
    )
    lines.push(
      '| stage | median | bangerd peak RSS in the stage (max over runs) |',
      '|---|---|---|',
    )
    for (const [name, ms] of Object.entries(s.cold.stages)) {
      const peaks = results.cold.map((r) => r.stageRss?.[name]).filter((x) => x !== undefined)
      lines.push(`| ${name} | ${secs(ms)} | ${peaks.length ? fmtBytes(Math.max(...peaks)) : '—'} |`)
    }
    lines.push('')
  } else if (s.cold) lines.push('banger printed no stage lines to time.', '')
  for (const [key, title] of [
    ['root', 'scripted (root)'],
    ['rootless', 'scripted (rootless)'],
    ['floor', 'floor'],
  ]) {
    if (!s[key]) continue
    lines.push(
      `${title} by step (median): ` +
        Object.entries(s[key].stages)
          .map(([n, ms]) => `${n} ${secs(ms)}`)
          .join(', '),
    )
  }
  lines.push('')
  const peak = results.rss.length ? Math.max(...results.rss.map((r) => r.hwm ?? 0)) : undefined
  return { text: lines.join('\n'), s, peak }
}

async function versions() {
  const v = async (cmd, args, re) => {
    try {
      const r = await run(cmd, args, { check: false })
      return (re.exec(r.stdout + r.stderr)?.[1] ?? '?').trim()
    } catch {
      return '?'
    }
  }
  return {
    node: process.version,
    e2fsprogs: await v('mkfs.ext4', ['-V'], /mke2fs ([\d.]+)/),
    umoci: await v('umoci', ['--version'], /version (\S+)/),
    skopeo: await v('skopeo', ['--version'], /version (\S+)/),
    kernel: await v('uname', ['-r'], /(.+)/),
    commit: await v('git', ['-C', repo, 'rev-parse', '--short', 'HEAD'], /(\S+)/),
  }
}

// ---------------------------------------------------------------------------------------------

const startedAt = new Date()
const loadBefore = loadavg()
const registry = await startRegistry()
const sections = []
const subjects = []
try {
  if (!opts['scale-only']) {
    log('preparing the Debian image (cached debootstrap build)')
    const image = await debianImage()
    const subject = await prepare(
      'Debian bookworm (debootstrap minbase + systemd-sysv + openssh-server)',
      image,
      registry,
      'bench/debian:bookworm',
    )
    subjects.push(subject)
    sections.push(section(subject, await benchSubject(subject)))
  }
  if (opts.scale || opts['scale-only']) {
    log('preparing the synthetic scale image (cached after the first build)')
    const r = SYNTHETIC_RECIPE
    const recipe = `${r.smallFilesPerLayer} files ≤ ${r.smallMaxBytes / 1024} KiB + ${r.bigFilesPerLayer} × ${r.bigFileBytes / MiB} MiB`
    // The same content at half and full size: how cost and memory grow with bytes and files.
    for (const layers of [r.layers / 2, r.layers]) {
      const image = await syntheticImage({ layers })
      const subject = await prepare(
        layers === r.layers
          ? `Synthetic scale image (${r.layers} layers × (${recipe}), random-pool contents)`
          : `Synthetic half (the first ${layers} of its ${r.layers} layers)`,
        image,
        registry,
        `bench/synthetic:${layers}-layers`,
      )
      subjects.push(subject)
      sections.push(section(subject, await benchSubject(subject)))
    }
  }
} finally {
  await registry.stop()
  for (const s of subjects) rmSync(s.work, { recursive: true, force: true })
  for (const w of deferredTrees) rmSync(w, { recursive: true, force: true })
}

const v = await versions()
const loadAfter = loadavg()
const date = startedAt.toISOString().slice(0, 10)
const header = [
  `# banger bench, ${date}`,
  '',
  `Command: \`pnpm bench${argv.length ? ` -- ${argv.join(' ')}` : ''}\` (started ${startedAt.toISOString()}, ${reps} repetition(s) per method, interleaved; medians).`,
  '',
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${fmtBytes(totalmem())} RAM, Linux ${v.kernel}; ` +
    `node ${v.node}, e2fsprogs ${v.e2fsprogs}, umoci ${v.umoci}, skopeo ${v.skopeo}; banger at ${v.commit}. ` +
    `Load average before/after: ${loadBefore.map((x) => x.toFixed(2)).join(' ')} / ${loadAfter.map((x) => x.toFixed(2)).join(' ')} ` +
    '(a shared machine: other work was running, so treat single figures as noisy).',
  '',
  'Targets (issue 9): cold pull ≤ ½ the scripted alternative; warm re-pull ≤ ⅕ of the cold pull; bangerd peak RSS < 200 MiB.',
  '',
]
const scaling = []
if (sections.length >= 2) {
  const short = (s) => s.label.split(' (')[0]
  scaling.push(
    '## Scaling',
    '',
    "Median seconds per GiB of tree and per 10k entries, and bangerd's peak RSS: cost should grow",
    'with bytes and entries, memory should not.',
    '',
  )
  scaling.push(
    '| method | ' + subjects.map((s) => `${short(s)} s/GiB | s/10k entries`).join(' | ') + ' |',
  )
  scaling.push('|---|' + subjects.map(() => '---|---').join('|') + '|')
  for (const key of ['cold', 'warm', 'root', 'rootless', 'floor']) {
    const cells = sections.map((sec, i) => {
      const m = sec.s[key]?.median
      const subj = subjects[i]
      return m === undefined
        ? 'n/a | n/a'
        : `${(m / 1000 / (subj.treeBytes / GiB)).toFixed(2)} | ${(m / 1000 / (subj.files / 10_000)).toFixed(2)}`
    })
    scaling.push(`| ${key} | ${cells.join(' | ')} |`)
  }
  scaling.push(
    `| bangerd peak RSS | ${sections.map((sec) => `${sec.peak ? fmtBytes(sec.peak) : 'n/a'} | —`).join(' | ')} |`,
  )
  scaling.push('')
  const half = subjects.findIndex((s) => s.label.startsWith('Synthetic half'))
  const full = subjects.findIndex((s) => s.label.startsWith('Synthetic scale'))
  if (half >= 0 && full >= 0) {
    const x = (a, b) => (a && b ? `×${(a / b).toFixed(2)}` : 'n/a')
    const [h, f] = [sections[half], sections[full]]
    scaling.push(
      `Synthetic full ÷ half: tree bytes ${x(subjects[full].treeBytes, subjects[half].treeBytes)}, ` +
        `entries ${x(subjects[full].files, subjects[half].files)}; ` +
        ['cold', 'warm', 'root', 'rootless', 'floor']
          .map((k) => `${k} ${x(f.s[k]?.median, h.s[k]?.median)}`)
          .join(', ') +
        `; bangerd peak RSS ${x(f.peak, h.peak)}.`,
      '',
    )
  }
}
const text = [...header, ...sections.map((s) => s.text), ...scaling].join('\n')
const outFile = opts.out ?? join(repo, 'bench', 'results', `${date}.md`)
mkdirSync(resolve(outFile, '..'), { recursive: true })
writeFileSync(outFile, text)
console.log(text)
log(`written to ${outFile}`)
