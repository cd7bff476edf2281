import { UnencodableNameError, UnsafePathError, type ErrorPlace } from './errors.js'

/**
 * Splits a tar entry name into components: `./` prefixes, `.` components, repeated and trailing
 * slashes are dropped. Refuses absolute names, `..` anywhere and empty names. `[]` is the root.
 */
export function splitEntryName(name: string, place: ErrorPlace): string[] {
  if (name === '') throw new UnsafePathError(name, 'has an empty name', place)
  if (name.startsWith('/')) throw new UnsafePathError(name, 'is an absolute name', place)
  const parts: string[] = []
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..') throw new UnsafePathError(name, 'has a `..` component', place)
    parts.push(part)
  }
  return parts
}

export const toImagePath = (parts: readonly string[]): string => '/' + parts.join('/')

/** ext4 keeps at most 255 bytes per name. */
export const MAX_NAME_BYTES = 255
/**
 * PATH_MAX minus one. Counted with every `"` doubled, as debugfs needs it quoted: a `-f` script
 * line is read with fgets into an 8192-byte buffer, so a command naming such a path still fits.
 */
export const MAX_PATH_BYTES = 4095

/**
 * Refuses names the ext4/debugfs stages cannot carry. Found by testing debugfs 1.47.0 itself
 * (test/debugfs-names.test.ts repeats the experiment):
 * - `-f` scripts are cut into lines at `\n` and at `\r`; a line whose first non-blank character
 *   is `!` is handed to /bin/sh. A name with `\n` or `\r` therefore cannot be named, and could
 *   inject a shell command into the ownership stage's batch. NUL cannot exist in a name at all.
 * - Everything else works inside double quotes with each inner `"` doubled (`"a""b"` is `a"b`):
 *   spaces, tabs, `\`, `'`, `#`, `!`, `;`, `|`, `$`, a leading `-` or `<`, non-ASCII UTF-8.
 *   (`<N>` means inode N only as a whole argument; image paths always start with `/`.)
 * - Lines longer than 8191 bytes are split, hence the quoted-length cap above.
 * Names that are not valid UTF-8 are refused too: the manifest is JSON text.
 */
export function checkEncodable(path: string, place: ErrorPlace): void {
  if (/[\n\r\0]/.test(path)) {
    throw new UnencodableNameError(path, 'contains a newline, carriage return or NUL', place)
  }
  let quotes = 0
  for (const ch of path) if (ch === '"') quotes++
  if (Buffer.byteLength(path) + quotes > MAX_PATH_BYTES) {
    throw new UnencodableNameError(path, `is longer than ${MAX_PATH_BYTES} bytes`, place)
  }
  for (const part of path.split('/')) {
    if (Buffer.byteLength(part) > MAX_NAME_BYTES) {
      throw new UnencodableNameError(
        path,
        `has a component longer than ${MAX_NAME_BYTES} bytes`,
        place,
      )
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** tar-stream hands us names decoded as latin1 (one char per byte); decode them as strict UTF-8. */
export function decodeName(latin1: string, place: ErrorPlace): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(latin1)) return latin1
  try {
    return utf8.decode(Buffer.from(latin1, 'latin1'))
  } catch {
    const shown = Buffer.from(latin1, 'latin1').toString('utf8')
    throw new UnencodableNameError(shown, 'is not valid UTF-8', place)
  }
}
