import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  buildImage,
  pushImage,
  runAsUser,
  startRegistry,
  type TestRegistry,
} from '@banger/test-support'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { BANGER_BIN, bangerHome, throttledProxy } from './helpers.js'

// A real terminal: tmux runs `banger image pull` as the unprivileged user in a 120x30 pane, and
// capture-pane reads the screen while the pull runs. The registry sits behind a throttling proxy
// so two 3 MiB layers take a few seconds and the bars can be seen moving.

let registry: TestRegistry
let ref: string

beforeAll(async () => {
  registry = await startRegistry()
  const image = await buildImage([
    (root) => {
      mkdirSync(join(root, 'srv'), { recursive: true })
      writeFileSync(join(root, 'srv', 'a'), randomBytes(3 * 1024 * 1024))
    },
    (root) => writeFileSync(join(root, 'srv', 'b'), randomBytes(3 * 1024 * 1024)),
  ])
  ref = await pushImage(image, registry, 'tty:v1')
})

afterAll(async () => {
  await registry?.stop()
})

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

describe('progress on a real terminal', () => {
  it('redraws per-layer bars in place while the layers download', async () => {
    const proxy = await throttledProxy(registry.host, 2 * 1024 * 1024)
    onTestFinished(() => proxy.close())
    const home = bangerHome()
    const kernel = home.file('vmlinuz', 'not really a kernel\n')
    expect(
      (await home.banger('kernel', 'add', 'k', '--kernel-path', kernel, '--default')).code,
    ).toBe(0)

    const tmux = (...args: string[]) =>
      runAsUser('tmux', ['-L', `banger-cli-${process.pid}`, ...args], {
        env: home.env,
        cwd: home.dir,
      })
    onTestFinished(async () => {
      await tmux('kill-server')
    })
    const pullRef = ref.replace(registry.host, proxy.host)
    const script = `${shellQuote(process.execPath)} ${shellQuote(BANGER_BIN)} image pull ${shellQuote(pullRef)}; echo "EXIT=$?"; sleep 600`
    const started = await tmux('new-session', '-d', '-x', '120', '-y', '30', '-s', 'pull', script)
    expect(started.code, started.stderr).toBe(0)

    const screens: string[] = []
    let cursorMidPull: string | undefined
    for (let i = 0; i < 300; i++) {
      const cap = await tmux('capture-pane', '-p', '-J', '-t', 'pull')
      if (cursorMidPull === undefined && /\] +[1-9]\d?%/.test(cap.stdout))
        cursorMidPull = (await tmux('display-message', '-p', '-t', 'pull', '#{cursor_flag}')).stdout
      if (cap.stdout !== screens.at(-1)) screens.push(cap.stdout)
      if (cap.stdout.includes('EXIT=')) break
      await sleep(150)
    }
    // DUMP_SCREENS=/tmp/screens.txt keeps what the terminal showed, for a look by eye.
    if (process.env.DUMP_SCREENS) writeFileSync(process.env.DUMP_SCREENS, screens.join('\n-----\n'))
    const last = screens.at(-1)!
    expect(last, screens.join('\n-----\n')).toMatch(/EXIT=0/)

    // Percentages per layer over time: some frame shows a layer part-way, and they only grow.
    const percents = screens.map((s) =>
      [...s.matchAll(/^ {2}layer (\d) sha256:[0-9a-f]{12} \[[#-]{24}\] +(\d+)%/gm)].map((m) => [
        Number(m[1]),
        Number(m[2]),
      ]),
    )
    const partway = percents.flat().filter(([, pct]) => pct! > 0 && pct! < 100)
    expect(partway.length, screens.join('\n-----\n')).toBeGreaterThan(0)
    for (const layer of [1, 2]) {
      const seen = percents
        .map((p) => p.find(([l]) => l === layer)?.[1])
        .filter((x) => x !== undefined)
      expect(seen.length).toBeGreaterThan(0)
      expect(seen).toEqual([...seen].sort((a, b) => a - b))
      expect(seen.at(-1)).toBe(100)
    }
    const distinctBars = new Set(screens.flatMap((s) => s.match(/\[[#-]{24}\]/g) ?? []))
    expect(distinctBars.size).toBeGreaterThan(2)

    // Redrawn in place: the final screen holds each stage once, finished, and no stray codes.
    for (const label of ['resolving reference', 'downloading layers', 'building ext4 filesystem'])
      expect(
        last.match(new RegExp(`^${label} \\.\\.\\. done \\(\\d+\\.\\ds\\)$`, 'gm')),
      ).toHaveLength(1)
    expect(last.match(/^ {2}layer 1 /gm)).toHaveLength(1)
    // Warnings (this image has no init, shell, sshd or DHCP client) stay above the live area,
    // each once and whole, even when they wrap: nothing of an older frame is left on their rows.
    const warnings = last.split('\n').filter((l) => l.startsWith('warning: '))
    expect(warnings.length).toBeGreaterThan(0)
    expect(new Set(warnings).size).toBe(warnings.length)
    for (const w of warnings) expect(w).not.toMatch(/\.\.\. (done|\d)/)
    expect(last.indexOf('warning: ')).toBeLessThan(last.indexOf('resolving reference'))
    expect(last).toMatch(/^pulled \S+ as image tty-v1: \S+rootfs\S* \(/m)
    expect(last).not.toContain('\x1b')
    // The cursor, hidden while drawing, is visible again.
    expect(cursorMidPull).toBe('0\n')
    expect((await tmux('display-message', '-p', '-t', 'pull', '#{cursor_flag}')).stdout).toBe('1\n')
  })
})

describe('Ctrl-C on a real terminal', () => {
  it('cancels the pull with one line, exit 130, and the daemon keeps running', async () => {
    const proxy = await throttledProxy(registry.host, 512 * 1024)
    onTestFinished(() => proxy.close())
    const home = bangerHome()
    const kernel = home.file('vmlinuz', 'not really a kernel\n')
    expect(
      (await home.banger('kernel', 'add', 'k', '--kernel-path', kernel, '--default')).code,
    ).toBe(0)
    const status = JSON.parse((await home.banger('daemon', 'status', '--json')).stdout) as {
      pid: number
    }
    const tmux = (...args: string[]) =>
      runAsUser('tmux', ['-L', `banger-cli-int-${process.pid}`, ...args], {
        env: home.env,
        cwd: home.dir,
      })
    onTestFinished(async () => {
      await tmux('kill-server')
    })
    const pullRef = ref.replace(registry.host, proxy.host)
    // The shell traps SIGINT (a caught signal is reset for its children) so it lives on to
    // print banger's exit code.
    const script = `trap : INT; ${shellQuote(process.execPath)} ${shellQuote(BANGER_BIN)} image pull ${shellQuote(pullRef)}; echo "EXIT=$?"; sleep 600`
    expect(
      (await tmux('new-session', '-d', '-x', '120', '-y', '30', '-s', 'pull', script)).code,
    ).toBe(0)
    let screen = ''
    for (let i = 0; i < 200 && !/\] +[1-9]\d?%/.test(screen); i++) {
      await sleep(100)
      screen = (await tmux('capture-pane', '-p', '-J', '-t', 'pull')).stdout
    }
    expect(screen).toMatch(/\] +[1-9]\d?%/) // mid-download
    await tmux('send-keys', '-t', 'pull', 'C-c')
    for (let i = 0; i < 100 && !screen.includes('EXIT='); i++) {
      await sleep(100)
      screen = (await tmux('capture-pane', '-p', '-J', '-t', 'pull')).stdout
    }
    expect(screen).toMatch(
      new RegExp(`^banger: pull of ${pullRef.replace(/[.]/g, '\\.')} cancelled$`, 'm'),
    )
    expect(screen).toMatch(/^EXIT=130$/m)
    expect(screen).not.toMatch(/^\s+at /m)
    expect((await tmux('display-message', '-p', '-t', 'pull', '#{cursor_flag}')).stdout).toBe('1\n')
    // The terminal's SIGINT went to the foreground process group only: the daemon runs on, and
    // has nothing half-built to show.
    const after = JSON.parse((await home.banger('daemon', 'status', '--json')).stdout) as {
      pid: number
    }
    expect(after.pid).toBe(status.pid)
    expect(JSON.parse((await home.banger('image', 'list', '--json')).stdout)).toEqual({
      images: [],
    })
  })
})
