/** Paths and inittab edits for the first-boot hook on inittab-driven init systems. */

export const FIRST_BOOT_PROGRAM = '/usr/local/sbin/banger-first-boot'

/** busybox init's built-in table when /etc/inittab is missing, plus banger's entry. */
const BUSYBOX_DEFAULT = [
  '# Written by banger: busybox init defaults plus the banger first-boot entry.',
  '::sysinit:/etc/init.d/rcS',
  '::askfirst:-/bin/sh',
  '::ctrlaltdel:/sbin/reboot',
  '::shutdown:/bin/umount -a -r',
  '::shutdown:/sbin/swapoff -a',
  '::restart:/sbin/init',
]

function action(line: string): string | undefined {
  if (/^\s*(#|$)/.test(line)) return undefined
  return line.split(':')[2]?.trim()
}

/**
 * Adds `entry` after the last `sysinit` line (at the top when there is none), replacing any
 * earlier banger entry, so running it twice changes nothing.
 */
function insertEntry(text: string, entry: string): string {
  const lines = text.replace(/\n$/, '').split('\n')
  const kept = lines.filter((line) => !line.includes(FIRST_BOOT_PROGRAM))
  let at = 0
  kept.forEach((line, i) => {
    if (action(line) === 'sysinit') at = i + 1
  })
  kept.splice(at, 0, entry)
  return kept.join('\n') + '\n'
}

/** busybox init runs `wait` entries after every `sysinit` entry, one at a time. */
export function busyboxInittab(existing: string | undefined): string {
  const entry = `::wait:${FIRST_BOOT_PROGRAM} busybox`
  return insertEntry(existing ?? BUSYBOX_DEFAULT.join('\n') + '\n', entry)
}

/** sysvinit runs `bootwait` entries after `sysinit` and before the runlevel's rc scripts. */
export function sysvinitInittab(existing: string): string {
  return insertEntry(existing, `bngr::bootwait:${FIRST_BOOT_PROGRAM} sysvinit`)
}
