import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { run } from '../../test-support/dist/index.js'

export interface Unpacked {
  rootfs: string
  remove(): void
}

/**
 * `umoci unpack` (as root, so owners, device nodes and xattrs are real) of an OCI layout image
 * (`<layout>:<tag>`, no `oci:` prefix). The reference result the ext4 is compared against.
 */
export async function umociUnpack(layoutRef: string, scratchDir: string): Promise<Unpacked> {
  const work = mkdtempSync(join(scratchDir, 'banger-unpack-'))
  const bundle = join(work, 'bundle')
  await run('umoci', ['unpack', '--image', layoutRef.replace(/^oci:/, ''), bundle], {
    timeoutMs: 30 * 60_000,
  })
  return {
    rootfs: join(bundle, 'rootfs'),
    remove: () => rmSync(work, { recursive: true, force: true }),
  }
}
