// Routing end to end: three agents with console sockets and fourteen visitors. Assignment
// spread, capacity and the queue (positions move up), transfer with a private note (refused to a
// full agent, and then no note), reassignment when an agent does not answer, and an agent whose
// device vanishes without a close frame. Then, each on a site of its own: erasure lets routing go
// of a conversation (told, or finding out from a 404), transfers to departments, a reply that is
// only a file, a claim of a conversation routing never saw, and an agent taking a conversation
// through the API (routing follows their choice instead of its own).
//
// Nothing here waits for a timer to prove a point: agents answer as soon as routing assigns them
// (so the short answer timeout only moves what it is meant to), and every device that should stay
// sends frames until the moment it is meant to vanish.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startServer } from './support/server.mjs';
import {
  agentLogin, connect, createAgent, fullHistory, http, msgId, newConversation, openConsole, siteId, sleep, visitorSession,
} from './support/client.mjs';
import { base32 } from '../scripts/runtime.mjs';

const GENEROUS = {
  RATE_VISITOR_MESSAGES: '2000/200', RATE_AGENT_MESSAGES: '2000/200', RATE_IP_MESSAGES: '5000/500', RATE_IP_CREATIONS: '500/50', RATE_LOGINS: '100/10',
};
// Short limits so the timeout paths run in seconds.
const ROUTING = { policy: 'round_robin', answer_timeout_ms: 4000, heartbeat_timeout_ms: 6000 };
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAFklEQVR4nGNk+M+ABzAxMDAwMjAwAAAUCAECqYXWlgAAAABJRU5ErkJggg==', 'base64');

let server;
let owner;
let site;
let agents;

async function until(cond, what, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await cond();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(100);
  }
}

/** The agent a conversation's log says it is assigned to (the last `assigned` event). */
async function assignee(conversation, token) {
  const log = await fullHistory(server, conversation, token);
  return log.filter((e) => e.kind === 'assigned').at(-1)?.body.agent.id;
}

const reply = (conversation, agent, text = 'Hello, how can I help?') => http(server.url, `/api/v1/conversations/${conversation}/messages`, {
  method: 'POST', token: agent.token, body: { client_msg_id: msgId('reply'), text },
});

const close = (conversation, agent) => http(server.url, `/api/v1/conversations/${conversation}/close`, { method: 'POST', token: agent.token });

const place = async (conversation, token) => (await http(server.url, `/api/v1/conversations/${conversation}/queue`, { token })).body.position;

/**
 * Keeps a console's device alive the way a console does, every 500 ms, until stopped: with a
 * heartbeat, or with `status` frames (any frame counts).
 */
function keepAlive(socket, frame = { type: 'heartbeat' }) {
  const timer = setInterval(() => socket.send(frame), 500);
  return () => clearInterval(timer);
}

/**
 * Agents who answer as soon as routing gives them a conversation, as a person at the console
 * would: watches a console's feed and replies as the assigned agent. `answered(c, agent)`
 * resolves once that agent's reply to c is stored.
 */
function responder(socket, team) {
  const replies = new Map();
  const waiters = new Map();
  const key = (c, a) => `${c} ${a}`;
  socket.ws.on('message', (data) => {
    const f = JSON.parse(data.toString());
    if (f.type !== 'feed' || f.event !== 'assigned') return;
    const agent = team.find((a) => a.agentId === f.agent);
    if (!agent || replies.has(key(f.conversation, f.agent))) return;
    // Checked by whoever waits for it (a conversation closed meanwhile may refuse it).
    const done = reply(f.conversation, agent);
    replies.set(key(f.conversation, f.agent), done);
    waiters.get(key(f.conversation, f.agent))?.(done);
  });
  return {
    answered(c, agentId) {
      const known = replies.get(key(c, agentId));
      if (known) return known;
      return new Promise((resolve) => waiters.set(key(c, agentId), resolve));
    },
  };
}

/**
 * A site of the demo team of its own (a fresh routing state), with the given routing and
 * bot settings: { id, server } where `server` makes visitors of this site for the client helpers.
 */
async function addSite({ routing = ROUTING, bot = {} } = {}) {
  const id = `s_${base32(randomBytes(16))}`;
  const key = `pk_${randomBytes(12).toString('base64url')}`;
  await server.d1(
    `INSERT INTO sites (id, team_id, site_key, name, allowed_origins, settings, routing, bot, created_at)
     SELECT ?1, team_id, ?2, 'Second shop', allowed_origins, settings, ?3, ?4, created_at FROM sites WHERE id = ?5`,
    [id, key, JSON.stringify(routing), JSON.stringify(bot), site],
  );
  return { id, server: { ...server, siteKey: key } };
}


/** The console's next inbox snapshot that satisfies pred. */
const inboxWhere = (socket, pred, timeoutMs = 20_000) => socket.next((f) => f.type === 'inbox' && pred(f), timeoutMs);

before(async () => {
  server = await startServer({ vars: GENEROUS });
  owner = await agentLogin(server);
  site = await siteId(server, owner.token);
  // Set before the site's object first loads its settings.
  await server.d1('UPDATE sites SET routing = ?1 WHERE id = ?2', [JSON.stringify(ROUTING), site]);
  agents = [
    await createAgent(server, { name: 'Ana', email: 'ana@parley.local', capacity: 4 }),
    await createAgent(server, { name: 'Bo', email: 'bo@parley.local', capacity: 4 }),
    await createAgent(server, { name: 'Cy', email: 'cy@parley.local', capacity: 4 }),
  ];
});

after(async () => {
  await server?.stop();
});

test('three agents and fourteen visitors: fair assignment, capacity, queue, transfer, timeouts, vanished device', async () => {
  const [ana, bo, cy] = agents;
  const consoles = [];
  for (const a of agents) consoles.push(await openConsole(server, site, a.token));
  // Ana and Bo send heartbeats; Cy's console only changes status, which counts as well, until
  // the moment Cy's device is meant to vanish.
  const stops = [keepAlive(consoles[0]), keepAlive(consoles[1]), keepAlive(consoles[2], { type: 'status', status: 'online' })];
  const agentsAnswer = responder(consoles[0], agents);
  try {
    // Ten visitors start chatting; each is answered as soon as it is assigned.
    const visitors = [];
    for (let i = 0; i < 10; i += 1) visitors.push(await newConversation(server));
    const owners = new Map();
    for (const v of visitors) {
      const agent = await until(() => assignee(v.conversation, ana.token), `assignment of ${v.conversation}`);
      assert.equal((await agentsAnswer.answered(v.conversation, agent)).status, 200);
      owners.set(v.conversation, agent);
    }
    const counts = agents.map((a) => [...owners.values()].filter((id) => id === a.agentId).length);
    assert.equal(counts.reduce((x, y) => x + y, 0), 10);
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `spread ${counts}`);

    // Capacity 3 x 4 = 12: two more fit, the next two wait and each visitor is told their place.
    const more = [await newConversation(server), await newConversation(server)];
    for (const v of more) {
      const agent = await until(() => assignee(v.conversation, ana.token), 'assignment');
      assert.equal((await agentsAnswer.answered(v.conversation, agent)).status, 200);
      owners.set(v.conversation, agent);
    }
    const first = await newConversation(server);
    const second = await newConversation(server);
    assert.equal(await until(() => place(first.conversation, first.token), 'first queued'), 1);
    assert.equal(await place(second.conversation, second.token), 2);
    const firstTab = await connect(server, first.conversation, first.token, { after: 0 });
    const secondTab = await connect(server, second.conversation, second.token, { after: 0 });

    // Ana closes one: the first waiting visitor gets her seat at once and sees it live, and the
    // second is told live that they moved up to first place.
    const anas = [...owners].filter(([, o]) => o === ana.agentId).map(([c]) => c);
    assert.equal(anas.length, 4);
    assert.equal((await close(anas[0], ana)).status, 200);
    const assigned = await firstTab.next((f) => f.type === 'event' && f.kind === 'assigned');
    assert.equal(assigned.body.agent.id, ana.agentId);
    const moved = await secondTab.next((f) => f.type === 'queue');
    assert.equal(moved.position, 1);
    assert.equal(await place(second.conversation, second.token), 1);
    // A second seat frees up: the second visitor is assigned too, and the queue is empty.
    assert.equal((await close(anas[1], ana)).status, 200);
    assert.equal((await secondTab.next((f) => f.type === 'event' && f.kind === 'assigned')).body.agent.id, ana.agentId);
    assert.equal((await agentsAnswer.answered(first.conversation, ana.agentId)).status, 200);
    assert.equal((await agentsAnswer.answered(second.conversation, ana.agentId)).status, 200);

    // Ana is full: a transfer to her is refused, and its note is not written.
    const boConversation = [...owners].find(([, o]) => o === bo.agentId)[0];
    const boVisitor = visitors.find((v) => v.conversation === boConversation);
    const full = await http(server.url, `/api/v1/conversations/${boConversation}/transfer`, {
      method: 'POST', token: bo.token, body: { agent: ana.agentId, note: 'NOTE-OF-A-REFUSED-TRANSFER' },
    });
    assert.equal(full.status, 409, JSON.stringify(full.body));
    assert.equal(full.body.code, 'agent_unavailable');
    assert.ok(!JSON.stringify(await fullHistory(server, boConversation, bo.token)).includes('NOTE-OF-A-REFUSED-TRANSFER'));
    assert.equal(await assignee(boConversation, bo.token), bo.agentId);

    // Ana closes a third: now she has room, and Bo hands her one of his with a private note.
    assert.equal((await close(anas[2], ana)).status, 200);
    const visitorTab = await connect(server, boConversation, boVisitor.token, { after: 0 });
    const transfer = await http(server.url, `/api/v1/conversations/${boConversation}/transfer`, {
      method: 'POST', token: bo.token, body: { agent: ana.agentId, note: 'VIP customer, refund approved' },
    });
    assert.equal(transfer.status, 200, JSON.stringify(transfer.body));
    assert.deepEqual(transfer.body.outcome, { assigned: ana.agentId });
    assert.equal(typeof transfer.body.note_seq, 'number');
    assert.equal(await assignee(boConversation, ana.token), ana.agentId);
    assert.equal((await agentsAnswer.answered(boConversation, ana.agentId)).status, 200);
    const anaView = await fullHistory(server, boConversation, ana.token);
    const notes = anaView.filter((e) => e.kind === 'note');
    assert.deepEqual(notes.map((e) => e.body.text), ['VIP customer, refund approved']);
    assert.equal(notes[0].seq, transfer.body.note_seq);
    const visitorView = await fullHistory(server, boConversation, boVisitor.token);
    assert.ok(!JSON.stringify(visitorView).includes('refund approved'), 'the visitor never sees the note');
    assert.deepEqual(visitorView.map((e) => e.seq), anaView.map((e) => e.seq), 'the visitor’s log stays gap-free');
    await visitorTab.waitForSeq(anaView.at(-1).seq);
    assert.ok(!JSON.stringify(visitorTab.frames).includes('refund approved'));
    // Only the holder may transfer.
    const notHolder = await http(server.url, `/api/v1/conversations/${boConversation}/transfer`, {
      method: 'POST', token: cy.token, body: { agent: bo.agentId },
    });
    assert.equal(notHolder.status, 409);

    // Cy's device goes silent without a close frame: after the heartbeat timeout Cy is offline
    // and Cy's open conversations are handed to the others (or queued).
    const cyConversations = [...owners].filter(([, o]) => o === cy.agentId).map(([c]) => c);
    assert.ok(cyConversations.length > 0);
    assert.ok(!consoles[0].frames.some((f) => f.type === 'feed' && f.event === 'presence' && f.agent === cy.agentId && f.status === 'offline'),
      'Cy was online all along');
    stops[2]();
    const presence = await consoles[0].next((f) => f.type === 'feed' && f.event === 'presence' && f.agent === cy.agentId && f.status === 'offline', 30_000);
    assert.ok(presence);
    for (const c of cyConversations) {
      await until(async () => {
        const now = await assignee(c, ana.token);
        if (now && now !== cy.agentId) return true;
        return (await place(c, ana.token)) != null;
      }, `requeue of ${c}`);
    }
    for (const s of [visitorTab, firstTab, secondTab]) s.close();
  } finally {
    stops.forEach((stop) => stop());
    consoles.forEach((c) => c.close());
  }
});

test('an assigned agent who does not answer loses the conversation to the next one; it counts as missed', async () => {
  const [ana, bo] = agents;
  const consoles = [await openConsole(server, site, ana.token), await openConsole(server, site, bo.token)];
  const stops = consoles.map((c) => keepAlive(c));
  try {
    // Make room: close everything still open.
    const list = await http(server.url, '/api/v1/conversations?limit=100', { token: ana.token });
    for (const c of list.body.conversations.filter((x) => x.status === 'open')) await close(c.id, ana);
    const v = await newConversation(server);
    const first = await until(() => assignee(v.conversation, ana.token), 'first assignment');
    const second = await until(async () => {
      const now = await assignee(v.conversation, ana.token);
      return now && now !== first ? now : null;
    }, 'reassignment after the answer timeout', 30_000);
    assert.notEqual(second, first);
    // The second agent answers at once; the conversation stays with them.
    assert.equal((await reply(v.conversation, agents.find((a) => a.agentId === second))).status, 200);
    const missed = await until(async () => {
      const { results } = await server.d1("SELECT agent_id FROM routing_events WHERE conversation_id = ?1 AND kind = 'missed'", [v.conversation]);
      return results.length ? results : null;
    }, 'missed recorded');
    assert.equal(missed[0].agent_id, first);
    const log = await fullHistory(server, v.conversation, v.token);
    assert.deepEqual(log.filter((e) => e.kind === 'assigned').map((e) => e.body.agent.id).slice(0, 2), [first, second]);
    await inboxWhere(consoles[0], (f) => f.assignments.some((a) => a.conversation === v.conversation && a.agent === second && a.answered));
  } finally {
    stops.forEach((stop) => stop());
    consoles.forEach((c) => c.close());
  }
});

test('two agents claiming the same waiting conversation at once: exactly one wins', async () => {
  // Nobody online: the new conversation waits.
  const v = await newConversation(server);
  await until(async () => (await place(v.conversation, v.token)) != null, 'queued');
  const claims = await Promise.all(agents.slice(0, 2).map((a) => http(server.url, `/api/v1/conversations/${v.conversation}/claim`, { method: 'POST', token: a.token })));
  const statuses = claims.map((c) => c.status).sort();
  assert.deepEqual(statuses, [200, 409]);
  assert.equal(claims.find((c) => c.status === 409).body.code, 'already_assigned');
  const winner = agents[claims.findIndex((c) => c.status === 200)];
  assert.equal(await until(() => assignee(v.conversation, winner.token), 'claim recorded'), winner.agentId);
});

test('a reply that is only a file stops the answer clock', async () => {
  const shop = await addSite({ routing: { ...ROUTING, answer_timeout_ms: 60_000 } });
  const dee = await createAgent(server, { name: 'Dee', email: 'dee@parley.local', capacity: 3 });
  const deeConsole = await openConsole(server, shop.id, dee.token);
  const stop = keepAlive(deeConsole);
  try {
    const v = await newConversation(shop.server);
    assert.equal(await until(() => assignee(v.conversation, dee.token), 'assigned'), dee.agentId);
    await inboxWhere(deeConsole, (f) => f.assignments.some((a) => a.conversation === v.conversation && !a.answered));
    const upload = await fetch(`${server.url}/api/v1/conversations/${v.conversation}/files?name=label.png`, {
      method: 'POST', headers: { authorization: `Bearer ${dee.token}`, 'content-type': 'image/png' }, body: PNG,
    });
    const uploaded = await upload.json();
    assert.equal(upload.status, 201, JSON.stringify(uploaded));
    const sent = await http(server.url, `/api/v1/conversations/${v.conversation}/messages`, {
      method: 'POST', token: dee.token, body: { client_msg_id: msgId('file'), file: uploaded.file.id },
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    // Routing counts it as the answer: the clock stops (no timeout can move it now).
    await inboxWhere(deeConsole, (f) => f.assignments.some((a) => a.conversation === v.conversation && a.agent === dee.agentId && a.answered));
  } finally {
    stop();
    deeConsole.close();
  }
});

test('erasing a conversation frees its seat and its place in the queue, even when routing was not told', async () => {
  const shop = await addSite();
  const eve = await createAgent(server, { name: 'Eve', email: 'eve@parley.local', capacity: 1 });
  const eveConsole = await openConsole(server, shop.id, eve.token);
  const stop = keepAlive(eveConsole);
  const erase = (visitor) => http(server.url, `/api/v1/visitors/${visitor.visitorId}`, { method: 'DELETE', token: owner.token });
  try {
    // Eve (capacity 1) has x; y and z wait.
    const x = await newConversation(shop.server);
    assert.equal(await until(() => assignee(x.conversation, eve.token), 'x assigned'), eve.agentId);
    const y = await newConversation(shop.server);
    const z = await newConversation(shop.server);
    assert.equal(await until(() => place(z.conversation, z.token), 'z queued'), 2);

    // x is erased: routing is told, Eve's seat goes to y and z moves up.
    const erased = await erase(x);
    assert.equal(erased.status, 200, JSON.stringify(erased.body));
    assert.equal(await until(() => assignee(y.conversation, eve.token), 'y assigned'), eve.agentId);
    assert.equal(await place(z.conversation, z.token), 1);
    const inbox = await inboxWhere(eveConsole, (f) => f.assignments.some((a) => a.conversation === y.conversation));
    assert.ok(!inbox.assignments.some((a) => a.conversation === x.conversation), 'x left routing');
    assert.equal(inbox.agents.find((a) => a.id === eve.agentId).active, 1);

    // z is erased by a path that does not tell its site (its row points elsewhere): it still
    // waits in routing's queue...
    await server.d1('UPDATE conversations SET site_id = ?1 WHERE id = ?2', [site, z.conversation]);
    assert.equal((await erase(z)).status, 200);
    // ... until routing next writes to it, gets a 404, and lets go of it: closing y hands Eve's
    // seat to z, which turns out to be gone, and Eve is left with nothing.
    assert.equal((await close(y.conversation, eve)).status, 200);
    const holds = (f, c) => f.queue.some((w) => w.conversation === c) || f.assignments.some((a) => a.conversation === c);
    const after = await inboxWhere(eveConsole, (f) => !holds(f, y.conversation) && !holds(f, z.conversation));
    assert.equal(after.agents.find((a) => a.id === eve.agentId).active, 0);
    const { results } = await server.d1("SELECT kind FROM routing_events WHERE conversation_id = ?1 AND kind = 'assigned'", [z.conversation]);
    assert.deepEqual(results, [], 'no assignment recorded for a conversation that is gone');
  } finally {
    stop();
    eveConsole.close();
  }
});

test('letting go of erased conversations does not undo what routing decided meanwhile', async () => {
  const shop = await addSite();
  const ivo = await createAgent(server, { name: 'Ivo', email: 'ivo@parley.local', capacity: 1 });
  const ivoConsole = await openConsole(server, shop.id, ivo.token);
  const stop = keepAlive(ivoConsole);
  const erase = (visitor) => http(server.url, `/api/v1/visitors/${visitor.visitorId}`, { method: 'DELETE', token: owner.token });
  try {
    // Ivo (capacity 1) has y; twelve conversations wait behind it, all erased without routing
    // being told (their rows point at another site).
    const y = await newConversation(shop.server);
    assert.equal(await until(() => assignee(y.conversation, ivo.token), 'y assigned'), ivo.agentId);
    const ghosts = [];
    for (let i = 0; i < 12; i += 1) ghosts.push(await newConversation(shop.server));
    for (const ghost of ghosts) {
      await server.d1('UPDATE conversations SET site_id = ?1 WHERE id = ?2', [site, ghost.conversation]);
      assert.equal((await erase(ghost)).status, 200);
    }
    // Closing y hands the seat down the queue, one erased conversation after another; new
    // conversations arrive while that goes on. Each must end up assigned or queued.
    const [closed, ...fresh] = await Promise.all([
      close(y.conversation, ivo),
      ...Array.from({ length: 4 }, () => newConversation(shop.server)),
    ]);
    assert.equal(closed.status, 200);
    const holds = (f, c) => f.queue.some((w) => w.conversation === c) || f.assignments.some((a) => a.conversation === c);
    const settled = await inboxWhere(ivoConsole, (f) => fresh.every((w) => holds(f, w.conversation))
      && !ghosts.some((g) => holds(f, g.conversation)));
    assert.equal(settled.agents.find((a) => a.id === ivo.agentId).active, 1);
  } finally {
    stop();
    ivoConsole.close();
  }
});

test('transfers to a department: unknown names are refused without a note, known ones route there', async () => {
  const shop = await addSite();
  const { results: [{ team_id: team }] } = await server.d1('SELECT team_id FROM sites WHERE id = ?1', [site]);
  await server.d1("INSERT INTO departments (id, team_id, name, created_at) VALUES ('d_billing_test', ?1, 'billing', ?2)", [team, Date.now()]);
  const fay = await createAgent(server, { name: 'Fay', email: 'fay@parley.local', capacity: 3 });
  const fayConsole = await openConsole(server, shop.id, fay.token);
  const stop = keepAlive(fayConsole);
  try {
    // The console's picker lists the team's departments, whether or not anyone waits in them.
    const listed = await http(server.url, '/api/v1/departments', { token: fay.token });
    assert.ok(listed.body.departments.some((d) => d.name === 'billing'), JSON.stringify(listed.body));

    const v = await newConversation(shop.server);
    assert.equal(await until(() => assignee(v.conversation, fay.token), 'assigned'), fay.agentId);
    const unknown = await http(server.url, `/api/v1/conversations/${v.conversation}/transfer`, {
      method: 'POST', token: fay.token, body: { department: 'bliling', note: 'NOTE-FOR-A-TYPO' },
    });
    assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
    assert.equal(unknown.body.code, 'not_found');
    assert.ok(!JSON.stringify(await fullHistory(server, v.conversation, fay.token)).includes('NOTE-FOR-A-TYPO'));

    // Nobody serves billing: the conversation waits there, first in that department's queue.
    const known = await http(server.url, `/api/v1/conversations/${v.conversation}/transfer`, {
      method: 'POST', token: fay.token, body: { department: 'billing', note: 'Invoice question' },
    });
    assert.equal(known.status, 200, JSON.stringify(known.body));
    assert.deepEqual(known.body.outcome, { queued: 1 });
    assert.equal(await place(v.conversation, v.token), 1);
    const inbox = await inboxWhere(fayConsole, (f) => f.queue.some((w) => w.conversation === v.conversation));
    assert.equal(inbox.queue.find((w) => w.conversation === v.conversation).department, 'billing');
    const log = await fullHistory(server, v.conversation, fay.token);
    assert.deepEqual(log.filter((e) => e.kind === 'note').map((e) => e.body.text), ['Invoice question']);
  } finally {
    stop();
    fayConsole.close();
  }
});

test('an open conversation routing never saw can be claimed; a closed one cannot', async () => {
  // With a bot in front, a new conversation is not routed until the bot hands it over.
  const shop = await addSite({ bot: { enabled: true, name: 'Quiet Bot' } });
  const gus = await createAgent(server, { name: 'Gus', email: 'gus@parley.local', capacity: 3 });
  const v = await newConversation(shop.server);
  assert.equal(await place(v.conversation, v.token), null);
  const claimed = await http(server.url, `/api/v1/conversations/${v.conversation}/claim`, { method: 'POST', token: gus.token });
  assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
  assert.equal(await until(() => assignee(v.conversation, gus.token), 'claim recorded'), gus.agentId);

  const w = await newConversation(shop.server);
  assert.equal((await close(w.conversation, gus)).status, 200);
  const refused = await http(server.url, `/api/v1/conversations/${w.conversation}/claim`, { method: 'POST', token: gus.token });
  assert.equal(refused.status, 404, JSON.stringify(refused.body));
});

test("with a bot in front, the hand-off routes by the creation's context (the embed's department)", async () => {
  const shop = await addSite({
    routing: { ...ROUTING, rules: [{ when: 'param', value: 'vip', department: 'vip' }] },
    bot: { enabled: true, name: 'Quiet Bot' },
  });
  const hal = await createAgent(server, { name: 'Hal', email: 'hal@parley.local', capacity: 3 });
  const console_ = await openConsole(server, shop.id, hal.token);
  const stop = keepAlive(console_);
  try {
    const visitor = await visitorSession(shop.server);
    const created = await http(server.url, '/api/v1/conversations', { method: 'POST', token: visitor.token, body: { department: 'vip' } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const conversation = created.body.conversation;
    assert.equal(await place(conversation, visitor.token), null, 'the bot answers first: not routed yet');
    const handoff = await http(server.url, `/api/v1/conversations/${conversation}/handoff`, { method: 'POST', token: visitor.token });
    assert.equal(handoff.status, 200, JSON.stringify(handoff.body));
    // Nobody serves "vip": it waits in that department's queue, not in the general one.
    const inbox = await inboxWhere(console_, (f) => f.queue.some((w) => w.conversation === conversation));
    assert.equal(inbox.queue.find((w) => w.conversation === conversation).department, 'vip');
    assert.equal(await place(conversation, visitor.token), 1);
  } finally {
    stop();
    console_.close();
  }
});

test("an agent's read reaches their consoles, so every device clears the unread count", async () => {
  const shop = await addSite();
  const ivy = await createAgent(server, { name: 'Ivy', email: 'ivy@parley.local', capacity: 3 });
  const laptop = await openConsole(server, shop.id, ivy.token);
  const phone = await openConsole(server, shop.id, ivy.token);
  const stops = [keepAlive(laptop), keepAlive(phone)];
  try {
    const v = await newConversation(shop.server);
    assert.equal(await until(() => assignee(v.conversation, ivy.token), 'assigned'), ivy.agentId);
    const said = await http(server.url, `/api/v1/conversations/${v.conversation}/messages`, {
      method: 'POST', token: v.token, body: { client_msg_id: msgId('q'), text: 'Is anyone there?' },
    });
    assert.equal(said.status, 200, JSON.stringify(said.body));
    // Read on the laptop (as its open tab does, over HTTP here).
    const read = await http(server.url, `/api/v1/conversations/${v.conversation}/read`, {
      method: 'POST', token: ivy.token, body: { seq: said.body.seq },
    });
    assert.equal(read.status, 204, JSON.stringify(read.body));
    for (const device of [laptop, phone]) {
      const feed = await device.next((f) => f.type === 'feed' && f.event === 'read' && f.conversation === v.conversation);
      assert.deepEqual([feed.agent, feed.seq], [ivy.agentId, said.body.seq]);
    }
    // A visitor's read is nobody's unread count: not in the feed.
    await http(server.url, `/api/v1/conversations/${v.conversation}/read`, { method: 'POST', token: v.token, body: { seq: said.body.seq } });
    await http(server.url, `/api/v1/conversations/${v.conversation}/messages`, {
      method: 'POST', token: v.token, body: { client_msg_id: msgId('q'), text: 'Hello?' },
    });
    const next = await laptop.next((f) => f.type === 'feed' && f.conversation === v.conversation && (f.event === 'read' || f.kind === 'message'));
    assert.equal(next.event, 'activity', 'the next feed entry is the message, not a read');
  } finally {
    stops.forEach((stop) => stop());
    laptop.close();
    phone.close();
  }
});

test('an agent who takes a conversation through the API keeps it: routing gives up its own plan for it', async () => {
  const shop = await addSite({ routing: { ...ROUTING, answer_timeout_ms: 60_000 } });
  const jo = await createAgent(server, { name: 'Jo', email: 'jo@parley.local', capacity: 3 });
  const kim = await createAgent(server, { name: 'Kim', email: 'kim@parley.local', capacity: 3 });
  const assigned = async (conversation) => (await fullHistory(server, conversation, jo.token))
    .filter((e) => e.kind === 'assigned').map((e) => [e.author.role, e.body.agent.id]);
  const take = async (conversation) => {
    const res = await http(server.url, `/api/v1/conversations/${conversation}/assign`, { method: 'POST', token: jo.token });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  };

  // Nobody online: the conversation waits. Jo, without a console, takes it through the API.
  const waiting = await newConversation(shop.server);
  await until(async () => (await place(waiting.conversation, waiting.token)) === 1, 'queued');
  await take(waiting.conversation);
  // Routing hears of it and takes the conversation out of its queue...
  await until(async () => (await place(waiting.conversation, waiting.token)) === null, 'out of the queue');
  // ...so Kim coming online is not handed it (her console's first inbox follows what routing
  // did on her arrival): it stays Jo's.
  const kimConsole = await openConsole(server, shop.id, kim.token);
  const stop = keepAlive(kimConsole);
  try {
    assert.ok(kimConsole.inbox.assignments.some((a) => a.conversation === waiting.conversation && a.agent === jo.agentId),
      JSON.stringify(kimConsole.inbox));
    assert.deepEqual(await assigned(waiting.conversation), [['agent', jo.agentId]]);

    // Routed to Kim, then taken by Jo: routing follows, Kim's seat is free again, and routing
    // neither tells the conversation Kim again nor records Jo twice.
    const routed = await newConversation(shop.server);
    await inboxWhere(kimConsole, (f) => f.assignments.some((a) => a.conversation === routed.conversation && a.agent === kim.agentId));
    assert.deepEqual(await assigned(routed.conversation), [['system', kim.agentId]]);
    await take(routed.conversation);
    const inbox = await inboxWhere(kimConsole, (f) => f.assignments.some((a) => a.conversation === routed.conversation && a.agent === jo.agentId));
    assert.equal(inbox.agents.find((a) => a.id === kim.agentId).active, 0);
    assert.equal(inbox.agents.find((a) => a.id === jo.agentId).active, 2);
    assert.deepEqual(await assigned(routed.conversation), [['system', kim.agentId], ['agent', jo.agentId]]);
  } finally {
    stop();
    kimConsole.close();
  }
});
