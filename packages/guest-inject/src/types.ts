/** Contract of @banger/guest-inject. */

export type InitSystem = 'systemd' | 'sysvinit' | 'openrc' | 'busybox' | 'unknown'

export interface GuestProblem {
  code: string
  severity: 'warning' | 'error'
  message: string
}

export interface GuestInspection {
  initSystem: InitSystem
  problems: GuestProblem[]
}

export interface InjectOptions {
  /** OpenSSH public key lines installed for root. */
  authorizedKeys: string[]
  /** Default hostname (the kernel command line can override it at boot). */
  hostname?: string
  signal?: AbortSignal
}

export interface InjectResult {
  /** Absolute in-image paths written or replaced. */
  written: string[]
  inspection: GuestInspection
}
