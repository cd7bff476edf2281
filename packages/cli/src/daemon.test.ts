import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolvePaths } from '@banger/daemon/rpc'
import { describe, expect, it, onTestFinished } from 'vitest'
import { daemonBinPath, lastDaemonError, waitForDaemon } from './daemon.js'

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'banger-cli-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function log(text: string): string {
  const path = join(tempDir(), 'bangerd.stderr.log')
  writeFileSync(path, text)
  return path
}

describe('lastDaemonError', () => {
  it('quotes the message of a stderr failure and its indented hint', () => {
    const path = log(
      'bangerd: cannot create /proc/x, the directory for the socket /proc/x/s.sock: no such file or directory (ENOENT)\n' +
        '  Point BANGER_SOCKET (or --socket) at a path in a directory you can write.\n',
    )
    expect(lastDaemonError(path, 0)).toEqual({
      message:
        'cannot create /proc/x, the directory for the socket /proc/x/s.sock: no such file or directory (ENOENT)',
      hint: 'Point BANGER_SOCKET (or --socket) at a path in a directory you can write.',
    })
  })

  it('reads only what this start wrote, and skips lines that are not bangerd: lines', () => {
    const old = 'bangerd: an old failure\n  old hint\n'
    const path = log(old + 'bangerd 0.0.0 listening on /x\nbangerd: the new one\n')
    expect(lastDaemonError(path, Buffer.byteLength(old))).toEqual({ message: 'the new one' })
    expect(lastDaemonError(log('bangerd 0.0.0 listening on /x\n'), 0)).toBeUndefined()
  })

  it('cuts long lines and copes with a missing file', () => {
    expect(lastDaemonError(log('bangerd: ' + 'x'.repeat(500)), 0)?.message).toHaveLength(300)
    expect(lastDaemonError('/nonexistent/bangerd.stderr.log', 0)).toBeUndefined()
  })
})

/** A stand-in bangerd: answers `daemon.status` with `pid`, after `drop` connections it closes unanswered. */
async function fakeDaemon(socketPath: string, pid: number, drop: number): Promise<Server> {
  let dropped = 0
  const server = createServer((socket: Socket) => {
    if (dropped++ < drop) return void socket.destroy()
    socket.setEncoding('utf8').on('data', (line: string) => {
      const { id } = JSON.parse(line) as { id: number }
      socket.write(JSON.stringify({ jsonrpc: '2.0', id, result: { pid } }) + '\n')
    })
  })
  await new Promise<void>((resolve) => server.listen(socketPath, resolve))
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return server
}

describe('waitForDaemon', () => {
  it('retries while the socket refuses, is missing, or drops the connection, until it answers', async () => {
    // Cross-review of issue 8: the socket file can exist a moment before the daemon accepts,
    // and an accepted connection is no answer yet; neither may fail a command that started it.
    const dir = tempDir()
    const paths = resolvePaths({ HOME: dir, BANGER_SOCKET: join(dir, 'd.sock') })
    writeFileSync(paths.socketPath, '') // a file that is not a listening socket: ECONNREFUSED
    const started = Date.now()
    setTimeout(() => {
      unlinkSync(paths.socketPath) // then missing (ENOENT) for a moment
      setTimeout(() => void fakeDaemon(paths.socketPath, 4242, 2), 150)
    }, 250)
    const ready = await waitForDaemon(paths, { deadline: Date.now() + 10_000 })
    expect(ready).toMatchObject({ pid: 4242 })
    expect(Date.now() - started).toBeGreaterThanOrEqual(400)
    if (typeof ready === 'object') ready.client.close()
  })

  it("reports 'exited' once the process is gone and nothing answers, 'timeout' at the deadline", async () => {
    const dir = tempDir()
    const paths = resolvePaths({ HOME: dir, BANGER_SOCKET: join(dir, 'd.sock') })
    let exited: string | undefined
    setTimeout(() => (exited = 'exited with code 1'), 200)
    expect(
      await waitForDaemon(paths, { deadline: Date.now() + 10_000, exited: () => exited }),
    ).toBe('exited')
    expect(await waitForDaemon(paths, { deadline: Date.now() + 300 })).toBe('timeout')
  })
})

describe('daemonBinPath', () => {
  it('finds bangerd through @banger/daemon/package.json', () => {
    expect(daemonBinPath()).toMatch(/packages\/daemon\/dist\/bin\.js$/)
  })
})
