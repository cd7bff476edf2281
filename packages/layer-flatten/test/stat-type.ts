import type { Stats } from 'node:fs'
import type { EntryRecord } from '../src/types.js'

/** The manifest's entry type of an lstat result, for comparing a tree with the manifest. */
export const typeOf = (st: Stats): EntryRecord['type'] =>
  st.isDirectory()
    ? 'directory'
    : st.isSymbolicLink()
      ? 'symlink'
      : st.isCharacterDevice()
        ? 'char'
        : st.isBlockDevice()
          ? 'block'
          : st.isFIFO()
            ? 'fifo'
            : 'file'
