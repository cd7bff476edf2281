import { z } from 'zod'
import { ERROR_CODES, RPC_ERROR, RpcError, type RpcMethod, type RpcMethods } from './rpc/index.js'

const name = z
  .string()
  .min(1)
  .max(128)
  .regex(
    /^[a-zA-Z0-9][a-zA-Z0-9._-]*$/,
    'must start with a letter or digit and hold only letters, digits, ".", "_" and "-"',
  )
const path = z.string().min(1).max(4096)
const empty = z.strictObject({})
const nameParams = z.strictObject({ name })
const kernelRef = {
  kernel: name.optional(),
  kernelPath: path.optional(),
  initrdPath: path.optional(),
  modulesDir: path.optional(),
}

const schemas: { [M in RpcMethod]: z.ZodType<RpcMethods[M]['params']> } = {
  'image.pull': z.strictObject({
    ref: z.string().min(1).max(1024),
    name: name.optional(),
    sizeBytes: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
    platform: z
      .string()
      .regex(
        /^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/,
        'must look like linux/amd64 or linux/arm64/v8',
      )
      .optional(),
    insecure: z.boolean().optional(),
    ...kernelRef,
  }),
  'image.register': z.strictObject({ name, rootfsPath: path, ...kernelRef }),
  'image.list': empty,
  'image.show': nameParams,
  'image.delete': nameParams,
  'kernel.add': z.strictObject({
    name,
    kernelPath: path,
    initrdPath: path.optional(),
    modulesDir: path.optional(),
    default: z.boolean().optional(),
  }),
  'kernel.list': empty,
  'kernel.show': nameParams,
  'kernel.delete': nameParams,
  'daemon.status': empty,
  'daemon.shutdown': empty,
}

export function isRpcMethod(method: string): method is RpcMethod {
  return Object.hasOwn(schemas, method)
}

/** What a person calls each param field; messages use these, never `params.*`. */
const FIELD_LABELS: Record<string, string> = {
  ref: 'image reference',
  kernel: 'kernel name',
  kernelPath: 'kernel path',
  initrdPath: 'initrd path',
  modulesDir: 'modules directory',
  rootfsPath: 'rootfs path',
  sizeBytes: 'size',
  platform: 'platform',
  insecure: 'insecure flag',
  default: 'default flag',
}

function fieldLabel(method: RpcMethod, key: string): string {
  if (key === 'name') return method.startsWith('kernel.') ? 'kernel name' : 'image name'
  return FIELD_LABELS[key] ?? key
}

/**
 * Validate a request's params. Absent params count as `{}`. Rejects with E_INVALID_PARAMS
 * (JSON-RPC -32602): the message names the field as a person would (`image name "a b" must
 * start with …`), `data.field` names it as the RPC does (`params.name`), `data.method` the method.
 */
export function validateParams<M extends RpcMethod>(
  method: M,
  params: unknown,
): RpcMethods[M]['params'] {
  const result = schemas[method].safeParse(params ?? {})
  if (result.success) return result.data
  const issue = result.error.issues[0]
  const rule = issue?.message ?? 'invalid'
  let key = issue?.path.length ? issue.path.map(String).join('.') : ''
  let message: string
  let hint = 'Check the request against the RpcMethods types in @banger/daemon/rpc.'
  if (issue?.code === 'unrecognized_keys') {
    key = issue.keys[0] ?? ''
    message = `${method} does not take a field named ${JSON.stringify(key)}`
  } else if (!key) {
    message = `${method} params are invalid: ${rule}`
  } else {
    const label = fieldLabel(method, key)
    const value = (params as Record<string, unknown>)[key]
    if (value === undefined) message = `${label} is required`
    else if (rule.startsWith('must ')) message = `${label} ${JSON.stringify(value)} ${rule}`
    else message = `${label} ${JSON.stringify(value)} is invalid: ${rule}`
    if (value !== undefined && issue?.code !== 'invalid_type')
      hint = `Correct the ${label} and run the command again.`
  }
  throw new RpcError(ERROR_CODES.INVALID_PARAMS, message, {
    rpcCode: RPC_ERROR.INVALID_PARAMS,
    hint,
    data: { method, field: key ? `params.${key}` : 'params' },
  })
}
