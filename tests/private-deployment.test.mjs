// Private deployment (issue 8): `scripts/serve.mjs` as operators run it, in a child process, on a
// temporary data directory. Chat, stop, start: everything is there. Metrics reflect the traffic.
// Back up (online), wipe, restore: everything is there and clients resume. Upgrade from data made
// by the previous migration set. Loopback only; every process is stopped by the test.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { stringify as toToml } from 'smol-toml';
import WebSocket from 'ws';
import { parsePrometheus } from '../scripts/metrics.mjs';
import { hashPassword, randomId, readWranglerConfig, startRuntime } from '../scripts/runtime.mjs';
import {
  agentLogin, connect, eventKey, fullHistory, http, msgId, newConversation, sleep,
} from './support/client.mjs';
import { tempDir } from './support/server.mjs';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const SERVE = join(ROOT, 'scripts', 'serve.mjs');
const BACKUP = join(ROOT, 'scripts', 'backup.mjs');
const RESTORE = join(ROOT, 'scripts', 'restore.mjs');
const VERBOSE = Boolean(process.env.PARLEY_TEST_VERBOSE);

const TOKEN_SECRET = randomBytes(32).toString('hex');
const METRICS_TOKEN = `mt-${randomBytes(16).toString('hex')}`;
const ADMIN = { email: 'owner@example.com', password: 'a long owner password' };
const ORIGIN = 'http://allowed.example';
const PUBLIC_URL = 'https://chat.example.test';

/** Process groups still running; killed when this process exits, whatever happened. */
const live = new Set();
process.on('exit', () => {
  for (const pgid of live) {
    try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ }
  }
});

/** Run a node script to completion: { code, stdout, stderr }. */
function runScript(script, args, { env = {}, timeoutMs = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], {
      cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    live.add(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => { stdout += c; });
    child.stderr.on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => {
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
      reject(new Error(`${script} ${args.join(' ')} timed out\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      live.delete(child.pid);
      if (VERBOSE) process.stdout.write(`[${script.split('/').pop()}] ${stdout}${stderr}`);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Start `node scripts/serve.mjs` on data. Resolves once it logged serve_started, to a handle:
 * url, port, metricsUrl, lines (parsed JSON lines), child, stop() (SIGTERM; resolves to the exit
 * code) and waitFor(predicate).
 */
async function startServe(data, { env = {}, args = [], readyTimeoutMs = 60_000 } = {}) {
  const child = spawn(process.execPath, [SERVE, '--data', data, '--host', '127.0.0.1', '--port', '0', '--metrics-port', '0', '--public-url', PUBLIC_URL, ...args], {
    cwd: ROOT,
    env: { ...process.env, TOKEN_SECRET, PARLEY_METRICS_TOKEN: METRICS_TOKEN, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  live.add(child.pid);
  const lines = [];
  const raw = [];
  const waiters = new Set();
  let buf = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      raw.push(text);
      if (VERBOSE) process.stdout.write(`[serve ${child.pid}] ${text}\n`);
      let line;
      try { line = JSON.parse(text); } catch { line = { event: 'not_json', text }; }
      lines.push(line);
      for (const w of waiters) w(line);
    }
  });
  let stderr = '';
  child.stderr.on('data', (c) => { stderr += c; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => {
    live.delete(child.pid);
    resolve({ code, signal });
  }));

  const waitFor = (pred, timeoutMs = 15_000) => {
    const found = lines.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = (line) => {
        if (!pred(line)) return;
        waiters.delete(w);
        clearTimeout(timer);
        resolve(line);
      };
      const timer = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`no matching serve line within ${timeoutMs} ms; last lines:\n${raw.slice(-10).join('\n')}\n${stderr}`));
      }, timeoutMs);
      waiters.add(w);
    });
  };
  const started = await Promise.race([
    waitFor((l) => l.event === 'serve_started' || l.event === 'serve_failed', readyTimeoutMs),
    exited.then(({ code }) => ({ event: 'exited', code })),
  ]);
  if (started.event !== 'serve_started') {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    throw new Error(`serve did not start: ${JSON.stringify(started)}\n${raw.slice(-10).join('\n')}\n${stderr}`);
  }
  return {
    child,
    url: started.url,
    port: started.port,
    metricsUrl: started.metrics_url,
    lines,
    waitFor,
    exited,
    async stop(signal = 'SIGTERM') {
      child.kill(signal);
      let timer;
      const { code } = await Promise.race([
        exited,
        new Promise((r) => { timer = setTimeout(() => r({ code: 'timeout' }), 25_000); }),
      ]);
      clearTimeout(timer);
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* all gone */ }
      if (code === 'timeout') {
        throw new Error(`serve did not stop within 25 s of ${signal}; last lines:\n${raw.slice(-15).join('\n')}\n${stderr}`);
      }
      return code;
    },
  };
}

/** The metrics endpoint's values (authorized). */
async function scrape(srv) {
  const res = await fetch(srv.metricsUrl, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  assert.equal(res.status, 200);
  return parsePrometheus(await res.text());
}

/** Scrape until check(values) passes (log lines reach the serve process asynchronously). */
async function eventuallyMetrics(srv, check, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const values = await scrape(srv);
    try {
      check(values);
      return values;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(100);
    }
  }
}

/** A socket resuming from `after` of `epoch`: every frame it receives within quietMs after welcome. */
async function resumeFrames(server, conversation, token, after, epoch, quietMs = 400) {
  const socket = await connect(server, conversation, token, { after, epoch });
  await sleep(quietMs);
  const frames = socket.frames.slice(socket.frames.indexOf(socket.welcome) + 1)
    .filter((f) => f.type === 'event' || f.type === 'reset');
  socket.close();
  return { welcome: socket.welcome, frames };
}

const state = {};
const DATA_PARENT = tempDir('private-');
const DATA = join(DATA_PARENT, 'data');
after(async () => {
  if (state.server) await state.server.stop().catch(() => {});
});

test('serve: a new directory gets an owner and a site from the environment, /healthz, a lock and a metrics endpoint', async () => {
  const srv = await startServe(DATA, {
    env: { PARLEY_ADMIN_EMAIL: ADMIN.email, PARLEY_ADMIN_PASSWORD: ADMIN.password, PARLEY_SITE_ORIGINS: ORIGIN },
  });
  state.server = srv;
  const boot = await srv.waitFor((l) => l.event === 'bootstrap' && l.site_key);
  assert.match(boot.site_key, /^pk_/);
  assert.deepEqual(boot.origins, [ORIGIN]);
  assert.ok(!JSON.stringify(srv.lines).includes(ADMIN.password), 'the password is never printed');
  state.site = { url: srv.url, siteKey: boot.site_key, email: ADMIN.email, password: ADMIN.password };

  const health = await fetch(`${srv.url}/healthz`);
  assert.equal(health.status, 200);
  // Ours, and the launcher's own first request (it has the Worker recover the objects' alarms).
  state.healthz = 2;

  // The lock names this server; no demo was seeded (no --demo).
  const lock = JSON.parse(readFileSync(join(DATA, 'parley.lock'), 'utf8'));
  assert.equal(lock.pid, srv.child.pid);
  assert.equal(lock.role, 'serve');
  assert.ok(!existsSync(join(DATA, 'demo-credentials.json')));
  const demoLogin = await http(srv.url, '/api/v1/agent/login', { method: 'POST', body: { email: 'admin@parley.local', password: 'x'.repeat(12) } });
  assert.equal(demoLogin.status, 401);

  // A second server on the same directory is refused and changes nothing.
  const second = await runScript(SERVE, ['--data', DATA, '--port', '0', '--metrics-port', '0']);
  assert.equal(second.code, 1);
  assert.match(second.stdout, /"serve_failed".*in use by serve \(pid \d+/);
  assert.equal(JSON.parse(readFileSync(join(DATA, 'parley.lock'), 'utf8')).pid, srv.child.pid);

  // Metrics: only with the token.
  assert.match(srv.metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  assert.equal((await fetch(srv.metricsUrl)).status, 401);
  assert.equal((await fetch(srv.metricsUrl, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status, 401);
  const values = await scrape(srv);
  assert.ok(values.parley_process_start_time_seconds > 1.7e9);
});

test('chat through the private deployment; metrics reflect the traffic', async () => {
  const srv = state.server;
  const site = state.site;
  const agent = await agentLogin(site);
  const visitor = await newConversation(site);
  const vs = await connect(site, visitor.conversation, visitor.token);
  const as = await connect(site, visitor.conversation, agent.token);
  let sent = 0;
  for (let i = 0; i < 3; i++) {
    const ack = await vs.sendMessage(`visitor message ${i}`);
    assert.equal(ack.type, 'ack');
    sent++;
  }
  for (let i = 0; i < 2; i++) {
    const ack = await as.sendMessage(`agent reply ${i}`);
    assert.equal(ack.type, 'ack');
    sent++;
  }
  // Over HTTP, and a retry of the same client_msg_id: one message.
  const id = msgId('http');
  const first = await http(site.url, `/api/v1/conversations/${visitor.conversation}/messages`, { method: 'POST', token: visitor.token, body: { client_msg_id: id, text: 'over http' } });
  assert.equal(first.status, 200);
  sent++;
  const retry = await http(site.url, `/api/v1/conversations/${visitor.conversation}/messages`, { method: 'POST', token: visitor.token, body: { client_msg_id: id, text: 'over http' } });
  assert.equal(retry.status, 200);
  assert.equal(retry.body.duplicate, true);
  assert.equal(retry.body.seq, first.body.seq);
  const head = first.body.seq;
  await vs.waitForSeq(head);
  await as.waitForSeq(head);

  // Errors: a client fault over HTTP, and a refused WebSocket command.
  const unknown = await http(site.url, '/api/v1/visitor/session', { method: 'POST', body: { site_key: 'pk_nope' } });
  assert.equal(unknown.status, 404);
  vs.send({ type: 'send', client_msg_id: msgId('empty'), text: '   ' });
  const refused = await vs.nextOfType('error');
  assert.equal(refused.code, 'empty_message');

  const history = await fullHistory(site, visitor.conversation, agent.token);
  assert.equal(history.length, head);
  assert.equal(history.filter((e) => e.kind === 'message').length, sent);
  Object.assign(state, { agent, visitor, head, history, epoch: visitor.epoch, conversation: visitor.conversation });

  const r = (route, status) => `parley_http_requests_total{route="${route}",status="${status}"}`;
  const conv = '/api/v1/conversations/:id';
  const values = await eventuallyMetrics(srv, (v) => {
    assert.equal(v.parley_messages_total, sent);
    assert.equal(v['parley_events_total{kind="message"}'], sent);
    assert.equal(v['parley_events_total{kind="created"}'], 1);
    // The site's D1 batches carried the conversation's events.
    assert.ok(v['parley_mirror_batches_total{result="written"}'] >= 1);
    assert.ok(v['parley_mirror_batched_copies_total{result="written"}'] >= 1);
    assert.equal(v.parley_conversations_created_total, 1);
    assert.equal(v[r('/healthz', 200)], state.healthz);
    assert.equal(v[r('/api/v1/agent/login', 200)], 1);
    assert.equal(v[r('/api/v1/agent/login', 401)], 1); // the demo owner does not exist
    assert.equal(v[r('/api/v1/visitor/session', 200)], 1);
    assert.equal(v[r('/api/v1/visitor/session', 404)], 1);
    assert.equal(v[r('/api/v1/conversations', 201)], 1);
    assert.equal(v[r(`${conv}/messages`, 200)], 2);
    assert.equal(v[r(`${conv}/ws`, 101)], 2);
    assert.ok(v[r(`${conv}/history`, 200)] >= 1);
    assert.equal(v['parley_errors_total{class="unknown_site",fault="client"}'], 1);
    assert.equal(v['parley_errors_total{class="empty_message",fault="client"}'], 1);
    assert.equal(v['parley_errors_total{class="token_invalid",fault="client"}'] ?? 0, 0);
    assert.equal(v.parley_websocket_opened_total, 2);
    assert.equal(v.parley_websocket_connections, 2);
    assert.equal(v['parley_agent_logins_total{result="ok"}'], 1);
    assert.equal(v['parley_agent_logins_total{result="failed"}'], 1);
    assert.equal(v['parley_http_request_duration_seconds_count{route="/api/v1/conversations/:id/messages"}'], 2);
    assert.equal(v['parley_http_request_duration_seconds_bucket{route="/api/v1/conversations/:id/messages",le="+Inf"}'], 2);
  });
  // No fault of the server or its storage in this traffic.
  for (const [k, n] of Object.entries(values)) {
    if (/^parley_errors_total\{.*fault="(server|storage)"/.test(k)) assert.equal(n, 0, k);
  }
  vs.close();
  as.close();
  await eventuallyMetrics(srv, (v) => assert.equal(v.parley_websocket_connections, 0));

  // Keep two live sockets across the restart.
  state.sockets = [
    await connect(site, visitor.conversation, visitor.token, { after: head, epoch: visitor.epoch }),
    await connect(site, visitor.conversation, agent.token, { after: head, epoch: visitor.epoch }),
  ];
});

/** Status of a WebSocket upgrade request (101 when it opens). */
function upgradeStatus(url, headers) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.on('open', () => { ws.terminate(); resolve(101); });
    ws.on('unexpected-response', (_req, res) => { res.resume(); resolve(res.statusCode); });
    ws.on('error', () => resolve('error'));
  });
}

test('--public-url is the Worker\'s own origin, whatever Host and scheme the proxy uses; clients cannot change it', async () => {
  const { site, agent } = state;
  const sites = await http(site.url, '/api/v1/sites', { token: agent.token });
  const consoleWs = `${site.url.replace(/^http/, 'ws')}/api/v1/console/ws?site=${sites.body.sites[0].id}`;
  // The console socket is accepted only from the Worker's own origin: the public one.
  assert.equal(await upgradeStatus(consoleWs, { origin: PUBLIC_URL }), 101);
  assert.equal(await upgradeStatus(consoleWs, { origin: site.url }), 403);
  // Miniflare reads MF-Original-URL from any client; with --public-url it cannot move the origin.
  const evil = 'https://evil.example';
  assert.equal(await upgradeStatus(consoleWs, { origin: evil, 'mf-original-url': `${evil}/api/v1/console/ws` }), 403);
  const session = await http(site.url, '/api/v1/visitor/session', {
    method: 'POST', body: { site_key: site.siteKey }, headers: { origin: evil, 'mf-original-url': `${evil}/api/v1/visitor/session` },
  });
  assert.equal(session.status, 403);
  assert.equal(session.body.code, 'origin_not_allowed');
});

test('stop (SIGTERM) and start again on the same directory: everything is there, clients resume', async () => {
  const { site, agent, visitor, head, history } = state;
  const code = await state.server.stop('SIGTERM');
  state.server = null;
  assert.equal(code, 0, 'graceful stop exits 0');
  assert.ok(!existsSync(join(DATA, 'parley.lock')), 'the lock is released');
  for (const s of state.sockets) await s.waitClosed();

  const srv = await startServe(DATA, {
    env: { PARLEY_ADMIN_EMAIL: ADMIN.email, PARLEY_ADMIN_PASSWORD: ADMIN.password, PARLEY_SITE_ORIGINS: ORIGIN },
  });
  state.server = srv;
  await srv.waitFor((l) => l.event === 'bootstrap_skipped');
  assert.ok(!srv.lines.some((l) => l.event === 'runtime' && /applied D1 migration/.test(l.message)), 'no migration re-applied');
  site.url = srv.url;

  // Tokens issued before the restart still work (TOKEN_SECRET from the environment).
  const again = await fullHistory(site, visitor.conversation, agent.token);
  assert.deepEqual(again.map(eventKey), history.map(eventKey));
  const login = await agentLogin(site);
  assert.ok(login.token);

  // Resume: exactly the missed events, or nothing.
  const upToDate = await resumeFrames(site, visitor.conversation, visitor.token, head, visitor.epoch);
  assert.equal(upToDate.welcome.head, head);
  assert.deepEqual(upToDate.frames, []);
  const behind = await resumeFrames(site, visitor.conversation, visitor.token, head - 2, visitor.epoch);
  assert.deepEqual(behind.frames.map(eventKey), history.slice(head - 2).map(eventKey));
});

test('a crashed server (SIGKILL) keeps the directory locked while its workerd lives on, then its stale lock is taken over', async () => {
  const { site, agent, visitor, history } = state;
  const srv = state.server;
  const lock = JSON.parse(readFileSync(join(DATA, 'parley.lock'), 'utf8'));
  assert.ok(Number.isInteger(lock.runtime_pid), 'the lock records the workerd pid');
  srv.child.kill('SIGKILL'); // the node process only: its workerd is orphaned, as after an OOM kill
  await srv.exited;
  state.server = null;
  assert.ok(existsSync(join(DATA, 'parley.lock')), 'a crash leaves the lock behind');

  const refused = await runScript(SERVE, ['--data', DATA, '--port', '0', '--metrics-port', '0']);
  assert.equal(refused.code, 1);
  assert.match(refused.stdout, new RegExp(`workerd pid ${lock.runtime_pid}, still runs`));
  const backupRefused = await runScript(BACKUP, ['--data', DATA, '--out', join(DATA_PARENT, 'never.tar.gz'), '--online']);
  assert.equal(backupRefused.code, 1);
  assert.match(backupRefused.stderr, /still runs/);

  process.kill(lock.runtime_pid, 'SIGKILL'); // the workerd this test started
  for (let i = 0; i < 100; i++) {
    try { process.kill(lock.runtime_pid, 0); } catch { break; }
    if (readFileSync(`/proc/${lock.runtime_pid}/stat`, 'utf8').split(') ')[1].startsWith('Z')) break;
    await sleep(50);
  }

  const again = await startServe(DATA);
  state.server = again;
  site.url = again.url;
  assert.notEqual(JSON.parse(readFileSync(join(DATA, 'parley.lock'), 'utf8')).pid, lock.pid, 'the stale lock was taken over');
  const after = await fullHistory(site, visitor.conversation, agent.token);
  assert.deepEqual(after.map(eventKey), history.map(eventKey), 'nothing lost to the crash');
});

test('backup: refused while the server runs, --online pauses it; wipe; restore; everything is there and clients resume', async () => {
  const { site, agent, visitor, head, history } = state;
  const archive = join(DATA_PARENT, 'backup.tar.gz');

  const refused = await runScript(BACKUP, ['--data', DATA, '--out', archive]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /in use by serve .*--online/s);
  assert.ok(!existsSync(archive));

  // A live socket during the online backup: the pause drops it; it resumes with nothing missed.
  const during = await connect(site, visitor.conversation, visitor.token, { after: head, epoch: visitor.epoch });
  const online = await runScript(BACKUP, ['--data', DATA, '--out', archive, '--online']);
  assert.equal(online.code, 0, online.stderr);
  assert.match(online.stdout, /server paused for \d+ ms/);
  assert.ok(existsSync(archive));
  await during.waitClosed();
  assert.equal((await fetch(`${site.url}/healthz`)).status, 200, 'serving again after the backup');
  const resumed = await resumeFrames(site, visitor.conversation, visitor.token, head, visitor.epoch);
  assert.deepEqual(resumed.frames, []);
  await eventuallyMetrics(state.server, (v) => {
    assert.equal(v.parley_runtime_restarts_total, 1);
    assert.equal(v.parley_paused, 0);
  });

  // Two messages after the backup: not in it.
  const as = await connect(site, visitor.conversation, agent.token, { after: head, epoch: visitor.epoch });
  for (const text of ['after backup 1', 'after backup 2']) assert.equal((await as.sendMessage(text)).type, 'ack');
  as.close();

  assert.equal(await state.server.stop(), 0);
  state.server = null;

  // Wipe. Restore refuses a non-empty directory, then restores into the wiped one.
  rmSync(DATA, { recursive: true, force: true });
  const busy = join(DATA_PARENT, 'not-empty');
  mkdirSync(busy);
  writeFileSync(join(busy, 'something'), 'x');
  const intoBusy = await runScript(RESTORE, ['--from', archive, '--data', busy]);
  assert.equal(intoBusy.code, 1);
  assert.match(intoBusy.stderr, /not empty/);
  assert.deepEqual(readFileSync(join(busy, 'something'), 'utf8'), 'x');
  const restored = await runScript(RESTORE, ['--from', archive, '--data', DATA]);
  assert.equal(restored.code, 0, restored.stderr);
  assert.ok(existsSync(join(DATA, 'restore-id')));

  const srv = await startServe(DATA);
  state.server = srv;
  site.url = srv.url;
  const back = await fullHistory(site, visitor.conversation, agent.token);
  assert.deepEqual(back.map(eventKey), history.map(eventKey), 'the history as of the backup');

  // The restored log may be older than what clients hold, so it starts a new epoch: every
  // client resuming from before the restore is told to reset and reload, whatever it holds.
  for (const after of [head - 3, head, head + 2]) {
    const resumed = await resumeFrames(site, visitor.conversation, visitor.token, after, visitor.epoch);
    assert.equal(resumed.frames.length, 1, `after ${after}`);
    assert.equal(resumed.frames[0].type, 'reset');
    assert.equal(resumed.frames[0].reason, 'epoch_mismatch');
    assert.equal(resumed.frames[0].head, head);
  }
  const { frames: [reset] } = await resumeFrames(site, visitor.conversation, visitor.token, head, visitor.epoch);
  assert.notEqual(reset.epoch, visitor.epoch);

  // Reloaded, the client goes on in the new epoch.
  const vs = await connect(site, visitor.conversation, visitor.token, { after: head, epoch: reset.epoch });
  const ack = await vs.sendMessage('after restore');
  assert.equal(ack.type, 'ack');
  assert.equal(ack.seq, head + 1);
  vs.close();
  assert.equal(await srv.stop(), 0);
  state.server = null;
});

const CURRENT_MIGRATIONS = readdirSync(join(ROOT, 'migrations')).filter((f) => f.endsWith('.sql')).sort();
const PREVIOUS_MIGRATIONS = ['0001_init.sql', '0002_widget.sql'];
const LATER_MIGRATIONS = CURRENT_MIGRATIONS.filter((f) => !PREVIOUS_MIGRATIONS.includes(f));

/** A root directory whose wrangler.toml is the repo's, with only the given migrations. */
function rootWithMigrations(files) {
  const root = tempDir('root-');
  const config = readWranglerConfig(ROOT);
  delete config.build;
  config.main = join(ROOT, config.main);
  if (config.assets) config.assets.directory = join(ROOT, config.assets.directory);
  mkdirSync(join(root, 'migrations'));
  for (const f of files) copyFileSync(join(ROOT, 'migrations', f), join(root, 'migrations', f));
  for (const db of config.d1_databases) db.migrations_dir = join(root, 'migrations');
  writeFileSync(join(root, 'wrangler.toml'), toToml(config));
  return root;
}

test('upgrade: data made under migrations 0001–0002 keeps working after the current set is applied on start', async () => {
  const data = join(tempDir('upgrade-'), 'data');
  const old = rootWithMigrations(PREVIOUS_MIGRATIONS);
  const now = Date.now();
  const ids = { team: randomId('t'), site: randomId('s'), agent: randomId('a'), visitor: randomId('v'), conversation: randomId('c') };
  const siteKey = `pk_${randomBytes(18).toString('base64url')}`;
  const password = 'an older owner password';

  // The previous release: its schema, and the rows it wrote.
  let rt = await startRuntime({ root: old, persistDir: data, miniflare: { cf: {} } });
  try {
    const cols = (await rt.d1.prepare('PRAGMA table_info(sites)').all()).results.map((c) => c.name);
    assert.ok(cols.includes('settings') && !cols.includes('routing'), 'the old schema');
    const pw = hashPassword(password);
    await rt.d1.batch([
      rt.d1.prepare('INSERT INTO teams (id, name, created_at) VALUES (?, ?, ?)').bind(ids.team, 'Old team', now),
      rt.d1.prepare('INSERT INTO sites (id, team_id, site_key, name, allowed_origins, settings, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .bind(ids.site, ids.team, siteKey, 'Old shop', JSON.stringify([ORIGIN]), JSON.stringify({ welcome: { en: 'Hi from before' } }), now),
      rt.d1.prepare(`INSERT INTO agents (id, team_id, email, name, role, password_hash, password_salt, password_iterations, created_at)
        VALUES (?, ?, ?, ?, 'owner', ?, ?, ?, ?)`).bind(ids.agent, ids.team, 'old@example.com', 'Old Owner', pw.hash, pw.salt, pw.iterations, now),
      rt.d1.prepare('INSERT INTO visitors (id, site_id, created_at, last_seen_at, external_id, name) VALUES (?, ?, ?, ?, ?, ?)')
        .bind(ids.visitor, ids.site, now, now, 'customer-42', 'Returning Customer'),
      rt.d1.prepare('INSERT INTO page_views (visitor_id, site_id, url, title, created_at) VALUES (?, ?, ?, ?, ?)')
        .bind(ids.visitor, ids.site, 'https://allowed.example/pricing', 'Pricing', now),
      rt.d1.prepare(`INSERT INTO conversations (id, site_id, visitor_id, status, created_at, updated_at, last_seq, last_message_at)
        VALUES (?, ?, ?, 'closed', ?, ?, 2, ?)`).bind(ids.conversation, ids.site, ids.visitor, now, now, now),
      rt.d1.prepare(`INSERT INTO messages (conversation_id, seq, kind, author_id, author_role, body, created_at)
        VALUES (?, 1, 'created', ?, 'visitor', '{}', ?), (?, 2, 'message', ?, 'visitor', '{"text":"an old question"}', ?)`)
        .bind(ids.conversation, ids.visitor, now, ids.conversation, ids.visitor, now),
    ]);
  } finally {
    await rt.dispose();
  }

  // The current release, through serve: the new migration is applied on start.
  const srv = await startServe(data);
  try {
    const applied = srv.lines.filter((l) => l.event === 'runtime' && /applied D1 migration/.test(l.message))
      .map((l) => /migration (\S+)/.exec(l.message)[1]);
    assert.deepEqual(applied, LATER_MIGRATIONS, 'every later migration, in order, on start');
    const site = { url: srv.url, siteKey, email: 'old@example.com', password };
    const owner = await agentLogin(site);
    const list = await http(srv.url, '/api/v1/conversations', { token: owner.token });
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.conversations.map((c) => c.id), [ids.conversation]);
    const config = await http(srv.url, `/api/v1/widget/config?site=${siteKey}`);
    assert.equal(config.status, 200);
    assert.match(JSON.stringify(config.body.welcome), /Hi from before/);
    // The old site takes new conversations.
    const visitor = await newConversation(site);
    const vs = await connect(site, visitor.conversation, visitor.token);
    assert.equal((await vs.sendMessage('a new question')).type, 'ack');
    vs.close();
    const ctx = await http(srv.url, '/api/v1/visitor/context', { method: 'POST', token: visitor.token, body: { page: { url: `${ORIGIN}/`, title: 'Home' } } });
    assert.equal(ctx.status, 204);
  } finally {
    assert.equal(await srv.stop(), 0);
  }

  // Nothing lost; the new tables and columns are there.
  rt = await startRuntime({ persistDir: data, miniflare: { cf: {} } });
  try {
    const q = async (sql, ...params) => (await rt.d1.prepare(sql).bind(...params).all()).results;
    assert.deepEqual((await q('SELECT name FROM d1_migrations ORDER BY id')).map((r) => r.name), CURRENT_MIGRATIONS);
    const [site] = await q('SELECT name, settings, routing FROM sites WHERE id = ?', ids.site);
    assert.equal(site.name, 'Old shop');
    assert.match(site.settings, /Hi from before/);
    assert.equal(site.routing, '{}');
    const [agentRow] = await q('SELECT email, capacity, permissions FROM agents WHERE id = ?', ids.agent);
    assert.deepEqual(agentRow, { email: 'old@example.com', capacity: 5, permissions: '[]' });
    assert.equal((await q('SELECT external_id FROM visitors WHERE id = ?', ids.visitor))[0].external_id, 'customer-42');
    assert.equal((await q('SELECT count(*) AS n FROM page_views WHERE visitor_id = ?', ids.visitor))[0].n, 1);
    const old = await q('SELECT seq, kind, body FROM messages WHERE conversation_id = ? ORDER BY seq', ids.conversation);
    assert.deepEqual(old.map((m) => [m.seq, m.kind]), [[1, 'created'], [2, 'message']]);
    const tables = (await q("SELECT name FROM sqlite_master WHERE type = 'table'")).map((t) => t.name);
    // Every table the later migrations create.
    const created = LATER_MIGRATIONS.flatMap((f) => [
      ...readFileSync(join(ROOT, 'migrations', f), 'utf8').matchAll(/CREATE\s+(?:VIRTUAL\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?["`]?(\w+)/gi),
    ].map((m) => m[1]));
    assert.ok(created.includes('departments'));
    for (const t of created) assert.ok(tables.includes(t), `table ${t}`);
  } finally {
    await rt.dispose();
  }
});
