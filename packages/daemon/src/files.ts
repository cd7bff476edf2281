import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { constants } from 'node:fs'
import { cp, copyFile, mkdir, rm, stat } from 'node:fs/promises'
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
