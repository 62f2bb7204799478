// Routing end to end: three agents with console sockets and ten visitors. Assignment spread,
// transfer with a private note, reassignment when an agent does not answer, and an agent whose
// device vanishes without a close frame.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './support/server.mjs';
import {
  agentLogin, connect, createAgent, fullHistory, http, msgId, newConversation, openConsole, siteId, sleep,
} from './support/client.mjs';

const GENEROUS = { RATE_VISITOR_MESSAGES: '2000/200', RATE_AGENT_MESSAGES: '2000/200', RATE_IP_MESSAGES: '5000/500' };

let server;
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

before(async () => {
  server = await startServer({ vars: GENEROUS });
  const owner = await agentLogin(server);
  site = await siteId(server, owner.token);
  // Short limits so the timeout paths run in seconds; set before the site's object first loads them.
  await server.d1('UPDATE sites SET routing = ?1 WHERE id = ?2', [
    JSON.stringify({ policy: 'round_robin', answer_timeout_ms: 2500, heartbeat_timeout_ms: 4000 }),
    site,
  ]);
  agents = [
    await createAgent(server, { name: 'Ana', email: 'ana@parley.local', capacity: 4 }),
    await createAgent(server, { name: 'Bo', email: 'bo@parley.local', capacity: 4 }),
    await createAgent(server, { name: 'Cy', email: 'cy@parley.local', capacity: 4 }),
  ];
});

after(async () => {
  await server?.stop();
});

test('three agents and ten visitors: fair assignment, capacity, queue, transfer, timeouts, vanished device', async () => {
  const consoles = [];
  for (const a of agents) consoles.push(await openConsole(server, site, a.token));
  // Keep Ana's and Bo's devices alive; Cy's device will go silent.
  const beat = setInterval(() => {
    for (const c of consoles.slice(0, 2)) c.send({ type: 'heartbeat' });
  }, 1000);
  try {
    // Ten visitors start chatting.
    const visitors = [];
    for (let i = 0; i < 10; i += 1) visitors.push(await newConversation(server));
    const owners = new Map();
    for (const v of visitors) {
      owners.set(v.conversation, await until(() => assignee(v.conversation, agents[0].token), `assignment of ${v.conversation}`));
    }
    const counts = agents.map((a) => [...owners.values()].filter((id) => id === a.agentId).length);
    assert.equal(counts.reduce((x, y) => x + y, 0), 10);
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `spread ${counts}`);

    // Capacity 3 x 4 = 12: two more fit, the thirteenth waits and the visitor is told their place.
    const more = [await newConversation(server), await newConversation(server)];
    for (const v of more) await until(() => assignee(v.conversation, agents[0].token), 'assignment');
    const waiting = await newConversation(server);
    const tab = await connect(server, waiting.conversation, waiting.token, { after: 0 });
    const place = await http(server.url, `/api/v1/conversations/${waiting.conversation}/queue`, { token: waiting.token });
    assert.deepEqual(place.body, { position: 1 });

    // Every agent answers their conversations, so no timeout moves them.
    for (const [conversation, owner] of owners) {
      const agent = agents.find((a) => a.agentId === owner);
      const res = await http(server.url, `/api/v1/conversations/${conversation}/messages`, {
        method: 'POST', token: agent.token, body: { client_msg_id: msgId('reply'), text: 'Hello, how can I help?' },
      });
      assert.equal(res.status, 200);
    }

    // Ana closes one: the waiting visitor gets her seat at once and sees the assignment live.
    const anaFirst = [...owners].find(([, o]) => o === agents[0].agentId)[0];
    await http(server.url, `/api/v1/conversations/${anaFirst}/close`, { method: 'POST', token: agents[0].token });
    const assigned = await tab.next((f) => f.type === 'event' && f.kind === 'assigned');
    assert.equal(assigned.body.agent.id, agents[0].agentId);
    assert.equal(tab.frames.find((f) => f.type === 'queue')?.position ?? 1, 1);

    // Transfer with a private note: Bo hands one of his to Ana.
    const boConversation = [...owners].find(([, o]) => o === agents[1].agentId)[0];
    const boVisitor = visitors.find((v) => v.conversation === boConversation);
    const visitorTab = await connect(server, boConversation, boVisitor.token, { after: 0 });
    const transfer = await http(server.url, `/api/v1/conversations/${boConversation}/transfer`, {
      method: 'POST', token: agents[1].token, body: { agent: agents[0].agentId, note: 'VIP customer, refund approved' },
    });
    assert.equal(transfer.status, 200, JSON.stringify(transfer.body));
    assert.equal(await until(async () => (await assignee(boConversation, agents[0].token)) === agents[0].agentId && agents[0].agentId, 'transfer'), agents[0].agentId);
    const anaView = await fullHistory(server, boConversation, agents[0].token);
    assert.ok(anaView.some((e) => e.kind === 'note' && e.body.text === 'VIP customer, refund approved'));
    const visitorView = await fullHistory(server, boConversation, boVisitor.token);
    assert.ok(!JSON.stringify(visitorView).includes('refund approved'), 'the visitor never sees the note');
    assert.deepEqual(visitorView.map((e) => e.seq), anaView.map((e) => e.seq), 'the visitor’s log stays gap-free');
    await visitorTab.waitForSeq(anaView.at(-1).seq);
    assert.ok(!JSON.stringify(visitorTab.frames).includes('refund approved'));
    // Only the holder may transfer; a target that is unknown is refused.
    const notHolder = await http(server.url, `/api/v1/conversations/${boConversation}/transfer`, {
      method: 'POST', token: agents[2].token, body: { agent: agents[1].agentId },
    });
    assert.equal(notHolder.status, 409);

    // Cy's device goes silent without a close frame: after the heartbeat timeout Cy is offline
    // and Cy's open conversations are handed to the others (or queued).
    const cyConversations = [...owners].filter(([, o]) => o === agents[2].agentId).map(([c]) => c);
    assert.ok(cyConversations.length > 0);
    const presence = await consoles[0].next((f) => f.type === 'feed' && f.event === 'presence' && f.agent === agents[2].agentId && f.status === 'offline', 15_000);
    assert.ok(presence);
    for (const c of cyConversations) {
      await until(async () => {
        const now = await assignee(c, agents[0].token);
        if (now && now !== agents[2].agentId) return true;
        const q = await http(server.url, `/api/v1/conversations/${c}/queue`, { token: agents[0].token });
        return q.body.position != null;
      }, `requeue of ${c}`);
    }
    visitorTab.close();
    tab.close();
  } finally {
    clearInterval(beat);
    consoles.forEach((c) => c.close());
  }
});

test('an assigned agent who does not answer loses the conversation to the next one; it counts as missed', async () => {
  const ana = await openConsole(server, site, agents[0].token);
  const bo = await openConsole(server, site, agents[1].token);
  const beat = setInterval(() => [ana, bo].forEach((c) => c.send({ type: 'heartbeat' })), 1000);
  try {
    // Make room: close everything still open.
    const list = await http(server.url, '/api/v1/conversations?limit=100', { token: agents[0].token });
    for (const c of list.body.conversations.filter((x) => x.status === 'open')) {
      await http(server.url, `/api/v1/conversations/${c.id}/close`, { method: 'POST', token: agents[0].token });
    }
    const v = await newConversation(server);
    const first = await until(() => assignee(v.conversation, agents[0].token), 'first assignment');
    const second = await until(async () => {
      const now = await assignee(v.conversation, agents[0].token);
      return now && now !== first ? now : null;
    }, 'reassignment after the answer timeout', 15_000);
    assert.notEqual(second, first);
    const missed = await until(async () => {
      const { results } = await server.d1("SELECT agent_id FROM routing_events WHERE conversation_id = ?1 AND kind = 'missed'", [v.conversation]);
      return results.length ? results : null;
    }, 'missed recorded');
    assert.equal(missed[0].agent_id, first);
    const log = await fullHistory(server, v.conversation, v.token);
    assert.deepEqual(log.filter((e) => e.kind === 'assigned').map((e) => e.body.agent.id).slice(0, 2), [first, second]);
  } finally {
    clearInterval(beat);
    ana.close();
    bo.close();
  }
});

test('two agents claiming the same waiting conversation at once: exactly one wins', async () => {
  // Nobody online: the new conversation waits.
  const v = await newConversation(server);
  await until(async () => (await http(server.url, `/api/v1/conversations/${v.conversation}/queue`, { token: v.token })).body.position != null, 'queued');
  const claims = await Promise.all(agents.slice(0, 2).map((a) => http(server.url, `/api/v1/conversations/${v.conversation}/claim`, { method: 'POST', token: a.token })));
  const statuses = claims.map((c) => c.status).sort();
  assert.deepEqual(statuses, [200, 409]);
  assert.equal(claims.find((c) => c.status === 409).body.code, 'already_assigned');
  const winner = agents[claims.findIndex((c) => c.status === 200)];
  assert.equal(await until(() => assignee(v.conversation, winner.token), 'claim recorded'), winner.agentId);
});
