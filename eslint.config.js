import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import nodePlugin from 'eslint-plugin-n'
import globals from 'globals'

const stages = ['registry-client', 'layer-flatten', 'ext4-build', 'ownership', 'guest-inject']

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'bench/work/**', '**/fixtures/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { n: nodePlugin },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      'n/prefer-node-protocol': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  // Stage packages never import each other: only the daemon wires them.
  ...stages.map((stage) => ({
    files: [`packages/${stage}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@banger/*', '!@banger/test-support'],
              message: 'Stage packages never import each other; the daemon wires them.',
            },
          ],
        },
      ],
    },
  })),
  // The CLI talks only to the daemon's RPC surface. A regex, because gitignore-style negation
  // cannot re-include `@banger/daemon/rpc` once `@banger/*` has excluded `@banger/daemon`.
  {
    files: ['packages/cli/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^@banger/(?!(daemon/rpc|test-support)$)',
              message: 'The CLI imports only @banger/daemon/rpc.',
            },
          ],
        },
      ],
    },
  },
  { files: ['**/*.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
)
