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

/** Whether `e` is Miniflare's own check of its binding proxy's answer (`assert(res.status ===
 *  200)` in the proxy client's `#maybeThrow`: an HTTP status other than 200 or 500 from the
 *  runtime), not an error of the statement: seen rarely, right after a start, on the test's
 *  side channel to D1 only. */
function proxyHiccup(e) {
  return e?.code === 'ERR_ASSERTION' && e.generatedMessage && e.actual === false && e.expected === true
    && /#maybeThrow/.test(e.stack ?? '');
}

/** Runs a statement for the test. A proxy hiccup is tried again twice (each logged) when the
 *  statement may run twice: a read or an update (the tests' updates set values), as the hiccup
 *  may come after the statement ran. */
async function runStatement(sql, params) {
  const repeatable = /^\s*(SELECT|UPDATE)\b/i.test(sql);
  for (let attempt = 1; ; attempt += 1) {
    try {
      let stmt = rt.d1.prepare(sql);
      if (params?.length) stmt = stmt.bind(...params);
      return await stmt.all();
    } catch (e) {
      if (!repeatable || !proxyHiccup(e) || attempt === 3) throw e;
      process.send({ type: 'notice', line: JSON.stringify({ event: 'test_d1_proxy_retry', attempt, stack: e.stack }) });
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

process.on('message', async (msg) => {
  if (msg?.type === 'd1') {
    try {
      const { results, meta } = await runStatement(msg.sql, msg.params);
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
