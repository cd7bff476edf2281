// A synthetic image for the scale benchmark: ≥ 1 GiB in ≥ 50k files over four layers, built with
// the harness's buildImage (real umoci) and cached beside the Debian image. File contents are
// slices of a random pool taken at PRNG offsets: as incompressible as random data for gzip
// (whose window is 32 KiB) but cheap to make.
import { randomBytes, createHash } from 'node:crypto'
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
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

/** The synthetic image (OciImage), built on first use (a few minutes) and cached afterwards. */
export async function syntheticImage() {
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
