import { describe, expect, it } from 'vitest'
import { resolvePaths } from './paths.js'

describe('resolvePaths', () => {
  it('follows XDG with home fallbacks', () => {
    const p = resolvePaths({ HOME: '/home/u' })
    expect(p).toMatchObject({
      stateDir: '/home/u/.local/state/banger',
      cacheDir: '/home/u/.cache/banger/oci',
      rootfsCacheDir: '/home/u/.cache/banger/rootfs',
      socketPath: '/home/u/.local/state/banger/bangerd.sock',
      configPath: '/home/u/.config/banger/config.json',
      imagesDir: '/home/u/.local/state/banger/images',
      kernelsDir: '/home/u/.local/state/banger/kernels',
      logsDir: '/home/u/.local/state/banger/logs',
      dbPath: '/home/u/.local/state/banger/banger.db',
    })
  })

  it('uses XDG variables and the runtime dir for the socket', () => {
    const p = resolvePaths({
      HOME: '/home/u',
      XDG_STATE_HOME: '/s',
      XDG_CACHE_HOME: '/c',
      XDG_RUNTIME_DIR: '/run/user/1000',
      XDG_CONFIG_HOME: '/cfg',
    })
    expect(p.stateDir).toBe('/s/banger')
    expect(p.cacheDir).toBe('/c/banger/oci')
    expect(p.socketPath).toBe('/run/user/1000/banger/bangerd.sock')
    expect(p.configPath).toBe('/cfg/banger/config.json')
  })

  it('lets BANGER_* override each path, ignoring empty values', () => {
    const p = resolvePaths({
      HOME: '/home/u',
      XDG_RUNTIME_DIR: '',
      BANGER_STATE_DIR: '/t/state',
      BANGER_CACHE_DIR: '/t/cache',
      BANGER_SOCKET: '/t/s.sock',
      BANGER_CONFIG: '/t/c.json',
    })
    expect(p).toMatchObject({
      stateDir: '/t/state',
      cacheDir: '/t/cache',
      socketPath: '/t/s.sock',
      configPath: '/t/c.json',
      imagesDir: '/t/state/images',
    })
    expect(resolvePaths({ HOME: '/h', BANGER_STATE_DIR: '/x' }).socketPath).toBe('/x/bangerd.sock')
  })
})
