import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from '../../test-support/dist/index.js'

export interface Mounted {
  dir: string
  unmount(): Promise<void>
}

/** Mounts an ext4 image read-only through a loop device (root only). */
export async function mountReadOnly(image: string): Promise<Mounted> {
  const dir = mkdtempSync(join(tmpdir(), 'banger-mnt-'))
  try {
    await run('mount', ['-t', 'ext4', '-o', 'loop,ro,noload', image, dir])
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  return {
    dir,
    async unmount() {
      await run('umount', [dir])
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

let probed: Promise<string | undefined> | undefined

/**
 * Whether `mount -o loop,ro` works here: undefined when it does, else the reason (not root, no
 * loop devices in this container, …), so a suite can skip the mounted read with that reason.
 */
export function loopMountUnavailable(): Promise<string | undefined> {
  probed ??= (async () => {
    if (process.getuid?.() !== 0) return 'not root: mounting a loop device needs root'
    const dir = mkdtempSync(join(tmpdir(), 'banger-loopprobe-'))
    try {
      const src = join(dir, 'src')
      const image = join(dir, 'probe.ext4')
      await run('mkdir', [src])
      await run('truncate', ['-s', '8M', image])
      await run('mkfs.ext4', ['-q', '-d', src, image])
      const mounted = await mountReadOnly(image)
      await mounted.unmount()
      return undefined
    } catch (err) {
      return `mount -o loop,ro failed: ${(err as Error).message.split('\n')[0]}`
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })()
  return probed
}
