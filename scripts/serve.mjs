// Private deployment: run the production build on workerd through Miniflare on one machine.
//
//   node scripts/setup.mjs                        # once, and after every upgrade: install + build
//   npm run serve -- --data /var/lib/parley --host 127.0.0.1 --port 8787
//
// Options (each also from the environment; the command line wins):
//   --data DIR           PARLEY_DATA          data directory (required): D1, Durable Objects, R2, token secret
//   --host HOST          PARLEY_HOST          address to bind (default 127.0.0.1; put a reverse proxy in front)
//   --port N             PARLEY_PORT          HTTP port (default 8787; 0 = any free port)
//   --metrics-port N     PARLEY_METRICS_PORT  Prometheus endpoint port on the same host (default 9464; 0 = any)
//   --public-url URL     PARLEY_PUBLIC_URL    the origin browsers use (https://chat.example.com): the Worker
//                                            sees every request at this origin whatever the proxy sends;
//                                            required behind an HTTPS reverse proxy
//   --demo                                    seed the demo team, site and owner on an empty directory
// Environment only:
//   TOKEN_SECRET              HMAC key for tokens (≥ 32 characters); default: generated once into DIR/token-secret
//   PARLEY_METRICS_TOKEN      bearer token for GET /metrics; without it the endpoint is off
//   PARLEY_ADMIN_EMAIL, PARLEY_ADMIN_PASSWORD
//                             first start on an empty directory: create a team and its owner
//   PARLEY_SITE_ORIGINS       with the above: comma-separated origins allowed to embed the widget
//   PARLEY_SITE_NAME, PARLEY_TEAM_NAME   names for that first site and team
//   any [vars] name of wrangler.toml (REPLAY_WINDOW, RATE_VISITOR_MESSAGES, …) overrides it
//
// Output: one JSON object per line on stdout — the Worker's own log lines as it wrote them, and
// the serve process's lines (event "serve_*", "bootstrap", …). SIGINT/SIGTERM stop gracefully.
// The data directory is locked (DIR/parley.lock) for as long as the server runs; `npm run backup
// -- --online` asks it, through DIR/parley.control.sock, to pause while the data is copied.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, unlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { readFlags } from './args.mjs';
import { Log, LogLevel } from 'miniflare';
import {
  acquireLock, childPids, controlSocketPath, LockedError, processStartTicks, RESTORE_ID_NAME,
} from './datadir.mjs';
import { Metrics, startMetricsServer } from './metrics.mjs';
import { hashPassword, randomId, readWranglerConfig, seedDemo, startRuntime } from './runtime.mjs';
import { ROOT } from './setup.mjs';

/** Longest a backup may keep the server paused before it resumes on its own. */
export const PAUSE_LIMIT_MS = Number(process.env.PARLEY_PAUSE_LIMIT_MS || 10 * 60_000);

/** Print one JSON log line of the serve process. */
export function say(event, fields = {}, level = 'info') {
  process.stdout.write(JSON.stringify({ event, level, ...fields }) + '\n');
}

export class UsageError extends Error {}

/** argv + environment → options. Throws UsageError on anything malformed. */
export function parseServeArgs(argv, env = process.env) {
  const opts = {
    data: env.PARLEY_DATA || null,
    host: env.PARLEY_HOST || '127.0.0.1',
    port: env.PARLEY_PORT ?? '8787',
    metricsPort: env.PARLEY_METRICS_PORT ?? '9464',
    publicUrl: env.PARLEY_PUBLIC_URL || null,
    demo: false,
    help: false,
  };
  readFlags(argv, (flag, value) => {
    switch (flag) {
      case '--data': opts.data = value(); break;
      case '--host': opts.host = value(); break;
      case '--port': opts.port = value(); break;
      case '--metrics-port': opts.metricsPort = value(); break;
      case '--public-url': opts.publicUrl = value(); break;
      case '--demo': opts.demo = true; break;
      case '-h': case '--help': opts.help = true; break;
      default: return false;
    }
  }, (m) => new UsageError(m));
  if (opts.help) return opts;
  if (!opts.data) throw new UsageError('--data DIR (or PARLEY_DATA) is required');
  for (const k of ['port', 'metricsPort']) {
    const n = Number(opts[k]);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`--${k === 'port' ? 'port' : 'metrics-port'}: not a port number: ${opts[k]}`);
    opts[k] = n;
  }
  opts.data = resolve(opts.data);
  if (opts.publicUrl) {
    let url;
    try { url = new URL(opts.publicUrl); } catch { throw new UsageError(`--public-url: not a URL: ${opts.publicUrl}`); }
    if (!/^https?:$/.test(url.protocol) || url.origin !== opts.publicUrl.replace(/\/$/, '')) {
      throw new UsageError(`--public-url must be an origin like https://chat.example.com (no path); got ${opts.publicUrl}`);
    }
    opts.publicUrl = url.origin;
  }

  // Secrets and settings from the environment.
  opts.vars = {};
  if (env.TOKEN_SECRET !== undefined && env.TOKEN_SECRET !== '') {
    if (env.TOKEN_SECRET.length < 32) throw new UsageError('TOKEN_SECRET must be at least 32 characters (e.g. `openssl rand -hex 32`)');
    opts.vars.TOKEN_SECRET = env.TOKEN_SECRET;
  }
  opts.metricsToken = env.PARLEY_METRICS_TOKEN || null;
  if (opts.metricsToken && opts.metricsToken.length < 16) throw new UsageError('PARLEY_METRICS_TOKEN must be at least 16 characters');

  opts.bootstrap = bootstrapFromEnv(env);
  if (!opts.bootstrap && env.PARLEY_SITE_ORIGINS) opts.ignoredSiteOrigins = true;
  return opts;
}

/**
 * PARLEY_ADMIN_EMAIL, PARLEY_ADMIN_PASSWORD, PARLEY_SITE_ORIGINS, PARLEY_SITE_NAME,
 * PARLEY_TEAM_NAME → bootstrap options, or null when no admin is given. Throws UsageError.
 */
export function bootstrapFromEnv(env = process.env) {
  const email = env.PARLEY_ADMIN_EMAIL || null;
  const password = env.PARLEY_ADMIN_PASSWORD || null;
  if (Boolean(email) !== Boolean(password)) throw new UsageError('set both PARLEY_ADMIN_EMAIL and PARLEY_ADMIN_PASSWORD, or neither');
  if (!email) return null;
  if (!/^[^\s@]+@[^\s@]+$/.test(email)) throw new UsageError(`PARLEY_ADMIN_EMAIL is not an e-mail address: ${email}`);
  if (password.length < 10) throw new UsageError('PARLEY_ADMIN_PASSWORD must be at least 10 characters');
  const origins = (env.PARLEY_SITE_ORIGINS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const o of origins) {
    let url;
    try { url = new URL(o); } catch { throw new UsageError(`PARLEY_SITE_ORIGINS: not an origin: ${o}`); }
    if (url.origin !== o) throw new UsageError(`PARLEY_SITE_ORIGINS: "${o}" is not an exact origin (scheme://host[:port], no path or trailing slash); did you mean "${url.origin}"?`);
  }
  return {
    email,
    password,
    origins,
    siteName: env.PARLEY_SITE_NAME || 'My site',
    teamName: env.PARLEY_TEAM_NAME || 'My team',
  };
}

/** wrangler.toml [vars] overridden from the environment (names only are logged). */
export function varsFromEnv(config, env = process.env) {
  const out = {};
  for (const name of Object.keys(config.vars ?? {})) {
    if (env[name] !== undefined && env[name] !== '') out[name] = env[name];
  }
  return out;
}

/**
 * The rows that make a first team, its owner and one site, as SQL statements with parameters
 * (columns of the first migration only, so they fit every schema since). Used by serve on an
 * empty data directory and by deploy for an empty remote D1.
 */
export function bootstrapStatements({ email, password, origins = [], siteName = 'My site', teamName = 'My team' }, now = Date.now()) {
  const teamId = randomId('t');
  const siteId = randomId('s');
  const agentId = randomId('a');
  const siteKey = `pk_${randomBytes(18).toString('base64url')}`;
  const pw = hashPassword(password);
  const statements = [
    ['INSERT INTO teams (id, name, created_at) VALUES (?, ?, ?)', [teamId, teamName, now]],
    ['INSERT INTO sites (id, team_id, site_key, name, allowed_origins, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      [siteId, teamId, siteKey, siteName, JSON.stringify(origins), now]],
    [`INSERT INTO agents (id, team_id, email, name, role, password_hash, password_salt, password_iterations, created_at)
      VALUES (?, ?, ?, ?, 'owner', ?, ?, ?, ?)`,
    [agentId, teamId, email, email.split('@')[0], pw.hash, pw.salt, pw.iterations, now]],
  ];
  return { statements, teamId, siteId, agentId, siteKey, email, origins };
}

/** First start on an empty database: a team, its owner and one site. Returns { created, siteKey?, … }. */
export async function bootstrap(d1, opts) {
  const existing = await d1.prepare('SELECT id FROM teams LIMIT 1').first();
  if (existing) return { created: false };
  const b = bootstrapStatements(opts);
  await d1.batch(b.statements.map(([sql, params]) => d1.prepare(sql).bind(...params)));
  const { statements, ...rest } = b;
  return { created: true, ...rest };
}

/** A Miniflare Log that prints Miniflare's own warnings and errors as JSON lines. */
class JsonLog extends Log {
  constructor() {
    super(LogLevel.WARN);
  }

  logWithLevel(level, message) {
    if (level > this.level) return;
    say('miniflare', { message: String(message) }, level <= LogLevel.ERROR ? 'error' : 'warn');
  }
}

/**
 * Run the server. Resolves once it serves, to { url, port, metricsUrl, stop() }. The process
 * keeps running until SIGINT/SIGTERM (handlers installed when installSignals is true).
 */
export async function serve(opts, { installSignals = true, root = ROOT } = {}) {
  const metrics = new Metrics();
  const config = readWranglerConfig(root);
  const envVars = varsFromEnv(config);
  const vars = { ...envVars, ...opts.vars };

  const lock = acquireLock(opts.data, { role: 'serve', host: opts.host });
  process.on('exit', () => lock.release());
  const restoreIdFile = join(opts.data, RESTORE_ID_NAME);
  if (existsSync(restoreIdFile)) vars.PARLEY_RESTORE_ID = readFileSync(restoreIdFile, 'utf8').trim();

  // Every line workerd prints: the Worker's JSON logs feed the metrics and go to stdout as is.
  const onLine = (line) => {
    if (!line) return;
    let parsed = null;
    if (line.startsWith('{')) {
      try { parsed = JSON.parse(line); } catch { /* not JSON after all */ }
    }
    if (parsed && typeof parsed === 'object' && typeof parsed.event === 'string') {
      metrics.observe(parsed);
      process.stdout.write(line + '\n');
    } else {
      metrics.observeUnparsed();
      say('runtime_output', { message: line }, 'warn');
    }
  };
  const miniflare = {
    log: new JsonLog(),
    // No edge here: request.cf carries no geolocation (Miniflare would otherwise fetch this
    // machine's own location from the internet, or use a fixed placeholder city, and every
    // visitor would appear to be there).
    cf: {},
    // The origin the Worker sees (its "own origin" for the console's and widget's origin checks)
    // is the public one, not whatever Host and scheme the proxy connects with; a client-sent
    // MF-Original-URL header can then change only the path, never the origin.
    ...(opts.publicUrl ? { upstream: opts.publicUrl } : {}),
    handleRuntimeStdio(stdout, stderr) {
      createInterface({ input: stdout, crlfDelay: Infinity }).on('line', onLine);
      createInterface({ input: stderr, crlfDelay: Infinity }).on('line', onLine);
    },
  };

  let port = opts.port;
  let rt = null;
  const startRt = async () => {
    rt = await startRuntime({
      host: opts.host,
      port,
      persistDir: opts.data,
      vars,
      root,
      miniflare,
      log: (message) => say('runtime', { message }),
    });
    port = rt.port; // a restart (after a pause) keeps the port even when it was 0
    // Record workerd in the lock: if this process is SIGKILLed, workerd lives on (still
    // serving, still writing the data) and the directory must stay locked until it is gone.
    const [runtimePid] = childPids('workerd');
    if (runtimePid) lock.update({ runtime_pid: runtimePid, runtime_start_ticks: processStartTicks(runtimePid) });
    return rt;
  };

  let metricsServer = null;
  let control = null;
  const cleanup = async () => {
    await Promise.allSettled([metricsServer?.close(), control?.close()]);
    if (rt) {
      const r = rt;
      rt = null;
      await r.dispose();
    }
    lock.release();
  };

  try {
    await startRt();
    const shownHost = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
    const url = `http://${shownHost}:${port}`;
    if (Object.keys(envVars).length) say('serve_vars', { from_environment: Object.keys(envVars) });

    if (opts.bootstrap) {
      const b = await bootstrap(rt.d1, opts.bootstrap);
      if (b.created) {
        say('bootstrap', {
          message: `created team, owner ${b.email} and site; embed with <script src="${opts.publicUrl ?? 'https://YOUR-HOST'}/widget.js" data-site="${b.siteKey}" async></script>`,
          site_key: b.siteKey, email: b.email, origins: b.origins,
        });
        if (b.origins.length === 0) say('bootstrap', { message: 'PARLEY_SITE_ORIGINS was empty: the widget works on no external site until origins are added' }, 'warn');
      } else {
        say('bootstrap_skipped', { message: 'the database already has a team; PARLEY_ADMIN_* only apply to an empty data directory' });
      }
    } else if (opts.ignoredSiteOrigins) {
      say('bootstrap_skipped', { message: 'PARLEY_SITE_ORIGINS is ignored without PARLEY_ADMIN_EMAIL and PARLEY_ADMIN_PASSWORD' }, 'warn');
    }
    if (opts.demo) {
      const demo = await seedDemo(rt.d1, {
        origins: [`http://127.0.0.1:${port}`, `http://localhost:${port}`, ...(opts.publicUrl ? [opts.publicUrl] : [])],
      });
      say('demo', {
        message: `demo page ${url}/demo/?site=${demo.siteKey}, console ${url}/console/`,
        site_key: demo.siteKey, email: demo.email, password: demo.password,
      });
    }

    if (opts.metricsToken) {
      metricsServer = await startMetricsServer({ host: opts.host, port: opts.metricsPort, token: opts.metricsToken, metrics });
    }

    control = await startControl(controlSocketPath(opts.data), {
      pause: async () => {
        const r = rt;
        rt = null;
        metrics.setPaused(true);
        await r.dispose();
        metrics.runtimeStopped();
        say('serve_paused', { message: 'runtime stopped for an online backup' });
      },
      resume: async () => {
        for (let attempt = 1; ; attempt++) {
          try {
            await startRt();
            break;
          } catch (e) {
            if (attempt >= 5) throw e;
            say('serve_resume_retry', { attempt, message: e.message }, 'warn');
            await new Promise((r) => setTimeout(r, 500 * attempt));
          }
        }
        metrics.setPaused(false);
        metrics.runtimeRestarted();
        say('serve_resumed', { url });
      },
      status: () => ({ state: rt ? 'running' : 'paused', url, pid: process.pid }),
      onFatal: async (e) => {
        say('serve_failed', { message: `could not restart the runtime: ${e.message}` }, 'error');
        await cleanup().catch(() => {});
        process.exit(1);
      },
    });

    lock.update({ url, metrics_url: metricsServer?.url ?? null, control: control.path });
    if (!opts.publicUrl) {
      say('serve_notice', { message: 'no --public-url: the Worker takes its own origin from each request (http://<Host>); behind an HTTPS proxy set --public-url, or the console cannot connect' });
    }
    say('serve_started', {
      message: `Parley is serving ${url}/ (data ${opts.data})${opts.publicUrl ? ` as ${opts.publicUrl}` : ''}`,
      url, port, data: opts.data, pid: process.pid, public_url: opts.publicUrl,
      metrics_url: metricsServer?.url ?? null,
      ...(metricsServer ? {} : { metrics: 'off (set PARLEY_METRICS_TOKEN to enable)' }),
    });

    let stopping = null;
    const stop = (signal = 'stop') => {
      if (stopping) return stopping;
      say('serve_stopping', { signal });
      const t0 = Date.now();
      stopping = cleanup().then(() => say('serve_stopped', { signal, took_ms: Date.now() - t0 }));
      return stopping;
    };
    if (installSignals) {
      // Miniflare's own hooks would exit at once; replace them with a graceful stop (its 'exit'
      // hook still kills workerd on any exit).
      let signals = 0;
      for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
        process.removeAllListeners(signal);
        process.on(signal, () => {
          signals += 1;
          if (signals > 1) {
            say('serve_stopping', { signal, message: 'second signal: exiting now' }, 'warn');
            process.exit(130);
          }
          const timer = setTimeout(() => {
            say('serve_stopping', { message: 'graceful stop took over 20 s: exiting' }, 'warn');
            process.exit(1);
          }, 20_000);
          timer.unref();
          stop(signal).then(() => process.exit(0), (e) => {
            say('serve_failed', { message: `stop failed: ${e.message}` }, 'error');
            process.exit(1);
          });
        });
      }
    }
    return { url, port, metricsUrl: metricsServer?.url ?? null, metrics, stop, get runtime() { return rt; } };
  } catch (e) {
    await cleanup().catch(() => {});
    throw e;
  }
}

/**
 * The control socket (unix domain, mode 0600): one JSON request per line. `pause` stops the
 * runtime and answers once its files are closed; the pause lasts until `resume`, until the
 * connection closes (a backup that dies never leaves the server paused) or PAUSE_LIMIT_MS.
 */
async function startControl(path, { pause, resume, status, onFatal }) {
  if (existsSync(path)) unlinkSync(path); // ours: we hold the directory's lock
  let pausedBy = null; // the socket holding the pause
  let closing = false;
  const conns = new Set();
  let busy = Promise.resolve();
  const serialize = (fn) => (busy = busy.then(fn, fn));

  const endPause = (sock, why) => serialize(async () => {
    if (pausedBy !== sock) return;
    pausedBy = null;
    clearTimeout(sock.pauseTimer);
    if (closing) return; // the server is stopping: nothing to resume
    try {
      await resume();
      if (!sock.destroyed) sock.write(JSON.stringify({ ok: true, state: 'running', why }) + '\n');
    } catch (e) {
      await onFatal(e);
    }
    if (why !== 'resume') sock.destroy();
  });

  const server = createServer((sock) => {
    conns.add(sock);
    sock.on('close', () => conns.delete(sock));
    sock.setEncoding('utf8');
    const rl = createInterface({ input: sock, crlfDelay: Infinity });
    const reply = (obj) => { if (!sock.destroyed) sock.write(JSON.stringify(obj) + '\n'); };
    rl.on('line', (text) => {
      let req;
      try { req = JSON.parse(text); } catch { reply({ ok: false, error: 'bad_request' }); return; }
      if (req.op === 'status') reply({ ok: true, ...status() });
      else if (req.op === 'pause') {
        serialize(async () => {
          if (pausedBy) { reply({ ok: false, error: 'already_paused' }); return; }
          pausedBy = sock;
          try {
            await pause();
          } catch (e) {
            pausedBy = null;
            reply({ ok: false, error: 'pause_failed', message: e.message });
            return;
          }
          sock.pauseTimer = setTimeout(() => endPause(sock, 'limit'), PAUSE_LIMIT_MS);
          reply({ ok: true, state: 'paused', limit_ms: PAUSE_LIMIT_MS });
        });
      } else if (req.op === 'resume') endPause(sock, 'resume');
      else reply({ ok: false, error: 'unknown_op' });
    });
    sock.on('error', () => {});
    sock.on('close', () => { endPause(sock, 'disconnected'); });
  });
  await new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(path, () => { server.off('error', rej); res(); });
  });
  chmodSync(path, 0o600);
  return {
    path,
    close: () => new Promise((r) => {
      closing = true;
      server.close(() => r());
      for (const c of conns) c.destroy();
      try { unlinkSync(path); } catch { /* gone */ }
    }),
  };
}

const HELP = `Usage: npm run serve -- --data DIR [--host 127.0.0.1] [--port 8787] [--metrics-port 9464] [--public-url URL] [--demo]
Runs Parley's production build on this machine (run \`node scripts/setup.mjs\` first).
See docs/operations.md for the environment variables, backups, upgrades and a systemd unit.`;

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let opts;
  try {
    opts = parseServeArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`serve: ${e.message}\n${HELP}\n`);
      process.exit(2);
    }
    throw e;
  }
  if (opts.help) {
    process.stdout.write(HELP + '\n');
    process.exit(0);
  }
  serve(opts).catch((e) => {
    if (e instanceof LockedError) say('serve_failed', { message: e.message, holder: e.holder }, 'error');
    else say('serve_failed', { message: e?.message ?? String(e) }, 'error');
    process.exit(1);
  });
}
