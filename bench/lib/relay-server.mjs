// The bare relay in its own process (bench/relay/child.mjs → Miniflare → workerd), with the
// same handle as tests/support/server.mjs's startServer: { url, port, pid, persistDir, kill(),
// stop() }. The child leads its own process group; kill() SIGKILLs the group (child + workerd),
// and every group still alive is SIGKILLed when this process exits.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('../relay/child.mjs', import.meta.url));

const live = new Set();
process.on('exit', () => {
  for (const pgid of live) {
    try { process.kill(-pgid, 'SIGKILL'); } catch { /* already gone */ }
  }
});

function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

export async function startRelay({ persistDir, port = 0, store = false, readyTimeoutMs = 60_000 }) {
  const child = fork(CHILD, [], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, PARLEY_BENCH_RELAY_OPTS: JSON.stringify({ persistDir, port, store }) },
  });
  const pgid = child.pid;
  live.add(pgid);
  const logs = [];
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => logs.push(...chunk.split('\n').filter(Boolean)));
  }
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let exitedNow = false;
  exited.then(() => { exitedNow = true; });

  async function kill() {
    try { process.kill(-pgid, 'SIGKILL'); } catch { /* already gone */ }
    await exited;
    // workerd may outlive its parent by a moment; wait until the whole group is gone.
    const deadline = Date.now() + 5000;
    while (groupAlive(pgid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    live.delete(pgid);
  }

  let ready;
  try {
    ready = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`relay not ready after ${readyTimeoutMs} ms`)), readyTimeoutMs);
      child.on('message', (msg) => {
        if (msg?.type === 'ready') { clearTimeout(timer); resolve(msg); }
        if (msg?.type === 'error') { clearTimeout(timer); reject(new Error(`relay failed to start: ${msg.message}`)); }
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`relay exited before ready (${signal ?? code})`));
      });
    });
  } catch (e) {
    await kill();
    throw new Error(`${e.message}\n${logs.slice(-20).join('\n')}`);
  }

  return {
    url: ready.url,
    port: ready.port,
    pid: child.pid,
    persistDir,
    logs,
    exited,
    kill,
    async stop({ timeoutMs = 15_000 } = {}) {
      if (!exitedNow) {
        try { child.send({ type: 'stop' }); } catch { /* channel closed */ }
        let timer;
        await Promise.race([exited, new Promise((r) => { timer = setTimeout(r, timeoutMs); })]);
        clearTimeout(timer);
      }
      await kill();
    },
  };
}
