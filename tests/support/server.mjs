// Test harness: the built Worker running in its own process (tests/support/server-child.mjs →
// scripts/runtime.mjs → Miniflare → workerd), so a test can kill it hard and restart it on the
// same state directory and port.
//
//   const server = await startServer();            // fresh state under tests/.tmp
//   await fetch(`${server.url}/healthz`);
//   await server.kill();                           // SIGKILL child + workerd
//   const again = await startServer({ persistDir: server.persistDir, port: server.port });
//   await again.d1('SELECT count(*) AS n FROM messages');   // → { results, meta }
//   await again.stop();                            // graceful
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const TMP_ROOT = resolve(HERE, '..', '.tmp');
const CHILD = join(HERE, 'server-child.mjs');
const VERBOSE = Boolean(process.env.PARLEY_TEST_VERBOSE);

/** Process groups of children still alive; all are SIGKILLed when this process exits. */
const live = new Set();
/** Directories made by tempDir(): removed when this process exits (PARLEY_TEST_KEEP=1 keeps them). */
const made = new Set();
process.on('exit', () => {
  for (const pgid of live) {
    try { process.kill(-pgid, 'SIGKILL'); } catch { /* already gone */ }
  }
  if (process.env.PARLEY_TEST_KEEP) return;
  for (const dir of made) {
    try { rmSync(dir, { recursive: true, force: true, maxRetries: 3 }); } catch { /* npm test wipes tests/.tmp first anyway */ }
  }
});

/** A fresh directory under tests/.tmp, gone when the test file's process exits. */
export function tempDir(prefix = 'state-') {
  mkdirSync(TMP_ROOT, { recursive: true });
  const dir = mkdtempSync(join(TMP_ROOT, prefix));
  made.add(dir);
  return dir;
}

/** Processes from /proc as { pid, comm, state, pgrp }, or null where /proc is unavailable. */
function procList() {
  let entries;
  try { entries = readdirSync('/proc'); } catch { return null; }
  const out = [];
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let stat;
    try { stat = readFileSync(`/proc/${e}/stat`, 'utf8'); } catch { continue; }
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const [state, , pgrp] = stat.slice(close + 2).split(' ');
    out.push({ pid: Number(e), comm, state, pgrp: Number(pgrp) });
  }
  return out;
}

/**
 * Pids of running (not zombie) workerd processes on this machine. A killed workerd can stay a
 * zombie for a moment until init reaps it; it holds no port or file by then, so it is ignored.
 */
export function liveWorkerdPids() {
  return (procList() ?? []).filter((p) => p.comm === 'workerd' && p.state !== 'Z').map((p) => p.pid);
}

/** Whether any process of the group still runs (zombies, which hold nothing, do not count). */
function groupAlive(pgid) {
  const procs = procList();
  if (procs) return procs.some((p) => p.pgrp === pgid && p.state !== 'Z');
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

async function waitGroupGone(pgid, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (groupAlive(pgid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

/**
 * Start Parley in a child process. Options: persistDir (default: a new dir under tests/.tmp),
 * port (default 0 = any free port), origins (default ['http://allowed.example']), vars (extra
 * Worker bindings), root (directory with wrangler.toml; default the repo), readyTimeoutMs.
 * Resolves to the server handle once it listens and the demo is seeded.
 */
export async function startServer({
  persistDir,
  port = 0,
  origins = ['http://allowed.example'],
  vars = {},
  standIns = {},
  root,
  // What the edge tells the Worker about each request (request.cf: country, region, city …);
  // a local run has no edge, so by default nothing.
  cf,
  readyTimeoutMs = 60_000,
} = {}) {
  persistDir = persistDir ? resolve(persistDir) : tempDir();
  const child = fork(CHILD, [], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    serialization: 'advanced',
    env: {
      ...process.env,
      PARLEY_SERVER_OPTS: JSON.stringify({ persistDir, port, origins, vars, standIns, root, cf }),
    },
  });
  const pgid = child.pid;
  live.add(pgid);

  // A server a test forgot to stop must not keep the test process alive (the 'exit' hook above
  // then kills it): the child handle, its IPC channel and pipes are referenced only while we
  // are waiting on the child (start-up, d1 calls, stop, kill).
  let holds = 0;
  const hold = () => {
    if (holds++ === 0) { child.ref(); child.channel?.ref(); }
  };
  const release = () => {
    if (--holds === 0) { child.unref(); child.channel?.unref(); }
  };
  hold();
  child.stdout.unref?.();
  child.stderr.unref?.();

  const logs = [];
  const waiters = new Set();
  const collect = (stream, out) => {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (!line) continue;
        logs.push(line);
        if (VERBOSE) out.write(`[server ${pgid}] ${line}\n`);
        for (const w of waiters) w(line);
      }
    });
  };
  collect(child.stdout, process.stdout);
  collect(child.stderr, process.stderr);

  const exited = new Promise((resolveExit) => {
    child.on('exit', (code, signal) => resolveExit({ code, signal }));
  });
  let exitedNow = false;
  exited.then(() => { exitedNow = true; });

  const pending = new Map();
  let nextId = 1;
  child.on('message', (msg) => {
    // What the child wants seen in every run, not only in verbose ones (a flake it worked
    // around, say).
    if (msg?.type === 'notice') {
      process.stderr.write(`[server ${pgid}] ${msg.line}\n`);
      return;
    }
    if (msg?.type !== 'reply') return;
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.value);
    else p.reject(new Error(`D1: ${msg.error}`));
  });
  exited.then(({ code, signal }) => {
    for (const p of pending.values()) p.reject(new Error(`server exited (${signal ?? code})`));
    pending.clear();
  });

  /** SIGKILL the child and its workerd (the whole process group); resolves when all are gone. */
  async function kill() {
    hold();
    try {
      try { process.kill(-pgid, 'SIGKILL'); } catch { /* already gone */ }
      await exited;
      await waitGroupGone(pgid);
      live.delete(pgid);
    } finally {
      release();
    }
  }

  let ready;
  try {
    ready = await new Promise((resolveReady, rejectReady) => {
      const timer = setTimeout(
        () => rejectReady(new Error(`server not ready after ${readyTimeoutMs} ms`)),
        readyTimeoutMs,
      );
      child.on('message', (msg) => {
        if (msg?.type === 'ready') { clearTimeout(timer); resolveReady(msg); }
        if (msg?.type === 'error') { clearTimeout(timer); rejectReady(new Error(`server failed to start: ${msg.message}`)); }
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        rejectReady(new Error(`server exited before ready (${signal ?? code})`));
      });
    });
  } catch (e) {
    await kill();
    const tail = logs.slice(-30).join('\n');
    throw new Error(`${e.message}${tail ? `\n--- server output ---\n${tail}` : ''}`);
  } finally {
    release();
  }

  return {
    url: ready.url,
    port: ready.port,
    siteKey: ready.siteKey,
    email: ready.email,
    password: ready.password,
    identitySecret: ready.identitySecret,
    persistDir,
    pid: child.pid,
    logs,
    exited,
    kill,

    /** Run one SQL statement in the server's D1 (binding DB); resolves to { results, meta }. */
    d1(sql, params = []) {
      if (exitedNow) return Promise.reject(new Error('server has exited'));
      const id = nextId++;
      hold();
      return new Promise((res, rej) => {
        pending.set(id, { resolve: res, reject: rej });
        child.send({ type: 'd1', id, sql, params });
      }).finally(release);
    },

    /** Graceful shutdown (Miniflare dispose); falls back to kill() after timeoutMs. */
    async stop({ timeoutMs = 15_000 } = {}) {
      if (!exitedNow) {
        hold();
        let timer;
        try {
          try { child.send({ type: 'stop' }); } catch { /* channel closed */ }
          await Promise.race([
            exited,
            new Promise((r) => { timer = setTimeout(r, timeoutMs); }),
          ]);
        } finally {
          clearTimeout(timer);
          release();
        }
      }
      await kill(); // ends anything left in the group; only waits when it all already exited
    },

    /** Resolve with the first log line (past or future) matching predicate (RegExp or function). */
    waitForLog(predicate, timeoutMs = 10_000) {
      const test = typeof predicate === 'function' ? predicate : (l) => predicate.test(l);
      const found = logs.find(test);
      if (found) return Promise.resolve(found);
      return new Promise((res, rej) => {
        const w = (line) => {
          if (!test(line)) return;
          waiters.delete(w);
          clearTimeout(timer);
          res(line);
        };
        const timer = setTimeout(() => {
          waiters.delete(w);
          rej(new Error(`no log line matched ${predicate} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
  };
}
