// Runs one pull in a separate process (another daemon, a CLI, or the unprivileged user).
// argv: <dist index.js> <cacheDir> <reference>; prints a `progress` line per progress event and
// a final JSON line with the result.
const [, , dist, cacheDir, ref] = process.argv
const { RegistryClient } = await import(dist)
const rc = new RegistryClient({
  cacheDir,
  retry: { attempts: 3, baseDelayMs: 20 },
  dockerConfigPath: '/nonexistent/config.json',
})
try {
  const session = await rc.pull(ref, {
    onProgress: (e) => {
      if (e.type === 'layer-progress') process.stdout.write(`progress ${e.index} ${e.bytes}\n`)
    },
  })
  const paths = []
  for await (const layer of session.cachedLayers()) paths.push(layer.path)
  await session.done
  process.stdout.write(JSON.stringify({ manifestDigest: session.manifestDigest, paths }) + '\n')
} catch (err) {
  process.stdout.write(JSON.stringify({ code: err.code, message: err.message }) + '\n')
  process.exitCode = 1
} finally {
  await rc.close()
}
