import { mkdir, readdir, rename } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { BangerConfig } from './config.js'
import { checkPath, cloneFile, cloneTree, removeAll } from './files.js'
import { Mutex } from './lock.js'
import {
  ERROR_CODES,
  RPC_ERROR,
  RpcError,
  type KernelAddParams,
  type KernelFiles,
  type KernelRecord,
  type KernelRef,
} from './rpc/index.js'
import type { Store } from './store.js'

/** A kernel a pull or register will use: catalog files (with the name) or direct paths. */
export type ResolvedKernel = KernelFiles & { name?: string }

const addHint =
  'Add one with `banger kernel add NAME --kernel-path FILE [--initrd FILE] [--modules DIR] --default`, or pass --kernel NAME or --kernel-path FILE.'

/**
 * Check a kernel triple on its own: the kernel file must exist; initrd and modules if given.
 * `context` prefixes the messages when the files come from somewhere else than the request
 * (`catalog kernel "k6": `, `config defaultKernel: `).
 */
export async function checkKernelFiles(files: KernelFiles, context = ''): Promise<void> {
  await checkPath(`${context}kernel`, files.kernelPath, 'file')
  if (files.initrdPath !== undefined) await checkPath(`${context}initrd`, files.initrdPath, 'file')
  if (files.modulesDir !== undefined)
    await checkPath(`${context}modules directory`, files.modulesDir, 'directory')
}

/**
 * The kernel catalog: `kernel.add` copies the kernel, initrd and modules into
 * `<state>/kernels/<name>/` (staged, then renamed) so the catalog survives the source moving.
 */
export class KernelService {
  readonly #ops = new Mutex()

  constructor(
    private readonly store: Store,
    private readonly kernelsDir: string,
    private readonly config: BangerConfig,
    private readonly log: Logger,
  ) {}

  async add(params: KernelAddParams): Promise<KernelRecord> {
    const taken = (): void => {
      if (this.store.getKernel(params.name)) {
        throw new RpcError(
          ERROR_CODES.KERNEL_NAME_TAKEN,
          `a kernel named ${params.name} already exists`,
          {
            hint: `Pick another name, or remove it first with \`banger kernel rm ${params.name}\`.`,
          },
        )
      }
    }
    taken()
    await checkKernelFiles(params)
    return this.#ops.run(async () => {
      taken()
      const dir = join(this.kernelsDir, params.name)
      const staging = `${dir}.staging`
      await removeAll(staging)
      await mkdir(staging, { recursive: true, mode: 0o700 })
      try {
        await cloneFile(params.kernelPath, join(staging, 'vmlinuz'))
        if (params.initrdPath) await cloneFile(params.initrdPath, join(staging, 'initrd.img'))
        if (params.modulesDir) await cloneTree(params.modulesDir, join(staging, 'modules'))
        await removeAll(dir) // an orphan from a crash between rename and insert
        await rename(staging, dir)
      } catch (err) {
        await removeAll(staging)
        throw err
      }
      const record: KernelRecord = {
        name: params.name,
        kernelPath: join(dir, 'vmlinuz'),
        isDefault: params.default === true,
        createdAt: new Date().toISOString(),
      }
      if (params.initrdPath) record.initrdPath = join(dir, 'initrd.img')
      if (params.modulesDir) record.modulesDir = join(dir, 'modules')
      try {
        this.store.insertKernel(record)
      } catch (err) {
        await removeAll(dir)
        throw err
      }
      this.log.info({ kernel: record.name, default: record.isDefault }, 'kernel added')
      return record
    })
  }

  list(): KernelRecord[] {
    return this.store.listKernels()
  }

  show(name: string): KernelRecord {
    const k = this.store.getKernel(name)
    if (!k) throw this.#notFound(name)
    return k
  }

  delete(name: string): Promise<{ deleted: string }> {
    return this.#ops.run(async () => {
      if (!this.store.getKernel(name)) throw this.#notFound(name)
      const users = this.store.imagesUsingKernel(name)
      if (users.length) {
        throw new RpcError(
          ERROR_CODES.KERNEL_IN_USE,
          `kernel ${name} is used by registered image(s) ${users.join(', ')}`,
          { hint: 'Remove those images first with `banger image rm NAME`.' },
        )
      }
      // Record first, files second: a crash in between leaves an orphan dir the sweep removes.
      this.store.deleteKernel(name)
      await removeAll(join(this.kernelsDir, name))
      this.log.info({ kernel: name }, 'kernel deleted')
      return { deleted: name }
    })
  }

  /**
   * Pick the kernel for a pull or register: `kernel` (a catalog name), else direct paths, else
   * the catalog's default kernel, else the config's `defaultKernel`. Rejects with
   * E_KERNEL_NOT_FOUND, E_FILE_NOT_FOUND, E_INVALID_PARAMS (both a name and paths, or an
   * initrd/modules without a kernel path) or E_KERNEL_REQUIRED when there is none at all.
   */
  async resolve(ref: KernelRef): Promise<ResolvedKernel> {
    if (ref.kernel !== undefined && ref.kernelPath !== undefined) {
      throw new RpcError(
        ERROR_CODES.INVALID_PARAMS,
        `a catalog kernel ("${ref.kernel}") and a kernel path are mutually exclusive`,
        {
          rpcCode: RPC_ERROR.INVALID_PARAMS,
          hint: 'Pass --kernel NAME or --kernel-path FILE, not both.',
        },
      )
    }
    if (
      ref.kernelPath === undefined &&
      (ref.initrdPath !== undefined || ref.modulesDir !== undefined)
    ) {
      throw new RpcError(
        ERROR_CODES.INVALID_PARAMS,
        `${ref.initrdPath !== undefined ? 'an initrd' : 'a modules directory'} needs a kernel path`,
        {
          rpcCode: RPC_ERROR.INVALID_PARAMS,
          hint: 'Pass --kernel-path FILE with --initrd/--modules, or use a catalog kernel (--kernel NAME).',
        },
      )
    }
    if (ref.kernel !== undefined) return this.#fromCatalog(ref.kernel, 'kernel')
    if (ref.kernelPath !== undefined) {
      const files: KernelFiles = { kernelPath: ref.kernelPath }
      if (ref.initrdPath !== undefined) files.initrdPath = ref.initrdPath
      if (ref.modulesDir !== undefined) files.modulesDir = ref.modulesDir
      await checkKernelFiles(files)
      return files
    }
    const catalogDefault = this.store.defaultKernel()
    if (catalogDefault) return this.#fromCatalog(catalogDefault.name, 'default kernel')
    const configured = this.config.defaultKernel
    if (typeof configured === 'string')
      return this.#fromCatalog(configured, "the config file's defaultKernel")
    if (configured) {
      await checkKernelFiles(configured, 'config defaultKernel: ')
      return { ...configured }
    }
    throw new RpcError(ERROR_CODES.KERNEL_REQUIRED, 'no kernel given and no default kernel set', {
      hint: addHint,
    })
  }

  async #fromCatalog(name: string, what: string): Promise<ResolvedKernel> {
    const k = this.store.getKernel(name)
    if (!k) throw this.#notFound(name, what)
    const files: ResolvedKernel = { name: k.name, kernelPath: k.kernelPath }
    if (k.initrdPath) files.initrdPath = k.initrdPath
    if (k.modulesDir) files.modulesDir = k.modulesDir
    await checkKernelFiles(files, `catalog kernel ${JSON.stringify(name)}: `)
    return files
  }

  #notFound(name: string, what = 'kernel'): RpcError {
    const quoted = JSON.stringify(name)
    return new RpcError(ERROR_CODES.KERNEL_NOT_FOUND, `${what} ${quoted} is not in the catalog`, {
      hint: `See \`banger kernel list\` for the names, or add it with \`banger kernel add ${name} --kernel-path FILE\`.`,
    })
  }

  /** Remove `*.staging` dirs and kernel dirs with no record (left by a crash). */
  async sweep(): Promise<string[]> {
    return this.#ops.run(async () => {
      const known = new Set(this.store.listKernels().map((k) => k.name))
      const removed: string[] = []
      for (const entry of await readdir(this.kernelsDir)) {
        if (!entry.endsWith('.staging') && known.has(entry)) continue
        await removeAll(join(this.kernelsDir, entry))
        removed.push(join(this.kernelsDir, entry))
      }
      return removed
    })
  }
}
