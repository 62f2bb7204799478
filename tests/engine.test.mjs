// The conversation engine end to end: the built Worker in Miniflare, driven over real
// WebSockets and HTTP as docs/protocol.md describes. Invariants from DESIGN.md: one order for
// everyone, nothing lost, nothing twice, resume by seq.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './support/server.mjs';
import {
  agentLogin, connect, eventKey, fullHistory, http, msgId, newConversation, openConsole, poll, siteId, sleep,
  visitorSession,
} from './support/client.mjs';

// Loads well past the default flood limits; those limits have their own tests.
const GENEROUS = {
  RATE_VISITOR_MESSAGES: '2000/200', RATE_AGENT_MESSAGES: '2000/200', RATE_IP_MESSAGES: '5000/500', RATE_IP_CREATIONS: '500/50',
};

let server;
let agent;

before(async () => {
  server = await startServer({ vars: GENEROUS });
  agent = await agentLogin(server);
});

after(async () => {
  await server?.stop();
});

/** Asserts a list of events is gap-free from `from` and returns its seqs. */
function assertGapFree(events, from = 1) {
  events.forEach((e, i) => assert.equal(e.seq, from + i, `seq ${from + i} expected at index ${i}, got ${e.seq}`));
}

async function sendViaHttp(conversation, token, text, clientMsgId = msgId('h')) {
  const res = await http(server.url, `/api/v1/conversations/${conversation}/messages`, {
    method: 'POST', token, body: { client_msg_id: clientMsgId, text },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.type, 'ack');
  return res.body;
}

test('two visitor tabs and two agent devices see identical ordered streams under concurrent sends', async () => {
  const conv = await newConversation(server);
  const tabs = [
    await connect(server, conv.conversation, conv.token, { after: 0 }),
    await connect(server, conv.conversation, conv.token, { after: 0 }),
  ];
  const devices = [
    await connect(server, conv.conversation, agent.token, { after: 0 }),
    await connect(server, conv.conversation, agent.token, { after: 0 }),
  ];
  const sockets = [...tabs, ...devices];
  const perSocket = 25;
  const sent = [];
  // Every socket fires its whole burst without waiting for acks.
  for (const [i, socket] of sockets.entries()) {
    for (let n = 0; n < perSocket; n += 1) {
      const id = msgId(`s${i}`);
      sent.push(id);
      socket.send({ type: 'send', client_msg_id: id, text: `concurrent ${i}/${n}` });
    }
  }
  const total = 1 + sockets.length * perSocket;
  await Promise.all(sockets.map((s) => s.waitForSeq(total)));
  const reference = sockets[0].events.map(eventKey);
  assertGapFree(sockets[0].events);
  assert.equal(reference.length, total);
  for (const socket of sockets.slice(1)) assert.deepEqual(socket.events.map(eventKey), reference);
  // Every message is there once, with the seq its sender was acknowledged.
  const bySender = new Map(sockets[0].events.filter((e) => e.client_msg_id).map((e) => [e.client_msg_id, e.seq]));
  assert.equal(bySender.size, sent.length);
  for (const socket of sockets) {
    for (const ack of socket.frames.filter((f) => f.type === 'ack')) {
      assert.equal(bySender.get(ack.client_msg_id), ack.seq);
      assert.equal(ack.duplicate, false);
    }
  }
  // An ack always comes before the sender sees its own event.
  for (const socket of sockets) {
    const seen = new Set();
    for (const f of socket.frames) {
      if (f.type === 'ack') seen.add(f.client_msg_id);
      if (f.type === 'event' && f.client_msg_id && socket.frames.some((a) => a.type === 'ack' && a.client_msg_id === f.client_msg_id)) {
        assert.ok(seen.has(f.client_msg_id), `event ${f.seq} arrived before its ack`);
      }
    }
  }
  assert.deepEqual((await fullHistory(server, conv.conversation, agent.token)).map(eventKey), reference);
  sockets.forEach((s) => s.close());
});

for (const missed of [0, 10, 500]) {
  test(`resume after a dropped socket with ${missed} missed events`, async () => {
    const conv = await newConversation(server);
    const device = await connect(server, conv.conversation, agent.token, { after: 0 });
    await sendViaHttp(conv.conversation, conv.token, 'before the drop');
    await device.waitForSeq(2);
    const lastSeen = device.events.at(-1).seq;
    device.drop();
    for (let i = 0; i < missed; i += 1) await sendViaHttp(conv.conversation, conv.token, `while away ${i}`);
    const head = 2 + missed;

    const resumed = await connect(server, conv.conversation, agent.token, { after: lastSeen, epoch: conv.epoch });
    assert.equal(resumed.welcome.head, head);
    let view;
    if (missed <= 256) {
      // Exactly the missed events, in order, and nothing else.
      if (missed > 0) await resumed.waitForSeq(head);
      await sleep(200);
      assert.equal(resumed.events.length, missed);
      if (missed > 0) assertGapFree(resumed.events, lastSeen + 1);
      assert.ok(!resumed.frames.some((f) => f.type === 'reset'));
      view = [...device.events, ...resumed.events];
    } else {
      // Beyond the replay window: reset, then history, then live.
      const reset = await resumed.nextOfType('reset');
      assert.equal(reset.reason, 'gap_too_large');
      assert.equal(reset.head, head);
      assert.equal(resumed.events.length, 0);
      view = await fullHistory(server, conv.conversation, agent.token);
    }
    // Live traffic continues after the resume.
    await sendViaHttp(conv.conversation, conv.token, 'after the resume');
    await resumed.waitForSeq(head + 1);
    view.push(resumed.events.at(-1));
    assertGapFree(view);
    assert.deepEqual(view.map(eventKey), (await fullHistory(server, conv.conversation, conv.token)).map(eventKey));
    resumed.close();
  });
}

test('a resume from another epoch or from the future is told to reset', async () => {
  const conv = await newConversation(server);
  const wrongEpoch = await connect(server, conv.conversation, conv.token, { after: 1, epoch: 'e_aaaaaaaaaaaaaaaaaaaaaaaaaa' });
  assert.equal((await wrongEpoch.nextOfType('reset')).reason, 'epoch_mismatch');
  const future = await connect(server, conv.conversation, conv.token, { after: 99, epoch: conv.epoch });
  assert.equal((await future.nextOfType('reset')).reason, 'ahead_of_head');
  wrongEpoch.close();
  future.close();
});

test('duplicate sends give one event: sequential, on two sockets at once, and over HTTP', async () => {
  const conv = await newConversation(server);
  const tabA = await connect(server, conv.conversation, conv.token, { after: 0 });
  const tabB = await connect(server, conv.conversation, conv.token, { after: 0 });

  const id = msgId('dup');
  const first = await tabA.sendMessage('only once', id);
  const second = await tabA.sendMessage('only once', id);
  assert.deepEqual([first.seq, first.duplicate], [2, false]);
  assert.deepEqual([second.seq, second.duplicate], [2, true]);

  // The same id from two tabs of the same visitor at the same moment.
  const raced = msgId('race');
  tabA.send({ type: 'send', client_msg_id: raced, text: 'raced' });
  tabB.send({ type: 'send', client_msg_id: raced, text: 'raced' });
  const ackA = await tabA.next((f) => f.type === 'ack' && f.client_msg_id === raced);
  const ackB = await tabB.next((f) => f.type === 'ack' && f.client_msg_id === raced);
  assert.equal(ackA.seq, ackB.seq);
  assert.equal([ackA.duplicate, ackB.duplicate].filter(Boolean).length, 1);

  // A retry over HTTP of a message first sent on the socket.
  const viaHttp = await sendViaHttp(conv.conversation, conv.token, 'only once', id);
  assert.deepEqual([viaHttp.seq, viaHttp.duplicate], [2, true]);

  const history = await fullHistory(server, conv.conversation, conv.token);
  assert.equal(history.filter((e) => e.client_msg_id === id).length, 1);
  assert.equal(history.filter((e) => e.client_msg_id === raced).length, 1);
  assert.equal(history.length, 3);
  await tabB.waitForSeq(3);
  assert.deepEqual(tabB.events.map(eventKey), history.map(eventKey));
  tabA.close();
  tabB.close();
});

test('long-poll and WebSocket clients mixed in one conversation see the same stream', async () => {
  const conv = await newConversation(server);
  const device = await connect(server, conv.conversation, agent.token, { after: 0 });
  const polled = [];
  let after = 0;
  let stop = false;
  const poller = (async () => {
    while (!stop) {
      const res = await poll(server, conv.conversation, conv.token, { after, epoch: conv.epoch, wait: 5 });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.type, 'events');
      for (const e of res.body.events) {
        assert.equal(e.seq, after + 1, 'long-poll events are gap-free');
        polled.push(e);
        after = e.seq;
      }
    }
  })();
  // A held poll answers as soon as there is news, long before its wait ends.
  await sleep(300);
  const started = Date.now();
  await device.sendMessage('wake the poller');
  while (after < 2) await sleep(20);
  assert.ok(Date.now() - started < 4000, 'the long-poll was woken by the new event');

  const writes = [];
  for (let i = 0; i < 15; i += 1) {
    writes.push(sendViaHttp(conv.conversation, conv.token, `polling visitor ${i}`));
    writes.push(device.sendMessage(`socket agent ${i}`));
  }
  await Promise.all(writes);
  const head = 2 + 30;
  await device.waitForSeq(head);
  while (after < head) await sleep(20);
  stop = true;
  await sendViaHttp(conv.conversation, conv.token, 'release the last poll');
  await poller;
  const history = await fullHistory(server, conv.conversation, conv.token);
  assert.deepEqual(polled.map(eventKey), history.slice(0, polled.length).map(eventKey));
  assert.deepEqual(device.events.slice(0, head).map(eventKey), history.slice(0, head).map(eventKey));
  device.close();
});

test('a long-poll with nothing new returns an empty answer after its wait', async () => {
  const conv = await newConversation(server);
  const started = Date.now();
  const res = await poll(server, conv.conversation, conv.token, { after: 1, epoch: conv.epoch, wait: 1 });
  assert.equal(res.status, 200);
  assert.deepEqual([res.body.type, res.body.events, res.body.head], ['events', [], 1]);
  assert.ok(Date.now() - started >= 900, 'the poll was held');
});

test('typing is relayed to the others and read markers are persisted and broadcast', async () => {
  const conv = await newConversation(server);
  const tab = await connect(server, conv.conversation, conv.token, { after: 0 });
  const device = await connect(server, conv.conversation, agent.token, { after: 0 });
  tab.send({ type: 'typing', active: true });
  const typing = await device.nextOfType('typing');
  assert.deepEqual([typing.participant.id, typing.active], [conv.visitorId, true]);
  const ack = await tab.sendMessage('please read me');
  device.send({ type: 'read', seq: ack.seq });
  const read = await tab.nextOfType('read');
  assert.deepEqual([read.participant, read.seq], [agent.agentId, ack.seq]);
  // A new connection learns the marker from its welcome.
  const later = await connect(server, conv.conversation, conv.token, {});
  assert.equal(later.welcome.reads[agent.agentId], ack.seq);
  // Typing is not part of the log.
  assert.deepEqual((await fullHistory(server, conv.conversation, conv.token)).map((e) => e.kind), ['created', 'message']);
  [tab, device, later].forEach((s) => s.close());
});

test('lifecycle events are ordinary log events', async () => {
  const conv = await newConversation(server);
  const tab = await connect(server, conv.conversation, conv.token, { after: 0 });
  const base = `/api/v1/conversations/${conv.conversation}`;
  assert.equal((await http(server.url, `${base}/assign`, { method: 'POST', token: agent.token })).body.kind, 'assigned');
  assert.equal((await http(server.url, `${base}/close`, { method: 'POST', token: agent.token })).body.kind, 'closed');
  assert.equal((await http(server.url, `${base}/close`, { method: 'POST', token: agent.token })).status, 204);
  // The visitor writing again reopens the conversation.
  await tab.sendMessage('one more question');
  await tab.waitForSeq(5);
  assert.deepEqual(tab.events.map((e) => e.kind), ['created', 'assigned', 'closed', 'reopened', 'message']);
  const info = await http(server.url, base, { token: agent.token });
  assert.deepEqual([info.body.status, info.body.assignee, info.body.head], ['open', agent.agentId, 5]);
  tab.close();
});

async function mirrorRows(conversation) {
  const { results } = await server.d1(
    'SELECT seq, kind, author_id, client_msg_id, body FROM messages WHERE conversation_id = ?1 ORDER BY seq',
    [conversation],
  );
  return results;
}

async function waitForMirror(conversation, head, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await mirrorRows(conversation);
    if (rows.length >= head) return rows;
    if (Date.now() > deadline) throw new Error(`mirror has ${rows.length} of ${head} events`);
    await sleep(200);
  }
}

function asMirrorRows(events) {
  return events.map((e) => ({
    seq: e.seq, kind: e.kind, author_id: e.author.id, client_msg_id: e.client_msg_id ?? null, body: JSON.stringify(e.body),
  }));
}

test('the D1 mirror equals the conversation log after catch-up', async () => {
  const conv = await newConversation(server);
  for (let i = 0; i < 12; i += 1) await sendViaHttp(conv.conversation, i % 2 ? agent.token : conv.token, `mirror ${i}`);
  await http(server.url, `/api/v1/conversations/${conv.conversation}/close`, { method: 'POST', token: agent.token });
  const log = await fullHistory(server, conv.conversation, conv.token);
  const rows = await waitForMirror(conv.conversation, log.length);
  assert.deepEqual(rows.map((r) => ({ ...r, body: JSON.stringify(JSON.parse(r.body)) })), asMirrorRows(log));
  const { results: [row] } = await server.d1('SELECT status, last_seq, visitor_id FROM conversations WHERE id = ?1', [conv.conversation]);
  assert.deepEqual(row, { status: 'closed', last_seq: log.length, visitor_id: conv.visitorId });
  // The agent's conversation list comes from the mirror.
  const list = await http(server.url, '/api/v1/conversations?limit=100', { token: agent.token });
  assert.ok(list.body.conversations.some((c) => c.id === conv.conversation && c.status === 'closed'));
  const own = await http(server.url, '/api/v1/conversations', { token: conv.token });
  assert.deepEqual(own.body.conversations.map((c) => c.id), [conv.conversation]);
});

test("a site's conversations reach D1 together in its batches, not each on its own", async () => {
  const from = server.logs.length;
  const convs = await Promise.all(Array.from({ length: 6 }, () => newConversation(server)));
  // The first conversation sends twice at once: one batch may carry two copies of it, which
  // its D1 row takes in order.
  await Promise.all([
    ...convs.map((conv, i) => sendViaHttp(conv.conversation, conv.token, `together ${i}`)),
    sendViaHttp(convs[0].conversation, convs[0].token, 'together again'),
  ]);
  for (const conv of convs) {
    const log = await fullHistory(server, conv.conversation, conv.token);
    const rows = await waitForMirror(conv.conversation, log.length);
    assert.deepEqual(rows.map((r) => ({ ...r, body: JSON.stringify(JSON.parse(r.body)) })), asMirrorRows(log));
    const { results: [row] } = await server.d1('SELECT last_seq FROM conversations WHERE id = ?1', [conv.conversation]);
    assert.equal(row.last_seq, log.length);
  }
  const logged = (event) => server.logs.slice(from)
    .flatMap((line) => { try { return [JSON.parse(line)]; } catch { return []; } })
    .filter((e) => e.event === event);
  const batches = logged('mirror_batch_written');
  assert.ok(batches.some((e) => e.conversations >= 2), 'one D1 batch carries several conversations');
  assert.ok(batches.every((e) => e.site && e.copies >= e.conversations && Number.isInteger(e.duration_ms) && e.duration_ms >= 0));
  // Wait past the conversations' own timer: it finds everything copied and copies nothing.
  await sleep(1_500);
  const ids = new Set(convs.map((c) => c.conversation));
  const ownCopies = logged('mirror_caught_up').filter((e) => ids.has(e.conversation));
  assert.deepEqual(ownCopies, []);
});

test('a conversation tells its site over one line the site opens, which outlasts quiet spells', async () => {
  const conv = await newConversation(server);
  const mine = (event) => server.logs.filter((l) => l.includes(`"${event}"`) && l.includes(conv.conversation));
  // Its first notification goes as a request; the site answers it and opens the line.
  for (let i = 0; i < 5; i += 1) await sendViaHttp(conv.conversation, conv.token, `on the line ${i}`);
  await waitForMirror(conv.conversation, 6);
  assert.equal(mine('site_line_opened').length, 1, 'one line carries every notification');
  // Quiet for longer than an object stays awake: the line lives on the conversation's side as a
  // hibernatable socket, so the next event still goes on it.
  await sleep(12_000);
  await sendViaHttp(conv.conversation, conv.token, 'after a quiet while');
  await waitForMirror(conv.conversation, 7);
  assert.equal(mine('site_line_opened').length, 1);
  // The site confirmed every row: the conversation never had to copy anything itself.
  assert.equal(mine('mirror_caught_up').length, 0);
  assert.equal(mine('site_line_failed').length + mine('site_line_bad_frame').length, 0);
});

test('a notification of the longest message (its text escaped twice in its D1 row) reaches the site', async () => {
  const console_ = await openConsole(server, await siteId(server, agent.token), agent.token);
  const from = server.logs.length;
  // The offline form's message goes with the conversation's first notification, which travels
  // as a request (the line is opened by the site's answer to it): 4,000 quotes are about 16 KB
  // once in the event's body and again in the row, more than a client may send in one frame.
  const visitor = await visitorSession(server);
  const text = '"'.repeat(4000);
  const created = await http(server.url, '/api/v1/conversations', {
    method: 'POST', token: visitor.token, body: { form: 'offline', message: text },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { conversation } = created.body;
  const activity = await console_.next((f) => f.type === 'feed' && f.event === 'activity'
    && f.conversation === conversation && f.kind === 'message', 10_000);
  assert.equal(activity.seq, 2);
  // The site confirmed the rows: the conversation did not have to copy them itself.
  const rows = await waitForMirror(conversation, 2);
  assert.equal(JSON.parse(rows[1].body).text, text);
  await sleep(1_500); // past the conversation's own copy timer
  const mine = server.logs.slice(from).filter((l) => l.includes(conversation));
  assert.equal(mine.filter((l) => l.includes('"mirror_caught_up"')).length, 0);
  console_.close();
});

test('a failing D1 neither blocks nor loses chat traffic, and the mirror catches up', async () => {
  const from = server.logs.length;
  const conv = await newConversation(server);
  await waitForMirror(conv.conversation, 1);
  const device = await connect(server, conv.conversation, agent.token, { after: 1 });
  await server.d1('ALTER TABLE messages RENAME TO messages_offline');
  try {
    // A D1 statement carries at most 900,000 bytes of rows: 60 messages of about 15.6 KB each
    // (3,900 four-byte characters) make the catch-up span two, so a split that loses or garbles
    // rows fails here (the unit test of `json_batches` checks where it splits).
    for (let i = 0; i < 60; i += 1) {
      const ack = await sendViaHttp(conv.conversation, conv.token, `${i} ${'😀'.repeat(3900)}`);
      assert.equal(ack.seq, 2 + i);
    }
    await device.waitForSeq(61);
    // The site's batch and then the conversation's own copy fail, and say so in the logs.
    const deadline = Date.now() + 10_000;
    while (!server.logs.some((l) => l.includes('"mirror_failed"') && l.includes(conv.conversation))) {
      assert.ok(Date.now() < deadline, 'mirror failures are logged');
      await sleep(100);
    }
    assert.ok(server.logs.slice(from).some((l) => l.includes('"mirror_batch_failed"')));
  } finally {
    await server.d1('ALTER TABLE messages_offline RENAME TO messages');
  }
  const log = await fullHistory(server, conv.conversation, conv.token);
  assert.equal(log.length, 61);
  const rows = await waitForMirror(conv.conversation, log.length);
  assert.deepEqual(rows.map((r) => ({ ...r, body: JSON.stringify(JSON.parse(r.body)) })), asMirrorRows(log));
  device.close();
});

test('a visitor token of another site or visitor cannot reach the conversation', async () => {
  const conv = await newConversation(server);
  const stranger = await visitorSession(server);
  const res = await http(server.url, `/api/v1/conversations/${conv.conversation}/history`, { token: stranger.token });
  assert.equal(res.status, 404);
  assert.equal(res.body.code, 'not_found');
});
