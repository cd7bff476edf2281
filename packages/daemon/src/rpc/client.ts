import { createConnection, type Socket } from 'node:net'
import { ERROR_CODES, RPC_ERROR, RpcError } from './errors.js'
import type { PullProgress, RpcMethod, RpcMethods } from './types.js'

/** Notification the daemon sends while an `image.pull` runs; params are a PullProgress. */
export const PULL_PROGRESS_METHOD = 'pull.progress'
/** Notification a client sends to cancel one of its requests: params `{ id }`. */
export const CANCEL_REQUEST_METHOD = '$/cancelRequest'

export interface CallOptions {
  /** Aborting cancels the call on the daemon (a `$/cancelRequest`); the promise rejects at once. */
  signal?: AbortSignal
  /** Receives `pull.progress` notifications for this request. */
  onProgress?: (progress: PullProgress) => void
}

/** A connection to `bangerd`. Calls may run concurrently on one connection. */
export interface DaemonClient {
  call<M extends RpcMethod>(
    method: M,
    params: RpcMethods[M]['params'],
    options?: CallOptions,
  ): Promise<RpcMethods[M]['result']>
  /** Close the connection; pending calls reject with E_DAEMON_UNAVAILABLE (the daemon cancels them). */
  close(): void
  /** Resolves when the connection has closed, for whatever reason. */
  readonly closed: Promise<void>
}

interface Pending {
  method: string
  resolve: (value: unknown) => void
  reject: (err: Error) => void
  onProgress?: (progress: PullProgress) => void
}

const unavailableHint = 'Start the daemon with `banger daemon start` (or run `bangerd`).'

/**
 * Connect to the daemon's unix socket. Rejects with RpcError E_DAEMON_UNAVAILABLE when nothing
 * listens there (missing socket, refused connection), with the abort reason's code when the
 * signal aborts first.
 */
export function connectDaemon(
  socketPath: string,
  options: { signal?: AbortSignal } = {},
): Promise<DaemonClient> {
  const { signal } = options
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(cancelled('connect'))
      return
    }
    const socket = createConnection({ path: socketPath })
    const onAbort = (): void => {
      socket.destroy()
      reject(cancelled('connect'))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    socket.once('error', (err: NodeJS.ErrnoException) => {
      signal?.removeEventListener('abort', onAbort)
      reject(
        new RpcError(
          ERROR_CODES.DAEMON_UNAVAILABLE,
          `no daemon is listening on ${socketPath} (${err.code ?? err.message})`,
          { hint: unavailableHint, cause: err },
        ),
      )
    })
    socket.once('connect', () => {
      signal?.removeEventListener('abort', onAbort)
      socket.removeAllListeners('error')
      resolve(new SocketClient(socket, socketPath))
    })
  })
}

function cancelled(method: string): RpcError {
  return new RpcError(
    method === 'image.pull' ? ERROR_CODES.PULL_CANCELLED : ERROR_CODES.CANCELLED,
    method === 'image.pull' ? 'pull cancelled' : `${method} cancelled`,
    { rpcCode: RPC_ERROR.REQUEST_CANCELLED },
  )
}

class SocketClient implements DaemonClient {
  readonly closed: Promise<void>
  #nextId = 1
  #pending = new Map<number, Pending>()
  #buffer = ''
  #closedError: RpcError | undefined

  constructor(
    private readonly socket: Socket,
    private readonly socketPath: string,
  ) {
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => this.#onData(chunk))
    socket.on('error', () => {
      // 'close' follows and rejects what is pending.
    })
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.#closedError = new RpcError(
          ERROR_CODES.DAEMON_UNAVAILABLE,
          `the connection to the daemon at ${this.socketPath} closed`,
          { hint: 'The daemon may have stopped; check `banger daemon status` and its log.' },
        )
        for (const pending of this.#pending.values()) pending.reject(this.#closedError)
        this.#pending.clear()
        resolve()
      })
    })
  }

  call<M extends RpcMethod>(
    method: M,
    params: RpcMethods[M]['params'],
    options: CallOptions = {},
  ): Promise<RpcMethods[M]['result']> {
    const { signal, onProgress } = options
    if (this.#closedError) return Promise.reject(this.#closedError)
    if (signal?.aborted) return Promise.reject(cancelled(method))
    const id = this.#nextId++
    return new Promise<RpcMethods[M]['result']>((resolve, reject) => {
      const onAbort = (): void => {
        if (!this.#pending.delete(id)) return
        this.#send({ jsonrpc: '2.0', method: CANCEL_REQUEST_METHOD, params: { id } })
        reject(cancelled(method))
      }
      const settle = <T>(fn: (v: T) => void) => {
        return (v: T): void => {
          signal?.removeEventListener('abort', onAbort)
          fn(v)
        }
      }
      this.#pending.set(id, {
        method,
        resolve: settle(resolve as (v: unknown) => void),
        reject: settle(reject),
        ...(onProgress ? { onProgress } : {}),
      })
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#send({ jsonrpc: '2.0', id, method, params })
    })
  }

  close(): void {
    this.socket.end()
    this.socket.destroySoon()
  }

  #send(message: unknown): void {
    if (this.socket.writable) this.socket.write(JSON.stringify(message) + '\n')
  }

  #onData(chunk: string): void {
    this.#buffer += chunk
    let newline: number
    while ((newline = this.#buffer.indexOf('\n')) >= 0) {
      const line = this.#buffer.slice(0, newline).trim()
      this.#buffer = this.#buffer.slice(newline + 1)
      if (line) this.#onMessage(line)
    }
  }

  #onMessage(line: string): void {
    let message: {
      id?: unknown
      method?: unknown
      params?: unknown
      result?: unknown
      error?: { code?: unknown; message?: unknown; data?: unknown }
    }
    try {
      message = JSON.parse(line) as typeof message
    } catch {
      return // a daemon never sends this; ignore rather than tear down other calls
    }
    if (message.method === PULL_PROGRESS_METHOD && message.params) {
      const progress = message.params as PullProgress
      const id = typeof progress.requestId === 'number' ? progress.requestId : Number.NaN
      this.#pending.get(id)?.onProgress?.(progress)
      return
    }
    if (typeof message.id !== 'number') return
    const pending = this.#pending.get(message.id)
    if (!pending) return
    this.#pending.delete(message.id)
    if (message.error) pending.reject(RpcError.fromWire(message.error))
    else pending.resolve(message.result)
  }
}
