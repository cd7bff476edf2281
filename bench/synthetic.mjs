// A synthetic image for the scale benchmark: ≥ 1 GiB in ≥ 50k files over four layers, built with
// the harness's buildImage (real umoci) and cached beside the Debian image. File contents are
// slices of a random pool taken at PRNG offsets: as incompressible as random data for gzip
// (whose window is 32 KiB) but cheap to make.
import { randomBytes, createHash } from 'node:crypto'
import {
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { join } from 'node:path'
import { buildImage, IMAGE_CACHE_DIR } from '../test-support/dist/index.js'

export const SYNTHETIC_RECIPE = {
  layers: 4,
  smallFilesPerLayer: 13_500,
  smallMaxBytes: 16 * 1024,
  bigFilesPerLayer: 2,
  bigFileBytes: 80 * 1024 * 1024,
  filesPerDir: 250,
  seed: 42,
}

function mulberry32(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const POOL_BYTES = 32 * 1024 * 1024

function layerRecipe(k, pool) {
  const r = SYNTHETIC_RECIPE
  return (rootfs) => {
    const rand = mulberry32(r.seed + k)
    const slice = (n) => {
      const at = Math.floor(rand() * (POOL_BYTES - n))
      return pool.subarray(at, at + n)
    }
    const base = join(rootfs, 'data', `layer-${k}`)
    for (let i = 0; i < r.smallFilesPerLayer; i++) {
      const dir = join(base, `d${Math.floor(i / r.filesPerDir)}`)
      if (i % r.filesPerDir === 0) mkdirSync(dir, { recursive: true })
      writeFileSync(join(dir, `f${i}.bin`), slice(1 + Math.floor(rand() * r.smallMaxBytes)))
    }
    for (let b = 0; b < r.bigFilesPerLayer; b++) {
      const fd = openSync(join(base, `big-${b}.bin`), 'w')
      const chunk = 1024 * 1024
      for (let done = 0; done < r.bigFileBytes; done += chunk) writeSync(fd, slice(chunk))
      closeSync(fd)
    }
  }
}

/**
 * The synthetic image (OciImage), built on first use (a few minutes) and cached afterwards. With
 * `layers` below the recipe's, the image made of the full one's first `layers` layers (same blobs,
 * a config and manifest cut to match): the same content at a fraction of the size, for scaling.
 */
export async function syntheticImage({ layers } = {}) {
  if (layers !== undefined && layers < SYNTHETIC_RECIPE.layers)
    return firstLayersOf(await syntheticImage(), layers)
  const key = createHash('sha256')
    .update(JSON.stringify(SYNTHETIC_RECIPE))
    .digest('hex')
    .slice(0, 16)
  const final = join(IMAGE_CACHE_DIR, `bench-synthetic-${key}`)
  const image = { layout: join(final, 'layout'), tag: 'latest' }
  if (!existsSync(join(final, 'done'))) {
    mkdirSync(IMAGE_CACHE_DIR, { recursive: true })
    const staging = mkdtempSync(join(IMAGE_CACHE_DIR, `.bench-synthetic-${key}-`))
    try {
      const pool = randomBytes(POOL_BYTES)
      const layers = Array.from({ length: SYNTHETIC_RECIPE.layers }, (_, k) => layerRecipe(k, pool))
      await buildImage(layers, { layout: join(staging, 'layout'), tag: image.tag })
      writeFileSync(join(staging, 'done'), JSON.stringify(SYNTHETIC_RECIPE))
      renameSync(staging, final)
    } catch (err) {
      rmSync(staging, { recursive: true, force: true })
      throw err
    }
  }
  return { ...image, ref: `oci:${image.layout}:${image.tag}` }
}

const blobPath = (layout, digest) => join(layout, 'blobs', ...digest.split(':'))

function putBlob(layout, text) {
  const digest = `sha256:${createHash('sha256').update(text).digest('hex')}`
  writeFileSync(blobPath(layout, digest), text)
  return { digest, size: Buffer.byteLength(text) }
}

/** An OCI layout holding `image` cut to its first `count` layers (blobs hardlinked, not copied). */
function firstLayersOf(image, count) {
  const final = `${image.layout.replace(/\/layout$/, '')}-first-${count}`
  const cut = { layout: join(final, 'layout'), tag: image.tag }
  if (!existsSync(join(final, 'done'))) {
    const staging = mkdtempSync(`${final}.tmp-`)
    try {
      const layout = join(staging, 'layout')
      mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true })
      const index = JSON.parse(readFileSync(join(image.layout, 'index.json'), 'utf8'))
      const manifest = JSON.parse(readFileSync(blobPath(image.layout, index.manifests[0].digest)))
      const config = JSON.parse(readFileSync(blobPath(image.layout, manifest.config.digest)))
      config.rootfs.diff_ids = config.rootfs.diff_ids.slice(0, count)
      // history lists one entry per layer (none is empty_layer here): keep those of the kept layers
      if (Array.isArray(config.history)) config.history = config.history.slice(0, count)
      manifest.layers = manifest.layers.slice(0, count)
      for (const l of manifest.layers)
        linkSync(blobPath(image.layout, l.digest), blobPath(layout, l.digest))
      manifest.config = { ...manifest.config, ...putBlob(layout, JSON.stringify(config)) }
      const m = putBlob(layout, JSON.stringify(manifest))
      writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
      writeFileSync(
        join(layout, 'index.json'),
        JSON.stringify({
          schemaVersion: 2,
          manifests: [{ ...index.manifests[0], digest: m.digest, size: m.size }],
        }),
      )
      writeFileSync(join(staging, 'done'), JSON.stringify({ from: image.layout, layers: count }))
      renameSync(staging, final)
    } catch (err) {
      rmSync(staging, { recursive: true, force: true })
      throw err
    }
  }
  return { ...cut, ref: `oci:${cut.layout}:${cut.tag}` }
}
