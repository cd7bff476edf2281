import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  accessSync,
  chownSync,
  constants,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { run, type RunResult } from './exec.js'
import { freePort } from './ports.js'
import { testUser } from './user.js'

export interface BootVmOptions {
  /** A raw ext4 root filesystem, attached as the virtio disk /dev/vda (written to by the guest). */
  rootfs: string
  /** The kernel image (`-kernel`). */
  kernel: string
  /** The initramfs (`-initrd`), if the kernel needs one to find virtio disks. */
  initrd?: string
  /** Appended to `root=/dev/vda rw console=ttyS0 panic=-1`. */
  appendExtra?: string
  /** Guest RAM; default 1024. */
  memoryMiB?: number
  /** Default wait of `waitForSsh` and `waitForSerial`; default 10 minutes (TCG on a loaded host). */
  timeoutMs?: number
  /**
   * `kvm`, `tcg`, or `auto` (the default): KVM only when a probe boot under it prints the
   * kernel banner (a /dev/kvm that exists may still not boot, as under some nested setups).
   * The environment variable BANGER_TEST_ACCEL=kvm|tcg overrides `auto`.
   */
  accel?: 'kvm' | 'tcg' | 'auto'
  /** Guest address qemu forwards the host port to; default qemu's own choice (its DHCP lease). */
  guestAddress?: string
  /** Run qemu as the unprivileged test user (the files must be readable/writable by it). */
  asTestUser?: boolean
}

export interface SshOptions {
  /** Reject on a non-zero exit; default true. */
  check?: boolean
  /** Default 60 s. */
  timeoutMs?: number
}

export interface Vm {
  /** Host port on 127.0.0.1 forwarded to the guest's port 22. */
  sshPort: number
  /** The accelerator qemu runs with. */
  accel: 'kvm' | 'tcg'
  /** Directory holding `serial.log` and `known_hosts`; removed by `stop()` unless kept. */
  dir: string
  serialLogPath: string
  /** `known_hosts` written by `ssh()`: the host key the guest presented on first contact. */
  knownHostsPath: string
  /** The serial console so far, terminal escapes removed. */
  serialLog(): string
  /** The last `chars` characters of the serial log, for failure messages. */
  serialTail(chars?: number): string
  /** qemu's own stderr so far. */
  qemuStderr(): string
  exited(): boolean
  /**
   * Polls `ssh … true` until the key logs in. Resolves to the milliseconds since qemu started;
   * rejects when qemu exits or the time runs out, with the serial tail in the message.
   */
  waitForSsh(key: string, options?: { timeoutMs?: number }): Promise<number>
  /** Resolves (to ms since qemu started) when the serial log matches; rejects like waitForSsh. */
  waitForSerial(pattern: RegExp, options?: { timeoutMs?: number }): Promise<number>
  /** `ssh -i key root@127.0.0.1 -p sshPort command`, accepting and recording a new host key. */
  ssh(key: string, command: string, options?: SshOptions): Promise<RunResult>
  /** The guest's ed25519 host key as `ssh-ed25519 <base64>`, fetched with ssh-keyscan. */
  hostKey(): Promise<string>
  /** SIGTERM, then SIGKILL after 5 s; removes `dir` unless `keepFiles`. Safe to call twice. */
  stop(options?: { keepFiles?: boolean }): Promise<void>
}

const BASE_APPEND = 'root=/dev/vda rw console=ttyS0 panic=-1'
const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL')
})

const ESCAPES = new RegExp(String.fromCharCode(27) + '(\\[[0-9;?]*[A-Za-z]|c)', 'g')

function readSerial(path: string): string {
  if (!existsSync(path)) return ''
  return readFileSync(path, 'utf8').replace(ESCAPES, '')
}

let kvmProbe: Promise<boolean> | undefined

/**
 * Whether KVM boots `kernel` here: /dev/kvm must be usable and a probe boot must print the
 * kernel banner (earlyprintk, so instantly under working KVM) within 5 s of the firmware handing
 * over, 30 s in all. Fails fast when qemu exits or the firmware starts over (a triple-fault
 * reboot loop). The answer is kept per process and, per machine boot, in a file under tmpdir.
 */
export function kvmBoots(kernel: string): Promise<boolean> {
  kvmProbe ??= (async () => {
    try {
      accessSync('/dev/kvm', constants.R_OK | constants.W_OK)
    } catch {
      return false
    }
    let bootId = 'unknown'
    try {
      bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    } catch {
      // No procfs: probe every time.
    }
    const cache = join(
      tmpdir(),
      `banger-kvm-works-${createHash('sha256').update(`${bootId}\0${kernel}`).digest('hex').slice(0, 16)}`,
    )
    if (bootId !== 'unknown' && existsSync(cache)) return readFileSync(cache, 'utf8') === 'kvm'
    const works = await probeKvm(kernel)
    if (bootId !== 'unknown') writeFileSync(cache, works ? 'kvm' : 'tcg')
    return works
  })()
  return kvmProbe
}

async function probeKvm(kernel: string): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), 'banger-kvm-probe-'))
  const log = join(dir, 'serial.log')
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      ...['-accel', 'kvm', '-m', '256', '-nographic', '-no-reboot', '-monitor', 'none'],
      ...['-serial', `file:${log}`, '-kernel', kernel],
      ...['-append', 'earlyprintk=serial,ttyS0 console=ttyS0 panic=-1'],
    ],
    { stdio: 'ignore' },
  )
  live.add(qemu)
  let gone = false
  qemu.on('exit', () => (gone = true))
  qemu.on('error', () => (gone = true))
  const started = Date.now()
  let handedOver: number | undefined
  try {
    while (!gone && Date.now() - started < 30_000) {
      const text = readSerial(log)
      if (/Linux version/.test(text)) return true
      if ((text.match(/SeaBIOS \(version/g) ?? []).length > 1) return false
      if (/Booting from ROM/.test(text)) handedOver ??= Date.now()
      if (handedOver !== undefined && Date.now() - handedOver > 5000) return false
      await sleep(250)
    }
    return false
  } finally {
    qemu.kill('SIGKILL')
    live.delete(qemu)
    rmSync(dir, { recursive: true, force: true })
  }
}

async function chooseAccel(options: BootVmOptions): Promise<'kvm' | 'tcg'> {
  const wanted = options.accel ?? 'auto'
  if (wanted !== 'auto') return wanted
  const forced = process.env.BANGER_TEST_ACCEL
  if (forced === 'kvm' || forced === 'tcg') return forced
  return (await kvmBoots(options.kernel)) ? 'kvm' : 'tcg'
}

function ed25519Of(text: string): string | undefined {
  const m = /ssh-ed25519 (\S+)/.exec(text)
  return m ? `ssh-ed25519 ${m[1]}` : undefined
}

/**
 * Boots `rootfs` under qemu-system-x86_64 with a direct kernel boot, the disk as raw virtio,
 * the serial console to a file and qemu's user network with 127.0.0.1:<free port> forwarded to
 * the guest's port 22. Resolves once qemu is started; wait for the guest with `waitForSsh` or
 * `waitForSerial`. The caller must `stop()` it (qemu is also SIGKILLed at process exit).
 */
export async function bootVm(options: BootVmOptions): Promise<Vm> {
  const accel = await chooseAccel(options)
  const timeoutMs = options.timeoutMs ?? 10 * 60_000
  const sshPort = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'banger-vm-'))
  const serialLogPath = join(dir, 'serial.log')
  const knownHostsPath = join(dir, 'known_hosts')
  const user = options.asTestUser ? testUser() : undefined
  if (user) chownSync(dir, user.uid, user.gid)
  const append = `${BASE_APPEND} ${options.appendExtra ?? ''}`.trim()
  const args = [
    ...['-accel', accel, '-m', String(options.memoryMiB ?? 1024), '-smp', '1'],
    ...['-nographic', '-no-reboot', '-monitor', 'none', '-serial', `file:${serialLogPath}`],
    ...['-kernel', options.kernel],
    ...(options.initrd ? ['-initrd', options.initrd] : []),
    ...['-append', append],
    ...['-drive', `file=${options.rootfs},format=raw,if=virtio`],
    ...['-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${sshPort}-${options.guestAddress ?? ''}:22`],
    ...['-device', 'virtio-net-pci,netdev=n0'],
  ]
  const started = Date.now()
  const qemu = spawn('qemu-system-x86_64', args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
  })
  live.add(qemu)
  let gone = false
  let stderr = ''
  qemu.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exitedPromise = new Promise<void>((resolve) => {
    const done = (): void => {
      gone = true
      live.delete(qemu)
      resolve()
    }
    qemu.on('exit', done)
    qemu.on('error', (err) => {
      stderr += String(err)
      done()
    })
  })

  const serialTail = (chars = 3000): string =>
    readSerial(serialLogPath).slice(-chars) || '(serial log empty)'
  const failure = (what: string): Error =>
    new Error(
      `${what}\nqemu ${args.join(' ')}\nqemu stderr: ${stderr.trim() || '(none)'}\n` +
        `serial log (${serialLogPath}), tail:\n${serialTail()}`,
    )

  const sshArgs = (key: string, command: string, connectTimeout: number): string[] => [
    ...['-i', key, '-p', String(sshPort), '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes'],
    ...['-o', `ConnectTimeout=${connectTimeout}`, '-o', 'StrictHostKeyChecking=accept-new'],
    ...['-o', `UserKnownHostsFile=${knownHostsPath}`, '-o', 'HostKeyAlgorithms=ssh-ed25519'],
    ...['-o', 'LogLevel=ERROR', 'root@127.0.0.1', command],
  ]

  const vm: Vm = {
    sshPort,
    accel,
    dir,
    serialLogPath,
    knownHostsPath,
    serialLog: () => readSerial(serialLogPath),
    serialTail,
    qemuStderr: () => stderr,
    exited: () => gone,

    async waitForSsh(key, { timeoutMs: limit = timeoutMs } = {}) {
      let last = ''
      while (Date.now() - started < limit) {
        if (gone) throw failure(`qemu exited before sshd let the key in (last ssh: ${last})`)
        const result = await run('ssh', sshArgs(key, 'true', 20), {
          check: false,
          timeoutMs: 60_000,
        })
        if (result.code === 0) return Date.now() - started
        last = result.stderr.trim()
        await sleep(3000)
      }
      throw failure(`no ssh login within ${Math.round(limit / 1000)} s (last ssh: ${last})`)
    },

    async waitForSerial(pattern, { timeoutMs: limit = timeoutMs } = {}) {
      while (Date.now() - started < limit) {
        if (pattern.test(readSerial(serialLogPath))) return Date.now() - started
        if (gone) throw failure(`qemu exited before the serial log matched ${pattern}`)
        await sleep(1000)
      }
      throw failure(`the serial log did not match ${pattern} within ${Math.round(limit / 1000)} s`)
    },

    ssh(key, command, { check = true, timeoutMs: limit = 60_000 } = {}) {
      return run('ssh', sshArgs(key, command, 20), { check, timeoutMs: limit })
    },

    async hostKey() {
      const scan = await run(
        'ssh-keyscan',
        ['-T', '30', '-t', 'ed25519', '-p', String(sshPort), '127.0.0.1'],
        { check: false, timeoutMs: 60_000 },
      )
      const key = ed25519Of(scan.stdout)
      if (!key) throw failure(`ssh-keyscan got no ed25519 key: ${scan.stderr.trim()}`)
      return key
    },

    async stop({ keepFiles = false } = {}) {
      if (!gone) {
        qemu.kill('SIGTERM')
        await Promise.race([exitedPromise, sleep(5000)])
        if (!gone) qemu.kill('SIGKILL')
        await exitedPromise
      }
      if (!keepFiles) rmSync(dir, { recursive: true, force: true })
    },
  }
  return vm
}
