import { posix } from 'node:path'
import type { ImageReader } from './debugfs.js'
import { type InodeInfo, type Resolution } from './debugfs.js'
import type { GuestInspection, GuestProblem, InitSystem } from './types.js'

/** Problem codes in GuestInspection.problems. Stable: the daemon and users match on them. */
export const PROBLEM_CODES = {
  noInit: 'GUEST_NO_INIT',
  initNotExecutable: 'GUEST_INIT_NOT_EXECUTABLE',
  noShell: 'GUEST_NO_SHELL',
  rootMode: 'GUEST_ROOT_MODE',
  rootOwner: 'GUEST_ROOT_OWNER',
  unknownInit: 'GUEST_UNKNOWN_INIT',
  noSshd: 'GUEST_NO_SSHD',
  noDhcpClient: 'GUEST_NO_DHCP_CLIENT',
} as const

/** What injectGuest needs to know beyond the public inspection. */
export interface GuestFacts {
  inspection: GuestInspection
  /** root's home directory from /etc/passwd (default /root). */
  rootHome: string
}

const OPENRC_MARKERS = ['/sbin/openrc', '/usr/sbin/openrc', '/sbin/openrc-run', '/etc/runlevels']
const SSHD_PATHS = ['/usr/sbin/sshd', '/usr/local/sbin/sshd', '/sbin/sshd']
const DHCP_CLIENTS = [
  '/lib/systemd/systemd-networkd',
  '/usr/lib/systemd/systemd-networkd',
  '/sbin/dhclient',
  '/usr/sbin/dhclient',
  '/sbin/udhcpc',
  '/usr/sbin/udhcpc',
  '/bin/busybox',
  '/usr/bin/busybox',
  '/sbin/dhcpcd',
  '/usr/sbin/dhcpcd',
]

function isExecutableFile(info: InodeInfo): boolean {
  return info.type === 'file' && (info.mode & 0o111) !== 0
}

function octal(mode: number): string {
  return '0' + mode.toString(8).padStart(3, '0')
}

/** Whether any of the paths exists, following symlinks (one round trip unless links). */
async function existsAny(reader: ImageReader, paths: string[]): Promise<boolean> {
  // debugfs follows symlinks in the directories of a path, not in its last component.
  const infos = await reader.lstatMany(paths)
  if (infos.some((info) => info && info.type !== 'symlink')) return true
  for (const [i, info] of infos.entries()) {
    if (info && !('missing' in (await reader.resolve(paths[i]!)))) return true
  }
  return false
}

/** The init system, judged from what /sbin/init resolves to and the files beside it. */
async function detectInit(reader: ImageReader, init: Resolution): Promise<InitSystem> {
  if ('missing' in init) return 'unknown'
  const name = posix.basename(init.path)
  const hasOpenrc = await existsAny(reader, OPENRC_MARKERS)
  if (name === 'systemd') return 'systemd'
  if (name === 'openrc-init') return 'openrc'
  // Alpine boots busybox init, whose inittab runs openrc.
  if (name === 'busybox') return hasOpenrc ? 'openrc' : 'busybox'
  if (hasOpenrc) return 'openrc'
  const inittab = await reader.resolve('/etc/inittab')
  if (!('missing' in inittab) && inittab.info.type === 'file') return 'sysvinit'
  return 'unknown'
}

function rootHomeFrom(passwd: string | undefined): string {
  for (const line of (passwd ?? '').split('\n')) {
    const fields = line.split(':')
    if (fields[0] === 'root' && fields.length >= 7) {
      const home = fields[5]!
      if (home.startsWith('/') && !/["\\\n\r\0]/.test(home)) return posix.normalize(home)
    }
  }
  return '/root'
}

/** Inspects an opened image; the shared core of inspectGuest and injectGuest. */
export async function inspectImage(reader: ImageReader): Promise<GuestFacts> {
  const problems: GuestProblem[] = []
  const add = (code: string, severity: GuestProblem['severity'], message: string): void => {
    problems.push({ code, severity, message })
  }

  const root = await reader.lstat('/')
  if (root && root.mode !== 0o755)
    add(
      PROBLEM_CODES.rootMode,
      'warning',
      `the root directory has mode ${octal(root.mode)}, expected 0755: services running as other users will fail`,
    )
  if (root && (root.uid !== 0 || root.gid !== 0))
    add(
      PROBLEM_CODES.rootOwner,
      'warning',
      `the root directory is owned by ${root.uid}:${root.gid}, expected 0:0`,
    )

  const init = await reader.resolve('/sbin/init')
  if ('missing' in init) {
    add(
      PROBLEM_CODES.noInit,
      'error',
      `no /sbin/init (${init.reason}): the kernel has nothing to run; use an image with an init system (systemd-sysv, busybox, openrc)`,
    )
  } else if (!isExecutableFile(init.info)) {
    add(
      PROBLEM_CODES.initNotExecutable,
      'error',
      `/sbin/init resolves to ${init.path}, which is not an executable file (mode ${octal(init.info.mode)}, ${init.info.type})`,
    )
  }

  const shell = await reader.resolve('/bin/sh')
  if ('missing' in shell || !isExecutableFile(shell.info)) {
    add(
      PROBLEM_CODES.noShell,
      'error',
      'no executable /bin/sh: the first-boot program (and most init scripts) cannot run',
    )
  }

  const initSystem = await detectInit(reader, init)
  if (initSystem === 'unknown' && !('missing' in init)) {
    add(
      PROBLEM_CODES.unknownInit,
      'warning',
      `unknown init system (/sbin/init is ${init.path}): the first-boot program is installed but nothing runs it, so no network or SSH set-up`,
    )
  }

  if (!(await existsAny(reader, SSHD_PATHS))) {
    add(
      PROBLEM_CODES.noSshd,
      'warning',
      'no sshd in the image: the first boot installs openssh-server with the package manager, which needs network access to a package mirror',
    )
  }
  if (!(await existsAny(reader, DHCP_CLIENTS))) {
    add(
      PROBLEM_CODES.noDhcpClient,
      'warning',
      'no DHCP client (systemd-networkd, dhclient, udhcpc, dhcpcd): pass a static address with ip= on the kernel command line',
    )
  }

  const rootHome = rootHomeFrom(await reader.readText('/etc/passwd'))
  return { inspection: { initSystem, problems }, rootHome }
}
