// Issue 7, the boot proof through the whole pipeline: the harness's Debian (debootstrap bookworm
// with systemd and openssh-server, host keys baked in) is pushed to a real registry, pulled by
// the real `banger` CLI as the unprivileged test user, and the ext4 it records boots under qemu
// (as that user too) with the kernel and initrd from banger's catalog, to an sshd that lets the
// test key in, runs commands as root and presents a host key of its own.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import {
  bangerUserHome,
  bootVm,
  debianImage,
  pushImage,
  readImageFile,
  run,
  runAsUser,
  startRegistry,
  type OciImage,
} from '../test-support/dist/index.js'

const BANGER_BIN = resolve(import.meta.dirname, '../packages/cli/dist/bin.js')

const KERNEL_RELEASE = readdirSync('/boot')
  .filter((name) => name.startsWith('vmlinuz-'))
  .map((name) => name.slice('vmlinuz-'.length))
  .sort()
  .pop()

/** The fields of `banger image show --json` this test reads (daemon ImageRecord). */
interface ImageRecord {
  name: string
  status: string
  rootfsPath: string
  kernel?: { name?: string; kernelPath: string; initrdPath?: string }
  injectedFiles: string[]
}

/** `ssh-ed25519 <base64>` out of a .pub, known_hosts or ssh-keyscan line. */
function ed25519(text: string): string {
  const m = /ssh-ed25519 (\S+)/.exec(text)
  if (!m) throw new Error(`no ssh-ed25519 key in ${JSON.stringify(text)}`)
  return `ssh-ed25519 ${m[1]}`
}

/**
 * Files read straight from the source image's OCI layout (the last layer holding each wins),
 * independently of banger: what the image had before the pipeline touched it.
 */
async function sourceFiles(image: OciImage, paths: string[]): Promise<Map<string, string>> {
  const blob = (digest: string): string => join(image.layout, 'blobs', ...digest.split(':'))
  const index = JSON.parse(readFileSync(join(image.layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string; annotations?: Record<string, string> }[]
  }
  const entry = index.manifests.find(
    (m) => m.annotations?.['org.opencontainers.image.ref.name'] === image.tag,
  )
  if (!entry) throw new Error(`no ${image.tag} in ${image.layout}`)
  const manifest = JSON.parse(readFileSync(blob(entry.digest), 'utf8')) as {
    layers: { digest: string; mediaType: string }[]
  }
  const found = new Map<string, string>()
  const dir = mkdtempSync(join(tmpdir(), 'pipeline-boot-src-'))
  try {
    for (const layer of manifest.layers) {
      const out = join(dir, layer.digest.replace(':', '-'))
      mkdirSync(out)
      const z = layer.mediaType.endsWith('+gzip') ? ['-z'] : []
      // tar exits 2 when a layer lacks some of the paths: read whatever it extracted.
      await run('tar', [...z, '-xf', blob(layer.digest), '-C', out, ...paths], { check: false })
      for (const path of paths) {
        try {
          found.set(path, readFileSync(join(out, path), 'utf8'))
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  return found
}

describe.skipIf(!KERNEL_RELEASE)('pulled by banger, booted under qemu', () => {
  it('boots to sshd: the test key logs in as root, hostname set, host key regenerated', async () => {
    const image = await debianImage()
    const source = await sourceFiles(image, ['etc/ssh/ssh_host_ed25519_key.pub', 'etc/hostname'])
    const bakedHostKey = ed25519(source.get('etc/ssh/ssh_host_ed25519_key.pub') ?? '')

    const registry = await startRegistry()
    onTestFinished(() => registry.stop())
    const ref = await pushImage(image, registry, 'pipeline/debian:bookworm')

    // A private banger for the test user (isolated XDG dirs), with a fresh key in its config.
    const { env, keyPath: key } = await bangerUserHome('pipeline-boot')

    const banger = async (args: string[]): Promise<string> => {
      const r = await runAsUser('node', [BANGER_BIN, ...args], { env, timeoutMs: 20 * 60_000 })
      if (r.code !== 0)
        throw new Error(`banger ${args.join(' ')}: exit ${r.code}\n${r.stderr.trim()}`)
      return r.stdout
    }
    onTestFinished(async () => {
      await runAsUser('node', [BANGER_BIN, 'daemon', 'stop'], { env })
    })

    await banger([
      ...['kernel', 'add', 'host', '--kernel-path', `/boot/vmlinuz-${KERNEL_RELEASE}`],
      ...['--initrd', `/boot/initrd.img-${KERNEL_RELEASE}`, '--default'],
    ])
    const pullStarted = Date.now()
    await banger(['image', 'pull', ref])
    const pullMs = Date.now() - pullStarted
    const record = JSON.parse(
      await banger(['image', 'show', 'debian-bookworm', '--json']),
    ) as ImageRecord
    expect(record).toMatchObject({ name: 'debian-bookworm', status: 'ready' })
    expect(record.kernel?.name).toBe('host')
    expect(record.kernel?.initrdPath).toBeDefined()
    expect(record.injectedFiles).toContain('/etc/hostname')

    // What the guest must change at first boot: the pulled ext4 still holds the source's host
    // key (banger copies the image faithfully), and the hostname is banger's, not the image's.
    expect(
      ed25519(
        (await readImageFile(record.rootfsPath, '/etc/ssh/ssh_host_ed25519_key.pub')).toString(),
      ),
    ).toBe(bakedHostKey)
    const hostname = 'debian-bookworm' // hostnameFor(record.name)
    expect(source.get('etc/hostname')?.trim()).not.toBe(hostname)

    const vm = await bootVm({
      rootfs: record.rootfsPath,
      kernel: record.kernel!.kernelPath,
      initrd: record.kernel!.initrdPath,
      asTestUser: true,
    })
    onTestFinished(async (ctx) => {
      const failed = ctx.task.result?.state === 'fail'
      if (failed)
        console.error(
          `qemu (${vm.accel}) stderr: ${vm.qemuStderr().trim() || '(none)'}\n` +
            `serial log kept at ${vm.serialLogPath}, tail:\n${vm.serialTail(4000)}`,
        )
      await vm.stop({ keepFiles: failed })
    })
    const bootMs = await vm.waitForSsh(key)

    const facts = await vm.ssh(
      key,
      'id -u; cat /etc/hostname; hostname; cat /etc/ssh/ssh_host_ed25519_key.pub; ' +
        'test -s /var/lib/banger/first-boot.done && echo first-boot-done',
    )
    const [uid, etcHostname, liveHostname, guestKey, marker] = facts.stdout.trim().split('\n')
    expect(uid).toBe('0')
    expect(etcHostname).toBe(hostname)
    expect(liveHostname).toBe(hostname)
    expect(marker).toBe('first-boot-done')

    // The key the guest presents: as ssh recorded it on first contact, and by ssh-keyscan.
    const presented = ed25519(readFileSync(vm.knownHostsPath, 'utf8'))
    expect(await vm.hostKey()).toBe(presented)
    expect(ed25519(guestKey ?? '')).toBe(presented)
    expect(presented).not.toBe(bakedHostKey)

    console.log(
      `pipeline boot (${vm.accel}): banger image pull ${(pullMs / 1000).toFixed(1)} s, ` +
        `qemu start to ssh login ${(bootMs / 1000).toFixed(1)} s`,
    )
  })
})
