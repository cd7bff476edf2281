import { createServer, type Server, type Socket } from 'node:net'
import type { Logger } from 'pino'
import {
  CANCEL_REQUEST_METHOD,
  ERROR_CODES,
  PULL_PROGRESS_METHOD,
  RPC_ERROR,
  RpcError,
  type PullProgress,
  type RpcMethod,
  type RpcMethods,
} from './rpc/index.js'
import type { PullEvent } from './pipeline.js'
import { isRpcMethod, validateParams } from './validate.js'

/** What a handler gets besides its params. */
export interface RequestContext {
  /** Aborts when the client cancels the request or disconnects, or the daemon stops. */
  signal: AbortSignal
  /** Sends a `pull.progress` notification stamped with this request's id. */
  progress: (event: PullEvent) => void
}

export type Handlers = {
  [M in RpcMethod]: (
    params: RpcMethods[M]['params'],
    ctx: RequestContext,
  ) => Promise<RpcMethods[M]['result']> | RpcMethods[M]['result']
}

/** Longest request line accepted; a pull request is a few hundred bytes. */
const MAX_LINE = 1024 * 1024
/** Layer progress is sent at most this often per layer (done events always go). */
const PROGRESS_INTERVAL_MS = 100
/** Above this much unsent output, in-between layer progress is dropped, never queued. */
const MAX_BUFFERED = 256 * 1024

type Id = number | string

/**
 * JSON-RPC 2.0 over newline-delimited JSON on a unix socket. Every request's params are
 * validated before its handler runs; each request gets a signal that aborts on
 * `$/cancelRequest`, on disconnect and on close().
 */
export class RpcServer {
  readonly server: Server
  readonly #connections = new Set<Socket>()
  readonly #controllers = new Set<AbortController>()

  constructor(
    private readonly handlers: Handlers,
    private readonly log: Logger,
  ) {
    this.server = createServer((socket) => this.#onConnection(socket))
  }

  listen(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(path, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
  }

  /** Stop accepting, abort every request, and close every connection. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    for (const c of this.#controllers) c.abort()
    for (const s of this.#connections) s.end()
    // Give pending responses a moment to flush, then drop stragglers.
    const timer = setTimeout(() => {
      for (const s of this.#connections) s.destroy()
    }, 2000)
    await closed
    clearTimeout(timer)
  }

  /** Abort every running request (used at shutdown before the services close). */
  abortAll(): void {
    for (const c of this.#controllers) c.abort()
  }

  #onConnection(socket: Socket): void {
    this.#connections.add(socket)
    const requests = new Map<Id, AbortController>()
    let buffer = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      buffer += chunk
      let nl: number
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        if (line.trim()) this.#onLine(socket, requests, line)
      }
      if (buffer.length > MAX_LINE) {
        buffer = ''
        this.#send(socket, {
          jsonrpc: '2.0',
          id: null,
          error: new RpcError(ERROR_CODES.INVALID_REQUEST, `request line over ${MAX_LINE} bytes`, {
            rpcCode: RPC_ERROR.INVALID_REQUEST,
          }).toJSON(),
        })
        socket.end()
      }
    })
    socket.on('error', (err) => this.log.debug({ err }, 'client connection error'))
    socket.on('close', () => {
      this.#connections.delete(socket)
      // A client that goes away cancels what it asked for.
      for (const c of requests.values()) c.abort()
      requests.clear()
    })
  }

  #onLine(socket: Socket, requests: Map<Id, AbortController>, line: string): void {
    let msg: unknown
    try {
      msg = JSON.parse(line)
    } catch {
      this.#error(
        socket,
        null,
        new RpcError(ERROR_CODES.INVALID_REQUEST, 'request is not valid JSON', {
          rpcCode: RPC_ERROR.PARSE_ERROR,
          hint: 'Send one JSON-RPC 2.0 object per line.',
        }),
      )
      return
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      this.#error(
        socket,
        null,
        new RpcError(ERROR_CODES.INVALID_REQUEST, 'request must be a JSON object (no batches)', {
          rpcCode: RPC_ERROR.INVALID_REQUEST,
        }),
      )
      return
    }
    const req = msg as { jsonrpc?: unknown; id?: unknown; method?: unknown; params?: unknown }
    const hasId = 'id' in req
    const id: Id | null = typeof req.id === 'number' || typeof req.id === 'string' ? req.id : null
    if (req.jsonrpc !== '2.0' || typeof req.method !== 'string' || (hasId && id === null)) {
      this.#error(
        socket,
        id,
        new RpcError(
          ERROR_CODES.INVALID_REQUEST,
          'not a JSON-RPC 2.0 request: needs jsonrpc "2.0", a string method and a number or string id',
          { rpcCode: RPC_ERROR.INVALID_REQUEST },
        ),
      )
      return
    }
    const method = req.method
    if (!hasId) {
      // Notifications: only cancellation is understood; others are ignored per the spec.
      if (method === CANCEL_REQUEST_METHOD) {
        const target = (req.params as { id?: unknown } | undefined)?.id
        if (typeof target === 'number' || typeof target === 'string') {
          requests.get(target)?.abort()
        }
      }
      return
    }
    if (id === null) return
    if (requests.has(id)) {
      this.#error(
        socket,
        id,
        new RpcError(ERROR_CODES.INVALID_REQUEST, `request id ${id} is already in use`, {
          rpcCode: RPC_ERROR.INVALID_REQUEST,
        }),
      )
      return
    }
    if (!isRpcMethod(method)) {
      this.#error(
        socket,
        id,
        new RpcError(ERROR_CODES.METHOD_NOT_FOUND, `unknown method ${method}`, {
          rpcCode: RPC_ERROR.METHOD_NOT_FOUND,
          hint: 'Is the CLI newer than the daemon? Restart it with `banger daemon stop`.',
        }),
      )
      return
    }
    const controller = new AbortController()
    requests.set(id, controller)
    this.#controllers.add(controller)
    const started = Date.now()
    void this.#dispatch(socket, id, method, req.params, controller.signal)
      .then(
        (result) => this.#send(socket, { jsonrpc: '2.0', id, result }),
        (err: unknown) => this.#error(socket, id, err),
      )
      .finally(() => {
        requests.delete(id)
        this.#controllers.delete(controller)
        this.log.debug({ method, id, ms: Date.now() - started }, 'request done')
      })
  }

  async #dispatch(
    socket: Socket,
    id: Id,
    method: RpcMethod,
    rawParams: unknown,
    signal: AbortSignal,
  ): Promise<unknown> {
    const params = validateParams(method, rawParams)
    const lastSent = new Map<number, number>()
    const progress = (event: PullEvent): void => {
      if (event.type === 'layer' && !event.done) {
        const now = Date.now()
        if (now - (lastSent.get(event.index) ?? 0) < PROGRESS_INTERVAL_MS) return
        if (socket.writableLength > MAX_BUFFERED) return
        lastSent.set(event.index, now)
      }
      const params: PullProgress = { ...event, requestId: id }
      this.#send(socket, { jsonrpc: '2.0', method: PULL_PROGRESS_METHOD, params })
    }
    const handler = this.handlers[method] as (p: unknown, ctx: RequestContext) => unknown
    return await handler(params, { signal, progress })
  }

  #error(socket: Socket, id: Id | null, err: unknown): void {
    let rpcError: RpcError
    if (err instanceof RpcError) {
      rpcError = err
    } else {
      this.log.error({ err }, 'unexpected error in a request')
      rpcError = new RpcError(
        ERROR_CODES.INTERNAL,
        `internal daemon error: ${(err as Error)?.message ?? String(err)}`,
        {
          rpcCode: RPC_ERROR.INTERNAL_ERROR,
          hint: 'See the daemon log (<state>/logs/bangerd.log); this is a bug worth reporting.',
        },
      )
    }
    this.#send(socket, { jsonrpc: '2.0', id, error: rpcError.toJSON() })
  }

  #send(socket: Socket, message: unknown): void {
    if (!socket.writable) return
    socket.write(JSON.stringify(message) + '\n')
  }
}
