import { describe, expect, it } from 'vitest'
import { ERROR_CODES, RPC_ERROR, RpcError } from './errors.js'

describe('RpcError', () => {
  it('round-trips through the wire form with code, hint and extra data', () => {
    const err = new RpcError(ERROR_CODES.NAME_TAKEN, 'an image named x already exists', {
      hint: 'pick another',
      data: { cause: 'E_X' },
    })
    const wire = JSON.parse(JSON.stringify(err)) as Parameters<typeof RpcError.fromWire>[0]
    expect(wire).toEqual({
      code: RPC_ERROR.APPLICATION,
      message: 'an image named x already exists',
      data: { code: 'E_NAME_TAKEN', hint: 'pick another', cause: 'E_X' },
    })
    const back = RpcError.fromWire(wire)
    expect(back).toMatchObject({
      code: 'E_NAME_TAKEN',
      hint: 'pick another',
      rpcCode: -32000,
      message: 'an image named x already exists',
      data: { cause: 'E_X' },
    })
    expect(back).toBeInstanceOf(Error)
  })

  it('maps spec errors without data to string codes', () => {
    expect(RpcError.fromWire({ code: -32601, message: 'nope' }).code).toBe('E_METHOD_NOT_FOUND')
    expect(RpcError.fromWire({ code: -32602, message: 'bad' }).code).toBe('E_INVALID_PARAMS')
    expect(RpcError.fromWire({ code: -32700, message: 'bad' }).code).toBe('E_INVALID_REQUEST')
    expect(RpcError.fromWire({}).code).toBe('E_INTERNAL')
  })
})
