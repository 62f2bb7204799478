// Admin: the team's agents — create, roles and permissions, capacity and departments, disable,
// reset password — with permission checks and the audit log.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { hashPassword, randomId } from '../scripts/runtime.mjs';
import { startServer } from './support/server.mjs';
import { agentLogin, connect, createAgent, http, msgId, newConversation } from './support/client.mjs';
import { assertHttpError, snapshot, assertUnchanged, waitMirror } from './support/stored.mjs';

let server;
let owner;

// Each sign-in from its own loopback address, so this file's many sign-ins stay under the
// per-address login limit (which has its own test in bad-input).
let signIns = 0;
const login = (email, password) => {
  signIns += 1;
  return http(server.url, '/api/v1/agent/login', {
    method: 'POST', headers: { 'cf-connecting-ip': `127.7.0.${signIns}` }, body: { email, password },
  });
};

before(async () => {
  server = await startServer();
  owner = await agentLogin(server);
});

after(async () => {
  await server?.stop();
});

test('an owner adds an agent with capacity, departments and permissions; the agent signs in', async () => {
  const created = await http(server.url, '/api/v1/agents', {
    method: 'POST', token: owner.token,
    body: { email: 'Mia@Parley.local', name: 'Mia', password: 'a long enough password', capacity: 3, departments: ['sales', 'vip'], permissions: ['export'] },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.deepEqual(
    { ...created.body, id: undefined, created_at: undefined },
    { id: undefined, created_at: undefined, email: 'mia@parley.local', name: 'Mia', role: 'agent', capacity: 3, permissions: ['export'], disabled: false, departments: ['sales', 'vip'] },
  );
  const signedIn = await login('mia@parley.local', 'a long enough password');
  assert.equal(signedIn.status, 200);
  const me = await http(server.url, '/api/v1/me', { token: signedIn.body.token });
  assert.deepEqual(me.body.permissions, { view_personal_data: false, export: true });
  // The same e-mail cannot be added twice.
  const again = await http(server.url, '/api/v1/agents', {
    method: 'POST', token: owner.token, body: { email: 'mia@parley.local', name: 'Mia 2', password: 'another long password' },
  });
  assert.equal(again.status, 409);
  assert.equal(again.body.code, 'email_taken');
});

test('a display name is kept clean of control and direction characters, as stored and wherever it is shown', async () => {
  // Through the admin API: stored clean; a name of nothing but controls is no name.
  const created = await http(server.url, '/api/v1/agents', {
    method: 'POST', token: owner.token,
    body: { email: 'ana@parley.local', name: ' Ana\u0000 Lee\u202e\n', password: 'a long enough password' },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.name, 'Ana Lee');
  const blank = await http(server.url, `/api/v1/agents/${created.body.id}`, { method: 'PATCH', token: owner.token, body: { name: '\u0000\t\u2066' } });
  assertHttpError(blank, 400, 'invalid_request');

  // A name stored before (here written straight into D1) is cleaned where it becomes an author:
  // the visitor, the conversation's history and the D1 mirror all see the whole name. A NUL
  // would otherwise cut it short in SQLite's JSON functions.
  const legacy = await createAgent(server, { name: 'Bo\u0000b Stone', email: 'bob@parley.local' });
  const conv = await newConversation(server);
  const visitor = await connect(server, conv.conversation, conv.token, { after: 0 });
  const agentSocket = await connect(server, conv.conversation, legacy.token, { after: 0 });
  const id = msgId('name');
  agentSocket.send({ type: 'send', client_msg_id: id, text: 'Hello from Bob' });
  const ack = await agentSocket.next((f) => f.type === 'ack' && f.client_msg_id === id);
  const seen = await visitor.next((f) => f.type === 'event' && f.client_msg_id === id);
  assert.equal(seen.author.name, 'Bob Stone');
  await waitMirror(server, conv.conversation, ack.seq);
  const { results: [row] } = await server.d1('SELECT author_name FROM messages WHERE conversation_id = ?1 AND seq = ?2', [conv.conversation, ack.seq]);
  assert.equal(row.author_name, 'Bob Stone');
  visitor.close();
  agentSocket.close();
});

test('disable and reset password; every change is audited', async () => {
  const { body: list } = await http(server.url, '/api/v1/agents', { token: owner.token });
  const mia = list.agents.find((a) => a.email === 'mia@parley.local');
  assert.equal((await http(server.url, `/api/v1/agents/${mia.id}`, { method: 'PATCH', token: owner.token, body: { disabled: true } })).status, 204);
  assert.equal((await login('mia@parley.local', 'a long enough password')).status, 401);
  await http(server.url, `/api/v1/agents/${mia.id}`, { method: 'PATCH', token: owner.token, body: { disabled: false, password: 'a brand new password' } });
  assert.equal((await login('mia@parley.local', 'a long enough password')).status, 401);
  assert.equal((await login('mia@parley.local', 'a brand new password')).status, 200);
  const { results } = await server.d1("SELECT action, target FROM audit_log WHERE target = ?1 AND action LIKE 'agent_%' ORDER BY id", [mia.id]);
  assert.deepEqual(results.map((r) => r.action), ['agent_created', 'agent_updated', 'agent_updated']);
  // Sign-ins, good and bad, are in the audit log too.
  const { results: logins } = await server.d1("SELECT action FROM audit_log WHERE target = ?1 AND action LIKE 'login%' ORDER BY id", [mia.id]);
  assert.ok(logins.some((r) => r.action === 'login'));
  assert.ok(logins.some((r) => r.action === 'login_failed'));
  // Too short a password, an unknown permission, a capacity out of range.
  for (const body of [{ password: 'short' }, { permissions: ['everything'] }, { capacity: 1000 }]) {
    assert.equal((await http(server.url, `/api/v1/agents/${mia.id}`, { method: 'PATCH', token: owner.token, body })).status, 400);
  }
});

test('agents cannot administer; admins cannot make owners; nobody disables themselves', async () => {
  const agentLoginRes = await login('mia@parley.local', 'a brand new password');
  const asAgent = await http(server.url, '/api/v1/agents', { token: agentLoginRes.body.token });
  assert.equal(asAgent.status, 403);
  assert.equal(asAgent.body.code, 'forbidden');
  const admin = await http(server.url, '/api/v1/agents', {
    method: 'POST', token: owner.token, body: { email: 'ada@parley.local', name: 'Ada', password: 'admin password here', role: 'admin' },
  });
  assert.equal(admin.status, 201);
  const adminToken = (await login('ada@parley.local', 'admin password here')).body.token;
  const makeOwner = await http(server.url, '/api/v1/agents', {
    method: 'POST', token: adminToken, body: { email: 'eve@parley.local', name: 'Eve', password: 'owner password here', role: 'owner' },
  });
  assert.equal(makeOwner.status, 403);
  const demoteOwner = await http(server.url, `/api/v1/agents/${owner.agentId}`, { method: 'PATCH', token: adminToken, body: { disabled: true } });
  assert.equal(demoteOwner.status, 403);
  const self = await http(server.url, `/api/v1/agents/${owner.agentId}`, { method: 'PATCH', token: owner.token, body: { disabled: true } });
  assert.equal(self.status, 403);
});

test('logout ends the session: the token is refused, the console socket closes, conversation sockets are cut off', async () => {
  const { connect, newConversation, openConsole, siteId } = await import('./support/client.mjs');
  const signIn = await login('ada@parley.local', 'admin password here');
  const token = signIn.body.token;
  const site = await siteId(server, token);
  const consoleSocket = await openConsole(server, site, token);
  const conv = await newConversation(server);
  const convSocket = await connect(server, conv.conversation, token, { after: 0 });
  assert.equal((await http(server.url, '/api/v1/agent/logout', { method: 'POST', token })).status, 204);
  const refused = await http(server.url, '/api/v1/conversations', { token });
  assert.equal(refused.status, 401);
  assert.equal(refused.body.code, 'session_ended');
  const ended = await consoleSocket.next((f) => f.type === 'error');
  assert.equal(ended.code, 'session_ended');
  assert.equal((await consoleSocket.waitClosed()).code, 1008);
  convSocket.send({ type: 'typing', active: true });
  assert.equal((await convSocket.next((f) => f.type === 'error')).code, 'session_ended');
  assert.equal((await convSocket.waitClosed()).code, 1008);
  // Signing in again starts a new session.
  const again = await login('ada@parley.local', 'admin password here');
  assert.equal((await http(server.url, '/api/v1/me', { token: again.body.token })).status, 200);
});

test('disabling an agent ends their sessions at once', async () => {
  const signIn = await login('mia@parley.local', 'a brand new password');
  const token = signIn.body.token;
  assert.equal((await http(server.url, '/api/v1/me', { token })).status, 200);
  const { body: list } = await http(server.url, '/api/v1/agents', { token: owner.token });
  const mia = list.agents.find((a) => a.email === 'mia@parley.local');
  await http(server.url, `/api/v1/agents/${mia.id}`, { method: 'PATCH', token: owner.token, body: { disabled: true } });
  const refused = await http(server.url, '/api/v1/me', { token });
  assert.equal(refused.status, 401);
  assert.equal(refused.body.code, 'session_ended');
});

test('site settings: widget texts, origins, routing with business hours, retention; secret rotation; departments', async () => {
  const { siteId } = await import('./support/client.mjs');
  const site = await siteId(server, owner.token);
  const patch = (body) => http(server.url, `/api/v1/sites/${site}`, { method: 'PATCH', token: owner.token, body });
  assert.equal((await patch({
    name: 'Tea House',
    allowed_origins: ['https://shop.example', 'http://allowed.example'],
    settings: { appearance: { color: '#0f766e', position: 'left' }, welcome: { en: 'Hello tea lover!', 'zh-CN': '茶友您好！' } },
    routing: { policy: 'least_loaded', answer_timeout_ms: 60000, hours: { enabled: true, timezone: 'Asia/Shanghai', weekly: { mon: [{ open: '09:00', close: '18:00' }] } } },
    retention_days: 365,
  })).status, 204);
  const got = await http(server.url, `/api/v1/sites/${site}`, { token: owner.token });
  assert.equal(got.body.name, 'Tea House');
  assert.deepEqual(got.body.allowed_origins, ['https://shop.example', 'http://allowed.example']);
  assert.equal(got.body.settings.appearance.color, '#0f766e');
  assert.equal(got.body.routing.policy, 'least_loaded');
  assert.equal(got.body.routing.hours.timezone, 'Asia/Shanghai');
  assert.equal(got.body.retention_days, 365);
  // Invalid values are refused and change nothing.
  const invalid = [
    { allowed_origins: ['javascript:alert(1)'] }, { routing: { hours: { enabled: true, timezone: 'Mars/Olympus' } } }, { retention_days: 0 }, { name: '' },
    // The bounds the console's site page holds to as well.
    { routing: { heartbeat_timeout_ms: 4000 } }, { routing: { heartbeat_timeout_ms: 86_400_001 } },
    { routing: { reconnect_grace_ms: -1 } }, { routing: { reconnect_grace_ms: 3_600_001 } },
    // Hours that would never open: a span or a holiday that does not read, a span that closes
    // before it opens; and times not written `HH:MM`, as the console writes them.
    { routing: { hours: { enabled: true, timezone: 'UTC', weekly: { mon: [{ open: '9.30', close: '18:00' }] } } } },
    { routing: { hours: { enabled: true, timezone: 'UTC', weekly: { tue: [{ open: '18:00', close: '09:00' }] } } } },
    { routing: { hours: { enabled: true, timezone: 'UTC', weekly: { wed: [{ open: '9:30', close: '18:00' }] } } } },
    { routing: { hours: { enabled: true, timezone: 'UTC', holidays: ['2030-13-01'] } } },
    { routing: { hours: { enabled: true, timezone: 'UTC', holidays: ['2030-1-2'] } } },
  ];
  for (const body of invalid) {
    assert.equal((await patch(body)).status, 400, JSON.stringify(body));
  }
  assert.equal((await http(server.url, `/api/v1/sites/${site}`, { token: owner.token })).body.name, 'Tea House');
  // Rotation returns a new secret once; identify() verification uses it, and the old secret
  // stops verifying at once (not when a remembered copy of the site runs out).
  const { visitorSession } = await import('./support/client.mjs');
  const shopper = await visitorSession(server);
  const identify = async (secret) => (await http(server.url, '/api/v1/visitor/identify', {
    method: 'POST', token: shopper.token,
    body: { id: 'cust-77', name: 'Kim', hash: createHmac('sha256', secret).update('cust-77').digest('hex') },
  })).body.verified;
  assert.equal(await identify(server.identitySecret), true);
  const rotated = await http(server.url, `/api/v1/sites/${site}/identity-secret`, { method: 'POST', token: owner.token });
  assert.match(rotated.body.identity_secret, /^[0-9a-f]{64}$/);
  assert.notEqual(rotated.body.identity_secret, server.identitySecret);
  assert.equal(await identify(server.identitySecret), false);
  assert.equal(await identify(rotated.body.identity_secret), true);
  // Departments made through agents are listed for every agent.
  const agentToken = (await login('ada@parley.local', 'admin password here')).body.token;
  const deps = await http(server.url, '/api/v1/departments', { token: agentToken });
  assert.equal(deps.status, 200, JSON.stringify(deps.body));
  assert.deepEqual(deps.body.departments.map((d) => d.name), ['sales', 'vip']);
  // Agents cannot change sites; other teams' sites are unknown.
  const asAgent = await http(server.url, `/api/v1/sites/${site}`, { token: (await login('mia@parley.local', 'a brand new password')).body.token });
  assert.ok([401, 403].includes(asAgent.status));
  assert.equal((await http(server.url, '/api/v1/sites/s_aaaaaaaaaaaaaaaaaaaaaaaaaa', { token: owner.token })).status, 404);
});

test('quick replies: edit and delete one’s own; team replies are the admins’', async () => {
  const mia = (await login('mia@parley.local', 'a brand new password'));
  // Mia was disabled by the previous test: enable her again for this one.
  const { body: list } = await http(server.url, '/api/v1/agents', { token: owner.token });
  const miaRow = list.agents.find((a) => a.email === 'mia@parley.local');
  await http(server.url, `/api/v1/agents/${miaRow.id}`, { method: 'PATCH', token: owner.token, body: { disabled: false } });
  const miaToken = mia.status === 200 ? mia.body.token : (await login('mia@parley.local', 'a brand new password')).body.token;
  const mine = await http(server.url, '/api/v1/quick-replies', { method: 'POST', token: miaToken, body: { title: 'Hi', body: 'Hello there', personal: true } });
  assert.equal(mine.status, 201);
  // What does not fit is refused, naming the field to correct, and not cut: a title or text empty
  // (or left out) or too long, a group too long; limits count characters, not bytes.
  const refusals = [
    ['POST', { title: '  ', body: 'Hello' }, 'title'],
    ['POST', { body: 'Hello' }, 'title'],
    ['POST', { title: 'x'.repeat(101), body: 'Hello' }, 'title'],
    ['POST', { title: 'Hi', body: '好'.repeat(4001) }, 'body'],
    ['POST', { title: 'Hi', body: 'Hello', group: 'g'.repeat(51) }, 'group'],
    ['PATCH', { title: 'x'.repeat(101) }, 'title'],
    ['PATCH', { body: ' ' }, 'body'],
    ['PATCH', { group: 'g'.repeat(51) }, 'group'],
  ];
  for (const [method, body, field] of refusals) {
    const path = method === 'POST' ? '/api/v1/quick-replies' : `/api/v1/quick-replies/${mine.body.id}`;
    const res = await http(server.url, path, { method, token: miaToken, body: { personal: true, ...body } });
    assert.deepEqual([res.status, res.body.code, res.body.field], [400, 'invalid_request', field], `${method} ${JSON.stringify(body).slice(0, 80)}`);
  }
  const longest = await http(server.url, `/api/v1/quick-replies/${mine.body.id}`, { method: 'PATCH', token: miaToken, body: { title: '标'.repeat(100), group: 'g'.repeat(50) } });
  assert.equal(longest.status, 204, JSON.stringify(longest.body));
  const edit = await http(server.url, `/api/v1/quick-replies/${mine.body.id}`, { method: 'PATCH', token: miaToken, body: { body: 'Hello there, how can I help?' } });
  assert.equal(edit.status, 204);
  const replies = (await http(server.url, '/api/v1/quick-replies', { token: miaToken })).body.replies;
  assert.equal(replies.find((r) => r.id === mine.body.id).body, 'Hello there, how can I help?');
  // Someone else's personal reply is not there for the owner; a team reply is not Mia's to change.
  assert.equal((await http(server.url, `/api/v1/quick-replies/${mine.body.id}`, { method: 'PATCH', token: owner.token, body: { title: 'x' } })).status, 404);
  const team = replies.find((r) => !r.personal);
  assert.equal((await http(server.url, `/api/v1/quick-replies/${team.id}`, { method: 'DELETE', token: miaToken })).status, 403);
  assert.equal((await http(server.url, `/api/v1/quick-replies/${team.id}`, { method: 'PATCH', token: owner.token, body: { group: 'Greetings 2' } })).status, 204);
  assert.equal((await http(server.url, `/api/v1/quick-replies/${mine.body.id}`, { method: 'DELETE', token: miaToken })).status, 204);
  const after = (await http(server.url, '/api/v1/quick-replies', { token: miaToken })).body.replies;
  assert.ok(!after.some((r) => r.id === mine.body.id));
});

/**
 * A second team with its own site and owner, straight into D1 as scripts/runtime.mjs seedDemo
 * makes the first (there is no API to create teams): { teamId, siteId, siteKey, email, password }.
 */
async function seedTeam(name) {
  const now = Date.now();
  const team = { teamId: randomId('t'), siteId: randomId('s'), siteKey: `pk_${randomBytes(18).toString('base64url')}` };
  const email = `owner-${team.teamId.slice(2, 10)}@other.example`;
  const password = randomBytes(12).toString('base64url');
  const pw = hashPassword(password);
  await server.d1('INSERT INTO teams (id, name, created_at) VALUES (?1, ?2, ?3)', [team.teamId, name, now]);
  await server.d1(
    `INSERT INTO sites (id, team_id, site_key, name, allowed_origins, identity_secret, created_at)
     VALUES (?1, ?2, ?3, ?4, '[]', NULL, ?5)`,
    [team.siteId, team.teamId, team.siteKey, `${name} shop`, now],
  );
  await server.d1(
    `INSERT INTO agents (id, team_id, email, name, role, password_hash, password_salt, password_iterations, created_at)
     VALUES (?1, ?2, ?3, ?4, 'owner', ?5, ?6, ?7, ?8)`,
    [randomId('a'), team.teamId, email, `${name} owner`, pw.hash, pw.salt, pw.iterations, now],
  );
  return { ...team, email, password };
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
const unknownId = (prefix) => `${prefix}_${Array.from(randomBytes(26), (b) => B32[b & 31]).join('')}`;

test("another team's conversation, visitor, file, quick reply and site → 404 not_found for an agent of this team, the same answer as for ids that do not exist; nothing of theirs changes", async () => {
  const other = await seedTeam('Other');
  const signIn = await login(other.email, other.password);
  assert.equal(signIn.status, 200, JSON.stringify(signIn.body));
  const theirs = signIn.body.token;
  // Their visitor, conversation (with a posted file) and team quick reply.
  const session = await http(server.url, '/api/v1/visitor/session', { method: 'POST', body: { site_key: other.siteKey } });
  assert.equal(session.status, 200, JSON.stringify(session.body));
  const visitor = session.body;
  const created = await http(server.url, '/api/v1/conversations', { method: 'POST', token: visitor.token });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const conversation = created.body.conversation;
  const sent = await http(server.url, `/api/v1/conversations/${conversation}/messages`, {
    method: 'POST', token: visitor.token, body: { client_msg_id: msgId('o'), text: 'hello from the other team' },
  });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  const bytes = Buffer.from('%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n');
  const up = await fetch(`${server.url}/api/v1/conversations/${conversation}/files?name=theirs.pdf`, {
    method: 'POST', headers: { authorization: `Bearer ${visitor.token}`, 'content-type': 'application/pdf' }, body: bytes,
  });
  const file = (await up.json()).file;
  assert.equal(up.status, 201);
  assert.equal((await http(server.url, `/api/v1/conversations/${conversation}/messages`, {
    method: 'POST', token: visitor.token, body: { client_msg_id: msgId('of'), file: file.id },
  })).status, 200);
  const reply = await http(server.url, '/api/v1/quick-replies', { method: 'POST', token: theirs, body: { title: 'Theirs', body: 'Their team reply', group: 'Other' } });
  assert.equal(reply.status, 201, JSON.stringify(reply.body));
  // Their agent sees it all.
  assert.equal((await http(server.url, `/api/v1/visitors/${visitor.visitor_id}`, { token: theirs })).status, 200);

  const before = {
    conversation: await snapshot(server, conversation, theirs),
    d1: await otherTeamRows(other.teamId),
  };
  const missing = { c: unknownId('c'), v: unknownId('v'), f: unknownId('f'), q: unknownId('q'), s: unknownId('s') };
  const requests = (ids) => [
    ['GET', `/api/v1/conversations/${ids.c}`],
    ['GET', `/api/v1/conversations/${ids.c}/history`],
    ['GET', `/api/v1/conversations/${ids.c}/events?after=0&wait=0`],
    ['POST', `/api/v1/conversations/${ids.c}/messages`, { client_msg_id: 'cross-team-1', text: 'not yours' }],
    ['POST', `/api/v1/conversations/${ids.c}/read`, { seq: 1 }],
    ['POST', `/api/v1/conversations/${ids.c}/claim`],
    ['POST', `/api/v1/conversations/${ids.c}/close`],
    ['GET', `/api/v1/conversations/${ids.c}/tags`],
    ['PUT', `/api/v1/conversations/${ids.c}/tags`, { tags: ['mine-now'] }],
    ['GET', `/api/v1/conversations/${ids.c}/files/${ids.f}`],
    ['GET', `/api/v1/visitors/${ids.v}`],
    ['DELETE', `/api/v1/visitors/${ids.v}`],
    ['PATCH', `/api/v1/quick-replies/${ids.q}`, { title: 'Mine now' }],
    ['DELETE', `/api/v1/quick-replies/${ids.q}`],
    ['GET', `/api/v1/sites/${ids.s}`],
    ['PATCH', `/api/v1/sites/${ids.s}`, { name: 'Mine now' }],
  ];
  const real = requests({ c: conversation, v: visitor.visitor_id, f: file.id, q: reply.body.id, s: other.siteId });
  const none = requests(missing);
  for (let i = 0; i < real.length; i += 1) {
    const [method, path, body] = real[i];
    const foreign = await http(server.url, path, { method, token: owner.token, body });
    const absent = await http(server.url, none[i][1], { method, token: owner.token, body: none[i][2] });
    assertHttpError(absent, 404, 'not_found');
    assert.equal(foreign.status, 404, `${method} ${path}: ${foreign.status} ${JSON.stringify(foreign.body)}`);
    assert.deepEqual(foreign.body, absent.body, `${method} ${path}`);
  }
  await assertUnchanged(server, conversation, theirs, before.conversation);
  assert.deepEqual(await otherTeamRows(other.teamId), before.d1);
  const download = await fetch(`${server.url}/api/v1/conversations/${conversation}/files/${file.id}`, { headers: { authorization: `Bearer ${theirs}` } });
  assert.equal(download.status, 200);
  assert.ok(Buffer.from(await download.arrayBuffer()).equals(bytes), 'their file is intact');
});

/** Everything D1 holds for a team, for the comparison before and after. */
async function otherTeamRows(teamId) {
  const rows = async (sql) => (await server.d1(sql, [teamId])).results;
  return {
    sites: await rows('SELECT * FROM sites WHERE team_id = ?1'),
    visitors: await rows('SELECT * FROM visitors WHERE site_id IN (SELECT id FROM sites WHERE team_id = ?1) ORDER BY id'),
    conversations: await rows('SELECT * FROM conversations WHERE site_id IN (SELECT id FROM sites WHERE team_id = ?1) ORDER BY id'),
    tags: await rows('SELECT * FROM conversation_tags WHERE conversation_id IN (SELECT id FROM conversations WHERE site_id IN (SELECT id FROM sites WHERE team_id = ?1)) ORDER BY 1, 2'),
    replies: await rows('SELECT * FROM quick_replies WHERE team_id = ?1 ORDER BY id'),
    audit: await rows('SELECT * FROM audit_log WHERE team_id = ?1 ORDER BY id'),
  };
}

test('the name and address a visitor gives in a form label them for agents, never over what the site vouched for', async () => {
  const { visitorSession } = await import('./support/client.mjs');
  const visitorOf = async (id) => (await http(server.url, `/api/v1/visitors/${id}`, { token: owner.token })).body.visitor;
  const start = (visitor, fields) => http(server.url, '/api/v1/conversations', { method: 'POST', token: visitor.token, body: { form: 'offline', fields, message: 'Do you ship to Canada?' } });
  const anonymous = await visitorSession(server);
  const created = await start(anonymous, { name: ' 王小明 ', email: 'xm@example.com' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const stated = await visitorOf(anonymous.visitorId);
  assert.equal(stated.name, '王小明');
  assert.equal(stated.email, 'xm@example.com');
  assert.ok(!stated.identity_verified);
  // An agent without the personal-data permission sees a name that holds an address masked.
  const talkative = await visitorSession(server);
  assert.equal((await start(talkative, { name: 'Lin lin@example.com', email: 'lin@example.com' })).status, 201);
  const plain = await createAgent(server, { name: 'Plain', email: 'plain-form@parley.local' });
  const seen = (await http(server.url, `/api/v1/visitors/${talkative.visitorId}`, { token: plain.token })).body.visitor;
  assert.ok(!seen.name.includes('lin@example.com'), seen.name);
  assert.ok(!seen.email.includes('lin@example.com'), seen.email);
  assert.equal((await visitorOf(talkative.visitorId)).name, 'Lin lin@example.com');
  // An address that is not one is not shown as one.
  const careless = await visitorSession(server);
  assert.equal((await start(careless, { name: 'Ana', email: 'ana at home' })).status, 201);
  assert.equal((await visitorOf(careless.visitorId)).email ?? null, null);
  // A visitor the site's server vouched for keeps the vouched name.
  const { siteId } = await import('./support/client.mjs');
  const secret = (await http(server.url, `/api/v1/sites/${await siteId(server, owner.token)}/identity-secret`, { method: 'POST', token: owner.token })).body.identity_secret;
  const customer = await visitorSession(server);
  const identified = await http(server.url, '/api/v1/visitor/identify', {
    method: 'POST', token: customer.token,
    body: { id: 'cust-88', name: 'Kim Lee', email: 'kim@example.com', hash: createHmac('sha256', secret).update('cust-88').digest('hex') },
  });
  assert.equal(identified.body.verified, true, JSON.stringify(identified.body));
  assert.equal((await start(customer, { name: 'Somebody Else', email: 'else@example.com' })).status, 201);
  const vouched = await visitorOf(customer.visitorId);
  assert.equal(vouched.name, 'Kim Lee');
  assert.equal(vouched.email, 'kim@example.com');
});
