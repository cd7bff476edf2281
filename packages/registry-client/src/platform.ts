import { BadPlatformError } from './errors.js'
import type { Platform } from './types.js'

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' }

const archAliases: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64' }
const part = /^[a-z0-9_.-]+$/

/** Parses `os/arch[/variant]` (or passes a Platform through, normalised). Throws `E_BAD_PLATFORM`. */
export function parsePlatform(input: string | Platform | undefined): Platform {
  if (input === undefined) return DEFAULT_PLATFORM
  if (typeof input !== 'string') return normalizePlatform(input)
  const parts = input.toLowerCase().split('/')
  if (parts.length < 2 || parts.length > 3 || !parts.every((p) => part.test(p)))
    throw new BadPlatformError(input)
  const [os, architecture, variant] = parts as [string, string, string | undefined]
  return normalizePlatform({ os, architecture, ...(variant !== undefined && { variant }) })
}

function normalizePlatform(p: Platform): Platform {
  const architecture = archAliases[p.architecture] ?? p.architecture
  return { os: p.os, architecture, ...(p.variant ? { variant: p.variant } : {}) }
}

/** The variant a platform means when it names none (containerd's platform matcher rules). */
function effectiveVariant(p: Platform): string {
  if (p.variant) return p.variant
  const arch = archAliases[p.architecture] ?? p.architecture
  if (arch === 'arm64') return 'v8'
  if (arch === 'arm') return 'v7'
  return ''
}

/** Whether `offered` satisfies `wanted`; a wanted platform without variant accepts any variant. */
export function platformMatches(wanted: Platform, offered: Platform): boolean {
  const offeredArch = archAliases[offered.architecture] ?? offered.architecture
  if (wanted.os !== offered.os || wanted.architecture !== offeredArch) return false
  if (!wanted.variant) return true
  return effectiveVariant(wanted) === effectiveVariant(offered)
}

/** How well `offered` fits: 1 when it is the variant the bare platform means (arm64 → v8). */
export function platformScore(wanted: Platform, offered: Platform): number {
  return effectiveVariant(wanted) === effectiveVariant(offered) ? 1 : 0
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`
}
