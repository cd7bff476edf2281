import { describe, expect, it } from 'vitest'
import { busyboxInittab, sysvinitInittab } from './inittab.js'

describe('busyboxInittab', () => {
  it('puts the entry after the last sysinit line, ignoring comments', () => {
    const text = '# ::sysinit:commented\n::sysinit:/a\n::sysinit:/b\n::respawn:/sbin/getty\n'
    expect(busyboxInittab(text)).toBe(
      '# ::sysinit:commented\n::sysinit:/a\n::sysinit:/b\n' +
        '::wait:/usr/local/sbin/banger-first-boot busybox\n::respawn:/sbin/getty\n',
    )
  })

  it('puts the entry first when there is no sysinit line, and keeps one entry when re-run', () => {
    const once = busyboxInittab('::respawn:/bin/sh')
    expect(once).toBe('::wait:/usr/local/sbin/banger-first-boot busybox\n::respawn:/bin/sh\n')
    expect(busyboxInittab(once)).toBe(once)
  })

  it("writes busybox's built-in defaults when there is no inittab", () => {
    const text = busyboxInittab(undefined)
    expect(text.split('\n').slice(1, 4)).toEqual([
      '::sysinit:/etc/init.d/rcS',
      '::wait:/usr/local/sbin/banger-first-boot busybox',
      '::askfirst:-/bin/sh',
    ])
  })
})

describe('sysvinitInittab', () => {
  it('adds a bootwait entry after sysinit, before the runlevel rc entries', () => {
    const text = 'id:2:initdefault:\nsi::sysinit:/etc/init.d/rcS\nl2:2:wait:/etc/init.d/rc 2\n'
    const out = sysvinitInittab(text)
    expect(out.split('\n')[2]).toBe('bngr::bootwait:/usr/local/sbin/banger-first-boot sysvinit')
    expect(sysvinitInittab(out)).toBe(out)
  })
})
