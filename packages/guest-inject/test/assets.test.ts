import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { run } from '@banger/test-support'
import { describe, expect, it } from 'vitest'

const ASSETS = resolve(import.meta.dirname, '../assets')
const SCRIPT = join(ASSETS, 'first-boot.sh')

describe('assets', () => {
  it('are shellcheck-clean POSIX sh', async () => {
    const files = readdirSync(ASSETS).filter((name) => !name.endsWith('.service'))
    expect(files.sort()).toEqual(['banger-first-boot.openrc', 'first-boot.sh', 'udhcpc.sh'])
    const result = await run('shellcheck', ['--shell=sh', ...files.map((f) => join(ASSETS, f))], {
      check: false,
    })
    expect(result.stdout + result.stderr).toBe('')
    expect(result.code).toBe(0)
  })

  it('the systemd unit runs the program before sshd and is wanted by multi-user.target', () => {
    const unit = readFileSync(join(ASSETS, 'banger-first-boot.service'), 'utf8')
    expect(unit).toMatch(/^Before=.*\bssh\.service\b.*\bsshd\.service\b/m)
    expect(unit).toMatch(/^Type=oneshot$/m)
    expect(unit).toMatch(/^WantedBy=multi-user\.target$/m)
  })
})

/** Sources first-boot.sh without running it, sets the command line and runs `body`. */
async function withScript(shell: string[], cmdline: string, body: string): Promise<string> {
  const script = `. ${SCRIPT}\nCMDLINE='${cmdline}'\n${body}`
  const result = await run(shell[0]!, [...shell.slice(1), '-c', script], {
    env: { ...process.env, BANGER_FIRST_BOOT_NO_MAIN: '1' },
  })
  return result.stdout
}

const SHELLS = [['dash'], ['busybox', 'sh']]

describe.each(SHELLS)('first-boot.sh under %s', (...shell) => {
  const show =
    'parse_ip_arg; echo "$net_mode|$ip_client|$ip_prefix|$ip_gw|$ip_host|$ip_dev|$ip_dns0|$ip_dns1"'

  it('takes DHCP when there is no ip= or it asks for DHCP', async () => {
    expect(await withScript(shell, 'root=/dev/vda rw', show)).toBe('dhcp|||||||\n')
    expect(await withScript(shell, 'ip=dhcp', show)).toBe('dhcp|||||||\n')
    expect(await withScript(shell, 'ip=::::myname:eth1:dhcp', show)).toBe(
      'dhcp||24||myname|eth1||\n',
    )
  })

  it('parses a static ip= with a dotted netmask, hostname and DNS servers', async () => {
    expect(
      await withScript(
        shell,
        'quiet ip=10.1.2.3::10.1.2.1:255.255.240.0:vm1::off:1.1.1.1:8.8.8.8 rw',
        show,
      ),
    ).toBe('static|10.1.2.3|20|10.1.2.1|vm1||1.1.1.1|8.8.8.8\n')
    expect(await withScript(shell, 'ip=192.168.5.9/28::192.168.5.1', show)).toBe(
      'static|192.168.5.9|28|192.168.5.1||||\n',
    )
  })

  it('leaves the network alone with ip=off, and the last ip= wins', async () => {
    expect(await withScript(shell, 'ip=10.0.0.2:::::: ip=off', show)).toBe('off|||||||\n')
  })

  it('reads banger.hostname and survives glob characters on the command line', async () => {
    expect(
      await withScript(shell, 'init=/* banger.hostname=box-7', 'cmdline_value banger.hostname'),
    ).toBe('box-7')
  })
})
