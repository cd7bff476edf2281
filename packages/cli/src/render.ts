import type { DaemonStatus, ImageRecord, KernelRecord } from '@banger/daemon/rpc'
import { formatBytes } from './size.js'

/**
 * Aligns rows under a header, two spaces between columns, no trailing spaces. Cells are plain
 * text (no ANSI), so `length` is their width.
 */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)].join('\n') + '\n'
}

/** `key  value` lines, keys aligned; undefined values are left out. */
export function renderFields(fields: Array<[string, string | undefined]>): string {
  const present = fields.filter((f): f is [string, string] => f[1] !== undefined && f[1] !== '')
  const width = Math.max(...present.map(([k]) => k.length))
  return present.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n'
}

/** `sha256:0123…` → `sha256:0123456789ab` (12 hex digits, as docker shows them). */
export function shortDigest(digest: string | undefined): string | undefined {
  if (!digest) return undefined
  const [algo, hex] = digest.includes(':') ? digest.split(':', 2) : ['', digest]
  return `${algo ? algo + ':' : ''}${hex!.slice(0, 12)}`
}

function kernelLabel(kernel: ImageRecord['kernel']): string {
  if (!kernel) return '-'
  return kernel.name ?? kernel.kernelPath
}

/** `image list`: one row per image; a broken image says so in STATUS. */
export function renderImageList(images: ImageRecord[]): string {
  if (images.length === 0) return 'no images (pull one with: banger image pull REF)\n'
  return renderTable(
    ['NAME', 'STATUS', 'SIZE', 'KERNEL', 'SOURCE', 'CREATED'],
    images.map((img) => [
      img.name,
      img.status,
      formatBytes(img.sizeBytes),
      kernelLabel(img.kernel),
      img.sourceRef ?? (img.managed ? '-' : 'registered'),
      img.createdAt,
    ]),
  )
}

/** `image show`: every field of the record, one per line. */
export function renderImage(img: ImageRecord): string {
  return renderFields([
    ['name', img.name],
    ['id', img.id],
    ['status', img.status],
    ['problem', img.problem],
    ['managed', img.managed ? 'yes' : 'no (registered; banger never deletes its files)'],
    ['source', img.sourceRef],
    ['digest', img.manifestDigest],
    ['platform', img.platform],
    ['size', `${formatBytes(img.sizeBytes)} (${img.sizeBytes} bytes)`],
    ['dir', img.dir],
    ['rootfs', img.rootfsPath],
    ['kernel', img.kernel?.name],
    ['kernel path', img.kernel?.kernelPath],
    ['initrd', img.kernel?.initrdPath],
    ['modules', img.kernel?.modulesDir],
    ['injected', img.injectedFiles.length ? img.injectedFiles.join(', ') : undefined],
    ['created', img.createdAt],
  ])
}

/** `kernel list`: one row per catalog entry; `*` marks the default. */
export function renderKernelList(kernels: KernelRecord[]): string {
  if (kernels.length === 0)
    return 'no kernels (add one with: banger kernel add NAME --kernel-path F)\n'
  return renderTable(
    ['NAME', 'DEFAULT', 'KERNEL', 'INITRD', 'MODULES'],
    kernels.map((k) => [
      k.name,
      k.isDefault ? '*' : '',
      k.kernelPath,
      k.initrdPath ?? '-',
      k.modulesDir ?? '-',
    ]),
  )
}

export function renderKernel(k: KernelRecord): string {
  return renderFields([
    ['name', k.name],
    ['default', k.isDefault ? 'yes' : 'no'],
    ['kernel', k.kernelPath],
    ['initrd', k.initrdPath],
    ['modules', k.modulesDir],
    ['created', k.createdAt],
  ])
}

/** `1h 2m 3s`, `4m 5s`, `6s`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const parts = []
  if (h) parts.push(`${h}h`)
  if (h || m) parts.push(`${m}m`)
  parts.push(`${s % 60}s`)
  return parts.join(' ')
}

export function renderStatus(st: DaemonStatus): string {
  return (
    `bangerd is running (pid ${st.pid})\n` +
    renderFields([
      ['version', st.version],
      ['uptime', formatDuration(st.uptimeSeconds)],
      ['socket', st.socketPath],
      ['state', st.stateDir],
      ['cache', st.cacheDir],
      ['images', String(st.images)],
      ['kernels', String(st.kernels)],
      ['pulls', `${st.pullsInProgress} in progress`],
    ])
  )
}
