// The security pass: exact CORS, page headers for the console, caps on sockets per participant.
// Each case states the input and the exact expected code or header.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './support/server.mjs';
import { Socket, http, newConversation, wsUrl } from './support/client.mjs';
import { assertRateLimited } from './support/stored.mjs';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

test('CORS: an allowed site origin gets Access-Control-Allow-Origin, an unknown origin gets none', async () => {
  const conv = await newConversation(server);
  const path = `/api/v1/conversations/${conv.conversation}`;
  const allowed = await http(server.url, path, { token: conv.token, headers: { origin: 'http://allowed.example' } });
  assert.equal(allowed.headers.get('access-control-allow-origin'), 'http://allowed.example');
  assert.equal(allowed.headers.get('vary'), 'Origin');
  const evil = await http(server.url, path, { token: conv.token, headers: { origin: 'http://evil.example' } });
  assert.equal(evil.headers.get('access-control-allow-origin'), null);
  // A preflight from an unknown origin is not granted either.
  const preflight = await fetch(`${server.url}${path}`, {
    method: 'OPTIONS',
    headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
  });
  assert.equal(preflight.headers.get('access-control-allow-origin'), null);
  const granted = await fetch(`${server.url}${path}`, {
    method: 'OPTIONS',
    headers: { origin: 'http://allowed.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
  });
  assert.equal(granted.status, 204);
  assert.equal(granted.headers.get('access-control-allow-origin'), 'http://allowed.example');
  assert.match(granted.headers.get('access-control-allow-headers'), /authorization/);
});

test('CORS: an origin no site allows reads the refusal of a widget\'s first requests (origin_not_allowed), nothing else; an allowed origin is unchanged', async () => {
  const unlisted = 'http://unlisted.example';
  const conv = await newConversation(server);
  const config = `/api/v1/widget/config?site=${encodeURIComponent(server.siteKey)}`;
  const readable = (res, status) => {
    assert.equal(res.status, status);
    assert.equal(res.headers.get('access-control-allow-origin'), unlisted);
    assert.equal(res.headers.get('vary'), 'Origin');
    assert.equal(res.headers.get('access-control-allow-credentials'), null);
  };
  const unreadable = (res) => assert.equal(res.headers.get('access-control-allow-origin'), null, `${res.status} ${JSON.stringify(res.body)}`);
  const preflight = (path, method, origin = unlisted) => fetch(`${server.url}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': 'content-type' },
  });

  // The session and the configuration: refused, readably, with the same answer whatever the
  // site key (nothing is looked up for such an origin).
  for (const site_key of [server.siteKey, 'pk_not_a_site_of_this_deployment']) {
    const session = await http(server.url, '/api/v1/visitor/session', { method: 'POST', body: { site_key }, headers: { origin: unlisted } });
    readable(session, 403);
    assert.equal(session.body.code, 'origin_not_allowed');
    assert.equal(session.body.token, undefined);
  }
  const refusedConfig = await http(server.url, config, { headers: { origin: unlisted } });
  readable(refusedConfig, 403);
  assert.equal(refusedConfig.body.code, 'origin_not_allowed');
  const granted = await preflight('/api/v1/visitor/session', 'POST');
  readable(granted, 204);
  assert.match(granted.headers.get('access-control-allow-headers'), /content-type/);
  readable(await preflight(config, 'GET'), 204);

  // Everything else stays unreadable to it: other methods on those paths, other paths, and
  // refusals elsewhere (a conversation it may not start).
  unreadable(await preflight('/api/v1/visitor/session', 'PUT'));
  unreadable(await http(server.url, '/api/v1/visitor/session', { headers: { origin: unlisted } }));
  for (const path of ['/api/v1/conversations', `/api/v1/conversations/${conv.conversation}/messages`, '/api/v1/visitor/context', '/api/v1/me']) {
    unreadable(await preflight(path, 'POST'));
  }
  unreadable(await http(server.url, '/api/v1/me', { headers: { origin: unlisted } }));
  unreadable(await http(server.url, `/api/v1/conversations/${conv.conversation}`, { token: conv.token, headers: { origin: unlisted } }));
  const create = await http(server.url, '/api/v1/conversations', { method: 'POST', token: conv.token, headers: { origin: unlisted } });
  assert.equal(create.body.code, 'origin_not_allowed');
  unreadable(create);

  // An allowed origin: its session and configuration as before, and a refusal of its own
  // (an unknown site key) still says so.
  const allowed = 'http://allowed.example';
  const session = await http(server.url, '/api/v1/visitor/session', { method: 'POST', body: { site_key: server.siteKey }, headers: { origin: allowed } });
  assert.equal(session.status, 200);
  assert.ok(session.body.token);
  assert.equal(session.headers.get('access-control-allow-origin'), allowed);
  assert.equal(session.headers.get('access-control-expose-headers'), 'retry-after');
  const configured = await http(server.url, config, { headers: { origin: allowed } });
  assert.equal(configured.status, 200);
  assert.equal(configured.headers.get('access-control-allow-origin'), allowed);
  const unknown = await http(server.url, '/api/v1/visitor/session', { method: 'POST', body: { site_key: 'pk_not_a_site_of_this_deployment' }, headers: { origin: allowed } });
  assert.equal(unknown.body.code, 'unknown_site');
  assert.equal(unknown.headers.get('access-control-allow-origin'), allowed);
  // The Worker's own pages are same-origin: no CORS answer.
  const own = await http(server.url, config, { headers: { origin: server.url } });
  assert.equal(own.status, 200);
  assert.equal(own.headers.get('access-control-allow-origin'), null);
});

test('the console is served with a strict CSP and anti-framing headers', async () => {
  const res = await fetch(`${server.url}/console/`);
  await res.arrayBuffer();
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-frame-options'), 'DENY');
  const csp = res.headers.get('content-security-policy');
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  // The widget script is embedded by other sites: it carries no page headers.
  const widget = await fetch(`${server.url}/widget.js`);
  await widget.arrayBuffer();
  assert.equal(widget.headers.get('x-frame-options'), null);
});

test('sockets per participant are capped: the 33rd socket of one visitor → too_many_connections, close 1008', async () => {
  const conv = await newConversation(server);
  const sockets = [];
  try {
    for (let i = 0; i < 32; i += 1) {
      const s = await Socket.open(wsUrl(server, conv.conversation));
      const welcome = await s.hello(conv.token);
      assert.equal(welcome.type, 'welcome');
      sockets.push(s);
    }
    const extra = await Socket.open(wsUrl(server, conv.conversation));
    sockets.push(extra);
    const refused = await extra.hello(conv.token);
    assert.equal(refused.type, 'error');
    assert.equal(refused.code, 'too_many_connections');
    assert.equal((await extra.waitClosed()).code, 1008);
    // Closing one makes room again.
    sockets[0].close();
    await sockets[0].waitClosed();
    let again;
    for (let attempt = 0; attempt < 20; attempt += 1) {
      const s = await Socket.open(wsUrl(server, conv.conversation));
      sockets.push(s);
      again = await s.hello(conv.token);
      if (again.type === 'welcome') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(again.type, 'welcome');
  } finally {
    sockets.forEach((s) => s.close());
  }
});

test('flood: more than 30 sessions and conversations from one IP address → 429 rate_limited with Retry-After, nothing created', async () => {
  const headers = { 'cf-connecting-ip': '127.9.9.9' };
  const { results: [before] } = await server.d1('SELECT COUNT(*) AS n FROM conversations');
  let session;
  const created = [];
  let refused;
  for (let i = 0; i < 40 && !refused; i += 1) {
    if (!session || i % 2 === 0) {
      const res = await http(server.url, '/api/v1/visitor/session', { method: 'POST', headers, body: { site_key: server.siteKey } });
      if (res.status === 429) { refused = res; break; }
      session = res.body;
    }
    const conv = await http(server.url, '/api/v1/conversations', { method: 'POST', headers, token: session.token });
    if (conv.status === 429) refused = conv;
    else created.push(conv.body.conversation);
  }
  assert.ok(refused, 'the flood was stopped');
  assertRateLimited(refused);
  assert.equal(refused.body.token, undefined);
  assert.equal(refused.body.conversation, undefined);
  // Another address is unaffected.
  const other = await http(server.url, '/api/v1/visitor/session', { method: 'POST', headers: { 'cf-connecting-ip': '127.9.9.10' }, body: { site_key: server.siteKey } });
  assert.equal(other.status, 200);
  // Only the accepted conversations exist (the mirror catches up within a few seconds).
  for (let i = 0; i < 50; i += 1) {
    const { results: [now] } = await server.d1('SELECT COUNT(*) AS n FROM conversations');
    if (now.n >= before.n + created.length) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const { results: [after] } = await server.d1('SELECT COUNT(*) AS n FROM conversations');
  assert.equal(after.n - before.n, created.length);
});

test('per-address limits follow the environment: a shared office address can be given room, sign-ins held tighter', async () => {
  const own = await startServer({ vars: { RATE_IP_CREATIONS: '100/1', RATE_LOGINS: '1/0.001' } });
  try {
    const headers = { 'cf-connecting-ip': '127.9.8.7' };
    for (let i = 0; i < 40; i += 1) {
      const res = await http(own.url, '/api/v1/visitor/session', { method: 'POST', headers, body: { site_key: own.siteKey } });
      assert.equal(res.status, 200, `session ${i + 1} of 40 from one address`);
    }
    const login = () => http(own.url, '/api/v1/agent/login', { method: 'POST', headers, body: { email: own.email, password: own.password } });
    assert.equal((await login()).status, 200);
    const second = await login();
    assertRateLimited(second);
    assert.equal(second.body.token, undefined);
  } finally {
    await own.stop();
  }
});
