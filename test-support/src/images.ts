import { createHash } from 'node:crypto'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from './exec.js'
import type { RegistryAuth, TestRegistry } from './registry.js'

export interface OciImage {
  /** OCI image layout directory. */
  layout: string
  tag: string
  /** `oci:<layout>:<tag>`, a skopeo/umoci transport reference. */
  ref: string
}

export type LayerRecipe = (rootfs: string) => void | Promise<void>

export interface BuildImageOptions {
  arch?: 'amd64' | 'arm64'
  /** Where the layout goes; default a fresh temp dir. */
  layout?: string
  tag?: string
}

const made = new Set<string>()
process.on('exit', () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true })
})

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  // mkdtemp makes 0700; the unprivileged test user reads layouts (offline sources, flatten).
  chmodSync(dir, 0o755)
  made.add(dir)
  return dir
}

/**
 * Builds an image with real umoci, one layer per recipe. Each recipe mutates a rootfs that umoci
 * unpacked as root (so chown, mknod and setfattr work), and `umoci repack` turns the difference
 * into a layer: deletions become whiteouts exactly as umoci writes them.
 */
export async function buildImage(
  layers: LayerRecipe[],
  options: BuildImageOptions = {},
): Promise<OciImage> {
  const layout = options.layout ?? join(tempDir('banger-image-'), 'layout')
  const tag = options.tag ?? 'latest'
  const ref = `${layout}:${tag}`
  await run('umoci', ['init', '--layout', layout])
  await run('umoci', ['new', '--image', ref])
  if (options.arch && options.arch !== 'amd64') {
    await run('umoci', ['config', '--image', ref, '--architecture', options.arch])
  }
  for (const recipe of layers) {
    const work = tempDir('banger-bundle-')
    const bundle = join(work, 'bundle')
    await run('umoci', ['unpack', '--image', ref, bundle])
    await recipe(join(bundle, 'rootfs'))
    await run('umoci', ['repack', '--image', ref, bundle])
    rmSync(work, { recursive: true, force: true })
    made.delete(work)
  }
  await run('umoci', ['gc', '--layout', layout])
  return { layout, tag, ref: `oci:${ref}` }
}

/** Recipe of the Debian image; part of the cache key, so changing it rebuilds. */
const DEBIAN_RECIPE = {
  suite: 'bookworm',
  variant: 'minbase',
  include: ['systemd-sysv', 'openssh-server', 'iproute2', 'ifupdown', 'isc-dhcp-client', 'udev'],
  mirror: process.env.BANGER_TEST_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian',
}

export const IMAGE_CACHE_DIR = process.env.BANGER_TEST_CACHE ?? '/var/cache/banger-test'

/**
 * A Debian bookworm minbase with systemd-sysv and openssh-server (host keys baked in, as real
 * images have), built by debootstrap and packed as one layer by umoci. Slow the first time
 * (minutes), then cached under IMAGE_CACHE_DIR keyed by the recipe.
 */
export async function debianImage(): Promise<OciImage> {
  const key = createHash('sha256').update(JSON.stringify(DEBIAN_RECIPE)).digest('hex').slice(0, 16)
  const final = join(IMAGE_CACHE_DIR, `debian-${key}`)
  const image = { layout: join(final, 'layout'), tag: 'bookworm' }
  if (existsSync(join(final, 'done'))) return { ...image, ref: `oci:${image.layout}:${image.tag}` }

  mkdirSync(IMAGE_CACHE_DIR, { recursive: true })
  const staging = mkdtempSync(join(IMAGE_CACHE_DIR, `.debian-${key}-`))
  try {
    const rootfs = join(staging, 'rootfs')
    await run(
      'debootstrap',
      [
        `--variant=${DEBIAN_RECIPE.variant}`,
        `--include=${DEBIAN_RECIPE.include.join(',')}`,
        DEBIAN_RECIPE.suite,
        rootfs,
        DEBIAN_RECIPE.mirror,
      ],
      { timeoutMs: 20 * 60_000 },
    )
    // Leave no apt lists or caches: smaller image, and nothing host-specific.
    rmSync(join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true })
    mkdirSync(join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true })
    const layout = join(staging, 'layout')
    const ref = `${layout}:${image.tag}`
    await run('umoci', ['init', '--layout', layout])
    await run('umoci', ['new', '--image', ref])
    const bundle = join(staging, 'bundle')
    await run('umoci', ['unpack', '--image', ref, bundle])
    rmSync(join(bundle, 'rootfs'), { recursive: true, force: true })
    renameSync(rootfs, join(bundle, 'rootfs'))
    await run('umoci', ['repack', '--image', ref, bundle])
    await run('umoci', ['config', '--image', ref, '--config.cmd', '/bin/bash'])
    await run('umoci', ['gc', '--layout', layout])
    rmSync(bundle, { recursive: true, force: true })
    writeFileSync(join(staging, 'done'), JSON.stringify(DEBIAN_RECIPE))
    try {
      renameSync(staging, final)
    } catch (err) {
      // Another process finished the same recipe first: use theirs.
      if (!existsSync(join(final, 'done'))) throw err
      rmSync(staging, { recursive: true, force: true })
    }
  } catch (err) {
    rmSync(staging, { recursive: true, force: true })
    throw err
  }
  return { ...image, ref: `oci:${image.layout}:${image.tag}` }
}

export interface PushOptions {
  format?: 'oci' | 'v2s2'
  compress?: 'gzip' | 'zstd' | 'none'
  auth?: RegistryAuth
}

/**
 * Pushes an image and returns its reference in the registry (`host/repo:tag`). gzip and zstd go
 * through `skopeo copy` (zstd by way of an uncompressed `dir:` copy, since skopeo 1.9 keeps a
 * source's gzip otherwise). Uncompressed layers: skopeo's docker transport always compresses, so
 * the decompressed `dir:` copy is uploaded with the distribution API's monolithic blob upload.
 */
export async function pushImage(
  image: OciImage,
  registry: TestRegistry,
  repoTag: string,
  options: PushOptions = {},
): Promise<string> {
  const dest = `${registry.host}/${repoTag}`
  const auth = options.auth ?? registry.auth
  const format = options.format === 'v2s2' ? 'v2s2' : 'oci'
  let source = image.ref
  if (options.compress === 'zstd' || options.compress === 'none') {
    const dir = join(tempDir('banger-push-'), 'dir')
    await run('skopeo', [
      'copy',
      '--quiet',
      '--dest-decompress',
      '--format',
      format,
      image.ref,
      `dir:${dir}`,
    ])
    if (options.compress === 'none') {
      await uploadDir(dir, registry, repoTag, auth)
      return dest
    }
    source = `dir:${dir}`
  }
  const args = ['copy', '--quiet', '--dest-tls-verify=false', '--format', format]
  args.push('--dest-compress-format', options.compress === 'zstd' ? 'zstd' : 'gzip')
  if (auth) args.push('--dest-creds', `${auth.username}:${auth.password}`)
  forgetSkopeoBlobCache()
  await run('skopeo', [...args, source, `docker://${dest}`])
  return dest
}

/**
 * skopeo remembers, per registry, which compressed blobs it pushed and reuses them: after a zstd
 * push, a v2s2 push of the same layers then fails ("zstd compression is not supported for type
 * …tar.gzip"). Tests push many variants of one image to one registry, so forget before each push.
 * Unlinking is safe while another skopeo has the file open.
 */
function forgetSkopeoBlobCache(): void {
  const home = process.env.HOME ?? ''
  const dir =
    process.getuid?.() === 0
      ? '/var/lib/containers/cache'
      : join(process.env.XDG_DATA_HOME ?? join(home, '.local/share'), 'containers/cache')
  rmSync(join(dir, 'blob-info-cache-v1.boltdb'), { force: true })
}

async function uploadDir(
  dir: string,
  registry: TestRegistry,
  repoTag: string,
  auth: RegistryAuth | undefined,
): Promise<void> {
  const [repo, tag] = repoTag.split(':') as [string, string]
  const headers: Record<string, string> = {}
  if (auth)
    headers.authorization = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`
  const manifestBytes = readFileSync(join(dir, 'manifest.json'))
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as {
    mediaType?: string
    config: { digest: string }
    layers: { digest: string }[]
  }
  for (const { digest } of [manifest.config, ...manifest.layers]) {
    const body = readFileSync(join(dir, digest.replace(/^sha256:/, '')))
    const start = await fetch(`${registry.url}/v2/${repo}/blobs/uploads/`, {
      method: 'POST',
      headers,
    })
    await start.arrayBuffer()
    if (start.status !== 202) throw new Error(`blob upload start: HTTP ${start.status}`)
    const location = new URL(start.headers.get('location')!, registry.url)
    location.searchParams.set('digest', digest)
    const put = await fetch(location, {
      method: 'PUT',
      headers: { ...headers, 'content-type': 'application/octet-stream' },
      body,
    })
    await put.arrayBuffer()
    if (put.status !== 201) throw new Error(`blob upload ${digest}: HTTP ${put.status}`)
  }
  const res = await fetch(`${registry.url}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    headers: {
      ...headers,
      'content-type': manifest.mediaType ?? 'application/vnd.oci.image.manifest.v1+json',
    },
    body: manifestBytes,
  })
  await res.arrayBuffer()
  if (res.status !== 201) throw new Error(`manifest upload: HTTP ${res.status}`)
}

export interface IndexEntry {
  image: OciImage
  platform: { os: string; architecture: string; variant?: string }
}

/**
 * Pushes an OCI image index (a multi-platform manifest list) made of the given images. The index
 * JSON is assembled here; skopeo copies every image into one layout and pushes the lot (`--all`).
 */
export async function pushIndex(
  registry: TestRegistry,
  repoTag: string,
  entries: IndexEntry[],
  options: { auth?: RegistryAuth } = {},
): Promise<string> {
  const layout = join(tempDir('banger-index-'), 'layout')
  const manifests = []
  for (const [i, entry] of entries.entries()) {
    const tag = `platform-${i}`
    await run('skopeo', ['copy', '--quiet', entry.image.ref, `oci:${layout}:${tag}`])
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
      manifests: {
        digest: string
        size: number
        mediaType: string
        annotations?: Record<string, string>
      }[]
    }
    const desc = index.manifests.find(
      (m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag,
    )
    if (!desc) throw new Error(`skopeo did not record ${tag} in ${layout}`)
    manifests.push({
      mediaType: desc.mediaType,
      digest: desc.digest,
      size: desc.size,
      platform: entry.platform,
    })
  }
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests,
    }),
  )
  const hex = createHash('sha256').update(body).digest('hex')
  writeFileSync(join(layout, 'blobs', 'sha256', hex), body)
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.index.v1+json',
          digest: `sha256:${hex}`,
          size: body.length,
          annotations: { 'org.opencontainers.image.ref.name': 'list' },
        },
      ],
    }),
  )
  const dest = `${registry.host}/${repoTag}`
  const args = ['copy', '--quiet', '--all', '--dest-tls-verify=false']
  const auth = options.auth ?? registry.auth
  if (auth) args.push('--dest-creds', `${auth.username}:${auth.password}`)
  forgetSkopeoBlobCache()
  await run('skopeo', [...args, `oci:${layout}:list`, `docker://${dest}`])
  return dest
}
