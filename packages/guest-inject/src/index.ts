export type * from './types.js'
export {
  DebugfsCommandError,
  DebugfsMissingError,
  GuestPathError,
  ImageNotFoundError,
  ImageOpenError,
  InvalidAuthorizedKeyError,
  InvalidHostnameError,
  NoAuthorizedKeysError,
} from './errors.js'
export { PROBLEM_CODES } from './inspect.js'
export { GUEST_PATHS } from './inject.js'

import { inject, inspect } from './inject.js'
import type { GuestInspection, InjectOptions, InjectResult } from './types.js'

/**
 * Reads an ext4 image (read-only, `debugfs -c`) and reports its init system and the problems
 * that would stop it booting to SSH (`problems[].code`: GUEST_NO_INIT, GUEST_INIT_NOT_EXECUTABLE,
 * GUEST_NO_SHELL, GUEST_ROOT_MODE, GUEST_ROOT_OWNER, GUEST_UNKNOWN_INIT, GUEST_NO_SSHD,
 * GUEST_NO_DHCP_CLIENT). Problems are data, never thrown.
 *
 * Rejects with E_IMAGE_NOT_FOUND, E_IMAGE_OPEN (not ext4, unreadable), E_DEBUGFS_MISSING, or the
 * signal's reason when aborted.
 */
export function inspectGuest(
  imagePath: string,
  options: { signal?: AbortSignal } = {},
): Promise<GuestInspection> {
  return inspect(imagePath, options)
}

/**
 * Writes banger's guest assets into an existing ext4 image with `debugfs -w` (no mount, no root):
 * the first-boot program and its init hook, root's authorized_keys and, when given, the hostname.
 * Every file is owned 0:0 with its mode set explicitly. Inspection problems do not stop it; they
 * are returned for the caller to pass on. The image must not be mounted or in use meanwhile.
 *
 * Resolves to every in-image path written or replaced (directories it created included) and the
 * inspection. Rejects with E_NO_AUTHORIZED_KEYS, E_INVALID_AUTHORIZED_KEY, E_INVALID_HOSTNAME
 * (before touching the image), E_IMAGE_NOT_FOUND, E_IMAGE_OPEN, E_DEBUGFS_MISSING, E_GUEST_PATH,
 * E_DEBUGFS_FAILED (the image may then be partly written), or the signal's reason when aborted.
 */
export function injectGuest(imagePath: string, options: InjectOptions): Promise<InjectResult> {
  return inject(imagePath, options)
}
