import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request, type Dispatcher } from 'undici'
import { parseChallenge, type Credentials, type DockerCredentials } from './auth.js'
import { AuthError, RegistryHttpError, RegistryUnreachableError } from './errors.js'

/** One place an image can be fetched from: the origin registry or one of its mirrors. */
export interface Endpoint {
  /** `https://registry-1.docker.io`, `http://127.0.0.1:5000` (no trailing slash). */
  base: string
  /** Host used to look up credentials: `docker.io`, `127.0.0.1:5000`. */
  credentialHost: string
  mirror: boolean
}

export interface RetryPolicy {
  /** Attempts per request, the first included. */
  attempts: number
  /** First backoff delay; doubles each attempt, with jitter, capped at 10 s. */
  baseDelayMs: number
  /** A 429 asking to wait longer than this fails instead of waiting. */
  maxRetryAfterMs: number
}

export type Response = Dispatcher.ResponseData

const maxRedirects = 5
const retryableStatus = new Set([500, 502, 503, 504])

interface Token {
  value: string
  expiresAt: number
}

/** Whether an error thrown by undici or a socket is worth retrying (resets, timeouts, refused). */
export function isTransientNetworkError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code !== 'string') return false
  return (
    (code.startsWith('UND_ERR_') && code !== 'UND_ERR_ABORTED' && code !== 'UND_ERR_INVALID_ARG') ||
    /^E(CONNRESET|CONNREFUSED|PIPE|TIMEDOUT|HOSTUNREACH|NETUNREACH|AI_AGAIN|CONNABORTED)$/.test(
      code,
    )
  )
}

export function header(res: Response, name: string): string | undefined {
  const v = res.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** Throws the signal's own reason (as fetch does), so callers see their AbortError. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  signal?.throwIfAborted()
}

/**
 * The HTTP side of the registry API: auth challenges (bearer tokens cached per endpoint and
 * repository, basic auth), retries with backoff on 5xx/resets, 429 Retry-After, and redirects
 * (the Authorization header is dropped when a redirect leaves the origin).
 */
export class RegistryHttp {
  readonly dispatcher = new Agent({ headersTimeout: 60_000, bodyTimeout: 60_000, connections: 16 })
  private readonly tokens = new Map<string, Token>()
  private readonly basicHosts = new Set<string>()
  private readonly tokenRequests = new Map<string, Promise<Token>>()

  constructor(
    private readonly credentials: DockerCredentials,
    readonly retry: RetryPolicy,
  ) {}

  close(): Promise<void> {
    return this.dispatcher.close()
  }

  backoff(attempt: number, signal?: AbortSignal): Promise<void> {
    const delay =
      Math.min(10_000, this.retry.baseDelayMs * 2 ** attempt) * (0.75 + Math.random() / 2)
    return sleep(delay, undefined, signal ? { signal } : undefined)
  }

  private async authorization(endpoint: Endpoint, repository: string): Promise<string | undefined> {
    const token = this.tokens.get(tokenKey(endpoint, repository))
    if (token && token.expiresAt > Date.now()) return `Bearer ${token.value}`
    if (this.basicHosts.has(endpoint.base)) {
      const creds = await this.credentials.get(endpoint.credentialHost)
      if (creds) return basic(creds)
    }
    return undefined
  }

  /**
   * GET `endpoint.base + path`. Resolves with a response whose status is not 401/403/429/5xx
   * (those are handled or thrown here); the caller must consume or dump its body.
   * Rejects with E_AUTH, E_REGISTRY_UNREACHABLE, E_REGISTRY_HTTP, or the signal's reason.
   */
  async get(
    endpoint: Endpoint,
    repository: string,
    path: string,
    options: { headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<Response> {
    const { signal } = options
    const url = endpoint.base + path
    let challenged = false
    // A mirror gets two tries: the origin is the fallback, so waiting out a sick mirror only
    // delays the pull.
    const attempts = endpoint.mirror ? Math.min(2, this.retry.attempts) : this.retry.attempts
    for (let attempt = 0; ; attempt++) {
      const last = attempt + 1 >= attempts
      const auth = await this.authorization(endpoint, repository)
      let res: Response
      try {
        res = await this.followRedirects(
          url,
          { ...options.headers, ...(auth && { authorization: auth }) },
          signal,
        )
      } catch (err) {
        throwIfAborted(signal)
        if (isTransientNetworkError(err) && !last) {
          await this.backoff(attempt, signal)
          continue
        }
        throw new RegistryUnreachableError(url, describe(err), { cause: err })
      }
      const status = res.statusCode
      if (status === 401) {
        const challenge = header(res, 'www-authenticate')
        await res.body.dump()
        if (challenged)
          throw new AuthError(
            endpoint.credentialHost,
            auth ? 'the credentials or token were rejected' : 'authentication required',
          )
        challenged = true
        await this.answerChallenge(endpoint, repository, challenge, signal)
        attempt--
        continue
      }
      if (status === 403) {
        const detail = await errorDetail(res)
        throw new AuthError(
          endpoint.credentialHost,
          `access to ${repository} denied${detail ? ` (${detail})` : ''}`,
        )
      }
      if (status === 429) {
        const wait = retryAfterMs(header(res, 'retry-after'))
        await res.body.dump()
        if (last || wait > this.retry.maxRetryAfterMs)
          throw new RegistryHttpError(
            url,
            429,
            `too many requests${wait ? `; asked to wait ${Math.ceil(wait / 1000)} s` : ''}`,
          )
        if (wait > 0) await sleep(wait, undefined, signal ? { signal } : undefined)
        else await this.backoff(attempt, signal)
        continue
      }
      if (retryableStatus.has(status)) {
        const detail = await errorDetail(res)
        if (last) throw new RegistryHttpError(url, status, detail)
        await this.backoff(attempt, signal)
        continue
      }
      return res
    }
  }

  private async followRedirects(
    url: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    const origin = new URL(url).origin
    let current = url
    for (let hop = 0; ; hop++) {
      const sameOrigin = new URL(current).origin === origin
      const sent = { ...headers }
      // A blob redirect usually points at object storage on another host: it must never see
      // the registry's token or password.
      if (!sameOrigin) delete sent.authorization
      const res = await request(current, {
        method: 'GET',
        headers: sent,
        dispatcher: this.dispatcher,
        ...(signal && { signal }),
      })
      const location = header(res, 'location')
      if (res.statusCode >= 300 && res.statusCode < 400 && res.statusCode !== 304 && location) {
        await res.body.dump()
        if (hop >= maxRedirects)
          throw new RegistryHttpError(url, res.statusCode, `more than ${maxRedirects} redirects`)
        current = new URL(location, current).toString()
        continue
      }
      // A 401 from a foreign redirect target is not a registry challenge.
      if (!sameOrigin && res.statusCode === 401) {
        await res.body.dump()
        throw new RegistryHttpError(current, 401, 'redirect target refused the request')
      }
      return res
    }
  }

  private async answerChallenge(
    endpoint: Endpoint,
    repository: string,
    headerValue: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const challenge = headerValue ? parseChallenge(headerValue) : undefined
    if (!challenge)
      throw new AuthError(endpoint.credentialHost, 'HTTP 401 without a WWW-Authenticate challenge')
    const creds = await this.credentials.get(endpoint.credentialHost, signal)
    if (challenge.scheme === 'basic') {
      if (!creds)
        throw new AuthError(
          endpoint.credentialHost,
          'the registry asks for a username and password',
        )
      this.basicHosts.add(endpoint.base)
      return
    }
    if (challenge.scheme !== 'bearer' || !challenge.params.realm)
      throw new AuthError(
        endpoint.credentialHost,
        `unsupported auth challenge ${JSON.stringify(headerValue)}`,
      )
    const key = tokenKey(endpoint, repository)
    this.tokens.delete(key)
    let pending = this.tokenRequests.get(key)
    if (!pending) {
      pending = this.fetchToken(endpoint, repository, challenge.params, creds, signal)
      this.tokenRequests.set(key, pending)
      void pending.then(
        () => this.tokenRequests.delete(key),
        () => this.tokenRequests.delete(key),
      )
    }
    this.tokens.set(key, await pending)
  }

  private async fetchToken(
    endpoint: Endpoint,
    repository: string,
    params: Record<string, string>,
    creds: Credentials | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Token> {
    const realm = new URL(params.realm!)
    if (params.service) realm.searchParams.set('service', params.service)
    realm.searchParams.set('scope', params.scope ?? `repository:${repository}:pull`)
    let res: Response
    try {
      res = await request(realm, {
        method: 'GET',
        headers: creds ? { authorization: basic(creds) } : {},
        dispatcher: this.dispatcher,
        ...(signal && { signal }),
      })
    } catch (err) {
      throwIfAborted(signal)
      throw new RegistryUnreachableError(realm.origin, `token service: ${describe(err)}`, {
        cause: err,
      })
    }
    if (res.statusCode !== 200) {
      const detail = await errorDetail(res)
      throw new AuthError(
        endpoint.credentialHost,
        `token service ${realm.origin} answered HTTP ${res.statusCode}${detail ? ` (${detail})` : ''}`,
      )
    }
    const body = (await res.body.json()) as {
      token?: string
      access_token?: string
      expires_in?: number
    }
    const value = body.token ?? body.access_token
    if (!value)
      throw new AuthError(endpoint.credentialHost, `token service ${realm.origin} sent no token`)
    // Refresh a little early; the spec's default lifetime is 60 s.
    const lifetime = Math.max(10, (body.expires_in ?? 60) - 10) * 1000
    return { value, expiresAt: Date.now() + lifetime }
  }
}

function tokenKey(endpoint: Endpoint, repository: string): string {
  return `${endpoint.base}|${repository}`
}

function basic(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`
}

function retryAfterMs(value: string | undefined): number {
  if (!value) return 0
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? 0 : Math.max(0, at - Date.now())
}

export function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    const cause = (err as { cause?: { message?: string } }).cause
    return `${err.message}${typeof code === 'string' ? ` (${code})` : ''}${cause?.message ? `: ${cause.message}` : ''}`
  }
  return String(err)
}

/** Reads at most 4 KiB of an error body for a message (registry errors are `{errors:[{message}]}`). */
export async function errorDetail(res: Response): Promise<string | undefined> {
  let text = ''
  try {
    for await (const chunk of res.body) {
      text += (chunk as Buffer).toString('utf8')
      if (text.length > 4096) break
    }
  } catch {
    return undefined
  } finally {
    if (!res.body.destroyed) res.body.destroy()
  }
  try {
    const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[] }
    const first = parsed.errors?.[0]
    if (first) return [first.code, first.message].filter(Boolean).join(': ')
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.trim().slice(0, 200) || undefined
}
