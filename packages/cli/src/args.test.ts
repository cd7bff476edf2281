import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parseArgs } from './args.js'

const cwd = '/home/u/work'
const matching = (re: RegExp): unknown => expect.stringMatching(re)
const parse = (...args: string[]) => parseArgs(args, { cwd })

describe('parseArgs', () => {
  it('parses image pull with every flag, resolving paths against cwd', async () => {
    const { command, debug } = await parse(
      'image',
      'pull',
      'debian:bookworm',
      '--name',
      'deb',
      '--kernel-path',
      'vmlinuz',
      '--initrd',
      '/boot/initrd.img',
      '--modules',
      '../mods',
      '--size',
      '4G',
      '--platform',
      'linux/arm64',
      '--insecure',
      '--debug',
    )
    expect(debug).toBe(true)
    expect(command).toEqual({
      kind: 'image.pull',
      json: false,
      params: {
        ref: 'debian:bookworm',
        name: 'deb',
        kernelPath: '/home/u/work/vmlinuz',
        initrdPath: '/boot/initrd.img',
        modulesDir: '/home/u/mods',
        sizeBytes: 4 * 1024 ** 3,
        platform: 'linux/arm64',
        insecure: true,
      },
    })
  })

  it('sends only the flags given', async () => {
    const { command } = await parse('image', 'pull', 'alpine', '--kernel', 'k1')
    expect(command).toEqual({
      kind: 'image.pull',
      json: false,
      params: { ref: 'alpine', kernel: 'k1' },
    })
  })

  it('rejects --kernel with --kernel-path', async () => {
    await expect(
      parse('image', 'pull', 'a', '--kernel', 'k', '--kernel-path', '/k'),
    ).rejects.toMatchObject({
      code: 'E_USAGE',
      exitCode: 2,
      message: matching(/mutually exclusive/),
      hint: "run 'banger image pull --help' for usage",
    })
  })

  it('rejects --initrd without --kernel-path', async () => {
    await expect(parse('image', 'pull', 'a', '--initrd', '/i')).rejects.toMatchObject({
      code: 'E_USAGE',
      message: matching(/kernel-path/),
    })
  })

  it('rejects a bad size with its own code', async () => {
    await expect(parse('image', 'pull', 'a', '--size', 'lots')).rejects.toMatchObject({
      code: 'E_BAD_SIZE',
      exitCode: 2,
      message: "invalid size 'lots'",
    })
  })

  it('rejects an unknown flag, a missing argument and an unknown command, on one line', async () => {
    for (const args of [
      ['image', 'list', '--bogus'],
      ['image', 'show'],
      ['imag', 'list'],
      ['image'],
      [],
    ]) {
      const err = await parseArgs(args, { cwd }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err, args.join(' ')).toMatchObject({ code: 'E_USAGE', exitCode: 2 })
      expect((err as Error).message).not.toContain('\n')
    }
  })

  it('names a missing positional', async () => {
    await expect(parse('image', 'show')).rejects.toMatchObject({
      message: 'banger image show needs NAME',
      hint: "run 'banger image show --help' for usage",
    })
    await expect(parse('image', 'list', '--nope')).rejects.toMatchObject({
      message: 'unknown argument: nope',
    })
  })

  it('points the hint at the right help', async () => {
    await expect(parse('kernel', 'add', 'k')).rejects.toMatchObject({
      message: matching(/kernel-path/),
      hint: "run 'banger kernel add --help' for usage",
    })
    await expect(parse('nope')).rejects.toMatchObject({ hint: "run 'banger --help' for usage" })
  })

  it('parses listings, show and rm with --json and aliases', async () => {
    expect((await parse('image', 'list', '--json')).command).toEqual({
      kind: 'image.list',
      json: true,
    })
    expect((await parse('image', 'ls')).command).toEqual({ kind: 'image.list', json: false })
    expect((await parse('image', 'show', 'x', '--json')).command).toEqual({
      kind: 'image.show',
      name: 'x',
      json: true,
    })
    expect((await parse('image', 'rm', 'x')).command).toEqual({ kind: 'image.rm', name: 'x' })
    expect((await parse('kernel', 'list')).command).toEqual({ kind: 'kernel.list', json: false })
    expect((await parse('kernel', 'show', 'k')).command).toEqual({
      kind: 'kernel.show',
      name: 'k',
      json: false,
    })
    expect((await parse('kernel', 'rm', 'k')).command).toEqual({ kind: 'kernel.rm', name: 'k' })
    expect((await parse('daemon', 'status', '--json')).command).toEqual({
      kind: 'daemon.status',
      json: true,
    })
    expect((await parse('daemon', 'start')).command).toEqual({ kind: 'daemon.start' })
    expect((await parse('daemon', 'stop')).command).toEqual({ kind: 'daemon.stop' })
  })

  it('parses kernel add and image register', async () => {
    expect(
      (await parse('kernel', 'add', 'k', '--kernel-path', 'vmlinuz', '--default')).command,
    ).toEqual({
      kind: 'kernel.add',
      json: false,
      params: { name: 'k', kernelPath: '/home/u/work/vmlinuz', default: true },
    })
    expect(
      (await parse('image', 'register', 'r', '--rootfs', 'r.ext4', '--kernel', 'k')).command,
    ).toEqual({
      kind: 'image.register',
      json: false,
      params: { name: 'r', rootfsPath: '/home/u/work/r.ext4', kernel: 'k' },
    })
  })

  it('answers --help itself, without a command', async () => {
    const top = await parse('--help')
    expect(top.command).toBeUndefined()
    expect(top.output).toMatch(/banger image/)
    expect(top.output).toMatch(/banger completion/)
    const pull = await parse('image', 'pull', '--help')
    expect(pull.command).toBeUndefined()
    expect(pull.output).toMatch(/--kernel-path/)
    expect(pull.output).toMatch(/--size/)
  })

  it('answers --version itself with the package version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string
    }
    const { command, output } = await parse('--version')
    expect(command).toBeUndefined()
    expect(output).toBe(pkg.version)
  })

  it('prints a completion script', async () => {
    const { command, output } = await parse('completion')
    expect(command).toBeUndefined()
    expect(output).toMatch(/--get-yargs-completions/)
  })
})
