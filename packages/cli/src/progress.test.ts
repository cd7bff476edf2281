import type { PullProgress } from '@banger/daemon/rpc'
import { describe, expect, it } from 'vitest'
import {
  applyProgress,
  newPullView,
  PlainProgress,
  renderBar,
  renderProgress,
  TtyProgress,
} from './progress.js'

const D1 = 'sha256:1111111111111111111111111111111111111111111111111111111111111111'
const D2 = 'sha256:2222222222222222222222222222222222222222222222222222222222222222'
const stage = (s: Extract<PullProgress, { type: 'stage' }>['stage']): PullProgress => ({
  requestId: 1,
  type: 'stage',
  stage: s,
})
const layer = (
  index: number,
  digest: string,
  bytes: number,
  total: number,
  extra: { cached?: boolean; done?: boolean } = {},
): PullProgress => ({
  requestId: 1,
  type: 'layer',
  index,
  digest,
  bytes,
  total,
  cached: extra.cached ?? false,
  done: extra.done ?? false,
})

describe('renderBar', () => {
  it('fills in proportion and clamps', () => {
    expect(renderBar(0, 10)).toBe('[----------]')
    expect(renderBar(0.5, 10)).toBe('[#####-----]')
    expect(renderBar(2, 10)).toBe('[##########]')
    expect(renderBar(Number.NaN, 4)).toBe('[----]')
  })
})

describe('renderProgress', () => {
  it('shows stages with their times and a bar per layer under download', () => {
    const view = newPullView()
    applyProgress(view, stage('resolve'), 0)
    applyProgress(view, stage('download'), 1500)
    applyProgress(view, layer(1, D2, 0, 0, { cached: true, done: true }), 1600)
    applyProgress(view, layer(0, D1, 1024 * 1024, 4 * 1024 * 1024), 1700)
    const lines = renderProgress(view, 120, 2000)
    expect(lines).toEqual([
      'resolving reference ... done (1.5s)',
      'downloading layers ... 0.5s',
      '  layer 1 sha256:111111111111 [######------------------]  25%  1.0 MiB / 4.0 MiB',
      '  layer 2 sha256:222222222222 [########################] 100%  cached (0 B)',
    ])
    applyProgress(view, layer(0, D1, 4 * 1024 * 1024, 4 * 1024 * 1024, { done: true }), 2500)
    applyProgress(view, stage('flatten'), 2600)
    const after = renderProgress(view, 120, 3000)
    expect(after[1]).toBe('downloading layers ... done (1.1s)')
    expect(after[2]).toMatch(/\[#{24}\] 100% {2}4\.0 MiB \/ 4\.0 MiB {2}done$/)
    expect(after[4]).toBe('flattening layers ... 0.4s')
  })

  it('fits the frame into the terminal height, folding finished layers first', () => {
    const view = newPullView()
    applyProgress(view, stage('resolve'), 0)
    applyProgress(view, stage('download'), 0)
    for (let i = 0; i < 20; i++) applyProgress(view, layer(i, D1, 5, 10, { done: i < 18 }), 0)
    const folded = renderProgress(view, 120, 0, 10)
    expect(folded).toHaveLength(5)
    expect(folded[2]).toBe('  18 layers done')
    expect(folded[3]).toMatch(/^ {2}layer 19 /)
    expect(folded[4]).toMatch(/^ {2}layer 20 /)
    // Nothing finished to fold: the oldest rows go.
    for (let i = 0; i < 20; i++) applyProgress(view, layer(i, D1, 5, 10), 0)
    const cut = renderProgress(view, 120, 0, 10)
    expect(cut).toHaveLength(9)
    expect(cut.at(-1)).toMatch(/^ {2}layer 20 /)
    expect(renderProgress(view, 120, 0)).toHaveLength(22)
  })

  it('cuts lines to the terminal width so they never wrap', () => {
    const view = newPullView()
    applyProgress(view, stage('download'), 0)
    applyProgress(view, layer(0, D1, 1, 2), 0)
    for (const line of renderProgress(view, 40, 0)) expect(line.length).toBeLessThanOrEqual(39)
  })
})

/** ESC spelled out, so expectations read (and lint) as plain text. */
const visible = (s: string | undefined) => (s ?? '').replaceAll('\x1b', '<ESC>')

function collect() {
  const chunks: string[] = []
  return {
    chunks,
    stream: { write: (c: string) => (chunks.push(c), true), isTTY: true, columns: 80 },
  }
}

describe('TtyProgress', () => {
  it('redraws in place: cursor up over the previous frame, cleared below, new frame', () => {
    const { chunks, stream } = collect()
    let now = 0
    const p = new TtyProgress(stream, () => now)
    p.update(stage('resolve'))
    expect(visible(chunks[0])).toBe('<ESC>[?25l\r<ESC>[Jresolving reference ... 0.0s\n')
    now = 1000
    p.update(stage('download'))
    expect(visible(chunks[1])).toBe(
      '\r<ESC>[1A<ESC>[Jresolving reference ... done (1.0s)\ndownloading layers ... 0.0s\n',
    )
    now = 2000
    p.update(layer(0, D1, 10, 100))
    expect(visible(chunks[2])).toMatch(
      /^\r<ESC>\[2A<ESC>\[J.*\n {2}layer 1 sha256:111111111111 \[##-+\] {2}10%/s,
    )
    // Byte updates within 100 ms of a frame wait for the next one.
    now = 2050
    p.update(layer(0, D1, 50, 100))
    expect(chunks).toHaveLength(3)
    now = 2200
    p.update(stage('flatten'))
    expect(chunks[3]).toMatch(/50%/)
    p.update({ requestId: 1, type: 'warning', code: 'W', message: 'odd file skipped' })
    // The warning is printed above the live area and stays.
    expect(visible(chunks[4])).toMatch(/^\r<ESC>\[4A<ESC>\[Jwarning: odd file skipped\nresolving/)
    p.end(true)
    expect(visible(chunks.slice(-2).join(''))).toMatch(
      /flattening layers \.\.\. done \(0\.0s\)\n<ESC>\[\?25h$/,
    )
  })
})

describe('PlainProgress', () => {
  it('prints stages, finished layers and warnings, not every byte', () => {
    const { chunks, stream } = collect()
    const p = new PlainProgress(stream)
    for (const ev of [
      stage('resolve'),
      stage('download'),
      layer(0, D1, 10, 100),
      layer(0, D1, 50, 100),
      layer(0, D1, 100, 100, { done: true }),
      layer(0, D1, 100, 100, { done: true }),
      layer(1, D2, 2048, 2048, { cached: true, done: true }),
      { requestId: 1, type: 'warning', code: 'W', message: 'careful' } as PullProgress,
      stage('flatten'),
      stage('done'),
    ])
      p.update(ev)
    expect(chunks.join('')).toBe(
      [
        'resolving reference',
        'downloading layers',
        '  layer 1 sha256:111111111111 downloaded (100 B)',
        '  layer 2 sha256:222222222222 cached (2.0 KiB)',
        'warning: careful',
        'flattening layers',
        '',
      ].join('\n'),
    )
    expect(chunks.join('')).not.toContain('\x1b')
  })
})
