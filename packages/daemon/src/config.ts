import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { ERROR_CODES, RpcError } from './rpc/index.js'

/** Where a pull finds its kernel when the request names none: a catalog name or direct paths. */
export type DefaultKernel =
  string | { kernelPath: string; initrdPath?: string; modulesDir?: string }

/** The daemon's config file, `$XDG_CONFIG_HOME/banger/config.json`. Every field is optional. */
export interface BangerConfig {
  /** Registry host → mirror base URLs, tried in order before the origin. */
  mirrors: Record<string, string[]>
  /** Registry hosts reached over plain HTTP (localhost and 127.0.0.0/8 always are). */
  insecureRegistries: string[]
  /** Kernel for pulls that name none, used when no catalog kernel is marked default. */
  defaultKernel?: DefaultKernel
  /** Filesystem size for pulls that give none; default max(tree × 1.25, 1 GiB). */
  defaultSizeBytes?: number
  /** Extra OpenSSH public key lines installed for root in every pulled image. */
  authorizedKeys: string[]
  /** Keep built root filesystems for warm re-pulls (default true). */
  rootfsCache: boolean
}

const configSchema = z.strictObject({
  mirrors: z.record(z.string().min(1), z.array(z.string().min(1))).optional(),
  insecureRegistries: z.array(z.string().min(1)).optional(),
  defaultKernel: z
    .union([
      z.string().min(1),
      z.strictObject({
        kernelPath: z.string().min(1),
        initrdPath: z.string().min(1).optional(),
        modulesDir: z.string().min(1).optional(),
      }),
    ])
    .optional(),
  defaultSizeBytes: z.number().int().positive().optional(),
  authorizedKeys: z.array(z.string().min(1)).optional(),
  rootfsCache: z.boolean().optional(),
})

/**
 * Read the config file. A missing file means defaults; a file that is not JSON or has a wrong
 * field rejects with E_CONFIG_INVALID naming the field.
 */
export async function loadConfig(path: string): Promise<BangerConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return { mirrors: {}, insecureRegistries: [], authorizedKeys: [], rootfsCache: true }
    }
    throw err
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new RpcError(
      ERROR_CODES.CONFIG_INVALID,
      `config file ${path} is not valid JSON: ${(err as Error).message}`,
      { hint: 'Fix the JSON syntax or remove the file to use the defaults.', cause: err },
    )
  }
  const parsed = configSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const field = issue?.path.length ? issue.path.join('.') : '(top level)'
    throw new RpcError(
      ERROR_CODES.CONFIG_INVALID,
      `config file ${path}: ${field}: ${issue?.message ?? 'invalid'}`,
      {
        hint: 'Allowed fields: mirrors, insecureRegistries, defaultKernel, defaultSizeBytes, authorizedKeys, rootfsCache.',
      },
    )
  }
  const c = parsed.data
  return {
    mirrors: c.mirrors ?? {},
    insecureRegistries: c.insecureRegistries ?? [],
    authorizedKeys: c.authorizedKeys ?? [],
    rootfsCache: c.rootfsCache ?? true,
    ...(c.defaultKernel !== undefined ? { defaultKernel: c.defaultKernel } : {}),
    ...(c.defaultSizeBytes !== undefined ? { defaultSizeBytes: c.defaultSizeBytes } : {}),
  }
}
