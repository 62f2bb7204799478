// Accounts over the real Worker in Miniflare: console sessions in HttpOnly cookies (with the
// same-origin rule for requests that change something), short-lived socket tokens, API keys
// (scoped, shown once, stored hashed, revocable), agents' e-mail changes and password resets.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { agentLogin, connect, createAgent, http, msgId, newConversation, Socket, wsUrl } from './support/client.mjs';
import { startServer } from './support/server.mjs';

let server;
let owner;

before(async () => {
  server = await startServer();
  owner = await agentLogin(server);
});

after(async () => {
  await server?.stop();
});

/** The console's sign-in: resolves to { cookie (name=value), setCookie (the header), body }. */
async function consoleLogin(email = server.email, password = server.password) {
  const res = await http(server.url, '/api/v1/agent/login', { method: 'POST', body: { email, password, cookie: true } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const setCookie = res.headers.get('set-cookie');
  assert.ok(setCookie, 'a session cookie is set');
  return { cookie: setCookie.split(';')[0], setCookie, body: res.body };
}

const sameOrigin = () => ({ origin: server.url });
// Sign-ins are limited per address: the later ones in this file come from another client.
const elsewhere = { 'cf-connecting-ip': '192.0.2.7' };

test('the console session is an HttpOnly, Secure, SameSite=Strict cookie for the API only, never in the answer', async () => {
  const { cookie, setCookie, body } = await consoleLogin();
  const attributes = setCookie.split(';').map((a) => a.trim().toLowerCase());
  for (const want of ['httponly', 'secure', 'samesite=strict', 'path=/api/']) assert.ok(attributes.includes(want), `${want} in ${setCookie}`);
  assert.match(setCookie, /Max-Age=\d+/);
  assert.equal(body.token, undefined, 'no token for script to steal');
  assert.equal(body.agent.email, server.email);
  const me = await http(server.url, '/api/v1/me', { headers: { cookie } });
  assert.equal(me.status, 200);
  assert.equal(me.body.principal.kind, 'agent');
  // API clients still get a bearer token and no cookie.
  const api = await http(server.url, '/api/v1/agent/login', { method: 'POST', body: { email: server.email, password: server.password } });
  assert.equal(typeof api.body.token, 'string');
  assert.equal(api.headers.get('set-cookie'), null);
});

test('a request carried by the cookie that changes something must come from the Worker\'s own origin', async () => {
  const { cookie } = await consoleLogin();
  const body = { title: 'Hours', body: 'We answer 9–17.', personal: true };
  for (const headers of [{ cookie }, { cookie, origin: 'https://evil.example' }]) {
    const res = await http(server.url, '/api/v1/quick-replies', { method: 'POST', headers, body });
    assert.equal(res.status, 403, JSON.stringify(res.body));
    assert.equal(res.body.code, 'origin_not_allowed');
  }
  const ok = await http(server.url, '/api/v1/quick-replies', { method: 'POST', headers: { cookie, ...sameOrigin() }, body });
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  // Reading needs no Origin (and changes nothing).
  const list = await http(server.url, '/api/v1/quick-replies', { headers: { cookie } });
  assert.equal(list.status, 200);
  assert.ok(list.body.replies.some((r) => r.title === 'Hours'));
});

test('sockets sign in with a short-lived token of the cookie session; logging out ends both', async () => {
  const { cookie } = await consoleLogin();
  const conv = await newConversation(server);
  const issued = await http(server.url, '/api/v1/agent/socket-token', { method: 'POST', headers: { cookie, ...sameOrigin() } });
  assert.equal(issued.status, 200, JSON.stringify(issued.body));
  const lifetime = issued.body.expires_at - Date.now();
  assert.ok(lifetime > 60_000 && lifetime <= 120_000, `socket tokens live two minutes (${lifetime} ms)`);
  const agent = await connect(server, conv.conversation, issued.body.token, { after: 0 });
  const visitor = await connect(server, conv.conversation, conv.token, { after: 0 });
  const id = msgId('cookie');
  await visitor.sendMessage('Hello from the visitor', id);
  assert.equal((await agent.next((f) => f.type === 'event' && f.client_msg_id === id)).body.text, 'Hello from the visitor');

  // Visitors and bearer-less callers get no socket tokens.
  assert.equal((await http(server.url, '/api/v1/agent/socket-token', { method: 'POST', token: conv.token })).status, 403);
  assert.equal((await http(server.url, '/api/v1/agent/socket-token', { method: 'POST' })).status, 401);

  const out = await http(server.url, '/api/v1/agent/logout', { method: 'POST', headers: { cookie, ...sameOrigin() } });
  assert.equal(out.status, 204);
  assert.match(out.headers.get('set-cookie'), /^parley_session=;.*Max-Age=0/);
  const me = await http(server.url, '/api/v1/me', { headers: { cookie } });
  assert.equal(me.status, 401);
  assert.equal(me.body.code, 'session_ended');
  // The socket token belonged to the session: a new socket with it is refused.
  const late = await Socket.open(wsUrl(server, conv.conversation));
  const refused = await late.hello(issued.body.token, { after: 0 });
  assert.equal(refused.type, 'error');
  assert.equal(refused.code, 'session_ended');
  agent.close();
  visitor.close();
  late.close();
});

test('API keys: made by admins, shown once, stored hashed, scoped, named in the log, revocable', async () => {
  const made = await http(server.url, '/api/v1/api-keys', { method: 'POST', token: owner.token, body: { name: 'CRM sync', scopes: ['read'] } });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const readKey = made.body.key;
  assert.match(readKey, /^pk_k_[a-z0-9]+\.[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(made.body.scopes, ['read']);

  // Listed without the key; D1 holds only the hash of its secret.
  const list = await http(server.url, '/api/v1/api-keys', { token: owner.token });
  assert.equal(list.status, 200);
  const listed = list.body.keys.find((k) => k.id === made.body.id);
  assert.equal(listed.name, 'CRM sync');
  assert.equal(listed.key, undefined);
  assert.ok(!JSON.stringify(list.body).includes(readKey.split('.')[1]));
  const { results: [row] } = await server.d1('SELECT * FROM api_keys WHERE id = ?1', [made.body.id]);
  const secret = readKey.split('.')[1];
  assert.ok(!JSON.stringify(row).includes(secret), 'the secret is not stored');
  assert.equal(row.secret_hash, createHash('sha256').update(secret).digest('hex'));

  // A read key reads and changes nothing.
  const conv = await newConversation(server);
  await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token: conv.token, body: { client_msg_id: msgId('v'), text: 'Where is my order?' },
  });
  const read = await http(server.url, `/api/v1/conversations/${conv.conversation}/history`, { token: readKey });
  assert.equal(read.status, 200, JSON.stringify(read.body));
  assert.ok(read.body.events.some((e) => e.body?.text === 'Where is my order?'));
  const refused = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token: readKey, body: { client_msg_id: msgId('k'), text: 'nope' },
  });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.code, 'forbidden');

  // A write key answers the visitor, as the key's name.
  const writer = await http(server.url, '/api/v1/api-keys', { method: 'POST', token: owner.token, body: { name: 'Order bot', scopes: ['write'] } });
  assert.equal(writer.status, 201);
  const visitor = await connect(server, conv.conversation, conv.token, { after: 0 });
  const id = msgId('bot');
  const sent = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token: writer.body.key, body: { client_msg_id: id, text: 'It ships tomorrow.' },
  });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  const event = await visitor.next((f) => f.type === 'event' && f.client_msg_id === id);
  assert.equal(event.author.role, 'agent');
  assert.equal(event.author.name, 'Order bot');
  visitor.close();

  // Only people who are owners or admins manage keys; a key never makes keys, even an admin one.
  const agent = await createAgent(server, { name: 'Kim', email: 'kim@parley.local' });
  assert.equal((await http(server.url, '/api/v1/api-keys', { token: agent.token })).status, 403);
  const adminKey = await http(server.url, '/api/v1/api-keys', { method: 'POST', token: owner.token, body: { name: 'Ops', scopes: ['admin', 'write'] } });
  assert.equal((await http(server.url, '/api/v1/agents', { token: adminKey.body.key })).status, 200, 'an admin key reaches admin operations');
  const minted = await http(server.url, '/api/v1/api-keys', { method: 'POST', token: adminKey.body.key, body: { name: 'More', scopes: ['read'] } });
  assert.equal(minted.status, 403);

  // Bad requests, bad keys.
  for (const body of [{ name: '', scopes: ['read'] }, { name: 'x', scopes: [] }, { name: 'x', scopes: ['root'] }]) {
    const res = await http(server.url, '/api/v1/api-keys', { method: 'POST', token: owner.token, body });
    assert.equal(res.status, 400, JSON.stringify(body));
  }
  for (const bad of [`${readKey.slice(0, -2)}xx`, 'pk_k_nosuchkey.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'pk_garbage']) {
    const res = await http(server.url, '/api/v1/me', { token: bad });
    assert.equal(res.status, 401, bad);
    assert.equal(res.body.code, 'token_invalid');
  }
  // Keys are bearer credentials only, never cookies.
  assert.equal((await http(server.url, '/api/v1/me', { headers: { cookie: `parley_session=${readKey}` } })).status, 401);

  // Revoked: refused at once, still listed with when.
  const revoked = await http(server.url, `/api/v1/api-keys/${made.body.id}`, { method: 'DELETE', token: owner.token });
  assert.equal(revoked.status, 204);
  const after = await http(server.url, '/api/v1/me', { token: readKey });
  assert.equal(after.status, 401);
  assert.equal(after.body.code, 'token_invalid');
  const again = (await http(server.url, '/api/v1/api-keys', { token: owner.token })).body.keys.find((k) => k.id === made.body.id);
  assert.equal(typeof again.revoked_at, 'number');
  assert.equal((await http(server.url, `/api/v1/api-keys/${made.body.id}`, { method: 'DELETE', token: owner.token })).status, 404);
  const { results: audit } = await server.d1("SELECT action, target FROM audit_log WHERE action LIKE 'api_key_%' ORDER BY id");
  assert.deepEqual(audit.filter((a) => a.target === made.body.id).map((a) => a.action), ['api_key_created', 'api_key_revoked']);
});

test('e-mail addresses are one per account: a taken one is refused as email_taken, a free one is the new sign-in', async () => {
  const lee = await createAgent(server, { name: 'Lee', email: 'lee@parley.local' });
  const taken = await http(server.url, '/api/v1/agents', {
    method: 'POST', token: owner.token, body: { name: 'Lee 2', email: 'LEE@parley.local', password: 'long enough password' },
  });
  assert.equal(taken.status, 409);
  assert.equal(taken.body.code, 'email_taken');
  const clash = await http(server.url, `/api/v1/agents/${lee.agentId}`, { method: 'PATCH', token: owner.token, body: { email: server.email, capacity: 9 } });
  assert.equal(clash.status, 409);
  assert.equal(clash.body.code, 'email_taken');
  const unchanged = (await http(server.url, '/api/v1/agents', { token: owner.token })).body.agents.find((a) => a.id === lee.agentId);
  assert.equal(unchanged.email, 'lee@parley.local');
  assert.equal(unchanged.capacity, 5, 'a refused change saves nothing');

  const moved = await http(server.url, `/api/v1/agents/${lee.agentId}`, { method: 'PATCH', token: owner.token, body: { email: 'Lee.Wong@parley.local' } });
  assert.equal(moved.status, 204, JSON.stringify(moved.body));
  const login = (email) => http(server.url, '/api/v1/agent/login', { method: 'POST', body: { email, password: 'correct horse battery' }, headers: elsewhere });
  assert.equal((await login('lee.wong@parley.local')).status, 200);
  assert.equal((await login('lee@parley.local')).status, 401);
});

test('an admin resetting an agent\'s password signs the agent out everywhere', async () => {
  const sam = await createAgent(server, { name: 'Sam', email: 'sam@parley.local' });
  assert.equal((await http(server.url, '/api/v1/me', { token: sam.token })).status, 200);
  const reset = await http(server.url, `/api/v1/agents/${sam.agentId}`, { method: 'PATCH', token: owner.token, body: { password: 'a brand new password' } });
  assert.equal(reset.status, 204);
  const me = await http(server.url, '/api/v1/me', { token: sam.token });
  assert.equal(me.status, 401);
  assert.equal(me.body.code, 'session_ended');
  const login = await http(server.url, '/api/v1/agent/login', { method: 'POST', body: { email: 'sam@parley.local', password: 'a brand new password' }, headers: elsewhere });
  assert.equal(login.status, 200);
});

/** Signs an agent in from its own address (sign-ins are limited per address): its token. */
async function signInFrom(ip, email, password = 'correct horse battery') {
  const res = await http(server.url, '/api/v1/agent/login', { method: 'POST', body: { email, password }, headers: { 'cf-connecting-ip': ip } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.token;
}

test('a new role or new permissions sign the agent out everywhere; a change to the same ones does not', async () => {
  const ada = await createAgent(server, { name: 'Ada', email: 'ada@parley.local', role: 'admin', headers: { 'cf-connecting-ip': '192.0.2.31' } });
  const patch = (body) => http(server.url, `/api/v1/agents/${ada.agentId}`, { method: 'PATCH', token: owner.token, body });
  assert.equal((await patch({ role: 'admin', permissions: [] })).status, 204);
  assert.equal((await http(server.url, '/api/v1/me', { token: ada.token })).status, 200, 'the same role and permissions keep the session');

  assert.equal((await patch({ role: 'agent' })).status, 204);
  for (const [path, opts] of [
    ['/api/v1/me', {}],
    ['/api/v1/agents', {}],
    ['/api/v1/api-keys', { method: 'POST', body: { name: 'kept admin powers', scopes: ['admin'] } }],
  ]) {
    const res = await http(server.url, path, { token: ada.token, ...opts });
    assert.equal(res.status, 401, `${path}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.code, 'session_ended');
  }
  // Signed in again, the token carries the new role.
  const again = await signInFrom('192.0.2.21', 'ada@parley.local');
  assert.equal((await http(server.url, '/api/v1/agents', { token: again })).status, 403);
  assert.equal((await patch({ permissions: ['export'] })).status, 204);
  assert.equal((await http(server.url, '/api/v1/me', { token: again })).status, 401, 'new permissions end the session too');
});

test('changing one\'s own password ends one\'s other sessions, not the one it was done from', async () => {
  const pat = await createAgent(server, { name: 'Pat', email: 'pat@parley.local', role: 'owner', headers: { 'cf-connecting-ip': '192.0.2.32' } });
  const other = await signInFrom('192.0.2.22', 'pat@parley.local');
  const changed = await http(server.url, `/api/v1/agents/${pat.agentId}`, { method: 'PATCH', token: pat.token, body: { password: 'another long password' } });
  assert.equal(changed.status, 204, JSON.stringify(changed.body));
  const stolen = await http(server.url, '/api/v1/me', { token: other });
  assert.equal(stolen.status, 401);
  assert.equal(stolen.body.code, 'session_ended');
  assert.equal((await http(server.url, '/api/v1/me', { token: pat.token })).status, 200);
});

test('an agent signed out elsewhere stops receiving a conversation they watch, even on a socket that only pings', async () => {
  const wes = await createAgent(server, { name: 'Wes', email: 'wes@parley.local', headers: { 'cf-connecting-ip': '192.0.2.33' } });
  const conv = await newConversation(server);
  const watching = await connect(server, conv.conversation, wes.token, { after: 0 });
  const visitor = await connect(server, conv.conversation, conv.token, { after: 0 });
  const first = msgId('seen');
  await visitor.sendMessage('Seen while signed in', first);
  await watching.next((f) => f.type === 'event' && f.client_msg_id === first);

  const disabled = await http(server.url, `/api/v1/agents/${wes.agentId}`, { method: 'PATCH', token: owner.token, body: { disabled: true } });
  assert.equal(disabled.status, 204);
  // The visitor goes on writing; the agent's socket sends nothing the conversation would see.
  const deadline = Date.now() + 45_000;
  for (let i = 0; !watching.closed && Date.now() < deadline; i += 1) {
    await visitor.sendMessage(`After the agent was disabled ${i}`, msgId(`after-${i}`));
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  assert.ok(watching.closed, 'the socket of the ended session is closed');
  assert.equal(watching.closed.code, 1008);
  assert.ok(watching.frames.some((f) => f.type === 'error' && f.code === 'session_ended'), 'told why');
  const lastSeen = watching.frames.filter((f) => f.type === 'event').length;
  await visitor.sendMessage('Not for a closed socket', msgId('not-seen'));
  assert.equal(watching.frames.filter((f) => f.type === 'event').length, lastSeen);
  visitor.close();
});

test('an API key without the personal_data scope reads visitors\' data masked and cannot reveal it; a person can, audited', async () => {
  const makeKey = async (scopes) => {
    const made = await http(server.url, '/api/v1/api-keys', { method: 'POST', token: owner.token, body: { name: `reveal ${scopes}`, scopes } });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    return made.body.key;
  };
  const plainKey = await makeKey(['read', 'write']);
  const pdKey = await makeKey(['read', 'personal_data']);
  const conv = await newConversation(server);
  const sent = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token: conv.token, body: { client_msg_id: msgId('pd'), text: 'mail me at ann.smith@example.org' },
  });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  const seq = sent.body.seq;
  const textFor = async (token) => {
    const res = await http(server.url, `/api/v1/conversations/${conv.conversation}/history`, { token });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.events.find((e) => e.seq === seq).body.text;
  };
  assert.doesNotMatch(await textFor(plainKey), /ann\.smith/);
  assert.equal(await textFor(pdKey), 'mail me at ann.smith@example.org');
  // So is a file the visitor named after themselves.
  /** Uploads a PDF named after the visitor's address as `token`'s holder and posts it. */
  const sendNamedFile = async (token, prefix) => {
    const up = await fetch(`${server.url}/api/v1/conversations/${conv.conversation}/files?name=${encodeURIComponent('ann.smith@example.org.pdf')}`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/pdf' }, body: Buffer.from('%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n'),
    });
    assert.equal(up.status, 201);
    const file = (await up.json()).file;
    const posted = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
      method: 'POST', token, body: { client_msg_id: msgId(prefix), file: file.id },
    });
    assert.equal(posted.status, 200, JSON.stringify(posted.body));
    return { file, posted };
  };
  /** The download's headers for `token`'s holder. */
  const downloadHeaders = async (fileId, token) => {
    const res = await fetch(`${server.url}/api/v1/conversations/${conv.conversation}/files/${fileId}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    return res.headers;
  };
  const { file, posted } = await sendNamedFile(conv.token, 'pf');
  const fileNameFor = async (token) => {
    const res = await http(server.url, `/api/v1/conversations/${conv.conversation}/history`, { token });
    return res.body.events.find((e) => e.seq === posted.body.seq).body.file.name;
  };
  assert.doesNotMatch(await fileNameFor(plainKey), /ann\.smith/);
  assert.equal(await fileNameFor(pdKey), 'ann.smith@example.org.pdf');
  // And the name the download is saved under.
  const savedAs = async (token) => (await downloadHeaders(file.id, token)).get('content-disposition');
  const plainDisposition = await savedAs(plainKey);
  assert.doesNotMatch(plainDisposition, /ann\.smith/);
  assert.match(plainDisposition, /filename\*=UTF-8''a%2A%2A%2A%40example\.org\.pdf$/);
  assert.match(await savedAs(pdKey), /filename\*=UTF-8''ann\.smith%40example\.org\.pdf/);
  assert.match(await savedAs(conv.token), /ann\.smith/);
  // A file the team sent keeps its name: only a visitor's own naming is theirs to mask.
  const { file: teamFile } = await sendNamedFile(owner.token, 'tf');
  const teamDownload = await downloadHeaders(teamFile.id, plainKey);
  assert.match(teamDownload.get('content-disposition'), /ann\.smith%40example\.org\.pdf/);
  assert.match(teamDownload.get('vary') ?? '', /Authorization/);

  const refused = await http(server.url, `/api/v1/conversations/${conv.conversation}/reveal`, { method: 'POST', token: plainKey, body: { seq } });
  assert.equal(refused.status, 403, JSON.stringify(refused.body));
  assert.equal(refused.body.code, 'forbidden');

  const kim = await createAgent(server, { name: 'Kai', email: 'kai@parley.local', headers: { 'cf-connecting-ip': '192.0.2.34' } });
  const revealed = await http(server.url, `/api/v1/conversations/${conv.conversation}/reveal`, { method: 'POST', token: kim.token, body: { seq } });
  assert.equal(revealed.status, 200, JSON.stringify(revealed.body));
  assert.match(JSON.stringify(revealed.body), /ann\.smith@example\.org/);
  const { results } = await server.d1("SELECT actor_id FROM audit_log WHERE action = 'reveal_personal_data' AND target = ?1", [conv.conversation]);
  assert.deepEqual(results.map((r) => r.actor_id), [kim.agentId], 'only the person\'s reveal, audited');
});
