// Child process of bench/lib/relay-server.mjs: runs the bare relay on workerd through Miniflare,
// built from bench/relay/wrangler.toml by the same mapping Parley's runtime uses. Leads its own
// process group (spawned detached) and kills it if the parent goes away.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Miniflare } from 'miniflare';
import { miniflareOptionsFromConfig, readWranglerConfig } from '../../scripts/runtime.mjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const opts = JSON.parse(process.env.PARLEY_BENCH_RELAY_OPTS || '{}');

function killGroup() {
  try { process.kill(-process.pid, 'SIGKILL'); } catch { process.exit(1); }
}
process.on('disconnect', killGroup);

let mf;
try {
  const { options } = miniflareOptionsFromConfig(readWranglerConfig(HERE), {
    root: HERE,
    bindings: { STORE: opts.store ? 'true' : 'false' },
  });
  mf = new Miniflare({
    ...options,
    host: '127.0.0.1',
    port: opts.port ?? 0,
    defaultPersistRoot: join(opts.persistDir, 'v3'),
    cf: {},
  });
  const ready = await mf.ready;
  process.send({ type: 'ready', url: ready.origin, port: Number(ready.port) });
} catch (e) {
  process.send?.({ type: 'error', message: e?.stack || String(e) });
  killGroup();
}

process.on('message', async (msg) => {
  if (msg?.type !== 'stop') return;
  try {
    await mf?.dispose();
  } finally {
    process.exit(0);
  }
});
