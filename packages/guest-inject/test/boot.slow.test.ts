import { execFileSync } from 'node:child_process'
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  mkdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  bootVm,
  debianImage,
  run,
  testUser,
  userTempDir,
  type BootVmOptions,
  type Vm,
} from '@banger/test-support'
import { describe, expect, it, onTestFinished } from 'vitest'
import { injectAsUser, mkfsAsUser } from './helpers.js'

/*
 * The heart of issue 7: the harness's Debian (debootstrap minbase bookworm + systemd-sysv +
 * openssh-server, host keys baked in) becomes an ext4 with plain mkfs.ext4 -d, injectGuest runs
 * as the unprivileged user, and the image boots under qemu with the host's Debian kernel and
 * initrd to an sshd that lets the test key in and presents a host key of its own.
 *
 * qemu runs through the harness's bootVm: KVM only when a probe boot under it works (on the
 * machines this was written on, /dev/kvm existed but did not boot), else TCG;
 * BANGER_TEST_ACCEL=kvm|tcg forces one. The serial log is kept (and its path printed) on failure.
 */

const KERNEL_RELEASE = readdirSync('/boot')
  .filter((name) => name.startsWith('vmlinuz-'))
  .map((name) => name.slice('vmlinuz-'.length))
  .sort()
  .pop()

const BOOT_TIMEOUT_MS = 5 * 60_000

/** Boots with the host's kernel and initrd; stopped after the test, logs kept if it failed. */
async function boot(
  image: string,
  options: Pick<BootVmOptions, 'appendExtra' | 'guestAddress'> = {},
): Promise<Vm> {
  const vm = await bootVm({
    rootfs: image,
    kernel: `/boot/vmlinuz-${KERNEL_RELEASE}`,
    initrd: `/boot/initrd.img-${KERNEL_RELEASE}`,
    timeoutMs: BOOT_TIMEOUT_MS,
    ...options,
  })
  onTestFinished(async (ctx) => {
    const failed = ctx.task.result?.state === 'fail'
    if (failed)
      console.error(
        `qemu (${vm.accel}) stderr: ${vm.qemuStderr().trim() || '(none)'}\n` +
          `serial log kept at ${vm.serialLogPath}, tail:\n${vm.serialTail()}`,
      )
    await vm.stop({ keepFiles: failed })
  })
  return vm
}

/** The base64 blob of the ed25519 key in a known_hosts file or a .pub file. */
function ed25519Blob(text: string): string {
  const m = /ssh-ed25519 (\S+)/.exec(text)
  if (!m) throw new Error(`no ssh-ed25519 key in ${text}`)
  return m[1]!
}

/** A scratch dir removed after the test (the serial logs live in each Vm's own dir). */
function workDir(): string {
  const work = mkdtempSync(join(tmpdir(), 'guest-inject-boot-'))
  onTestFinished(() => rmSync(work, { recursive: true, force: true }))
  return work
}

/**
 * The harness's Debian image as a root-owned tree. Test-only: umoci unpacks the OCI image as
 * root; the pipeline (registry → flatten → ext4-build → ownership) replaces this in the repo's
 * end-to-end boot test.
 */
async function debianRootfs(): Promise<{ work: string; rootfs: string }> {
  const work = workDir()
  const oci = await debianImage()
  const bundle = join(work, 'bundle')
  await run('umoci', ['unpack', '--image', `${oci.layout}:${oci.tag}`, bundle])
  return { work, rootfs: join(bundle, 'rootfs') }
}

/** A 2 GiB ext4 made from the tree with plain mkfs.ext4 -d, owned by the test user. */
async function ext4From(rootfs: string): Promise<string> {
  const user = testUser()
  const dir = userTempDir('guest-inject-boot')
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const image = join(dir, 'debian.ext4')
  await run('truncate', ['-s', '2G', image])
  await run('mkfs.ext4', ['-q', '-F', '-d', rootfs, image])
  chownSync(image, user.uid, user.gid)
  rmSync(rootfs, { recursive: true, force: true })
  return image
}

async function testKey(work: string): Promise<{ key: string; publicKey: string }> {
  const key = join(work, 'id_ed25519')
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'banger-boot-test', '-f', key])
  return { key, publicKey: readFileSync(`${key}.pub`, 'utf8').trim() }
}

describe.skipIf(!KERNEL_RELEASE)('boot under qemu', () => {
  it('boots the injected Debian image to sshd, with new host keys, twice', async () => {
    const { work, rootfs } = await debianRootfs()
    const bakedKey = ed25519Blob(
      readFileSync(join(rootfs, 'etc/ssh/ssh_host_ed25519_key.pub'), 'utf8'),
    )
    const image = await ext4From(rootfs)
    const { key, publicKey } = await testKey(work)

    const injected = await injectAsUser(image, {
      authorizedKeys: [publicKey],
      hostname: 'banger-boot',
    })
    if (!injected.ok) throw new Error(`injectGuest failed: ${JSON.stringify(injected.error)}`)
    expect(injected.value.inspection).toEqual({ initSystem: 'systemd', problems: [] })
    expect(injected.value.written).toContain('/etc/systemd/system/banger-first-boot.service')

    // First boot: DHCP from qemu's user network, host keys regenerated.
    const vm1 = await boot(image)
    const toSsh = await vm1.waitForSsh(key)
    console.log(`first boot: ssh login ${Math.round(toSsh / 1000)}s after qemu started`)
    const hostKey1 = ed25519Blob(readFileSync(vm1.knownHostsPath, 'utf8'))
    expect(hostKey1).not.toBe(bakedKey)
    const { stdout: facts1 } = await vm1.ssh(
      key,
      'hostname; cat /etc/ssh/ssh_host_ed25519_key.pub; test -s /var/lib/banger/first-boot.done && echo marker; ' +
        'stat -c "%a %u:%g" /root/.ssh /root/.ssh/authorized_keys; systemctl is-active banger-first-boot.service; ' +
        'cat /var/log/banger-first-boot.log',
    )
    const lines1 = facts1.split('\n')
    expect(lines1[0]).toBe('banger-boot')
    expect(ed25519Blob(lines1[1]!)).toBe(hostKey1)
    expect(lines1.slice(2, 6)).toEqual(['marker', '700 0:0', '600 0:0', 'active'])
    expect(facts1).toMatch(/DHCP lease on \S+: 10\.0\.2\.15/)
    expect(facts1).not.toMatch(/ERROR/)
    // A clean poweroff, so the second boot sees what the first one wrote.
    await vm1.ssh(key, 'systemctl poweroff', { check: false })
    for (let i = 0; i < 600 && !vm1.exited(); i++) await sleep(100)
    await vm1.stop({ keepFiles: true })

    // Second boot: static address and hostname from the kernel command line, the marker skips
    // the first-boot work, so the host key stays.
    // qemu forwards to the address it leased unless told otherwise.
    const vm2 = await boot(image, {
      appendExtra: 'ip=10.0.2.16::10.0.2.2:255.255.255.0:static-name::off:10.0.2.3',
      guestAddress: '10.0.2.16',
    })
    await vm2.waitForSsh(key)
    expect(ed25519Blob(readFileSync(vm2.knownHostsPath, 'utf8'))).toBe(hostKey1)
    const { stdout: facts2 } = await vm2.ssh(
      key,
      'hostname; hostname -I; grep "# banger$" /etc/hosts; cat /etc/resolv.conf; ' +
        'cat /var/log/banger-first-boot.log',
    )
    const lines2 = facts2.split('\n')
    expect(lines2[0]).toBe('static-name')
    expect(lines2[1]!.split(' ')).toContain('10.0.2.16')
    // The first boot's line for banger-boot was replaced, not added to.
    expect(lines2[2]).toBe('127.0.1.1\tstatic-name # banger')
    expect(lines2[3]).toMatch(/^(#|nameserver)/)
    expect(facts2).toMatch(/nameserver 10\.0\.2\.3/)
    expect(facts2).toMatch(/configuring \S+ \(static\)/)
    expect(facts2).toMatch(/marker \/var\/lib\/banger\/first-boot\.done present/)
  })

  // Proves the install path: the first boot fetches openssh-server from the Debian mirror
  // through qemu's user network (the image's own sources.list), so this needs the mirror.
  it('installs sshd at first boot when the image has none', async () => {
    const { work, rootfs } = await debianRootfs()
    // Purge openssh-server from the tree; policy-rc.d keeps dpkg from touching services.
    const policy = join(rootfs, 'usr/sbin/policy-rc.d')
    writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 })
    await run('chroot', [rootfs, 'dpkg', '--purge', 'openssh-server'])
    rmSync(policy)
    expect(existsSync(join(rootfs, 'usr/sbin/sshd'))).toBe(false)
    const image = await ext4From(rootfs)
    const { key, publicKey } = await testKey(work)

    const injected = await injectAsUser(image, { authorizedKeys: [publicKey] })
    if (!injected.ok) throw new Error(`injectGuest failed: ${JSON.stringify(injected.error)}`)
    expect(injected.value.inspection.problems.map((p) => p.code)).toEqual(['GUEST_NO_SSHD'])

    const vm = await boot(image)
    const toSsh = await vm.waitForSsh(key)
    console.log(`sshd install boot: ssh login ${Math.round(toSsh / 1000)}s after qemu started`)
    const { stdout: facts } = await vm.ssh(
      key,
      'dpkg -s openssh-server | grep ^Status; test -e /usr/sbin/policy-rc.d || echo no-policy; ' +
        'systemctl is-enabled ssh.service; cat /var/log/banger-first-boot.log',
    )
    const lines = facts.split('\n')
    expect(lines.slice(0, 3)).toEqual(['Status: install ok installed', 'no-policy', 'enabled'])
    expect(facts).toMatch(/sshd is missing: installing it/)
    expect(facts).toMatch(/first boot done/)
  })

  // busybox init with no inittab and no sshd: the injected default inittab runs the program,
  // which mounts /proc and /sys itself, gets a DHCP lease with busybox udhcpc and banger's
  // event script, logs that sshd is missing, and the boot goes on to the console prompt.
  it('boots a busybox tree: inittab hook, udhcpc lease, a logged failure that does not block', async () => {
    const work = workDir()
    const userDir = userTempDir('guest-inject-busybox')
    onTestFinished(() => rmSync(userDir, { recursive: true, force: true }))
    const tree = join(userDir, 'tree')
    buildBusyboxTree(tree)
    const image = await mkfsAsUser(tree, join(userDir, 'busybox.ext4'), 64)
    const { publicKey } = await testKey(work)
    const injected = await injectAsUser(image, { authorizedKeys: [publicKey] })
    if (!injected.ok) throw new Error(`injectGuest failed: ${JSON.stringify(injected.error)}`)
    expect(injected.value.inspection.initSystem).toBe('busybox')
    expect(injected.value.inspection.problems.map((p) => p.code)).toEqual(['GUEST_NO_SSHD'])

    const vm = await boot(image)
    await vm.waitForSerial(/Please press Enter to activate this console/)
    const log = vm.serialLog()
    expect(log).toMatch(/banger-first-boot: starting \(busybox\)/)
    expect(log).toMatch(/banger-first-boot: configuring \S+ \(dhcp\)/)
    expect(log).toMatch(/banger-first-boot: \S+ address: 10\.0\.2\.15\/24/)
    expect(log).toMatch(/banger-first-boot: ERROR: sshd is not installed/)
    expect(log).toMatch(/first boot incomplete/)
  })
})

/** A root with the host's busybox (and the libraries it links), applets as relative links. */
function buildBusyboxTree(root: string): void {
  const busybox = '/usr/bin/busybox'
  const copy = (from: string, to: string, mode: number): void => {
    mkdirSync(dirname(join(root, to)), { recursive: true })
    writeFileSync(join(root, to), readFileSync(from), { mode })
  }
  copy(busybox, 'bin/busybox', 0o755)
  const ldd = execFileSync('ldd', [busybox], { encoding: 'utf8' })
  for (const m of ldd.matchAll(/(\/\S+) \(0x/g)) copy(m[1]!, m[1]!.slice(1), 0o755)
  const applets = execFileSync(busybox, ['--list-full'], { encoding: 'utf8' }).split('\n')
  for (const applet of applets.filter(Boolean)) {
    if (applet === 'bin/busybox') continue
    mkdirSync(dirname(join(root, applet)), { recursive: true })
    symlinkSync(relative(dirname(applet), 'bin/busybox'), join(root, applet))
  }
  for (const dir of ['proc', 'sys', 'dev', 'tmp', 'run', 'var/log', 'root', 'etc'])
    mkdirSync(join(root, dir), { recursive: true })
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
  execFileSync('chmod', ['-R', 'a+rX', root])
}
