import { existsSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { testUser } from '@banger/test-support'
import { describe, expect, it } from 'vitest'
import { bangerHome, daemonPids, errorLines, isAlive } from './helpers.js'

// The real `banger` binary, run as the unprivileged test user, against a real bangerd that it
// starts itself. Each test has its own state dir and socket, and stops its daemon at the end.

describe('banger daemon start|stop|status', () => {
  it('reports a stopped daemon, autostarts one, and stops it', async () => {
    const home = bangerHome()
    const before = await home.banger('daemon', 'status')
    expect(before.code).toBe(3)
    expect(before.stdout).toBe(`bangerd is not running (no daemon on ${home.socketPath})\n`)
    expect(existsSync(home.socketPath)).toBe(false)
    // Cross-review of issue 8: --json printed the sentence too. Same exit code, but JSON.
    const beforeJson = await home.banger('daemon', 'status', '--json')
    expect(beforeJson.code).toBe(3)
    expect(JSON.parse(beforeJson.stdout)).toEqual({ running: false, socketPath: home.socketPath })
    expect(beforeJson.stderr).toBe('')

    // Any command that needs the daemon starts it.
    const list = await home.banger('image', 'list', '--json')
    expect(list.stderr).toBe('')
    expect(list.code).toBe(0)
    expect(JSON.parse(list.stdout)).toEqual({ images: [] })

    const status = await home.banger('daemon', 'status', '--json')
    expect(status.code).toBe(0)
    const st = JSON.parse(status.stdout) as { pid: number; socketPath: string; stateDir: string }
    expect(st.socketPath).toBe(home.socketPath)
    expect(st.stateDir).toBe(home.stateDir)
    expect(isAlive(st.pid)).toBe(true)
    // It runs as the unprivileged user, in its own session (a Ctrl-C at the terminal misses it).
    const procStatus = readFileSync(`/proc/${st.pid}/status`, 'utf8')
    expect(procStatus).toMatch(new RegExp(`^Uid:\\s+${testUser().uid}\\s`, 'm'))
    const stat = readFileSync(`/proc/${st.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    expect(Number(stat[2])).toBe(st.pid) // process group id == its own pid: detached

    const human = await home.banger('daemon', 'status')
    expect(human.stdout).toMatch(new RegExp(`^bangerd is running \\(pid ${st.pid}\\)\\n`))
    expect(human.stdout).toMatch(/^images\s+0$/m)

    const again = await home.banger('daemon', 'start')
    expect(again.code).toBe(0)
    expect(again.stdout).toBe(`bangerd is already running (pid ${st.pid})\n`)

    const stop = await home.banger('daemon', 'stop')
    expect(stop.stdout).toBe(`bangerd stopped (pid ${st.pid})\n`)
    expect(stop.code).toBe(0)
    expect(isAlive(st.pid)).toBe(false)
    expect((await home.banger('daemon', 'status')).code).toBe(3)
    const stopAgain = await home.banger('daemon', 'stop')
    expect(stopAgain).toMatchObject({ code: 0, stdout: 'bangerd is not running\n' })
  })

  it('daemon start starts it explicitly, logging to the state dir', async () => {
    const home = bangerHome()
    const start = await home.banger('daemon', 'start')
    expect(start.code).toBe(0)
    const m = /^bangerd started \(pid (\d+), log (.+)\)\n$/.exec(start.stdout)
    expect(m, start.stdout + start.stderr).not.toBeNull()
    expect(m![2]).toBe(home.logPath)
    expect(existsSync(home.logPath)).toBe(true)
    expect(isAlive(Number(m![1]))).toBe(true)
    // Cross-review of issue 8: bangerd's stdout/stderr were appended to pino's JSON log. They
    // go to their own file; the log holds JSON lines only.
    expect(readFileSync(home.outputPath, 'utf8')).toMatch(
      new RegExp(`^bangerd \\S+ listening on ${home.socketPath}\n$`),
    )
    const logLines = readFileSync(home.logPath, 'utf8').trimEnd().split('\n')
    expect(logLines.length).toBeGreaterThan(0)
    for (const line of logLines) expect(() => JSON.parse(line) as unknown, line).not.toThrow()
  })

  it('starts a new daemon when the socket is stale (its daemon was SIGKILLed)', async () => {
    const home = bangerHome()
    expect((await home.banger('image', 'list')).code).toBe(0)
    const first = JSON.parse((await home.banger('daemon', 'status', '--json')).stdout) as {
      pid: number
    }
    process.kill(first.pid, 'SIGKILL')
    for (let i = 0; i < 50 && isAlive(first.pid); i++) await sleep(50)
    expect(existsSync(home.socketPath)).toBe(true) // left behind, refusing connections
    expect((await home.banger('daemon', 'status')).code).toBe(3)

    const list = await home.banger('image', 'list', '--json')
    expect(list.stderr).toBe('')
    expect(list.code).toBe(0)
    const second = JSON.parse((await home.banger('daemon', 'status', '--json')).stdout) as {
      pid: number
    }
    expect(second.pid).not.toBe(first.pid)
    expect(isAlive(second.pid)).toBe(true)
  })

  it('starts one daemon when two commands race to start it', async () => {
    const home = bangerHome()
    const [a, b] = await Promise.all([
      home.banger('kernel', 'list', '--json'),
      home.banger('image', 'list', '--json'),
    ])
    expect([a.code, a.stderr, b.code, b.stderr]).toEqual([0, '', 0, ''])
    const st = JSON.parse((await home.banger('daemon', 'status', '--json')).stdout) as {
      pid: number
    }
    await sleep(300) // a losing daemon would have exited by now
    const pids = daemonPids(home.socketPath)
    expect(pids).toEqual([st.pid])
  })

  it('reports what bangerd said when it cannot start, and where its output is', async () => {
    // A socket dir the unprivileged user cannot create: bangerd exits, and the CLI passes on
    // its one line and hint, naming the file its output went to.
    const home = bangerHome({ BANGER_SOCKET: '/banger-no/bangerd.sock' })
    const res = await home.banger('image', 'list')
    expect(res.code).toBe(1)
    const { message, hint } = errorLines(res.stderr)
    expect(message).toBe(
      'bangerd exited with code 1: cannot create /banger-no, the directory for the socket /banger-no/bangerd.sock: permission denied (EACCES)',
    )
    expect(hint).toMatch(
      /^Point BANGER_SOCKET \(or --socket\) at a path in a directory you can write/,
    )
    expect(hint).toContain(home.outputPath)
    expect(readFileSync(home.outputPath, 'utf8')).toContain(
      message.slice(message.indexOf(': ') + 2),
    )
  })

  it('fails at once when the socket dir is under /proc, instead of waiting 30 s', async () => {
    // Cross-review of issue 8: node's recursive mkdir spun forever on /proc/x, so bangerd never
    // exited and the CLI gave up after 30 s.
    const home = bangerHome({ BANGER_SOCKET: '/proc/x/bangerd.sock' })
    const started = Date.now()
    const res = await home.banger('image', 'list')
    expect(Date.now() - started).toBeLessThan(15_000)
    expect(res.code).toBe(1)
    const { message, hint } = errorLines(res.stderr)
    expect(message).toBe(
      'bangerd exited with code 1: cannot create /proc/x, the directory for the socket /proc/x/bangerd.sock: no such file or directory (ENOENT)',
    )
    expect(hint).toContain('BANGER_SOCKET')
    expect(daemonPids('/proc/x/bangerd.sock')).toEqual([])

    // The CLI's own mkdir of the logs dir had the same trap.
    const cli = bangerHome({ BANGER_STATE_DIR: '/proc/y/state' })
    const res2 = await cli.banger('image', 'list')
    expect(res2.code).toBe(1)
    expect(errorLines(res2.stderr).message).toBe(
      'cannot start bangerd: cannot create /proc/y (ENOENT)',
    )
  })
})
