import { constants } from 'node:fs'
import { cp, copyFile, rm, stat } from 'node:fs/promises'
import { isAbsolute } from 'node:path'
import { ERROR_CODES, RPC_ERROR, RpcError } from './rpc/index.js'

/**
 * Check that `path` is absolute and exists with the wanted type. Rejects with
 * E_INVALID_PARAMS for a relative path and E_FILE_NOT_FOUND for a missing or wrong-typed one.
 */
export async function checkPath(
  field: string,
  path: string,
  kind: 'file' | 'directory',
): Promise<void> {
  if (!isAbsolute(path)) {
    throw new RpcError(ERROR_CODES.INVALID_PARAMS, `${field} must be an absolute path: ${path}`, {
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
      `${field} ${path} ${code === 'EACCES' ? 'is not readable by the daemon' : 'does not exist'}`,
      { hint: `Check the path; the daemon runs as your user and needs to read it.` },
    )
  }
  if (!isKind) {
    throw new RpcError(ERROR_CODES.FILE_NOT_FOUND, `${field} ${path} is not a ${kind}`, {
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
