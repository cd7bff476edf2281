#!/usr/bin/env node
// The architecture rule as a check: stage packages never import one another, the CLI imports
// nothing of banger's but @banger/daemon/rpc, and the daemon's rpc entry loads no stage or SQLite.
// Reads sources and package.json files as text so it works before anything is built.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'

export const STAGES = [
  'registry-client',
  'layer-flatten',
  'ext4-build',
  'ownership',
  'guest-inject',
]
const IMPORT_RE =
  /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|import\s*['"]([^'"]+)['"]/g

function* sourceFiles(dir) {
  let names
  try {
    names = readdirSync(dir)
  } catch (err) {
    if (err.code === 'ENOENT') return
    throw err
  }
  for (const name of names) {
    if (name === 'node_modules' || name === 'dist') continue
    const path = join(dir, name)
    if (statSync(path).isDirectory()) yield* sourceFiles(path)
    else if (/\.(ts|mts|js|mjs)$/.test(name)) yield path
  }
}

function importsOf(text) {
  const found = []
  for (const m of text.matchAll(IMPORT_RE)) found.push(m[1] ?? m[2] ?? m[3])
  return found
}

/** Which imports a package may make of `@banger/*`, or null when any is allowed. */
function allowedFor(pkg) {
  if (STAGES.includes(pkg)) return (spec) => spec === '@banger/test-support'
  if (pkg === 'cli')
    return (spec) => spec === '@banger/daemon/rpc' || spec === '@banger/test-support'
  return null
}

/** @returns {string[]} one line per violation, empty when the tree keeps the rules */
export function checkBoundaries(root) {
  const violations = []
  const packagesDir = join(root, 'packages')
  for (const pkg of readdirSync(packagesDir)) {
    const allowed = allowedFor(pkg)
    const dir = join(packagesDir, pkg)
    if (allowed) {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
      for (const dep of Object.keys({ ...manifest.dependencies, ...manifest.peerDependencies })) {
        if (
          dep.startsWith('@banger/') &&
          !allowed(dep) &&
          !(pkg === 'cli' && dep === '@banger/daemon')
        )
          violations.push(`packages/${pkg}/package.json depends on ${dep}`)
      }
    }
    for (const file of sourceFiles(join(dir, 'src'))) {
      const rel = relative(root, file)
      const inRpc = pkg === 'daemon' && rel.startsWith(join('packages', 'daemon', 'src', 'rpc'))
      for (const spec of importsOf(readFileSync(file, 'utf8'))) {
        if (allowed && spec.startsWith('@banger/') && !allowed(spec))
          violations.push(`${rel} imports ${spec}`)
        if (
          inRpc &&
          (spec.startsWith('@banger/') ||
            spec === 'better-sqlite3' ||
            spec === 'pino' ||
            (spec.startsWith('.') && !spec.startsWith('./')))
        )
          violations.push(
            `${rel} imports ${spec}: the rpc entry must not load stages, SQLite or daemon internals`,
          )
      }
    }
  }
  return violations
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const violations = checkBoundaries(process.argv[2] ?? process.cwd())
  for (const v of violations) console.error(v)
  process.exit(violations.length ? 1 : 0)
}
