// Fault test: the runtime process (Node + workerd) is killed with SIGKILL in the middle of a
// burst and restarted on the same persisted storage. Clients behave as the widget and console
// do: a durable outbox, resume by seq, resend of whatever was not acknowledged. Afterwards
// nothing is lost, nothing is duplicated, and everyone saw the same log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './support/server.mjs';
import {
  Socket, agentLogin, createAgent, eventKey, fullHistory, http, msgId, newConversation, openConsole, siteId, sleep, wsUrl,
} from './support/client.mjs';

const GENEROUS = { RATE_VISITOR_MESSAGES: '2000/200', RATE_AGENT_MESSAGES: '2000/200', RATE_IP_MESSAGES: '5000/500' };

/** A client that keeps every message until the server acknowledged it, across reconnects. */
class DurableClient {
  constructor(name, server, conversation, token) {
    this.name = name;
    this.server = server;
    this.conversation = conversation;
    this.token = token;
    this.outbox = new Map(); // client_msg_id → text, until acked
    this.acked = new Map(); // client_msg_id → seq
    this.seen = []; // events in the order shown
    this.epoch = undefined;
    this.socket = null;
    this.stopped = false;
    this.resets = 0;
  }

  get lastSeq() {
    return this.seen.at(-1)?.seq ?? 0;
  }

  onFrame(frame) {
    if (frame.type === 'welcome') {
      this.epoch = frame.epoch;
    } else if (frame.type === 'event') {
      if (frame.seq <= this.lastSeq) throw new Error(`${this.name}: seq ${frame.seq} seen twice`);
      if (frame.seq !== this.lastSeq + 1) throw new Error(`${this.name}: gap before seq ${frame.seq} (last ${this.lastSeq})`);
      this.seen.push(frame);
    } else if (frame.type === 'ack') {
      this.acked.set(frame.client_msg_id, frame.seq);
      this.outbox.delete(frame.client_msg_id);
    } else if (frame.type === 'reset') {
      this.resets += 1;
      throw new Error(`${this.name}: unexpected reset ${JSON.stringify(frame)}`);
    }
  }

  /** Connects (retrying while the server is down), resumes, and resends the outbox. */
  async connect() {
    for (let attempt = 0; ; attempt += 1) {
      if (this.stopped) return;
      try {
        const socket = new Socket(wsUrl(this.server, this.conversation));
        await socket.opened;
        socket.ws.on('message', (data) => this.onFrame(JSON.parse(data.toString())));
        socket.ws.on('close', () => {
          if (this.socket === socket) this.socket = null;
        });
        const resume = this.seen.length ? { after: this.lastSeq, epoch: this.epoch } : { after: 0 };
        socket.send({ type: 'hello', token: this.token, ...resume });
        await socket.nextOfType('welcome', 5000);
        this.socket = socket;
        for (const [id, text] of this.outbox) socket.send({ type: 'send', client_msg_id: id, text });
        return;
      } catch {
        await sleep(Math.min(50 * 2 ** attempt, 500));
      }
    }
  }

  send(text) {
    const id = msgId(this.name);
    this.outbox.set(id, text);
    if (this.socket) this.socket.send({ type: 'send', client_msg_id: id, text });
    return id;
  }

  /** Keeps the connection up: reconnects whenever it drops. */
  async keepConnected() {
    while (!this.stopped) {
      if (!this.socket) await this.connect();
      await sleep(20);
    }
  }

  stop() {
    this.stopped = true;
    this.socket?.close();
  }
}

async function until(cond, what, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(25);
  }
}

/** The conversation's rows in D1, as (seq, client_msg_id) pairs. */
async function mirrored(server, conversation) {
  const { results } = await server.d1(
    'SELECT seq, client_msg_id FROM messages WHERE conversation_id = ?1 ORDER BY seq',
    [conversation],
  );
  return results.map((r) => `${r.seq}:${r.client_msg_id ?? ''}`);
}

const asMirrored = (log) => log.map((e) => `${e.seq}:${e.client_msg_id ?? ''}`);

test('the runtime killed mid-burst and restarted on the same storage loses and duplicates nothing', async () => {
  let server = await startServer({ vars: GENEROUS });
  const { persistDir, port } = server;
  const endpoint = { url: server.url, siteKey: server.siteKey };
  try {
    const conv = await newConversation(server);
    const agent = await agentLogin(server);
    const visitor = new DurableClient('visitor', endpoint, conv.conversation, conv.token);
    const staff = new DurableClient('agent', endpoint, conv.conversation, agent.token);
    const clients = [visitor, staff];
    await Promise.all(clients.map((c) => c.connect()));
    const loops = clients.map((c) => c.keepConnected());

    const perClient = 150;
    const kills = 2;
    const pendingAtKill = [];
    const restart = async () => {
      await server.kill();
      pendingAtKill.push(clients.reduce((n, c) => n + c.outbox.size, 0));
      await sleep(300);
      server = await startServer({ persistDir, port, vars: GENEROUS });
    };
    // The visitor's burst drives the kills: each one lands right after a tight volley of sends,
    // so some messages are acknowledged, some in flight and some not yet sent when it dies.
    const killAt = new Set(Array.from({ length: kills }, (_, k) => Math.floor(((k + 1) * perClient) / (kills + 1))));
    const bursts = clients.map(async (client) => {
      for (let i = 0; i < perClient; i += 1) {
        client.send(`${client.name} burst ${i}`);
        if (client === visitor && killAt.has(i)) await restart();
        else if (i % 10 === 9) await sleep(15);
      }
    });
    await Promise.all(bursts);
    const total = 1 + clients.length * perClient;
    await until(() => clients.every((c) => c.outbox.size === 0), 'every outbox flushed');
    await until(() => clients.every((c) => c.lastSeq >= total), 'every client caught up');
    clients.forEach((c) => c.stop());
    await Promise.all(loops);

    const log = await fullHistory(server, conv.conversation, conv.token);
    // Gap-free, and exactly the messages the clients wrote, each once.
    log.forEach((e, i) => assert.equal(e.seq, i + 1));
    assert.equal(log.length, total);
    const ids = log.filter((e) => e.client_msg_id).map((e) => e.client_msg_id);
    assert.equal(new Set(ids).size, ids.length, 'no message stored twice');
    for (const client of clients) {
      assert.equal(client.acked.size, perClient, `${client.name}: every message acknowledged`);
      for (const [id, seq] of client.acked) {
        const stored = log.find((e) => e.client_msg_id === id);
        assert.ok(stored, `${client.name}: ${id} was acknowledged but is not stored`);
        assert.equal(stored.seq, seq, `${client.name}: ${id} acknowledged with another seq`);
      }
      // Everyone saw the same log, in the same order.
      assert.deepEqual(client.seen.map(eventKey), log.map(eventKey), `${client.name} saw a different stream`);
      assert.equal(client.resets, 0);
    }
    // The kills really hit mid-burst: messages were unacknowledged when the process died.
    assert.ok(pendingAtKill.every((n) => n > 0), `pending at each kill: ${pendingAtKill}`);
    // And D1's copy caught up with the log, each event once.
    await until(async () => (await mirrored(server, conv.conversation)).length >= log.length, 'the D1 mirror caught up');
    assert.deepEqual(await mirrored(server, conv.conversation), asMirrored(log));
    // The site's line to the conversation died with the process; the restarted site opened a
    // new one when the conversation next told it something (as a request, having no line).
    assert.ok(
      server.logs.some((l) => l.includes('"site_line_opened"') && l.includes(conv.conversation)),
      'a new line after the restart',
    );
  } finally {
    await server.stop();
  }
});

/** A visitor's socket on a new conversation, said hello to. */
async function visitorSocket(server) {
  const conv = await newConversation(server);
  const socket = new Socket(wsUrl(server, conv.conversation));
  await socket.opened;
  socket.send({ type: 'hello', token: conv.token, after: 0 });
  await socket.nextOfType('welcome', 5000);
  return { conv, socket };
}

async function sendAcked(socket, count, text) {
  for (let i = 0; i < count; i += 1) {
    socket.send({ type: 'send', client_msg_id: msgId('crash'), text: `${text} ${i}` });
    await socket.nextOfType('ack', 5000);
  }
}

test('events stored just before a crash reach D1 after the restart without anyone returning; a quiet conversation copies nothing again', async () => {
  let server = await startServer({ vars: GENEROUS });
  const { persistDir, port } = server;
  try {
    // Quiet before the crash: its site copied its events to D1, and it wrote down how far once
    // it had been quiet a few seconds. Its alarm (armed with its first write, so it rings
    // before the other's) then has nothing to copy.
    const quiet = await visitorSocket(server);
    await sendAcked(quiet.socket, 3, 'said a while ago');
    await until(async () => (await mirrored(server, quiet.conv.conversation)).length >= 4, 'the site copied the quiet conversation');
    quiet.socket.close();
    await sleep(7000);

    const { conv, socket } = await visitorSocket(server);
    // Acknowledged, hence stored; the process dies before the copy to D1 (about a second later).
    await sendAcked(socket, 5, 'last words');
    await server.kill();
    server = await startServer({ persistDir, port, vars: GENEROUS });
    // Nobody reconnects: the durable alarm alone brings D1 up to date (within its 30 s).
    await until(async () => (await mirrored(server, conv.conversation)).length >= 6, 'the D1 mirror caught up', 90_000);
    const log = await fullHistory(server, conv.conversation, conv.token);
    assert.equal(log.length, 6);
    assert.deepEqual(await mirrored(server, conv.conversation), asMirrored(log));

    const caughtUp = (id) => server.logs.filter((l) => l.includes('"mirror_caught_up"') && l.includes(id));
    await until(async () => caughtUp(conv.conversation).length > 0, 'the crashed conversation logged its copy', 5000);
    assert.deepEqual(caughtUp(quiet.conv.conversation), [], 'the quiet conversation copied nothing again');
    const quietLog = await fullHistory(server, quiet.conv.conversation, quiet.conv.token);
    assert.deepEqual(await mirrored(server, quiet.conv.conversation), asMirrored(quietLog));
  } finally {
    await server.stop();
  }
});

test('closes whose news the site had not confirmed when the runtime died are told again after the restart: no seat stays held by a closed conversation', async () => {
  let server = await startServer({ vars: { ...GENEROUS, RATE_IP_CREATIONS: '500/50' } });
  const { persistDir, port } = server;
  try {
    const owner = await agentLogin(server);
    const site = await siteId(server, owner.token);
    const kim = await createAgent(server, { name: 'Kim', email: 'kim@parley.local', capacity: 12 });
    let console_ = await openConsole(server, site, kim.token);
    const convs = [];
    for (let i = 0; i < 10; i += 1) convs.push(await newConversation(server));
    const ids = convs.map((c) => c.conversation);
    await console_.next((f) => f.type === 'inbox' && ids.every((id) => f.assignments.some((a) => a.conversation === id && a.agent === kim.agentId)), 20_000);
    // Ten closes at once; the runtime dies as soon as the first is answered: before any site's
    // answer, which comes after the D1 batch that copies the closes. That batch is held up (a
    // trigger that costs SQLite about a second per close), so even on a busy machine every
    // close stored is news the conversation still holds as unconfirmed, whether or not routing
    // had it.
    await server.d1('CREATE TABLE slow (x INTEGER)');
    await server.d1(`INSERT INTO slow (x) SELECT value FROM json_each('[' || substr(replace(hex(zeroblob(500)), '00', ',1'), 2) || ']')`);
    await server.d1(`CREATE TRIGGER slow_close BEFORE INSERT ON messages WHEN NEW.kind = 'closed'
      BEGIN SELECT count(*) FROM slow a, slow b, slow c; END`);
    const closing = ids.map((id) => http(server.url, `/api/v1/conversations/${id}/close`, { method: 'POST', token: kim.token }).catch(() => null));
    await Promise.race(closing);
    await server.kill();
    await Promise.all(closing);
    console_.close();
    server = await startServer({ persistDir, port, vars: { ...GENEROUS, RATE_IP_CREATIONS: '500/50' } });
    await server.d1('DROP TRIGGER slow_close');

    // Whatever each conversation stored (closed, or still open when the close died with the
    // process), routing ends up agreeing with it.
    const statuses = new Map();
    for (const id of ids) {
      const info = await http(server.url, `/api/v1/conversations/${id}`, { token: owner.token });
      assert.equal(info.status, 200, JSON.stringify(info.body));
      statuses.set(id, info.body.status);
    }
    const open = ids.filter((id) => statuses.get(id) === 'open');
    console_ = await openConsole(server, site, kim.token);
    const agrees = (f) => ids.every((id) => f.assignments.some((a) => a.conversation === id) === open.includes(id));
    const inbox = agrees(console_.inbox) ? console_.inbox : await console_.next((f) => f.type === 'inbox' && agrees(f), 60_000);
    assert.equal(inbox.agents.find((a) => a.id === kim.agentId).active, open.length);
    // The closed ones told their site again after the restart, by their alarms.
    const closed = ids.filter((id) => !open.includes(id));
    assert.ok(closed.length > 0, 'some closes were stored before the kill');
    await until(async () => closed.every((id) => server.logs.some((l) => l.includes('"routing_news_resent"') && l.includes(id))),
      'every stored close told again', 60_000);
    console_.close();
  } finally {
    await server.stop();
  }
});

test("an agent's answer whose news the site lost when the runtime died still stops the answer clock: no miss, no hand-on", async () => {
  let server = await startServer({ vars: GENEROUS });
  const { persistDir, port } = server;
  try {
    const owner = await agentLogin(server);
    const site = await siteId(server, owner.token);
    // A short answer clock, set before the site's object first reads its settings.
    await server.d1('UPDATE sites SET routing = ?1 WHERE id = ?2', [JSON.stringify({ policy: 'round_robin', answer_timeout_ms: 5000 }), site]);
    const kim = await createAgent(server, { name: 'Kim', email: 'kim@parley.local', capacity: 5 });
    let console_ = await openConsole(server, site, kim.token);
    const chat = await newConversation(server);
    await console_.next((f) => f.type === 'inbox' && f.assignments.some((a) => a.conversation === chat.conversation && a.agent === kim.agentId), 20_000);
    // Kim answers, and the runtime dies as soon as the answer is stored: the site may not
    // have taken its news (the answer clock's stop) by then.
    const answered = await http(server.url, `/api/v1/conversations/${chat.conversation}/messages`, {
      method: 'POST', token: kim.token, body: { client_msg_id: msgId('answer'), text: 'Hello, I am here' },
    });
    await server.kill();
    assert.equal(answered.status, 200, JSON.stringify(answered.body));
    console_.close();
    server = await startServer({ persistDir, port, vars: GENEROUS });
    console_ = await openConsole(server, site, kim.token);
    const assignment = console_.inbox.assignments.find((a) => a.conversation === chat.conversation);
    assert.equal(assignment?.agent, kim.agentId);
    // Past the answer clock (5 s) and an alarm: still Kim's, and no miss counted for it.
    await sleep(8000);
    const { results: missed } = await server.d1("SELECT agent_id FROM routing_events WHERE conversation_id = ?1 AND kind = 'missed'", [chat.conversation]);
    assert.deepEqual(missed, [], `the site lost the answer's news (${assignment.answered ? 'not' : 'it did'}) and counted a miss`);
    const log = await fullHistory(server, chat.conversation, owner.token);
    assert.deepEqual(log.filter((e) => e.kind === 'assigned').map((e) => e.body.agent.id), [kim.agentId]);
    if (!assignment.answered) {
      assert.ok(server.logs.some((l) => l.includes('"answer_recovered"') && l.includes(chat.conversation)), 'the answer was found again');
    }
    console_.close();
  } finally {
    await server.stop();
  }
});
