/**
 * Error codes shared by `bangerd` and its clients. Application errors travel as JSON-RPC
 * `error.code = RPC_ERROR.APPLICATION` (-32000) with `error.data = { code, hint }`; match on
 * `data.code` (a string from ERROR_CODES), never on the message.
 */
import type { RpcErrorData } from './types.js'

/** JSON-RPC 2.0 numeric error codes. */
export const RPC_ERROR = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /** Any banger application error; the string code is in `error.data.code`. */
  APPLICATION: -32000,
  /** The request was cancelled (by `$/cancelRequest` or a disconnect). LSP's value. */
  REQUEST_CANCELLED: -32800,
} as const

/** Stable string codes carried in `error.data.code`. They are API: see the README. */
export const ERROR_CODES = {
  /** A request's params failed validation; the message names the field. */
  INVALID_PARAMS: 'E_INVALID_PARAMS',
  /** The request line was not JSON, or not a JSON-RPC 2.0 request. */
  INVALID_REQUEST: 'E_INVALID_REQUEST',
  METHOD_NOT_FOUND: 'E_METHOD_NOT_FOUND',
  /** The image reference does not parse. */
  INVALID_REFERENCE: 'E_INVALID_REFERENCE',
  /** An image with that name already exists. */
  NAME_TAKEN: 'E_NAME_TAKEN',
  IMAGE_NOT_FOUND: 'E_IMAGE_NOT_FOUND',
  KERNEL_NOT_FOUND: 'E_KERNEL_NOT_FOUND',
  /** A kernel with that name already exists. */
  KERNEL_NAME_TAKEN: 'E_KERNEL_NAME_TAKEN',
  /** A pull or register named no kernel and no default kernel is configured. */
  KERNEL_REQUIRED: 'E_KERNEL_REQUIRED',
  /** A kernel/initrd/modules/rootfs path given does not exist or has the wrong type. */
  FILE_NOT_FOUND: 'E_FILE_NOT_FOUND',
  /** A pull found no SSH public key to install (none in ~/.ssh, none in the config). */
  NO_AUTHORIZED_KEYS: 'E_NO_AUTHORIZED_KEYS',
  /** `image.register` of a file that is not an ext4 filesystem. */
  NOT_EXT4: 'E_NOT_EXT4',
  /** The kernel is still used by an image. */
  KERNEL_IN_USE: 'E_KERNEL_IN_USE',
  /** The pull was cancelled by the client, a disconnect or a daemon shutdown. */
  PULL_CANCELLED: 'E_PULL_CANCELLED',
  /** A call other than a pull was cancelled by its caller (client side). */
  CANCELLED: 'E_CANCELLED',
  /** A pipeline stage failed; `data.cause` carries the stage's own code when it had one. */
  PULL_FAILED: 'E_PULL_FAILED',
  /** The daemon is shutting down and takes no new work. */
  SHUTTING_DOWN: 'E_SHUTTING_DOWN',
  /** Client side: no daemon answers on the socket, or it went away mid-call. */
  DAEMON_UNAVAILABLE: 'E_DAEMON_UNAVAILABLE',
  /** Another daemon already serves this socket. */
  DAEMON_RUNNING: 'E_DAEMON_RUNNING',
  /** The socket path is longer than a unix socket address allows (107 bytes). */
  SOCKET_PATH_TOO_LONG: 'E_SOCKET_PATH_TOO_LONG',
  /**
   * `bangerd` start: a directory it needs (state, cache, socket, temp) cannot be created or
   * used, or the socket cannot be bound there. The message names the path; the hint names the
   * variable and flag that move it.
   */
  PATH_UNUSABLE: 'E_PATH_UNUSABLE',
  /** The config file is not valid JSON or has a wrong field. */
  CONFIG_INVALID: 'E_CONFIG_INVALID',
  /** Something unexpected failed inside the daemon; see its log. */
  INTERNAL: 'E_INTERNAL',
} as const

export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES]

/**
 * An error with a stable string `code`, an optional `hint` saying what to do, and the JSON-RPC
 * numeric code it travels under. The daemon throws these; the client rebuilds them from the
 * wire, so `err.code` reads the same on both sides.
 */
export class RpcError extends Error {
  override name = 'RpcError'
  readonly code: string
  readonly hint?: string
  readonly rpcCode: number
  /** Extra structured data from `error.data` (for example a stage error's own code). */
  readonly data?: Record<string, unknown>

  constructor(
    code: string,
    message: string,
    options: {
      hint?: string
      rpcCode?: number
      cause?: unknown
      data?: Record<string, unknown>
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    if (options.hint !== undefined) this.hint = options.hint
    this.rpcCode = options.rpcCode ?? RPC_ERROR.APPLICATION
    if (options.data !== undefined) this.data = options.data
  }

  /** The `error` member of a JSON-RPC response carrying this error. */
  toJSON(): { code: number; message: string; data: RpcErrorData & Record<string, unknown> } {
    const data: RpcErrorData & Record<string, unknown> = { ...this.data, code: this.code }
    if (this.hint !== undefined) data.hint = this.hint
    return { code: this.rpcCode, message: this.message, data }
  }

  /** Rebuild an error from a JSON-RPC response's `error` member. */
  static fromWire(error: { code?: unknown; message?: unknown; data?: unknown }): RpcError {
    const data =
      error.data && typeof error.data === 'object' ? (error.data as Record<string, unknown>) : {}
    const rpcCode = typeof error.code === 'number' ? error.code : RPC_ERROR.INTERNAL_ERROR
    const code = typeof data.code === 'string' ? data.code : defaultCodeFor(rpcCode)
    const message = typeof error.message === 'string' ? error.message : 'unknown daemon error'
    const rest = { ...data }
    const hint = rest.hint
    delete rest.code
    delete rest.hint
    return new RpcError(code, message, {
      rpcCode,
      ...(typeof hint === 'string' ? { hint } : {}),
      ...(Object.keys(rest).length ? { data: rest } : {}),
    })
  }
}

function defaultCodeFor(rpcCode: number): string {
  switch (rpcCode) {
    case RPC_ERROR.INVALID_PARAMS:
      return ERROR_CODES.INVALID_PARAMS
    case RPC_ERROR.METHOD_NOT_FOUND:
      return ERROR_CODES.METHOD_NOT_FOUND
    case RPC_ERROR.PARSE_ERROR:
    case RPC_ERROR.INVALID_REQUEST:
      return ERROR_CODES.INVALID_REQUEST
    case RPC_ERROR.REQUEST_CANCELLED:
      return ERROR_CODES.PULL_CANCELLED
    default:
      return ERROR_CODES.INTERNAL
  }
}
