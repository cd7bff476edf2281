import { tmpdir } from 'node:os'
import { expect, it } from 'vitest'

it('runs every test under the run-scoped temp root that global setup removes', () => {
  expect(tmpdir()).toMatch(/banger-test-run-[^/]+$/)
})
