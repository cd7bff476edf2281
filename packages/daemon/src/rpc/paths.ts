import { homedir } from 'node:os'
import { dirname, join } from 'node:path'

/** Where banger keeps its state, cache, socket and config. */
export interface BangerPaths {
  /** SQLite db, `images/`, `kernels/`, `logs/`. Default `$XDG_STATE_HOME/banger`. */
  stateDir: string
  /** The registry-client's OCI layout (blob cache). Default `$XDG_CACHE_HOME/banger/oci`. */
  cacheDir: string
  /**
   * Warm-pull cache of built root filesystems (before guest injection). Default the `rootfs`
   * sibling of cacheDir (`$XDG_CACHE_HOME/banger/rootfs`); `BANGER_ROOTFS_CACHE_DIR` overrides.
   */
  rootfsCacheDir: string
  /** `$XDG_RUNTIME_DIR/banger/bangerd.sock`, else `<stateDir>/bangerd.sock`. */
  socketPath: string
  /** `$XDG_CONFIG_HOME/banger/config.json`. */
  configPath: string
  /** `<stateDir>/images` */
  imagesDir: string
  /** `<stateDir>/kernels` */
  kernelsDir: string
  /** `<stateDir>/logs` */
  logsDir: string
  /** `<stateDir>/banger.db` */
  dbPath: string
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v
}

/**
 * Resolve banger's paths from the environment, XDG base-directory rules, each overridable by
 * `BANGER_STATE_DIR`, `BANGER_CACHE_DIR`, `BANGER_SOCKET` and `BANGER_CONFIG` (tests use
 * them). Pure: creates nothing.
 */
export function resolvePaths(env: NodeJS.ProcessEnv = process.env): BangerPaths {
  const home = nonEmpty(env.HOME) ?? homedir()
  const stateDir =
    nonEmpty(env.BANGER_STATE_DIR) ??
    join(nonEmpty(env.XDG_STATE_HOME) ?? join(home, '.local', 'state'), 'banger')
  const cacheDir =
    nonEmpty(env.BANGER_CACHE_DIR) ??
    join(nonEmpty(env.XDG_CACHE_HOME) ?? join(home, '.cache'), 'banger', 'oci')
  const runtimeDir = nonEmpty(env.XDG_RUNTIME_DIR)
  const socketPath =
    nonEmpty(env.BANGER_SOCKET) ??
    (runtimeDir ? join(runtimeDir, 'banger', 'bangerd.sock') : join(stateDir, 'bangerd.sock'))
  const configPath =
    nonEmpty(env.BANGER_CONFIG) ??
    join(nonEmpty(env.XDG_CONFIG_HOME) ?? join(home, '.config'), 'banger', 'config.json')
  return {
    stateDir,
    cacheDir,
    rootfsCacheDir: nonEmpty(env.BANGER_ROOTFS_CACHE_DIR) ?? join(dirname(cacheDir), 'rootfs'),
    socketPath,
    configPath,
    imagesDir: join(stateDir, 'images'),
    kernelsDir: join(stateDir, 'kernels'),
    logsDir: join(stateDir, 'logs'),
    dbPath: join(stateDir, 'banger.db'),
  }
}
