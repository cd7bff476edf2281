import type { PullProgress, PullStage } from '@banger/daemon/rpc'
import { shortDigest } from './render.js'
import { formatBytes } from './size.js'

/** What a pull has reported so far; built by `applyProgress`, drawn by `renderProgress`. */
export interface PullView {
  stages: Array<{ stage: PullStage; startedAt: number; endedAt?: number }>
  layers: Map<number, LayerView>
  finished: boolean
}

export interface LayerView {
  index: number
  digest: string
  bytes: number
  total: number
  cached: boolean
  done: boolean
}

export const STAGE_LABELS: Record<PullStage, string> = {
  resolve: 'resolving reference',
  download: 'downloading layers',
  flatten: 'flattening layers',
  build: 'building ext4 filesystem',
  ownership: 'setting ownership',
  inject: 'injecting guest files',
  publish: 'publishing image',
  done: 'done',
}

export function newPullView(): PullView {
  return { stages: [], layers: new Map(), finished: false }
}

/** Folds one notification into the view (mutates and returns it). `now` is in milliseconds. */
export function applyProgress(view: PullView, ev: PullProgress, now: number): PullView {
  if (ev.type === 'stage') {
    const last = view.stages.at(-1)
    if (last?.stage === ev.stage) return view
    if (last && last.endedAt === undefined) last.endedAt = now
    if (ev.stage === 'done') view.finished = true
    else view.stages.push({ stage: ev.stage, startedAt: now })
  } else if (ev.type === 'layer') {
    const { index, digest, bytes, total, cached, done } = ev
    view.layers.set(index, { index, digest, bytes, total, cached, done })
  }
  return view
}

/** Ends the last stage, e.g. once the call resolved without a `done` notification. */
export function finishPullView(view: PullView, now: number): PullView {
  const last = view.stages.at(-1)
  if (last && last.endedAt === undefined) last.endedAt = now
  view.finished = true
  return view
}

const BAR_WIDTH = 24

/** `[#########---------------]`; `fraction` is clamped to 0..1. */
export function renderBar(fraction: number, width = BAR_WIDTH): string {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0
  const filled = Math.round(f * width)
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`
}

export function renderLayer(layer: LayerView): string {
  const name = `layer ${layer.index + 1} ${shortDigest(layer.digest) ?? ''}`
  if (layer.cached) return `  ${name} ${renderBar(1)} 100%  cached (${formatBytes(layer.total)})`
  const fraction = layer.total > 0 ? layer.bytes / layer.total : layer.done ? 1 : 0
  const pct = `${Math.floor(fraction * 100)}%`.padStart(4)
  const amount =
    layer.total > 0
      ? `${formatBytes(layer.bytes)} / ${formatBytes(layer.total)}`
      : formatBytes(layer.bytes)
  return `  ${name} ${renderBar(fraction)} ${pct}  ${amount}${layer.done ? '  done' : ''}`
}

/**
 * The live area of a pull on a terminal: one line per stage reached (with its time once over),
 * and under the download stage one bar per layer. Lines are cut to `width - 1` columns so the
 * terminal never wraps them, and the frame to `height - 1` rows (finished layers folded into one
 * line first), since a frame that wraps or scrolls cannot be redrawn in place.
 */
export function renderProgress(
  view: PullView,
  width: number,
  now: number,
  height = Infinity,
): string[] {
  const lines: string[] = []
  for (const s of view.stages) {
    const took = (s.endedAt ?? now) - s.startedAt
    lines.push(
      s.endedAt === undefined
        ? `${STAGE_LABELS[s.stage]} ... ${seconds(took)}`
        : `${STAGE_LABELS[s.stage]} ... done (${seconds(took)})`,
    )
    if (s.stage === 'download') {
      const layers = [...view.layers.values()].sort((a, b) => a.index - b.index)
      // A frame taller than the terminal cannot be redrawn in place (the cursor cannot move
      // above the top row): finished layers fold into one line, then the oldest rows go.
      const room = height - 1 - (view.stages.length - 1)
      const finished = layers.filter((l) => l.done || l.cached)
      if (layers.length > room && finished.length > 1) {
        const live = layers.filter((l) => !(l.done || l.cached))
        lines.push(`  ${finished.length} layers done`, ...live.map(renderLayer))
      } else lines.push(...layers.map(renderLayer))
    }
  }
  const max = Math.max(10, width - 1)
  const fitted = lines.length > height - 1 ? lines.slice(-Math.max(1, height - 1)) : lines
  return fitted.map((l) => (l.length > max ? l.slice(0, max - 1) + '…' : l))
}

/**
 * The line a notification prints when output is not a terminal, or undefined for none: stage
 * changes, each layer once when it completes (or is found cached), and warnings. Byte counts in
 * between are not printed, so a log stays short. Call before `applyProgress` for the same event.
 */
export function plainProgressLine(view: PullView, ev: PullProgress): string | undefined {
  if (ev.type === 'stage') {
    if (view.stages.at(-1)?.stage === ev.stage || ev.stage === 'done') return undefined
    return STAGE_LABELS[ev.stage]
  }
  if (ev.type === 'warning') return `warning: ${ev.message}`
  const before = view.layers.get(ev.index)
  if (before && (before.done || before.cached)) return undefined
  const name = `layer ${ev.index + 1} ${shortDigest(ev.digest) ?? ''}`
  if (ev.cached) return `  ${name} cached (${formatBytes(ev.total)})`
  if (ev.done) return `  ${name} downloaded (${formatBytes(ev.bytes)})`
  return undefined
}

/** Where progress goes: a terminal gets redrawn bars, anything else plain lines. */
export interface ProgressSink {
  update(ev: PullProgress): void
  /** The pull ended (successfully or not); leaves the terminal as it found it. */
  end(ok: boolean): void
}

export interface ProgressStream {
  write(chunk: string): boolean
  isTTY?: boolean
  columns?: number
  rows?: number
}

const ESC = '\x1b['
const REDRAW_MS = 100

/**
 * Redraws the live area in place with ANSI: cursor up over the previous frame, clear to the end
 * of the screen, write the new frame. At most one frame per 100 ms for byte counts;
 * stage changes and warnings draw at once. Warnings are printed above the live area and stay.
 */
export class TtyProgress implements ProgressSink {
  private view = newPullView()
  private drawn = 0
  private timer: NodeJS.Timeout | undefined
  private lastDraw = 0
  private cursorHidden = false

  constructor(
    private readonly out: ProgressStream,
    private readonly now: () => number = Date.now,
  ) {}

  update(ev: PullProgress): void {
    if (ev.type === 'warning') {
      this.draw([`warning: ${ev.message}`])
      return
    }
    applyProgress(this.view, ev, this.now())
    if (ev.type === 'stage') this.draw()
    else this.schedule()
  }

  end(ok: boolean): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (ok) finishPullView(this.view, this.now())
    if (this.view.stages.length) this.draw()
    if (this.cursorHidden) this.out.write(`${ESC}?25h`)
    this.cursorHidden = false
  }

  private schedule(): void {
    if (this.timer) return
    const wait = this.lastDraw + REDRAW_MS - this.now()
    if (wait <= 0) return this.draw()
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.draw()
    }, wait)
    this.timer.unref()
  }

  private draw(above: string[] = []): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.lastDraw = this.now()
    const lines = renderProgress(this.view, this.out.columns ?? 80, this.lastDraw, this.out.rows)
    let frame = this.cursorHidden ? '' : `${ESC}?25l`
    this.cursorHidden = true
    // Back to the top of the previous frame and clear everything below it: warnings above may
    // wrap over several rows, and nothing of the old frame may survive under them.
    frame += this.drawn > 0 ? `\r${ESC}${this.drawn}A${ESC}J` : `\r${ESC}J`
    for (const line of [...above, ...lines]) frame += `${line}\n`
    this.out.write(frame)
    this.drawn = lines.length
  }
}

/** One line per stage, per finished layer and per warning: for logs and pipes. */
export class PlainProgress implements ProgressSink {
  private view = newPullView()
  constructor(
    private readonly out: ProgressStream,
    private readonly now: () => number = Date.now,
  ) {}

  update(ev: PullProgress): void {
    const line = plainProgressLine(this.view, ev)
    applyProgress(this.view, ev, this.now())
    if (line !== undefined) this.out.write(line + '\n')
  }

  end(): void {}
}

/** A terminal gets `TtyProgress`, anything else `PlainProgress`. */
export function progressFor(out: ProgressStream): ProgressSink {
  return out.isTTY ? new TtyProgress(out) : new PlainProgress(out)
}
