// The private deployment exactly as docs/operations.md writes it: the nginx and Caddy
// configurations and the systemd unit are taken from the document's own fenced blocks, and only
// what a test must change is changed (ports on 127.0.0.1, a self-signed certificate, temporary
// paths). `node scripts/serve.mjs` runs with the unit's ExecStart arguments and the environment
// file's variables; each proxy in turn terminates TLS in front of it, and a visitor and an agent
// chat through it over real WebSockets, long-polls and HTTP. systemd-analyze verifies the unit.
//
// nginx and caddy come from Debian (`bash .ci/run` installs them); a test whose tool is missing
// is skipped with the reason. Loopback only; every process started here is killed at the end.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, constants, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { createServer } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { parseServeArgs } from '../scripts/serve.mjs';
import { msgId, sleep, Socket } from './support/client.mjs';
import { tempDir } from './support/server.mjs';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const DOC_PATH = join(ROOT, 'docs', 'operations.md');
const DOC = readFileSync(DOC_PATH, 'utf8');
const VERBOSE = Boolean(process.env.PARLEY_TEST_VERBOSE);

/** The host name of the documentation's examples; resolved to 127.0.0.1 by this test's clients. */
const HOST = 'chat.example.com';
/** The site origin of the documentation's examples (PARLEY_SITE_ORIGINS). */
const SHOP = 'https://shop.example.com';

// ---------------------------------------------------------------------------------------------
// The document's blocks.

/** Every fenced block of a Markdown text: { lang, text, line }. */
function fencedBlocks(md) {
  const out = [];
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const start = i;
    const body = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    out.push({ lang: open[1], text: body.join('\n') + '\n', line: start + 1 });
  }
  return out;
}

const BLOCKS = fencedBlocks(DOC);

/** The one block of docs/operations.md in this language (and containing `marker`, if given). */
function docBlock(lang, marker) {
  const found = BLOCKS.filter((b) => b.lang === lang && (!marker || b.text.includes(marker)));
  assert.equal(found.length, 1, `docs/operations.md: expected one \`\`\`${lang} block${marker ? ` containing "${marker}"` : ''}, found ${found.length}`);
  return found[0];
}

/** text with `from` replaced by `to`; `from` must occur exactly once (the docs changed otherwise). */
function replaceOnce(text, from, to) {
  const n = text.split(from).length - 1;
  if (n !== 1) {
    throw new Error(`docs/operations.md: expected ${JSON.stringify(from)} once in the block, found it ${n} times; update tests/reverse-proxy.test.mjs together with the docs`);
  }
  return text.replace(from, () => to);
}

/** Shell words of a command (quotes, `\` line continuations; enough for the documented commands). */
function shellWords(text) {
  const words = [];
  let cur = null;
  let quote = null;
  const src = text.replace(/\\\n/g, ' ');
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (quote) {
      if (c === quote) quote = null;
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      cur ??= '';
    } else if (/\s/.test(c)) {
      if (cur !== null) words.push(cur);
      cur = null;
      if (c === '\n') words.push('\n');
    } else if (c === '#' && cur === null) {
      while (i < src.length && src[i] !== '\n') i++;
      i--;
    } else {
      cur = (cur ?? '') + c;
    }
  }
  if (cur !== null) words.push(cur);
  return words;
}

/** An ini-style unit file: { Section: [[key, value], …] }. */
function parseUnit(text) {
  const out = {};
  let section = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1];
      out[section] ??= [];
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(section && eq > 0, `unit line outside a section or without "=": ${line}`);
    out[section].push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return out;
}

function unitValue(unit, section, key) {
  const values = (unit[section] ?? []).filter(([k]) => k === key).map(([, v]) => v);
  assert.equal(values.length, 1, `[${section}] ${key}= once in the unit`);
  return values[0];
}

/** KEY=value lines of an environment file, as systemd reads them (comments and blanks skipped). */
function parseEnvFile(text) {
  const out = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    assert.ok(m, `not a KEY=value line: ${line}`);
    out[m[1]] = m[2].replace(/^(['"])(.*)\1$/, '$2');
  }
  return out;
}

const UNIT_BLOCK = docBlock('ini', '[Service]');
const ENV_BLOCK = docBlock('sh', '/etc/parley/parley.env');
const SERVE_BLOCK = docBlock('sh', 'npm run serve --');
const UNIT = parseUnit(UNIT_BLOCK.text);
const ENV_FILE = parseEnvFile(ENV_BLOCK.text);

/** The documented `npm run serve` example: { env: names assigned before it, args }. */
function documentedServe() {
  const words = shellWords(SERVE_BLOCK.text).filter((w) => w !== '\n');
  const at = words.findIndex((w, i) => w === 'npm' && words[i + 1] === 'run' && words[i + 2] === 'serve' && words[i + 3] === '--');
  assert.ok(at >= 0, 'the serve example runs `npm run serve -- …`');
  const env = words.slice(0, at).map((w) => {
    const m = /^([A-Z_][A-Z0-9_]*)=/.exec(w);
    assert.ok(m, `an environment assignment before npm: ${w}`);
    return m[1];
  });
  return { env, args: words.slice(at + 4) };
}

/** The unit's ExecStart: { bin, script, args }. */
function unitCommand() {
  const [bin, script, ...args] = shellWords(unitValue(UNIT, 'Service', 'ExecStart')).filter((w) => w !== '\n');
  return { bin, script, args };
}

/** argv with the value after `flag` replaced (the flag must be there once). */
function withFlag(args, flag, value) {
  const at = args.indexOf(flag);
  assert.ok(at >= 0 && args.indexOf(flag, at + 1) < 0, `${flag} once in ${args.join(' ')}`);
  const out = [...args];
  out[at + 1] = value;
  return out;
}

/** Environment of the unit's EnvironmentFile, its placeholders (…) filled in with real values. */
function envForTest(password) {
  const env = {};
  for (const [k, v] of Object.entries(ENV_FILE)) {
    if (!v.includes('…')) env[k] = v;
    else if (k === 'PARLEY_ADMIN_PASSWORD') env[k] = password;
    else env[k] = randomBytes(32).toString('hex');
  }
  return env;
}

// ---------------------------------------------------------------------------------------------
// Processes.

/** An executable on PATH or in the sbin directories (nginx lives in /usr/sbin), or null. */
function findBin(name) {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    try {
      accessSync(join(d, name), constants.X_OK);
      return join(d, name);
    } catch { /* not here */ }
  }
  return null;
}

/** Process groups still running; SIGKILLed when this process exits, whatever happened. */
const live = new Set();
process.on('exit', () => {
  for (const pgid of live) {
    try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ }
  }
});

/**
 * A long-running child in its own process group: { child, output(), exited, stop(signal) }.
 * stop() sends the signal, waits up to 15 s, then SIGKILLs the whole group.
 */
function daemon(name, cmd, args, { env = process.env, cwd = ROOT, onLine } = {}) {
  const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(child.pid);
  let out = '';
  let buf = '';
  const take = (chunk) => {
    const s = chunk.toString();
    out += s;
    if (out.length > 200_000) out = out.slice(-100_000);
    if (VERBOSE) process.stdout.write(s.replace(/^/gm, `[${name}] `));
    if (!onLine) return;
    buf += s;
    let nl;
    while ((nl = buf.indexOf('\n')) !== -1) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  };
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.on('error', (e) => { out += `\n${e.message}`; });
  const killGroup = () => {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    live.delete(child.pid);
  };
  return {
    child,
    exited,
    output: () => out,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) {
        try { child.kill(signal); } catch { /* gone */ }
      }
      let timer;
      const r = await Promise.race([exited, new Promise((res) => { timer = setTimeout(() => res({ code: 'timeout' }), 15_000); })]);
      clearTimeout(timer);
      killGroup(); // whatever of the group is left (workerd, nginx workers)
      return r.code;
    },
  };
}

const stoppers = [];
after(async () => {
  for (const stop of stoppers.splice(0).reverse()) await stop().catch(() => {});
});

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Clients: https to chat.example.com (resolved to 127.0.0.1), trusting the test certificate, from
// a chosen loopback address so that each "client" has its own IP.

/** dns.lookup replacement: the documentation's host name is this machine. */
function lookup(hostname, options, callback) {
  if (typeof options === 'function') [callback, options] = [options, {}];
  if (hostname !== HOST) {
    callback(Object.assign(new Error(`test lookup: unexpected host ${hostname}`), { code: 'ENOTFOUND' }));
    return;
  }
  if (options?.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
  else callback(null, '127.0.0.1', 4);
}

let TLS = null; // { ca } once the certificate exists

/** One HTTP(S) request: { status, headers, body (parsed JSON when it is), raw }. */
function request(base, path, { method = 'GET', body, headers = {}, token, from, timeoutMs = 40_000 } = {}) {
  return new Promise((resolve, reject) => {
    const url = new URL(path, base);
    const h = { ...headers };
    if (token) h.authorization = `Bearer ${token}`;
    let payload = null;
    if (Buffer.isBuffer(body)) payload = body;
    else if (body !== undefined) {
      h['content-type'] ??= 'application/json';
      payload = Buffer.from(JSON.stringify(body));
    }
    if (payload) h['content-length'] = String(payload.length);
    const secure = url.protocol === 'https:';
    const req = (secure ? https : http).request(url, {
      method, headers: h, agent: false, lookup, localAddress: from, ...(secure ? TLS : {}),
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        let parsed = raw.toString();
        try { parsed = parsed ? JSON.parse(parsed) : null; } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, body: parsed, raw });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload ?? undefined);
  });
}

function expectStatus(res, status, what) {
  assert.equal(res.status, status, `${what}: HTTP ${res.status} ${typeof res.body === 'string' ? res.body.slice(0, 300) : JSON.stringify(res.body)}`);
  return res.body;
}

/** A WebSocket (tests/support/client.mjs Socket) through the proxy, from a loopback address. */
function openSocket(url, { origin, from } = {}) {
  return Socket.open(url, { origin, lookup, localAddress: from, ...TLS });
}

/** A self-signed certificate for chat.example.com (openssl, as the docs use it elsewhere). */
function makeCertificate(dir) {
  const cert = join(dir, 'fullchain.pem');
  const key = join(dir, 'privkey.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${HOST}`,
    '-addext', `subjectAltName=DNS:${HOST}`,
  ], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
  return { cert, key };
}

// ---------------------------------------------------------------------------------------------
// The configurations, from the document.

/** nginx -v → [major, minor, patch]. */
function nginxVersion(bin) {
  const r = spawnSync(bin, ['-v'], { encoding: 'utf8', timeout: 10_000 });
  const m = /nginx\/(\d+)\.(\d+)\.(\d+)/.exec(`${r.stdout}${r.stderr}`);
  assert.ok(m, `nginx -v: ${r.stdout}${r.stderr}`);
  return m.slice(1).map(Number);
}

/**
 * The documented nginx server blocks, for this test: ports on 127.0.0.1, the test certificate,
 * the serve port. On nginx older than 1.25.1, the document's own comment: `listen … ssl http2;`
 * instead of `http2 on;`.
 */
function nginxSite(doc, { httpsPort, httpPort, upstreamPort, cert, key, version }) {
  let conf = doc;
  const [maj, min, patch] = version;
  const old = maj < 1 || (maj === 1 && (min < 25 || (min === 25 && patch < 1)));
  conf = replaceOnce(conf, 'listen 443 ssl;', old ? `listen 127.0.0.1:${httpsPort} ssl http2;` : `listen 127.0.0.1:${httpsPort} ssl;`);
  const http2On = /^\s*http2 on;.*$/m.exec(conf);
  assert.ok(http2On, 'the nginx block turns http2 on');
  if (old) {
    assert.match(http2On[0], /listen 443 ssl http2;/, 'the docs say what to write on nginx < 1.25.1');
    conf = conf.replace(http2On[0], '');
  }
  conf = replaceOnce(conf, 'listen 80;', `listen 127.0.0.1:${httpPort};`);
  conf = replaceOnce(conf, `ssl_certificate     /etc/letsencrypt/live/${HOST}/fullchain.pem;`, `ssl_certificate     ${cert};`);
  conf = replaceOnce(conf, `ssl_certificate_key /etc/letsencrypt/live/${HOST}/privkey.pem;`, `ssl_certificate_key ${key};`);
  conf = replaceOnce(conf, 'proxy_pass http://127.0.0.1:8787;', `proxy_pass http://127.0.0.1:${upstreamPort};`);
  return conf;
}

/** A whole nginx.conf around the documented blocks (they belong in the http context). */
function nginxConf(dir, site) {
  const paths = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((p) => {
    mkdirSync(join(dir, p), { recursive: true });
    return `    ${p}_temp_path ${join(dir, p)};`;
  });
  return [
    // As root the master would hand its workers to an unprivileged user who cannot enter the
    // temporary directory; this test's nginx stays this user.
    ...(process.getuid?.() === 0 ? ['user root root;'] : []),
    'worker_processes 1;',
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} info;`,
    'events { worker_connections 256; }',
    'http {',
    `    access_log ${join(dir, 'access.log')};`,
    ...paths,
    site,
    '}',
    '',
  ].join('\n');
}

/**
 * The documented Caddyfile, for this test: global options for ports on 127.0.0.1 and no admin
 * endpoint, the test certificate instead of an ACME one, the serve port.
 */
function caddyfile(doc, { httpsPort, httpPort, upstreamPort, cert, key }) {
  let conf = doc;
  conf = replaceOnce(conf, `${HOST} {\n`, `${HOST} {\n    tls ${cert} ${key}\n    bind 127.0.0.1\n`);
  conf = replaceOnce(conf, 'reverse_proxy 127.0.0.1:8787 {', `reverse_proxy 127.0.0.1:${upstreamPort} {`);
  const global = ['{', '    admin off', `    http_port ${httpPort}`, `    https_port ${httpsPort}`, '    skip_install_trust', '}', ''];
  return global.join('\n') + conf;
}

// ---------------------------------------------------------------------------------------------
// The deployment under test.

const WORK = tempDir('proxy-');
const ADMIN_PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
let deployment = null;

/**
 * `node scripts/serve.mjs` with the unit's ExecStart arguments (data, port and public URL
 * replaced; metrics on any free port) and the unit's environment file. Started once.
 */
async function ensureDeployment() {
  if (deployment) return deployment;
  const httpsPort = await freePort();
  const httpPort = await freePort();
  const publicUrl = `https://${HOST}:${httpsPort}`;
  const { script, args } = unitCommand();
  let argv = withFlag(args, '--data', join(WORK, 'data'));
  argv = withFlag(argv, '--port', '0');
  argv = withFlag(argv, '--public-url', publicUrl);
  argv.push('--metrics-port', '0');
  const env = { ...process.env, ...envForTest(ADMIN_PASSWORD) };
  for (const k of Object.keys(env)) if (/^PARLEY_(DATA|HOST|PORT|METRICS_PORT|PUBLIC_URL)$/.test(k)) delete env[k];

  const lines = [];
  const srv = daemon('serve', process.execPath, [script, ...argv], {
    env,
    onLine: (text) => {
      try { lines.push(JSON.parse(text)); } catch { lines.push({ event: 'not_json', text }); }
    },
  });
  stoppers.push(() => srv.stop('SIGTERM'));
  const deadline = Date.now() + 90_000;
  while (!lines.some((l) => l.event === 'serve_started')) {
    if (srv.child.exitCode !== null || lines.some((l) => l.event === 'serve_failed') || Date.now() > deadline) {
      await srv.stop('SIGKILL');
      throw new Error(`serve did not start:\n${srv.output().slice(-3000)}`);
    }
    await sleep(100);
  }
  const started = lines.find((l) => l.event === 'serve_started');
  const boot = lines.find((l) => l.event === 'bootstrap' && l.site_key);
  assert.ok(boot, 'the first start bootstraps the owner and site from the environment file');
  assert.deepEqual(boot.origins, ENV_FILE.PARLEY_SITE_ORIGINS.split(','));
  assert.equal(started.public_url, publicUrl);
  assert.match(started.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const cert = makeCertificate(WORK);
  TLS = { ca: readFileSync(cert.cert) };
  deployment = {
    srv, lines, direct: started.url, upstreamPort: started.port, httpsPort, httpPort, publicUrl, cert,
    siteKey: boot.site_key, email: ENV_FILE.PARLEY_ADMIN_EMAIL, password: ADMIN_PASSWORD,
  };
  return deployment;
}

/** Wait until the proxy answers /healthz through TLS (or fail with its output). */
async function waitReady(proxy, base) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proxy.child.exitCode !== null) throw new Error(`the proxy exited (${proxy.child.exitCode}):\n${proxy.output().slice(-3000)}`);
    try {
      const res = await request(base, '/healthz', { timeoutMs: 5000 });
      if (res.status === 200) return;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`the proxy did not answer within 30 s:\n${proxy.output().slice(-3000)}`);
    await sleep(100);
  }
}

async function startNginx(bin, d) {
  const dir = tempDir('nginx-');
  const site = nginxSite(docBlock('nginx').text, { ...d, upstreamPort: d.upstreamPort, cert: d.cert.cert, key: d.cert.key, version: nginxVersion(bin) });
  const confPath = join(dir, 'nginx.conf');
  writeFileSync(confPath, nginxConf(dir, site));
  const check = spawnSync(bin, ['-t', '-q', '-p', dir, '-e', join(dir, 'error.log'), '-c', confPath], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(check.status, 0, `nginx -t rejects the documented configuration:\n${check.stderr}\n${site}`);
  const proc = daemon('nginx', bin, ['-p', dir, '-e', join(dir, 'error.log'), '-c', confPath, '-g', 'daemon off;']);
  proc.errorLog = () => { try { return readFileSync(join(dir, 'error.log'), 'utf8'); } catch { return ''; } };
  return proc;
}

async function startCaddy(bin, d) {
  const dir = tempDir('caddy-');
  const conf = caddyfile(docBlock('caddy').text, { ...d, cert: d.cert.cert, key: d.cert.key });
  const confPath = join(dir, 'Caddyfile');
  writeFileSync(confPath, conf);
  const env = {
    ...process.env, HOME: dir, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config'),
  };
  const check = spawnSync(bin, ['validate', '--config', confPath, '--adapter', 'caddyfile'], { encoding: 'utf8', env, timeout: 30_000 });
  assert.equal(check.status, 0, `caddy validate rejects the documented configuration:\n${check.stderr}\n${conf}`);
  const proc = daemon('caddy', bin, ['run', '--config', confPath, '--adapter', 'caddyfile'], { env, cwd: dir });
  proc.errorLog = () => proc.output();
  return proc;
}

// ---------------------------------------------------------------------------------------------
// What the docs promise of a proxy in front of the private deployment.

const SECURITY_HEADERS = ['content-security-policy', 'x-frame-options', 'x-content-type-options', 'referrer-policy'];

/**
 * Miniflare's own request headers and what each does when a client sends it straight to the
 * serve port: a request for /healthz with it answers something else than {"ok":true}.
 */
const MF_PROBES = [
  ['MF-Original-URL', `https://${HOST}/api/v1/not-a-route`], // the Worker sees another path
  ['mf-original-url', `https://${HOST}/api/v1/not-a-route`], // header names have no case
  ['MF-CF-Blob', '{not json'], // replaces request.cf
  ['MF-Route-Override', 'no-such-worker'], // routes the request elsewhere
  ['MF-Proxy-Shared-Secret', 'guess'], // would let MF-Original-URL set the origin
  ['MF-Op', 'GET'], // Miniflare's API proxy instead of the Worker
];

async function exercise(t, name, base, d, [ipA, ipB]) {
  const direct = d.direct;

  await t.test('the console page comes with its security headers, the widget script as served', async () => {
    const page = await request(base, '/console/', { from: ipA });
    expectStatus(page, 200, 'GET /console/');
    assert.match(page.headers['content-type'], /text\/html/);
    assert.match(page.headers['content-security-policy'], /frame-ancestors 'none'/);
    assert.equal(page.headers['x-frame-options'], 'DENY');
    const plain = await request(direct, '/console/');
    for (const h of SECURITY_HEADERS) assert.equal(page.headers[h], plain.headers[h], `${h} passes the proxy unchanged`);
    assert.equal(page.body, plain.body);

    const widget = await request(base, '/widget.js', { from: ipA });
    expectStatus(widget, 200, 'GET /widget.js');
    assert.match(widget.headers['content-type'], /javascript/);
    const widgetDirect = await request(direct, '/widget.js');
    assert.equal(createHash('sha256').update(widget.raw).digest('hex'), createHash('sha256').update(widgetDirect.raw).digest('hex'));
  });

  const agentLogin = await request(base, '/api/v1/agent/login', { method: 'POST', body: { email: d.email, password: d.password }, from: ipA });
  const agent = expectStatus(agentLogin, 200, 'agent login through the proxy');
  const sites = expectStatus(await request(base, '/api/v1/sites', { token: agent.token, from: ipA }), 200, 'sites');
  const siteId = sites.sites.find((s) => s.site_key === d.siteKey).id;
  const sockets = [];
  try {
    await chat(t, name, base, d, [ipA, ipB], { agent, siteId, sockets });
  } finally {
    for (const s of sockets) s.close();
  }
}

async function chat(t, name, base, d, [ipA, ipB], { agent, siteId, sockets }) {
  const direct = d.direct;
  const wsBase = base.replace(/^https/, 'wss');
  const convWs = (c) => `${wsBase}/api/v1/conversations/${c}/ws?site=${encodeURIComponent(d.siteKey)}`;

  /** A visitor on the shop's page: a session and a conversation, through the proxy. */
  const newVisitor = async () => {
    const session = await request(base, '/api/v1/visitor/session', { method: 'POST', body: { site_key: d.siteKey }, headers: { origin: SHOP }, from: ipA });
    const s = expectStatus(session, 200, 'visitor session');
    assert.equal(session.headers['access-control-allow-origin'], SHOP, 'CORS answer for the shop passes the proxy');
    const conv = expectStatus(await request(base, '/api/v1/conversations', { method: 'POST', token: s.token, headers: { origin: SHOP }, from: ipA }), 201, 'create conversation');
    return { token: s.token, conversation: conv.conversation, epoch: conv.epoch };
  };

  let visitor;
  let vs;
  let as;
  await t.test('a visitor and an agent chat over WebSockets through the proxy; the console socket opens at the public origin', async () => {
    // The console's socket: accepted only from the Worker's own (public) origin.
    const consoleWs = await openSocket(`${wsBase}/api/v1/console/ws?site=${siteId}`, { origin: d.publicUrl, from: ipA });
    sockets.push(consoleWs);
    consoleWs.send({ type: 'hello', token: agent.token });
    const inbox = await consoleWs.next((f) => f.type === 'inbox' || f.type === 'error');
    assert.equal(inbox.type, 'inbox', JSON.stringify(inbox));

    visitor = await newVisitor();
    vs = await openSocket(convWs(visitor.conversation), { origin: SHOP, from: ipA });
    sockets.push(vs);
    const welcome = await vs.hello(visitor.token, { after: 0 });
    assert.equal(welcome.type, 'welcome', JSON.stringify(welcome));
    as = await openSocket(convWs(visitor.conversation), { origin: d.publicUrl, from: ipA });
    sockets.push(as);
    assert.equal((await as.hello(agent.token, { after: 0 })).type, 'welcome');

    const id = msgId(`${name}-v`);
    const ack = await vs.sendMessage(`hello through ${name}`, id);
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    const got = await as.next((f) => f.type === 'event' && f.client_msg_id === id);
    assert.equal(got.seq, ack.seq);
    assert.equal(got.body.text, `hello through ${name}`);

    const replyId = msgId(`${name}-a`);
    const reply = await as.sendMessage(`reply through ${name}`, replyId);
    assert.equal(reply.type, 'ack', JSON.stringify(reply));
    const seen = await vs.next((f) => f.type === 'event' && f.client_msg_id === replyId);
    assert.equal(seen.body.text, `reply through ${name}`);

    // Keep-alive pings are answered through the proxy too.
    vs.send({ type: 'ping' });
    await vs.nextOfType('pong');
  });

  await t.test('a held long-poll is answered through the proxy when the next event comes, an idle one after its wait', async () => {
    assert.ok(vs, 'the chat step ran');
    const head = vs.events.at(-1).seq;
    const q = (after, wait) => `/api/v1/conversations/${visitor.conversation}/events?after=${after}&epoch=${visitor.epoch}&wait=${wait}`;
    const held = request(base, q(head, 25), { token: visitor.token, from: ipA });
    await sleep(500);
    const id = msgId(`${name}-poll`);
    const ack = await as.sendMessage('wakes the long-poll', id);
    assert.equal(ack.type, 'ack');
    const res = await held;
    expectStatus(res, 200, 'long-poll');
    assert.equal(res.body.type, 'events');
    assert.deepEqual(res.body.events.map((e) => [e.seq, e.client_msg_id]), [[head + 1, id]]);

    const idle = await request(base, q(head + 1, 1), { token: visitor.token, from: ipA });
    expectStatus(idle, 200, 'idle long-poll');
    assert.deepEqual([idle.body.type, idle.body.events], ['events', []]);
  });

  await t.test('an attachment larger than the proxy\'s default body limit goes up and comes back byte for byte', async () => {
    assert.ok(visitor, 'the chat step ran');
    // nginx's default limit is 1 MiB: without the documented client_max_body_size this is a 413.
    const bytes = Buffer.from(`${'parley through a proxy '.repeat(40)}\n`.repeat(2500));
    assert.ok(bytes.length > 2 * 1024 * 1024);
    const up = await request(base, `/api/v1/conversations/${visitor.conversation}/files?name=big.txt`, {
      method: 'POST', body: bytes, token: visitor.token, headers: { 'content-type': 'text/plain' }, from: ipA,
    });
    const { file } = expectStatus(up, 201, 'upload');
    assert.equal(file.size, bytes.length);
    const down = await request(base, `/api/v1/conversations/${visitor.conversation}/files/${file.id}`, { token: visitor.token, from: ipA });
    expectStatus(down, 200, 'download');
    assert.ok(down.raw.equals(bytes), 'the same bytes');
  });

  await t.test('Miniflare\'s MF-* request headers never reach the runtime', async () => {
    for (const [header, value] of MF_PROBES) {
      const straight = await request(direct, '/healthz', { headers: { [header]: value } });
      assert.notDeepEqual([straight.status, straight.body], [200, { ok: true }], `${header} changes the request when sent to the serve port`);
      const proxied = await request(base, '/healthz', { headers: { [header]: value }, from: ipA });
      assert.deepEqual([proxied.status, proxied.body], [200, { ok: true }], `${header}: ${value} through ${name}: HTTP ${proxied.status} ${JSON.stringify(proxied.body)}`);
    }
  });

  await t.test('the Worker limits by the address the proxy saw (CF-Connecting-IP), never by one the client claims', async () => {
    // Sign-ins are limited to 10 per address; each of these claims another address.
    const attempt = (from, claimed) => request(base, '/api/v1/agent/login', {
      method: 'POST', body: { email: `nobody-${randomBytes(4).toString('hex')}@example.com`, password: 'not the password' }, from,
      headers: claimed ? { 'cf-connecting-ip': claimed } : {},
    });
    const statuses = [];
    for (let i = 1; i <= 10; i++) statuses.push((await attempt(ipB, `203.0.113.${i}`)).status);
    assert.deepEqual(statuses, Array(10).fill(401), 'ten refused sign-ins');
    // The limit refills one attempt per 10 s: on a very slow machine one more may pass.
    const more = [];
    for (let i = 11; i <= 12 && !more.includes(429); i++) more.push((await attempt(ipB, `203.0.113.${i}`)).status);
    assert.ok(more.includes(429), `then the limit of the one real address, whatever each request claimed: ${more}`);
    // Another client, through the same proxy (same upstream address): its own limit.
    assert.equal((await attempt(ipA)).status, 401, 'a client from another address is not limited');
  });

  await t.test('HTTP/2 is offered', async () => {
    const session = http2.connect(base, { ...TLS, lookup });
    try {
      const res = await new Promise((resolve, reject) => {
        session.on('error', reject);
        const req = session.request({ ':path': '/healthz' });
        let data = '';
        let status;
        req.on('response', (h) => { status = h[':status']; });
        req.setEncoding('utf8');
        req.on('data', (c) => { data += c; });
        req.on('end', () => resolve({ status, data }));
        req.on('error', reject);
        req.end();
      });
      assert.deepEqual([res.status, JSON.parse(res.data)], [200, { ok: true }]);
      assert.equal(session.alpnProtocol, 'h2');
    } finally {
      session.close();
    }
  });
}

const SERVE_NOTE = 'serve is started with the unit\'s ExecStart arguments and environment file';

for (const [name, start, redirect] of [
  ['nginx', startNginx, (res) => {
    assert.equal(res.status, 301);
    assert.equal(res.headers.location, `https://${HOST}/console/?x=1`);
  }],
  ['caddy', startCaddy, (res) => {
    assert.ok([301, 308].includes(res.status), `status ${res.status}`);
    assert.equal(res.headers.location, `https://${HOST}/console/?x=1`);
  }],
]) {
  const bin = findBin(name);
  const openssl = findBin('openssl');
  const skip = !bin ? `${name} is not installed (bash .ci/run installs it: apt-get install ${name})`
    : !openssl ? 'openssl is not installed (needed for the test certificate)' : false;
  if (skip) console.log(`# reverse-proxy: skipping ${name}: ${skip}`);
  const ips = name === 'nginx' ? ['127.0.0.2', '127.0.0.3'] : ['127.0.0.4', '127.0.0.5'];
  test(`${name}: the configuration in docs/operations.md in front of the private deployment (${SERVE_NOTE})`, { skip }, async (t) => {
    const d = await ensureDeployment();
    const proxy = await start(bin, d);
    const base = `https://${HOST}:${d.httpsPort}`;
    try {
      await waitReady(proxy, base);
      await exercise(t, name, base, d, ips);
      await t.test('plain HTTP is redirected to https', async () => {
        const res = await request(`http://${HOST}:${d.httpPort}`, '/console/?x=1');
        redirect(res);
      });
    } catch (e) {
      e.message += `\n--- ${name} output ---\n${proxy.errorLog().slice(-3000)}`;
      throw e;
    } finally {
      const code = await proxy.stop(name === 'nginx' ? 'SIGQUIT' : 'SIGTERM');
      if (VERBOSE) console.log(`# ${name} stopped: ${code}`);
    }
  });
}

test('systemd: the unit in docs/operations.md passes systemd-analyze verify and runs the documented serve command', async (t) => {
  // The command is the documented one: `npm run serve` is `node scripts/serve.mjs`, with the
  // same arguments as the serve example, the same variables as it sets, all accepted by serve.
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  assert.equal(pkg.scripts.serve, 'node scripts/serve.mjs');
  const { bin, script, args } = unitCommand();
  assert.match(bin, /^\/\S+\/node$/, 'ExecStart names node by its absolute path');
  assert.equal(script, 'scripts/serve.mjs');
  const documented = documentedServe();
  assert.deepEqual(args, documented.args, 'ExecStart has the arguments of the documented `npm run serve -- …`');
  assert.deepEqual(Object.keys(ENV_FILE).sort(), [...documented.env].sort(), 'the environment file sets the variables of the documented serve command');
  const opts = parseServeArgs(args, envForTest('a long enough password'));
  assert.equal(opts.data, '/var/lib/parley');
  assert.equal(opts.host, '127.0.0.1', 'on loopback, behind the proxy');
  assert.ok(opts.bootstrap && opts.metricsToken && opts.vars.TOKEN_SECRET);

  // The unit agrees with itself and the rest of the document.
  const service = (k) => unitValue(UNIT, 'Service', k);
  const root = service('WorkingDirectory');
  assert.ok(DOC.includes(`git clone <your Parley repository> ${root}`), 'WorkingDirectory is where the install step clones to');
  assert.equal(service('EnvironmentFile'), '/etc/parley/parley.env');
  assert.equal(`/var/lib/${service('StateDirectory')}`, opts.data, 'StateDirectory is the data directory');
  assert.equal(service('ReadWritePaths'), opts.data);
  assert.equal(service('KillMode'), 'control-group', 'workerd stops with node');
  assert.equal(service('KillSignal'), 'SIGTERM');
  assert.ok(DOC.includes(`useradd --system --home ${opts.data} --shell /usr/sbin/nologin ${service('User')}`));

  const analyze = findBin('systemd-analyze');
  if (!analyze) {
    t.skip('systemd-analyze is not installed (package systemd)');
    return;
  }
  // systemd-analyze checks that ExecStart is executable: on this machine, node is where it is.
  const dir = tempDir('systemd-');
  const unitPath = join(dir, 'parley.service');
  writeFileSync(unitPath, UNIT_BLOCK.text.replace(`ExecStart=${bin} `, `ExecStart=${process.execPath} `));
  const r = spawnSync(analyze, ['verify', '--man=no', unitPath], { encoding: 'utf8', timeout: 60_000 });
  const complaints = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes('parley.service'));
  assert.equal(r.status, 0, `systemd-analyze verify failed:\n${r.stdout}${r.stderr}`);
  assert.deepEqual(complaints, [], 'systemd-analyze has nothing to say about the unit');
  // And an unknown key is noticed (the check above would see a typo).
  writeFileSync(unitPath, UNIT_BLOCK.text.replace(`ExecStart=${bin} `, `ExecStart=${process.execPath} `).replace('[Install]', 'NoSuchKey=yes\n[Install]'));
  const typo = spawnSync(analyze, ['verify', '--man=no', unitPath], { encoding: 'utf8', timeout: 60_000 });
  assert.match(`${typo.stdout}${typo.stderr}`, /parley\.service:\d+: Unknown key/);
});
