import type { ImageRecord, KernelRecord } from '@banger/daemon/rpc'
import { describe, expect, it } from 'vitest'
import {
  formatDuration,
  renderImage,
  renderImageList,
  renderKernelList,
  renderStatus,
  renderTable,
  shortDigest,
} from './render.js'

const image: ImageRecord = {
  id: 'img_1',
  name: 'debian-bookworm',
  managed: true,
  status: 'ready',
  sourceRef: '127.0.0.1:5000/debian:bookworm',
  manifestDigest: 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
  platform: 'linux/amd64',
  sizeBytes: 1024 ** 3,
  dir: '/s/images/img_1',
  rootfsPath: '/s/images/img_1/rootfs.ext4',
  kernel: { name: 'k6', kernelPath: '/s/images/img_1/vmlinuz' },
  injectedFiles: ['/etc/fstab', '/etc/hostname'],
  createdAt: '2026-11-25T13:00:00.000Z',
}

describe('renderTable', () => {
  it('aligns columns under the header without trailing spaces', () => {
    expect(
      renderTable(
        ['A', 'LONGER'],
        [
          ['xxxx', 'y'],
          ['z', ''],
        ],
      ),
    ).toBe('A     LONGER\nxxxx  y\nz\n')
  })
})

describe('image rendering', () => {
  it('lists images as a table, a broken one marked', () => {
    const broken: ImageRecord = {
      ...image,
      name: 'old',
      status: 'broken',
      kernel: undefined,
      sourceRef: undefined,
      managed: false,
    }
    const text = renderImageList([image, broken])
    const lines = text.trimEnd().split('\n')
    expect(lines).toHaveLength(3)
    expect(lines[0]).toMatch(/^NAME\s+STATUS\s+SIZE\s+KERNEL\s+SOURCE\s+CREATED$/)
    expect(lines[1]).toMatch(
      /^debian-bookworm\s+ready\s+1\.0 GiB\s+k6\s+127\.0\.0\.1:5000\/debian:bookworm\s+2026-/,
    )
    expect(lines[2]).toMatch(/^old\s+broken\s+1\.0 GiB\s+-\s+registered\s+2026-/)
    // Columns line up: STATUS starts at the same offset in every line.
    const col = lines[0]!.indexOf('STATUS')
    expect(lines.map((l) => l.slice(col, col + 5))).toEqual(['STATU', 'ready', 'broke'])
  })

  it('says how to get an image when there is none', () => {
    expect(renderImageList([])).toMatch(/no images.*banger image pull/)
  })

  it('shows digest, size and paths', () => {
    const text = renderImage(image)
    expect(text).toMatch(/^digest\s+sha256:0123456789abcdef/m)
    expect(text).toMatch(/^size\s+1\.0 GiB \(1073741824 bytes\)$/m)
    expect(text).toMatch(/^rootfs\s+\/s\/images\/img_1\/rootfs\.ext4$/m)
    expect(text).toMatch(/^injected\s+\/etc\/fstab, \/etc\/hostname$/m)
    expect(text).not.toMatch(/^problem/m)
  })
})

describe('kernel and status rendering', () => {
  it('marks the default kernel', () => {
    const k: KernelRecord = {
      name: 'k6',
      kernelPath: '/boot/vmlinuz',
      isDefault: true,
      createdAt: 'now',
    }
    const lines = renderKernelList([
      k,
      { ...k, name: 'k5', isDefault: false, initrdPath: '/boot/initrd' },
    ]).split('\n')
    expect(lines[1]).toMatch(/^k6\s+\*\s+\/boot\/vmlinuz\s+-\s+-$/)
    expect(lines[2]).toMatch(/^k5\s+\/boot\/vmlinuz\s+\/boot\/initrd\s+-$/)
  })

  it('renders the daemon status', () => {
    const text = renderStatus({
      pid: 42,
      version: '0.0.0',
      socketPath: '/r/s.sock',
      stateDir: '/s',
      cacheDir: '/c',
      uptimeSeconds: 3725,
      images: 2,
      kernels: 1,
      pullsInProgress: 0,
    })
    expect(text).toMatch(/^bangerd is running \(pid 42\)\n/)
    expect(text).toMatch(/^uptime\s+1h 2m 5s$/m)
    expect(text).toMatch(/^socket\s+\/r\/s\.sock$/m)
  })

  it('formats durations and digests', () => {
    expect(formatDuration(5)).toBe('5s')
    expect(formatDuration(65)).toBe('1m 5s')
    expect(shortDigest('sha256:abcdef0123456789')).toBe('sha256:abcdef012345')
    expect(shortDigest(undefined)).toBeUndefined()
  })
})
