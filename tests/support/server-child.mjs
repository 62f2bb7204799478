// Child process of tests/support/server.mjs: runs Parley through scripts/runtime.mjs and answers
// the parent over IPC. It leads its own process group (spawned detached), so the parent can
// SIGKILL it together with its workerd grandchild; it also kills that group itself if the
// parent goes away, so no workerd outlives a test run.
import { seedDemo, startRuntime } from '../../scripts/runtime.mjs';

const opts = JSON.parse(process.env.PARLEY_SERVER_OPTS || '{}');

function killGroup() {
  try { process.kill(-process.pid, 'SIGKILL'); } catch { process.exit(1); }
}
process.on('disconnect', killGroup);

let rt;
try {
  rt = await startRuntime({
    host: '127.0.0.1',
    port: opts.port ?? 0,
    persistDir: opts.persistDir,
    vars: opts.vars ?? {},
    standIns: opts.standIns ?? {},
    ...(opts.root ? { root: opts.root } : {}),
    ...(opts.cf ? { miniflare: { cf: opts.cf } } : {}),
    log: (line) => console.log(JSON.stringify({ event: 'runtime', message: line })),
  });
  const demo = await seedDemo(rt.d1, { origins: opts.origins ?? ['http://allowed.example'] });
  process.send({ type: 'ready', url: rt.url, port: rt.port, ...demo });
} catch (e) {
  process.send?.({ type: 'error', message: e?.stack || String(e) });
  if (rt) await rt.dispose().catch(() => {});
  killGroup();
}

process.on('message', async (msg) => {
  if (msg?.type === 'd1') {
    try {
      let stmt = rt.d1.prepare(msg.sql);
      if (msg.params?.length) stmt = stmt.bind(...msg.params);
      const { results, meta } = await stmt.all();
      process.send({ type: 'reply', id: msg.id, ok: true, value: { results, meta } });
    } catch (e) {
      process.send({ type: 'reply', id: msg.id, ok: false, error: e?.cause?.message ?? e.message });
    }
  } else if (msg?.type === 'stop') {
    try {
      await rt.dispose();
    } finally {
      process.exit(0);
    }
  }
});
