import { usageError } from './errors.js'

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
}

const SIZE_RE = /^(\d+(?:\.\d+)?|\.\d+)\s*(?:([kmgtp])(?:i?b)?|(b))?$/i

/**
 * Parses a size as a user types it: `4G`, `512M`, `1.5GiB`, `100k`, `1073741824`. Every unit is
 * binary (K = 1024, as qemu-img and mkfs do); `B`, `iB` and case are optional. Fractions are
 * rounded to a whole byte.
 *
 * @throws CliError `E_BAD_SIZE` (exit 2) naming the text, for anything else or a size of 0.
 */
export function parseSize(text: string): number {
  const trimmed = text.trim()
  const m = SIZE_RE.exec(trimmed)
  const hint =
    'give a number of bytes with an optional binary unit, e.g. 4G, 512M, 1.5GiB or 1073741824'
  if (!m) throw usageError(`invalid size '${text}'`, hint, 'E_BAD_SIZE')
  const unit = (m[2] ?? m[3] ?? '').toLowerCase()
  const bytes = Math.round(Number(m[1]) * UNITS[unit]!)
  if (bytes <= 0)
    throw usageError(`invalid size '${text}': must be more than 0 bytes`, hint, 'E_BAD_SIZE')
  if (!Number.isSafeInteger(bytes))
    throw usageError(`invalid size '${text}': too large`, hint, 'E_BAD_SIZE')
  return bytes
}

const BINARY = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

/** `1536` → `1.5 KiB`; one decimal below 10 units, none above; whole bytes as `512 B`. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '?'
  let value = bytes
  let i = 0
  while (value >= 1024 && i < BINARY.length - 1) {
    value /= 1024
    i++
  }
  if (i === 0) return `${bytes} B`
  const shown = value < 10 ? value.toFixed(1) : Math.round(value).toString()
  return `${shown} ${BINARY[i]}`
}
