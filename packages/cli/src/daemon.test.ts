import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { daemonBinPath, lastLogLine } from './daemon.js'

function log(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'banger-cli-log-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'bangerd.log')
  writeFileSync(path, text)
  return path
}

describe('lastLogLine', () => {
  it('quotes the message of a stderr failure, not its indented hint', () => {
    const path = log("bangerd: EACCES: permission denied, mkdir '/x'\n  Check the permissions.\n")
    expect(lastLogLine(path, 0)).toBe("bangerd: EACCES: permission denied, mkdir '/x'")
  })

  it('reads only what this start wrote', () => {
    const old = 'bangerd: an old failure\n'
    const path = log(old + 'bangerd: the new one\n')
    expect(lastLogLine(path, Buffer.byteLength(old))).toBe('bangerd: the new one')
    expect(lastLogLine(path, Buffer.byteLength(old + 'bangerd: the new one\n'))).toBeUndefined()
  })

  it('turns a pino line into its message and error', () => {
    const path = log(
      JSON.stringify({ level: 60, msg: 'uncaught exception', err: { message: 'boom' } }) + '\n',
    )
    expect(lastLogLine(path, 0)).toBe('uncaught exception: boom')
  })

  it('cuts long lines and copes with a missing file', () => {
    expect(lastLogLine(log('x'.repeat(500)), 0)).toHaveLength(200)
    expect(lastLogLine('/nonexistent/bangerd.log', 0)).toBeUndefined()
  })
})

describe('daemonBinPath', () => {
  it('finds bangerd through @banger/daemon/package.json', () => {
    expect(daemonBinPath()).toMatch(/packages\/daemon\/dist\/bin\.js$/)
  })
})
