import Database from 'better-sqlite3'
import type { ImageRecord, KernelRecord } from './rpc/index.js'

/** An image row as stored; `status` and `problem` are computed when read (see images.ts). */
export type StoredImage = Omit<ImageRecord, 'status' | 'problem'>

/**
 * Schema migrations, applied in order; `PRAGMA user_version` holds how many ran. Append only:
 * never edit a migration that has shipped.
 */
const MIGRATIONS: string[] = [
  `CREATE TABLE images (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     managed INTEGER NOT NULL,
     source_ref TEXT,
     manifest_digest TEXT,
     platform TEXT,
     size_bytes INTEGER NOT NULL,
     dir TEXT,
     rootfs_path TEXT NOT NULL,
     kernel_name TEXT,
     kernel_path TEXT,
     initrd_path TEXT,
     modules_dir TEXT,
     injected_files TEXT NOT NULL DEFAULT '[]',
     created_at TEXT NOT NULL
   );
   CREATE TABLE kernels (
     name TEXT PRIMARY KEY,
     kernel_path TEXT NOT NULL,
     initrd_path TEXT,
     modules_dir TEXT,
     is_default INTEGER NOT NULL DEFAULT 0,
     created_at TEXT NOT NULL
   );`,
]

export const SCHEMA_VERSION = MIGRATIONS.length

interface ImageRow {
  id: string
  name: string
  managed: number
  source_ref: string | null
  manifest_digest: string | null
  platform: string | null
  size_bytes: number
  dir: string | null
  rootfs_path: string
  kernel_name: string | null
  kernel_path: string | null
  initrd_path: string | null
  modules_dir: string | null
  injected_files: string
  created_at: string
}

interface KernelRow {
  name: string
  kernel_path: string
  initrd_path: string | null
  modules_dir: string | null
  is_default: number
  created_at: string
}

function imageFromRow(r: ImageRow): StoredImage {
  const image: StoredImage = {
    id: r.id,
    name: r.name,
    managed: r.managed === 1,
    sizeBytes: r.size_bytes,
    rootfsPath: r.rootfs_path,
    injectedFiles: JSON.parse(r.injected_files) as string[],
    createdAt: r.created_at,
  }
  if (r.source_ref !== null) image.sourceRef = r.source_ref
  if (r.manifest_digest !== null) image.manifestDigest = r.manifest_digest
  if (r.platform !== null) image.platform = r.platform
  if (r.dir !== null) image.dir = r.dir
  if (r.kernel_path !== null) {
    image.kernel = { kernelPath: r.kernel_path }
    if (r.kernel_name !== null) image.kernel.name = r.kernel_name
    if (r.initrd_path !== null) image.kernel.initrdPath = r.initrd_path
    if (r.modules_dir !== null) image.kernel.modulesDir = r.modules_dir
  }
  return image
}

function kernelFromRow(r: KernelRow): KernelRecord {
  const k: KernelRecord = {
    name: r.name,
    kernelPath: r.kernel_path,
    isDefault: r.is_default === 1,
    createdAt: r.created_at,
  }
  if (r.initrd_path !== null) k.initrdPath = r.initrd_path
  if (r.modules_dir !== null) k.modulesDir = r.modules_dir
  return k
}

/**
 * The daemon's records in SQLite (better-sqlite3, WAL). Synchronous by design: every method is
 * one statement or one transaction, so a check-then-insert inside one JS turn cannot interleave
 * with another request.
 */
export class Store {
  readonly db: Database.Database

  constructor(path: string) {
    this.db = new Database(path)
    this.db.pragma('journal_mode = WAL')
    this.db.pragma('synchronous = NORMAL')
    this.db.pragma('foreign_keys = ON')
    this.db.pragma('busy_timeout = 5000')
    this.migrate()
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number
    if (current > MIGRATIONS.length) {
      throw new Error(
        `database ${this.db.name} has schema version ${current}, newer than this bangerd knows (${MIGRATIONS.length}); run a newer banger`,
      )
    }
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!)
        this.db.pragma(`user_version = ${v + 1}`)
      })()
    }
  }

  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number
  }

  close(): void {
    if (this.db.open) this.db.close()
  }

  // ---- images

  insertImage(image: StoredImage): void {
    this.db
      .prepare(
        `INSERT INTO images (id, name, managed, source_ref, manifest_digest, platform, size_bytes,
           dir, rootfs_path, kernel_name, kernel_path, initrd_path, modules_dir, injected_files, created_at)
         VALUES (@id, @name, @managed, @source_ref, @manifest_digest, @platform, @size_bytes,
           @dir, @rootfs_path, @kernel_name, @kernel_path, @initrd_path, @modules_dir, @injected_files, @created_at)`,
      )
      .run({
        id: image.id,
        name: image.name,
        managed: image.managed ? 1 : 0,
        source_ref: image.sourceRef ?? null,
        manifest_digest: image.manifestDigest ?? null,
        platform: image.platform ?? null,
        size_bytes: image.sizeBytes,
        dir: image.dir ?? null,
        rootfs_path: image.rootfsPath,
        kernel_name: image.kernel?.name ?? null,
        kernel_path: image.kernel?.kernelPath ?? null,
        initrd_path: image.kernel?.initrdPath ?? null,
        modules_dir: image.kernel?.modulesDir ?? null,
        injected_files: JSON.stringify(image.injectedFiles),
        created_at: image.createdAt,
      })
  }

  getImage(name: string): StoredImage | undefined {
    const row = this.db.prepare('SELECT * FROM images WHERE name = ?').get(name) as
      ImageRow | undefined
    return row && imageFromRow(row)
  }

  listImages(): StoredImage[] {
    const rows = this.db.prepare('SELECT * FROM images ORDER BY name').all() as ImageRow[]
    return rows.map(imageFromRow)
  }

  imageIds(): Set<string> {
    const rows = this.db.prepare('SELECT id FROM images').all() as { id: string }[]
    return new Set(rows.map((r) => r.id))
  }

  deleteImage(name: string): boolean {
    return this.db.prepare('DELETE FROM images WHERE name = ?').run(name).changes > 0
  }

  countImages(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM images').get() as { n: number }).n
  }

  /** Unmanaged images that point at a catalog kernel's files (managed images hold copies). */
  imagesUsingKernel(name: string): string[] {
    const rows = this.db
      .prepare('SELECT name FROM images WHERE kernel_name = ? AND managed = 0 ORDER BY name')
      .all(name) as { name: string }[]
    return rows.map((r) => r.name)
  }

  // ---- kernels

  insertKernel(kernel: KernelRecord): void {
    this.db.transaction(() => {
      if (kernel.isDefault) this.db.prepare('UPDATE kernels SET is_default = 0').run()
      this.db
        .prepare(
          `INSERT INTO kernels (name, kernel_path, initrd_path, modules_dir, is_default, created_at)
           VALUES (?, ?, ?, ?, ?, ?)`,
        )
        .run(
          kernel.name,
          kernel.kernelPath,
          kernel.initrdPath ?? null,
          kernel.modulesDir ?? null,
          kernel.isDefault ? 1 : 0,
          kernel.createdAt,
        )
    })()
  }

  getKernel(name: string): KernelRecord | undefined {
    const row = this.db.prepare('SELECT * FROM kernels WHERE name = ?').get(name) as
      KernelRow | undefined
    return row && kernelFromRow(row)
  }

  listKernels(): KernelRecord[] {
    const rows = this.db.prepare('SELECT * FROM kernels ORDER BY name').all() as KernelRow[]
    return rows.map(kernelFromRow)
  }

  defaultKernel(): KernelRecord | undefined {
    const row = this.db.prepare('SELECT * FROM kernels WHERE is_default = 1').get() as
      KernelRow | undefined
    return row && kernelFromRow(row)
  }

  deleteKernel(name: string): boolean {
    return this.db.prepare('DELETE FROM kernels WHERE name = ?').run(name).changes > 0
  }

  countKernels(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM kernels').get() as { n: number }).n
  }
}
