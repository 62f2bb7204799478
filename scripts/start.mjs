// `npm start`: run Parley locally (after scripts/setup.mjs has built it), with state kept in
// .parley/state, on 127.0.0.1:$PORT (default 8787), seeded with a demo team, site and admin.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { acquireLock } from './datadir.mjs';
import { seedDemo, startRuntime } from './runtime.mjs';
import { ROOT } from './setup.mjs';

export const STATE_DIR = join(ROOT, '.parley', 'state');

export async function start({
  host = '127.0.0.1',
  port = Number(process.env.PORT || 8787),
  persistDir = STATE_DIR,
  root,
} = {}) {
  // One runtime per data directory; backup refuses a directory a server holds.
  const lock = acquireLock(persistDir, { role: 'start' });
  process.on('exit', () => lock.release());
  const rt = await startRuntime({
    host,
    port,
    persistDir,
    ...(root ? { root } : {}),
    log: (line) => console.log(`[parley] ${line}`),
  });
  const base = `http://${host}:${rt.port}`;
  const demo = await seedDemo(rt.d1, {
    origins: [`http://127.0.0.1:${rt.port}`, `http://localhost:${rt.port}`],
  });
  console.log('');
  console.log(`Parley is running at ${base}/`);
  console.log(`  Demo page:     ${base}/demo/?site=${demo.siteKey}`);
  console.log(`  Agent console: ${base}/console/`);
  console.log(`  Sign in as:    ${demo.email}`);
  console.log(`  Password:      ${demo.password ?? '(unknown: delete the state directory to re-create the demo)'}`);
  console.log(`  State:         ${rt.persistDir}`);
  console.log('Press Ctrl-C to stop.');
  console.log('');

  let stopping = false;
  const stop = async (signal) => {
    if (stopping) {
      console.log(`[parley] ${signal} again: exiting now`);
      process.exit(130);
    }
    stopping = true;
    console.log(`\n[parley] ${signal}: stopping…`);
    try {
      await rt.dispose();
      process.exit(0);
    } catch (e) {
      console.error(`[parley] stop failed: ${e.message}`);
      process.exit(1);
    }
  };
  // Miniflare's own signal hook would exit at once with 130; this process belongs to us, so
  // replace it with a graceful dispose (its 'exit' hook still stops workerd on any exit).
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.removeAllListeners(signal);
    process.on(signal, () => stop(signal));
  }
  return rt;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  start().catch((e) => {
    console.error(`[parley] start failed: ${e.message}`);
    process.exit(1);
  });
}
