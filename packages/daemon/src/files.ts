import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { constants } from 'node:fs'
import { cp, copyFile, mkdir, rm, stat, statfs } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'
import { ERROR_CODES, RPC_ERROR, RpcError } from './rpc/index.js'

const execFileP = promisify(execFile)

/**
 * Check that `path` is absolute and exists with the wanted type. `what` names the file as a
 * person would (`kernel`, `initrd`, `rootfs`), never as an RPC field. Rejects with
 * E_INVALID_PARAMS for a relative path and E_FILE_NOT_FOUND for a missing or wrong-typed one.
 */
export async function checkPath(
  what: string,
  path: string,
  kind: 'file' | 'directory',
): Promise<void> {
  if (!isAbsolute(path)) {
    throw new RpcError(ERROR_CODES.INVALID_PARAMS, `${what} path ${path} is not absolute`, {
      rpcCode: RPC_ERROR.INVALID_PARAMS,
      hint: 'The daemon does not share your working directory; pass an absolute path.',
    })
  }
  let isKind: boolean
  try {
    const s = await stat(path)
    isKind = kind === 'file' ? s.isFile() : s.isDirectory()
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'EACCES') throw err
    throw new RpcError(
      ERROR_CODES.FILE_NOT_FOUND,
      `${what} ${path} ${code === 'EACCES' ? 'is not readable by the daemon' : 'does not exist'}`,
      { hint: `Check the path; the daemon runs as your user and needs to read it.` },
    )
  }
  if (!isKind) {
    throw new RpcError(ERROR_CODES.FILE_NOT_FOUND, `${what} ${path} is not a ${kind}`, {
      hint: `Pass the path of a ${kind}.`,
    })
  }
}

/** Copy a file, sharing blocks (reflink) where the filesystem can. */
export async function cloneFile(src: string, dest: string): Promise<void> {
  await copyFile(src, dest, constants.COPYFILE_FICLONE)
}

/** Copy a directory tree, sharing blocks where the filesystem can. */
export async function cloneTree(src: string, dest: string): Promise<void> {
  await cp(src, dest, {
    recursive: true,
    errorOnExist: true,
    force: false,
    verbatimSymlinks: true,
    mode: constants.COPYFILE_FICLONE,
  })
}

/** Whether a path exists (any type); other errors than ENOENT/ENOTDIR propagate. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return false
    throw err
  }
}

export async function removeAll(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true, maxRetries: 3 })
}

/**
 * removeAll for a large tree (a flattened image): `rm -rf` in a process of its own, so the work
 * runs on another core rather than as thousands of thread-pool calls; fs.rm if that fails.
 * Never rejects: a tree left behind is swept at the next start.
 */
export async function removeTree(path: string): Promise<void> {
  try {
    await execFileP('rm', ['-rf', '--', path])
  } catch {
    await removeAll(path).catch(() => undefined)
  }
}

/**
 * `mkdir -p` that always ends: creates the missing directories of `path` one level at a time.
 * Node's own `mkdir(path, { recursive: true })` (20.x) spins forever when mkdir(2) answers
 * ENOENT under a parent that exists, as it does under /proc (`/proc/x`). Rejects with the
 * ErrnoException of the level that failed (`err.path` names it), ENOTDIR when a level is a file.
 */
export async function ensureDir(path: string, mode = 0o700): Promise<void> {
  const missing: string[] = []
  for (let dir = resolve(path); ;) {
    try {
      if ((await stat(dir)).isDirectory()) break
      throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${dir}'`), {
        code: 'ENOTDIR',
        path: dir,
      })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    missing.push(dir)
    const parent = dirname(dir)
    if (parent === dir) break
    dir = parent
  }
  for (const dir of missing.reverse()) {
    try {
      await mkdir(dir, { mode })
    } catch (err) {
      // Another process (a second daemon starting) may have made it in between.
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && (await stat(dir)).isDirectory())
        continue
      throw err
    }
  }
}

/**
 * Copy keeping holes (and sharing blocks where the filesystem can reflink). Not fs.copyFile:
 * without reflink support it writes every zero of a sparse 1 GiB image (measured: 33 MiB on
 * disk becomes 1.1 GiB). Resolves false when `src` does not exist.
 *
 * `direct`, for copies nobody waits to read (the cache entry, and a warm pull's image copied
 * beside it): onto ext4 (no reflink there) and from a mostly allocated image, `dd oflag=direct
 * conv=sparse` instead, around the page cache, so two big copies do not pile up dirty pages
 * together (a 54k-entry, 1.2 GiB image: two cp at once took 3.5 s in the daemon here, two dd
 * 1.1 s). dd only skips whole all-zero 4 MiB blocks, so a sparse, scattered image (Debian's: 300
 * MB over 1 GiB, which dd would store as 1 GiB) goes through cp, which keeps every hole.
 */
export async function copySparse(
  src: string,
  dest: string,
  signal?: AbortSignal,
  direct = false,
): Promise<boolean> {
  let info
  try {
    info = await stat(src)
  } catch {
    return false
  }
  if (direct && info.blocks * 512 > info.size / 2 && (await isExt4(dirname(dest)))) {
    try {
      await execFileP(
        'dd',
        [`if=${src}`, `of=${dest}`, 'bs=4M', 'oflag=direct', 'conv=sparse', 'status=none'],
        { signal },
      )
      return true
    } catch (err) {
      if (signal?.aborted) throw err
      await rm(dest, { force: true })
    }
  }
  await execFileP('cp', ['--reflink=auto', '--sparse=always', '--', src, dest], { signal })
  return true
}

const EXT4_MAGIC = 0xef53

async function isExt4(dir: string): Promise<boolean> {
  try {
    return (await statfs(dir)).type === EXT4_MAGIC
  } catch {
    return false
  }
}
