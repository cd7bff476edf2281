import { defineConfig } from 'vitest/config'

// Two projects so a developer can run the fast set alone (`pnpm test:fast`).
// `*.slow.test.ts` files boot VMs, debootstrap images or compare whole images.
const everywhere = [
  'packages/*/{src,test}/**/*.test.ts',
  'test-support/{src,test}/**/*.test.ts',
  'test/**/*.test.ts',
]

export default defineConfig({
  test: {
    globalSetup: ['./test/global-setup.ts'],
    projects: [
      {
        test: {
          name: 'fast',
          include: everywhere,
          exclude: ['**/*.slow.test.ts', '**/node_modules/**', '**/dist/**'],
          testTimeout: 120_000,
          hookTimeout: 900_000,
        },
      },
      {
        test: {
          name: 'slow',
          include: ['packages/*/{src,test}/**/*.slow.test.ts', 'test/**/*.slow.test.ts'],
          exclude: ['**/node_modules/**', '**/dist/**'],
          testTimeout: 900_000,
          hookTimeout: 1_800_000,
        },
      },
    ],
  },
})
