// Runs the built package in a separate process (as the unprivileged test user):
//   node runner.mjs  < {"dest": "...", "layout": "...", "tag": "..."}  or  {"dest": "...", "layers": [{"path": "...", "diffId": "..."}]}
// Prints one JSON line: {"ok": true, "result": ...} or {"ok": false, "code": ..., "message": ...}.
import { createReadStream, readFileSync } from 'node:fs'

const lib = await import(new URL('../dist/index.js', import.meta.url).href)
const spec = JSON.parse(readFileSync(0, 'utf8'))
try {
  const layers = spec.layout
    ? await lib.layersFromOciLayout(spec.layout, spec.tag)
    : spec.layers.map((l) => ({
        name: l.path,
        diffId: l.diffId,
        open: () => createReadStream(l.path),
      }))
  const result = await lib.flattenToDirectory(layers, spec.dest, { limits: spec.limits })
  process.stdout.write(JSON.stringify({ ok: true, result }) + '\n')
} catch (err) {
  process.stdout.write(
    JSON.stringify({ ok: false, code: err.code, message: err.message, hint: err.hint }) + '\n',
  )
}
