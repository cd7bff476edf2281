import { describe, expect, it } from 'vitest'
import { contentBlocks, minimumBlocks, planExt4Size } from './plan.js'

const MIB = 1024 * 1024

describe('planExt4Size', () => {
  it('never goes below the 64 MiB floor and returns whole MiB', () => {
    const plan = planExt4Size({ bytes: 10, inodes: 3, directories: 1 })
    expect(plan.sizeBytes).toBe(64 * MIB)
    expect(
      planExt4Size({ bytes: 10, inodes: 3, directories: 1 }, { minBytes: 0 }).sizeBytes % MIB,
    ).toBe(0)
  })

  it('leaves at least the headroom of free space over the contents', () => {
    const totals = { bytes: 3 * 1024 * MIB, inodes: 60_000, directories: 5_000 }
    const plan = planExt4Size(totals)
    expect(plan.sizeBytes).toBeGreaterThan(totals.bytes * 1.25)
    expect(plan.sizeBytes).toBeLessThan(totals.bytes * 1.6)
    expect(plan.sizeBytes % 4096).toBe(0)
    expect(planExt4Size(totals, { headroom: 2 }).sizeBytes).toBeGreaterThan(totals.bytes * 2)
  })

  it('counts a block per small file: a million 1-byte files do not fit in their byte total', () => {
    const totals = { bytes: 1_000_000, inodes: 1_000_001, directories: 1 }
    expect(contentBlocks(totals)).toBeGreaterThanOrEqual(1_000_000)
    // and the inode count covers them with room to spare
    const plan = planExt4Size(totals)
    expect(plan.inodes).toBeGreaterThanOrEqual(1_250_000)
    expect(plan.sizeBytes / 4096).toBeGreaterThanOrEqual(plan.inodes) // mkfs: ≤ 1 inode per block
  })

  it('asks for more inodes than mkfs would give on a many-small-file tree', () => {
    const plan = planExt4Size({ bytes: 0, inodes: 100_000, directories: 100 })
    expect(plan.inodes).toBeGreaterThan(plan.sizeBytes / 16384)
    expect(plan.inodes).toBeGreaterThanOrEqual(125_000)
  })

  it('grows with the tree and refuses nonsense', () => {
    const a = planExt4Size({ bytes: 1024 * MIB, inodes: 1000, directories: 10 })
    const b = planExt4Size({ bytes: 2048 * MIB, inodes: 1000, directories: 10 })
    expect(b.sizeBytes).toBeGreaterThan(a.sizeBytes)
    expect(() => planExt4Size({ bytes: -1, inodes: 1, directories: 1 })).toThrow(/bytes/)
    expect(() => planExt4Size({ bytes: 1, inodes: 1, directories: 1 }, { headroom: 0.5 })).toThrow(
      /headroom/,
    )
  })

  it('keeps the minimum below the plan', () => {
    const totals = { bytes: 512 * MIB, inodes: 20_000, directories: 2_000 }
    const plan = planExt4Size(totals)
    expect(minimumBlocks(totals, plan.inodes) * 4096).toBeLessThan(plan.sizeBytes)
  })
})
