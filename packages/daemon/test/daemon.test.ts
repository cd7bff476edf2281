import {
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { createConnection } from 'node:net'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { startDaemon } from '../src/index.js'
import { connectDaemon, type PullProgress } from '../src/rpc/index.js'
import {
  TEST_KEY,
  fakeKernel,
  fakePipeline,
  untilAborted,
  makeDirs,
  startTestDaemon,
  waitFor,
} from './helpers.js'

const containing = (s: string): string => expect.stringContaining(s) as string
const matching = (r: RegExp): string => expect.stringMatching(r) as string

/** 4 KiB with the ext4 superblock magic where image.register looks for it. */
function fakeExt4(): Buffer {
  const buf = Buffer.alloc(4096)
  buf.writeUInt16LE(0xef53, 1024 + 56)
  return buf
}

/** Send raw lines and collect the response lines. */
async function raw(socketPath: string, lines: string[], expect: number): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path: socketPath })
    const out: unknown[] = []
    let buf = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      buf += chunk
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) {
        out.push(JSON.parse(buf.slice(0, nl)))
        buf = buf.slice(nl + 1)
      }
      if (out.length >= expect) {
        socket.end()
        resolve(out)
      }
    })
    socket.on('error', reject)
    socket.on('connect', () => socket.write(lines.map((l) => l + '\n').join('')))
  })
}

describe('bangerd startup', () => {
  it('creates private dirs, a 0600 socket, and migrates the schema', async () => {
    const { dirs, client, daemon } = await startTestDaemon()
    for (const d of [dirs.stateDir, join(dirs.stateDir, 'images'), join(dirs.stateDir, 'logs')]) {
      expect(statSync(d).mode & 0o777).toBe(0o700)
    }
    expect(statSync(dirs.socketPath).mode & 0o777).toBe(0o600)
    const status = await client.call('daemon.status', {})
    expect(status).toMatchObject({
      pid: process.pid,
      socketPath: dirs.socketPath,
      stateDir: dirs.stateDir,
      images: 0,
      kernels: 0,
      pullsInProgress: 0,
    })
    expect(status.version).toMatch(/^\d+\.\d+\.\d+/)
    await daemon.stop()
    const db = new Database(join(dirs.stateDir, 'banger.db'), { readonly: true })
    expect(db.pragma('user_version', { simple: true })).toBe(1)
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
    db.close()
    expect(existsSync(dirs.socketPath)).toBe(false)
  })

  it('refuses a second daemon on the same socket and state dir', async () => {
    const { dirs } = await startTestDaemon()
    await expect(
      startDaemon({
        paths: { stateDir: join(dirs.root, 'other'), socketPath: dirs.socketPath },
        pipeline: fakePipeline(),
        tmpDir: dirs.tmpDir,
      }),
    ).rejects.toMatchObject({ code: 'E_DAEMON_RUNNING' })
    await expect(
      startDaemon({
        paths: { stateDir: dirs.stateDir, socketPath: join(dirs.root, 'other.sock') },
        pipeline: fakePipeline(),
        tmpDir: dirs.tmpDir,
      }),
    ).rejects.toMatchObject({ code: 'E_DAEMON_RUNNING' })
  })

  it('replaces a stale socket file and a dead pid file', async () => {
    const dirs = makeDirs()
    mkdirSync(join(dirs.root, 'run'), { recursive: true })
    mkdirSync(dirs.stateDir, { recursive: true })
    writeFileSync(dirs.socketPath, '')
    writeFileSync(join(dirs.stateDir, 'bangerd.pid'), '999999999\n')
    const { client } = await startTestDaemon({ dirs })
    expect((await client.call('daemon.status', {})).pid).toBe(process.pid)
  })

  it('refuses a socket path too long for a unix socket', async () => {
    const dirs = makeDirs()
    await expect(
      startDaemon({
        paths: { stateDir: dirs.stateDir, socketPath: join(dirs.root, 'x'.repeat(120)) },
        pipeline: fakePipeline(),
        tmpDir: dirs.tmpDir,
      }),
    ).rejects.toMatchObject({ code: 'E_SOCKET_PATH_TOO_LONG' })
  })

  it('rejects a bad config file naming the field', async () => {
    const dirs = makeDirs()
    writeFileSync(dirs.configPath, JSON.stringify({ mirrors: { 'docker.io': 'nope' } }))
    await expect(
      startDaemon({
        paths: {
          stateDir: dirs.stateDir,
          socketPath: dirs.socketPath,
          configPath: dirs.configPath,
        },
        pipeline: fakePipeline(),
        tmpDir: dirs.tmpDir,
      }),
    ).rejects.toMatchObject({
      code: 'E_CONFIG_INVALID',
      message: containing('mirrors.docker.io'),
    })
    // and it released the pid file: a good config starts now
    writeFileSync(dirs.configPath, '{}')
    const { client } = await startTestDaemon({ dirs })
    expect((await client.call('kernel.list', {})).kernels).toEqual([])
  })

  it('sweeps staging dirs, orphan image dirs and dead temp trees at start', async () => {
    const dirs = makeDirs()
    const images = join(dirs.stateDir, 'images')
    mkdirSync(join(images, 'abc.staging'), { recursive: true })
    writeFileSync(join(images, 'abc.staging', 'rootfs.ext4'), 'half')
    mkdirSync(join(images, 'orphan'))
    mkdirSync(join(dirs.stateDir, 'kernels', 'k.staging'), { recursive: true })
    const deadTree = join(dirs.tmpDir, 'bangerd-pull-999999999-xyz')
    const liveTree = join(dirs.tmpDir, `bangerd-pull-${process.ppid}-xyz`)
    const unrelated = join(dirs.tmpDir, 'someone-else')
    for (const d of [deadTree, liveTree, unrelated]) mkdirSync(d, { recursive: true })
    const { daemon } = await startTestDaemon({ dirs })
    expect(readdirSync(images)).toEqual([])
    expect(readdirSync(join(dirs.stateDir, 'kernels'))).toEqual([])
    expect(existsSync(deadTree)).toBe(false)
    expect(existsSync(liveTree)).toBe(true)
    expect(existsSync(unrelated)).toBe(true)
    expect(daemon.swept).toHaveLength(4)
  })
})

describe('JSON-RPC protocol', () => {
  it('answers malformed lines, unknown methods and bad params with clear errors', async () => {
    const { dirs } = await startTestDaemon()
    const replies = (await raw(
      dirs.socketPath,
      [
        'not json',
        '{"jsonrpc":"2.0","id":1,"method":"image.frobnicate"}',
        '{"jsonrpc":"2.0","id":2,"method":"image.show","params":{"name":7}}',
        '{"jsonrpc":"2.0","id":3,"method":"image.pull","params":{"ref":"x","bogus":1}}',
        '{"id":4,"method":"daemon.status"}',
        '{"jsonrpc":"2.0","id":5,"method":"kernel.list"}',
        '{"jsonrpc":"2.0","id":7,"method":"image.pull","params":{}}',
      ],
      7,
    )) as { id: unknown; error?: { code: number; message: string; data: { code: string } } }[]
    const byId = new Map(replies.map((r) => [r.id, r]))
    expect(byId.get(null)?.error).toMatchObject({ code: -32700 })
    expect(byId.get(1)?.error).toMatchObject({
      code: -32601,
      data: { code: 'E_METHOD_NOT_FOUND' },
    })
    expect(byId.get(2)?.error).toMatchObject({ code: -32602, data: { code: 'E_INVALID_PARAMS' } })
    // The message is for people; the field's RPC name is in data.field for programs.
    expect(byId.get(2)?.error).toMatchObject({
      message: 'image name 7 is invalid: Invalid input: expected string, received number',
      data: { field: 'params.name', method: 'image.show' },
    })
    expect(byId.get(3)?.error).toMatchObject({
      message: 'image.pull does not take a field named "bogus"',
      data: { field: 'params.bogus' },
    })
    expect(byId.get(7)?.error?.message).toBe('image reference is required')
    expect(byId.get(4)?.error).toMatchObject({ code: -32600 })
    expect(byId.get(5)).toMatchObject({ result: { kernels: [] } })
  })

  it('the client rebuilds errors with code and hint', async () => {
    const { client } = await startTestDaemon()
    const err = await client.call('image.show', { name: 'nope' }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'E_IMAGE_NOT_FOUND', rpcCode: -32000 })
    expect((err as { hint: string }).hint).toContain('banger image list')
    await expect(client.call('image.pull', { ref: 'debian', sizeBytes: -1 })).rejects.toMatchObject(
      {
        code: 'E_INVALID_PARAMS',
        message: containing('size -1 is invalid'),
        data: { field: 'params.sizeBytes' },
      },
    )
  })

  it('connectDaemon fails clearly when no daemon listens', async () => {
    const dirs = makeDirs()
    await expect(connectDaemon(join(dirs.root, 'none.sock'))).rejects.toMatchObject({
      code: 'E_DAEMON_UNAVAILABLE',
      hint: containing('banger daemon start'),
    })
  })
})

describe('kernel catalog', () => {
  it('adds (copying files), lists, shows, defaults and deletes kernels', async () => {
    const { dirs, client } = await startTestDaemon()
    const kernelPath = fakeKernel(dirs)
    const initrdPath = fakeKernel(dirs, 'initrd')
    const modulesDir = join(dirs.root, 'modules')
    mkdirSync(join(modulesDir, 'kernel'), { recursive: true })
    writeFileSync(join(modulesDir, 'kernel', 'a.ko'), 'ko')
    const added = await client.call('kernel.add', {
      name: 'k1',
      kernelPath,
      initrdPath,
      modulesDir,
      default: true,
    })
    expect(added).toMatchObject({
      name: 'k1',
      isDefault: true,
      kernelPath: join(dirs.stateDir, 'kernels', 'k1', 'vmlinuz'),
      initrdPath: join(dirs.stateDir, 'kernels', 'k1', 'initrd.img'),
      modulesDir: join(dirs.stateDir, 'kernels', 'k1', 'modules'),
    })
    expect(existsSync(join(added.modulesDir!, 'kernel', 'a.ko'))).toBe(true)
    await client.call('kernel.add', { name: 'k2', kernelPath, default: true })
    const { kernels } = await client.call('kernel.list', {})
    expect(kernels.map((k) => [k.name, k.isDefault])).toEqual([
      ['k1', false],
      ['k2', true],
    ])
    await expect(client.call('kernel.add', { name: 'k1', kernelPath })).rejects.toMatchObject({
      code: 'E_KERNEL_NAME_TAKEN',
    })
    await expect(
      client.call('kernel.add', { name: 'k3', kernelPath: join(dirs.root, 'missing') }),
    ).rejects.toMatchObject({ code: 'E_FILE_NOT_FOUND' })
    await expect(
      client.call('kernel.add', { name: 'k3', kernelPath: 'relative/vmlinuz' }),
    ).rejects.toMatchObject({ code: 'E_INVALID_PARAMS' })
    expect(await client.call('kernel.delete', { name: 'k1' })).toEqual({ deleted: 'k1' })
    expect(existsSync(join(dirs.stateDir, 'kernels', 'k1'))).toBe(false)
    await expect(client.call('kernel.show', { name: 'k1' })).rejects.toMatchObject({
      code: 'E_KERNEL_NOT_FOUND',
    })
  })
})

describe('image records', () => {
  it('registers an existing rootfs, shows it broken once the file is gone, deletes only the record', async () => {
    const { dirs, client } = await startTestDaemon()
    const kernelPath = fakeKernel(dirs)
    const rootfsPath = join(dirs.root, 'my.ext4')
    writeFileSync(rootfsPath, fakeExt4())
    const junk = join(dirs.root, 'junk.img')
    writeFileSync(junk, Buffer.alloc(4096))
    await expect(
      client.call('image.register', { name: 'junk', rootfsPath: junk, kernelPath }),
    ).rejects.toMatchObject({ code: 'E_NOT_EXT4' })
    const rec = await client.call('image.register', { name: 'mine', rootfsPath, kernelPath })
    expect(rec).toMatchObject({
      name: 'mine',
      managed: false,
      status: 'ready',
      sizeBytes: 4096,
      rootfsPath,
      kernel: { kernelPath },
    })
    await expect(
      client.call('image.register', { name: 'mine', rootfsPath, kernelPath }),
    ).rejects.toMatchObject({ code: 'E_NAME_TAKEN' })
    rmSync(rootfsPath)
    const shown = await client.call('image.show', { name: 'mine' })
    expect(shown.status).toBe('broken')
    expect(shown.problem).toContain('is missing')
    expect((await client.call('image.list', {})).images.map((i) => i.status)).toEqual(['broken'])
    writeFileSync(rootfsPath, fakeExt4())
    await client.call('image.delete', { name: 'mine' })
    expect(existsSync(rootfsPath)).toBe(true) // unmanaged: never deleted
    expect((await client.call('image.list', {})).images).toEqual([])
  })

  it('refuses to delete a kernel a registered image uses', async () => {
    const { dirs, client } = await startTestDaemon()
    await client.call('kernel.add', { name: 'k', kernelPath: fakeKernel(dirs) })
    const rootfsPath = join(dirs.root, 'r.ext4')
    writeFileSync(rootfsPath, fakeExt4())
    await client.call('image.register', { name: 'r', rootfsPath, kernel: 'k' })
    await expect(client.call('kernel.delete', { name: 'k' })).rejects.toMatchObject({
      code: 'E_KERNEL_IN_USE',
    })
  })
})

describe('image.pull bookkeeping (fake pipeline)', () => {
  it('publishes an image: record, files, progress, default name', async () => {
    const pipeline = fakePipeline()
    const { dirs, client } = await startTestDaemon({ pipeline })
    const kernelPath = fakeKernel(dirs)
    const events: PullProgress[] = []
    const rec = await client.call(
      'image.pull',
      { ref: '127.0.0.1:5000/debian:bookworm', kernelPath },
      { onProgress: (p) => events.push(p) },
    )
    expect(rec).toMatchObject({
      name: 'debian-bookworm',
      managed: true,
      status: 'ready',
      sourceRef: '127.0.0.1:5000/debian:bookworm',
      platform: 'linux/amd64',
      injectedFiles: ['/root/.ssh/authorized_keys'],
    })
    expect(rec.dir).toBe(join(dirs.stateDir, 'images', rec.id))
    expect(rec.rootfsPath).toBe(join(rec.dir!, 'rootfs.ext4'))
    expect(rec.kernel?.kernelPath).toBe(join(rec.dir!, 'vmlinuz'))
    expect(existsSync(rec.kernel!.kernelPath)).toBe(true)
    expect(readdirSync(join(dirs.stateDir, 'images'))).toEqual([rec.id])
    expect(pipeline.calls[0]?.authorizedKeys).toEqual([TEST_KEY])
    expect(pipeline.calls[0]?.hostname).toBe('debian-bookworm')
    expect(pipeline.calls[0]?.tmpDir).toBe(dirs.tmpDir)
    const stages = events.flatMap((e) => (e.type === 'stage' ? [e.stage] : []))
    expect(stages).toEqual(['resolve', 'download', 'publish', 'done'])
    expect(events.every((e) => e.requestId === events[0]!.requestId)).toBe(true)
    expect(events.some((e) => e.type === 'layer' && e.done)).toBe(true)
    expect(await client.call('image.show', { name: 'debian-bookworm' })).toEqual(rec)
    // a managed image whose rootfs vanished is listed as broken, not hidden
    renameSync(rec.rootfsPath, `${rec.rootfsPath}.away`)
    expect(await client.call('image.show', { name: 'debian-bookworm' })).toMatchObject({
      status: 'broken',
      problem: `rootfs ${rec.rootfsPath} is missing`,
    })
    renameSync(`${rec.rootfsPath}.away`, rec.rootfsPath)
    await expect(
      client.call('image.pull', { ref: '127.0.0.1:5000/debian:bookworm', kernelPath }),
    ).rejects.toMatchObject({ code: 'E_NAME_TAKEN' })
    expect(pipeline.calls).toHaveLength(1) // rejected before any download
    await client.call('image.delete', { name: 'debian-bookworm' })
    expect(existsSync(rec.dir!)).toBe(false)
  })

  it('refuses a pull with no SSH key before downloading; config keys count', async () => {
    const pipeline = fakePipeline()
    const dirs = makeDirs()
    const { client } = await startTestDaemon({ dirs, pipeline, sshKey: false })
    const ref = '127.0.0.1:5000/a:1'
    const kernelPath = fakeKernel(dirs)
    const err = await client.call('image.pull', { ref, kernelPath }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'E_NO_AUTHORIZED_KEYS', hint: containing('ssh-keygen') })
    expect(pipeline.calls).toHaveLength(0)
  })

  it('installs config authorizedKeys besides ~/.ssh keys', async () => {
    const pipeline = fakePipeline()
    const dirs = makeDirs()
    const extra = 'ssh-rsa AAAAB3NzaC1yc2E= extra@host'
    const { client } = await startTestDaemon({
      dirs,
      pipeline,
      config: { authorizedKeys: [extra] },
    })
    await client.call('image.pull', { ref: '127.0.0.1:5000/a:1', kernelPath: fakeKernel(dirs) })
    expect(pipeline.calls[0]?.authorizedKeys).toEqual([TEST_KEY, extra])
  })

  it('resolves the kernel: catalog name, default, config default, or E_KERNEL_REQUIRED', async () => {
    const dirs = makeDirs()
    const pipeline = fakePipeline()
    const { client } = await startTestDaemon({ dirs, pipeline })
    const ref = '127.0.0.1:5000/a:1'
    const err = await client.call('image.pull', { ref }).catch((e: unknown) => e)
    expect(err).toMatchObject({
      code: 'E_KERNEL_REQUIRED',
      hint: containing('banger kernel add'),
    })
    // Cross-review of issue 8: messages read `params.kernel nope is not in the catalog`. What
    // a user reads must not name RPC fields (`params.*`, `kernelPath`, …).
    const noRpcNames = matching(/^(?!.*(params|kernelPath|initrdPath|modulesDir|rootfsPath)).*$/)
    await expect(client.call('image.pull', { ref, kernel: 'nope' })).rejects.toMatchObject({
      code: 'E_KERNEL_NOT_FOUND',
      message: 'kernel "nope" is not in the catalog',
      hint: matching(/banger kernel list.*banger kernel add/),
    })
    await expect(client.call('kernel.show', { name: 'nope' })).rejects.toMatchObject({
      code: 'E_KERNEL_NOT_FOUND',
      message: 'kernel "nope" is not in the catalog',
    })
    await expect(
      client.call('image.pull', { ref, initrdPath: fakeKernel(dirs, 'i') }),
    ).rejects.toMatchObject({
      code: 'E_INVALID_PARAMS',
      message: 'an initrd needs a kernel path',
      hint: containing('--kernel-path'),
    })
    await expect(
      client.call('image.pull', { ref, kernel: 'k', kernelPath: fakeKernel(dirs) }),
    ).rejects.toMatchObject({ code: 'E_INVALID_PARAMS', message: noRpcNames })
    await expect(
      client.call('image.pull', { ref, kernelPath: join(dirs.root, 'missing') }),
    ).rejects.toMatchObject({
      code: 'E_FILE_NOT_FOUND',
      message: `kernel ${join(dirs.root, 'missing')} does not exist`,
    })
    await expect(
      client.call('image.pull', { ref, kernelPath: 'relative/vmlinuz' }),
    ).rejects.toMatchObject({ code: 'E_INVALID_PARAMS', message: noRpcNames })
    await expect(
      client.call('image.register', { name: 'r', rootfsPath: join(dirs.root, 'missing') }),
    ).rejects.toMatchObject({ code: 'E_FILE_NOT_FOUND', message: noRpcNames })
    await expect(
      client.call('image.pull', { ref, name: 'bad name', kernelPath: fakeKernel(dirs) }),
    ).rejects.toMatchObject({
      code: 'E_INVALID_PARAMS',
      message: matching(/^image name "bad name" must start with a letter or digit/),
      data: { field: 'params.name', method: 'image.pull' },
    })
    expect(pipeline.calls).toHaveLength(0)
    await client.call('kernel.add', { name: 'k', kernelPath: fakeKernel(dirs), default: true })
    const rec = await client.call('image.pull', { ref })
    expect(rec.kernel?.name).toBe('k')
  })

  it('uses the config default kernel', async () => {
    const dirs = makeDirs()
    const kernelPath = fakeKernel(dirs)
    const { client } = await startTestDaemon({ dirs, config: { defaultKernel: { kernelPath } } })
    const rec = await client.call('image.pull', { ref: '127.0.0.1:5000/a:1' })
    expect(rec.status).toBe('ready')
  })

  it('rejects a bad reference before anything else', async () => {
    const { dirs, client } = await startTestDaemon()
    const err = (await client
      .call('image.pull', { ref: 'UPPER/Case:tag', kernelPath: fakeKernel(dirs) })
      .catch((e: unknown) => e)) as { code: string }
    expect(err.code).toBe('E_BAD_REFERENCE')
  })

  it('a failed pull leaves no staging dir, temp tree or record, and keeps the stage error code', async () => {
    const pipeline = fakePipeline(async (job) => {
      await import('node:fs/promises').then((fs) => fs.writeFile(job.rootfsPath, 'partial'))
      throw Object.assign(new Error('manifest unknown: nope:missing'), {
        code: 'E_MANIFEST_UNKNOWN',
        hint: 'check the tag',
      })
    })
    const { dirs, client } = await startTestDaemon({ pipeline })
    await expect(
      client.call('image.pull', {
        ref: '127.0.0.1:5000/nope:missing',
        kernelPath: fakeKernel(dirs),
      }),
    ).rejects.toMatchObject({ code: 'E_MANIFEST_UNKNOWN', hint: 'check the tag' })
    expect(readdirSync(join(dirs.stateDir, 'images'))).toEqual([])
    expect((await client.call('image.list', {})).images).toEqual([])
    // an error without a code becomes E_PULL_FAILED
    pipeline.run = () => Promise.reject(new Error('boom'))
    await expect(
      client.call('image.pull', { ref: '127.0.0.1:5000/nope:x', kernelPath: fakeKernel(dirs) }),
    ).rejects.toMatchObject({ code: 'E_PULL_FAILED' })
  })

  it('cancelling the call aborts the pull and cleans up', async () => {
    let seen: AbortSignal | undefined
    const pipeline = fakePipeline(async (job) => {
      seen = job.signal
      await untilAborted(job)
    })
    const { dirs, client } = await startTestDaemon({ pipeline })
    const controller = new AbortController()
    const pull = client.call(
      'image.pull',
      { ref: '127.0.0.1:5000/a:1', kernelPath: fakeKernel(dirs) },
      { signal: controller.signal },
    )
    await waitFor(() => seen !== undefined)
    expect(readdirSync(join(dirs.stateDir, 'images'))).toHaveLength(1) // the staging dir
    controller.abort()
    await expect(pull).rejects.toMatchObject({ code: 'E_PULL_CANCELLED' })
    await waitFor(() => seen!.aborted)
    await waitFor(async () => (await client.call('daemon.status', {})).pullsInProgress === 0)
    expect(readdirSync(join(dirs.stateDir, 'images'))).toEqual([])
  })

  it('a client that disconnects aborts its pull', async () => {
    let seen: AbortSignal | undefined
    const pipeline = fakePipeline(async (job) => {
      seen = job.signal
      await untilAborted(job)
    })
    const { dirs, client } = await startTestDaemon({ pipeline })
    const other = await connectDaemon(dirs.socketPath)
    const pull = other.call('image.pull', {
      ref: '127.0.0.1:5000/a:1',
      kernelPath: fakeKernel(dirs),
    })
    await waitFor(() => seen !== undefined)
    other.close()
    await expect(pull).rejects.toMatchObject({ code: 'E_DAEMON_UNAVAILABLE' })
    await waitFor(() => seen!.aborted)
    await waitFor(async () => (await client.call('daemon.status', {})).pullsInProgress === 0)
    expect(readdirSync(join(dirs.stateDir, 'images'))).toEqual([])
  })

  it('a pull right after a cancelled one of the same name waits for its cleanup, then runs', async () => {
    let first = true
    const pipeline = fakePipeline(async (job) => {
      if (!first) return
      first = false
      await new Promise((_, reject) =>
        job.signal.addEventListener('abort', () => {
          // slow cleanup: the cancelled pull is still in flight for a while
          setTimeout(() => reject(job.signal.reason as Error), 200)
        }),
      )
    })
    const { dirs, client } = await startTestDaemon({ pipeline })
    const kernelPath = fakeKernel(dirs)
    const ref = '127.0.0.1:5000/a:1'
    const controller = new AbortController()
    const a = client.call('image.pull', { ref, kernelPath }, { signal: controller.signal })
    await waitFor(() => pipeline.calls.length === 1)
    controller.abort()
    await expect(a).rejects.toMatchObject({ code: 'E_PULL_CANCELLED' })
    const b = await client.call('image.pull', { ref, kernelPath })
    expect(b.status).toBe('ready')
    expect(pipeline.calls).toHaveLength(2)
    expect(pipeline.calls[0]!.signal.aborted).toBe(true)
  })

  it('identical concurrent pulls share one run; other names pull in parallel', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const pipeline = fakePipeline(() => gate)
    const { dirs, client } = await startTestDaemon({ pipeline })
    const kernelPath = fakeKernel(dirs)
    const ref = '127.0.0.1:5000/a:1'
    const progress: PullProgress[][] = [[], []]
    const a = client.call(
      'image.pull',
      { ref, kernelPath },
      { onProgress: (p) => progress[0]!.push(p) },
    )
    const b = client.call(
      'image.pull',
      { ref, kernelPath },
      { onProgress: (p) => progress[1]!.push(p) },
    )
    const c = client.call('image.pull', { ref, kernelPath, name: 'other' })
    await waitFor(() => pipeline.calls.length === 2) // a+b share, c runs at the same time
    await expect(
      client.call('image.pull', { ref: '127.0.0.1:5000/b:1', kernelPath, name: 'a-1' }),
    ).rejects.toMatchObject({ code: 'E_NAME_TAKEN' })
    expect((await client.call('daemon.status', {})).pullsInProgress).toBe(2)
    release()
    const [ra, rb, rc] = await Promise.all([a, b, c])
    expect(ra).toEqual(rb)
    expect(rc.name).toBe('other')
    expect(pipeline.calls).toHaveLength(2)
    expect(progress[1]!.some((p) => p.type === 'stage' && p.stage === 'done')).toBe(true)
  })

  it('cancelling one of two joined pulls keeps the other going', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const pipeline = fakePipeline(() => gate)
    const { dirs, client } = await startTestDaemon({ pipeline })
    const kernelPath = fakeKernel(dirs)
    const ref = '127.0.0.1:5000/a:1'
    const controller = new AbortController()
    const a = client.call('image.pull', { ref, kernelPath }, { signal: controller.signal })
    const b = client.call('image.pull', { ref, kernelPath })
    await waitFor(() => pipeline.calls.length === 1)
    await new Promise((r) => setTimeout(r, 50))
    controller.abort()
    await expect(a).rejects.toMatchObject({ code: 'E_PULL_CANCELLED' })
    expect(pipeline.calls[0]!.signal.aborted).toBe(false)
    release()
    expect((await b).status).toBe('ready')
  })

  it('daemon.shutdown cancels running pulls, cleans staging and removes the socket', async () => {
    const pipeline = fakePipeline(untilAborted)
    const { dirs, client, daemon } = await startTestDaemon({ pipeline })
    const pull = client.call('image.pull', {
      ref: '127.0.0.1:5000/a:1',
      kernelPath: fakeKernel(dirs),
    })
    await waitFor(() => pipeline.calls.length === 1)
    expect(await client.call('daemon.shutdown', {})).toEqual({ stopping: true })
    await expect(pull).rejects.toMatchObject({
      code: matching(/E_PULL_CANCELLED|E_DAEMON_UNAVAILABLE/),
    })
    await daemon.stopped
    expect(existsSync(dirs.socketPath)).toBe(false)
    expect(readdirSync(join(dirs.stateDir, 'images'))).toEqual([])
  })
})
