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

/**
 * Validate a request's params. Absent params count as `{}`. Rejects with E_INVALID_PARAMS
 * (JSON-RPC -32602) whose message names the method and the first bad field.
 */
export function validateParams<M extends RpcMethod>(
  method: M,
  params: unknown,
): RpcMethods[M]['params'] {
  const result = schemas[method].safeParse(params ?? {})
  if (result.success) return result.data
  const issue = result.error.issues[0]
  let field = issue?.path.length ? `params.${issue.path.join('.')}` : 'params'
  let message = issue?.message ?? 'invalid'
  if (issue?.code === 'invalid_type' && message.endsWith('received undefined')) {
    message = 'is required'
  } else if (issue?.code === 'unrecognized_keys') {
    field = `params.${issue.keys[0] ?? ''}`
    message = 'is not a known field'
  }
  throw new RpcError(ERROR_CODES.INVALID_PARAMS, `${method}: ${field}: ${message}`, {
    rpcCode: RPC_ERROR.INVALID_PARAMS,
    hint: 'Check the request against the RpcMethods types in @banger/daemon/rpc.',
  })
}
