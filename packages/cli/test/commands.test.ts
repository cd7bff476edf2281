import { describe, expect, it } from 'vitest'
import { bangerHome, errorLines } from './helpers.js'

// Kernel catalog, listings and error output through the real binary and a real daemon, as the
// unprivileged test user.

describe('banger kernel add|list|show|rm', () => {
  it('manages the catalog, relative paths resolved against the cwd', async () => {
    const home = bangerHome()
    const kernel = home.file('vmlinuz', 'not really a kernel')
    const initrd = home.file('initrd.img', 'not really an initrd')

    const add = await home.banger(
      'kernel',
      'add',
      'k1',
      '--kernel-path',
      'vmlinuz',
      '--initrd',
      initrd,
      '--default',
    )
    expect(add.stderr).toBe('')
    expect(add).toMatchObject({ code: 0, stdout: 'added kernel k1 (default)\n' })
    const add2 = await home.banger('kernel', 'add', 'k2', '--kernel-path', kernel, '--json')
    expect(add2.code).toBe(0)
    // The daemon keeps its own copy of the files; that it found 'vmlinuz' at all (its cwd is /)
    // shows the CLI sent an absolute path.
    expect(JSON.parse(add2.stdout)).toMatchObject({ name: 'k2', isDefault: false })

    const list = await home.banger('kernel', 'list')
    const lines = list.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^NAME\s+DEFAULT\s+KERNEL\s+INITRD\s+MODULES$/)
    expect(lines.slice(1).sort()).toEqual([
      expect.stringMatching(/^k1\s+\*\s+\/\S+\s+\/\S+\s+-$/),
      expect.stringMatching(/^k2\s+\/\S+\s+-\s+-$/),
    ])
    const json = JSON.parse((await home.banger('kernel', 'list', '--json')).stdout) as {
      kernels: { name: string }[]
    }
    expect(json.kernels.map((k) => k.name).sort()).toEqual(['k1', 'k2'])

    const show = await home.banger('kernel', 'show', 'k1')
    expect(show.stdout).toMatch(/^kernel\s+\/\S+$/m)
    expect(show.stdout).toMatch(/^initrd\s+\/\S+$/m)
    expect(show.stdout).toMatch(/^default\s+yes$/m)

    const rm = await home.banger('kernel', 'rm', 'k2')
    expect(rm).toMatchObject({ code: 0, stdout: 'removed kernel k2\n' })
    const after = JSON.parse((await home.banger('kernel', 'list', '--json')).stdout) as {
      kernels: { name: string }[]
    }
    expect(after.kernels.map((k) => k.name)).toEqual(['k1'])
  })

  it('fails with one line and a hint, no stack, for a missing kernel file or name', async () => {
    const home = bangerHome()
    const missing = await home.banger('kernel', 'add', 'k', '--kernel-path', 'nope/vmlinuz')
    expect(missing.code).toBe(1)
    expect(missing.stdout).toBe('')
    const e1 = errorLines(missing.stderr)
    expect(e1.message).toContain(`${home.dir}/nope/vmlinuz`)
    expect(missing.stderr).not.toMatch(/\n\s+at /)

    const show = await home.banger('kernel', 'show', 'ghost')
    expect(show.code).toBe(1)
    expect(errorLines(show.stderr).message).toContain('ghost')

    const rm = await home.banger('image', 'rm', 'ghost')
    expect(rm.code).toBe(1)
    expect(errorLines(rm.stderr).message).toContain('ghost')
  })

  it('shows the code and stack with --debug', async () => {
    const home = bangerHome()
    const res = await home.banger('image', 'show', 'ghost', '--debug')
    expect(res.code).toBe(1)
    expect(res.stderr).toMatch(/^banger: .*ghost.*\n/)
    expect(res.stderr).toMatch(/^code: E_IMAGE_NOT_FOUND$/m)
    expect(res.stderr).toMatch(/\n\s+at /)
  })
})

describe('banger image list and usage errors', () => {
  it('lists no images, as JSON and as text', async () => {
    const home = bangerHome()
    const json = await home.banger('image', 'list', '--json')
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout)).toEqual({ images: [] })
    const text = await home.banger('image', 'ls')
    expect(text.stdout).toMatch(/^no images/)
  })

  it('rejects a bad command line with exit 2 and one line, without starting a daemon', async () => {
    const home = bangerHome()
    for (const [args, pattern] of [
      [['image', 'pull', 'x', '--size', 'huge'], /^invalid size 'huge'$/],
      [['image', 'pull'], /^banger image pull needs REF$/],
      [['image', 'list', '--bogus'], /^unknown argument: bogus$/],
      [['frobnicate'], /^unknown argument: frobnicate$/],
      [['image', 'pull', 'x', '--kernel', 'k', '--kernel-path', 'f'], /mutually exclusive/],
    ] as const) {
      const res = await home.banger(...args)
      expect(res.code, args.join(' ')).toBe(2)
      expect(res.stdout).toBe('')
      expect(errorLines(res.stderr).message).toMatch(pattern)
    }
    expect((await home.banger('daemon', 'status')).code).toBe(3)
  })

  it('prints help, its version and a completion script', async () => {
    const home = bangerHome()
    const help = await home.banger('image', 'pull', '--help')
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/--kernel-path/)
    const completion = await home.banger('completion')
    expect(completion.code).toBe(0)
    expect(completion.stdout).toMatch(/banger --get-yargs-completions/)
    const version = await home.banger('--version')
    expect(version.code).toBe(0)
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/)
    const words = await home.banger('--get-yargs-completions', 'banger', 'image', '')
    expect(words.stdout.split('\n')).toEqual(expect.arrayContaining(['pull', 'list', 'show', 'rm']))
  })
})
