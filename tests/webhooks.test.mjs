// Webhooks against a local receiver: signed deliveries with a stable delivery id, retries with
// backoff after failures, a delivery log, a webhook switched off only after failing for hours
// (its deliveries paused, and sent when it is switched on again), a short outage that loses
// nothing, one event the receiver rejects holding up no other, a backlog sent at once and in
// order when the receiver is back, a delivery set aside just before the receiver goes down for
// everyone kept past its 8th attempt (with a short retry base) and sent once it is back, and a D1
// read failure that gives nothing up; the delivery log's stable failure codes. Also the visitor
// attributes endpoint and idempotent conversation creation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { startServer } from './support/server.mjs';
import { webhookRows } from './support/stored.mjs';
import { agentLogin, http, msgId, newConversation, siteId, sleep, visitorSession } from './support/client.mjs';

let server;
let owner;
let site;
let receiver;
let receiverUrl;
const received = [];
let failuresToSend = 0;

before(async () => {
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      received.push({ headers: req.headers, body, failed: failuresToSend > 0 });
      if (failuresToSend > 0) {
        failuresToSend -= 1;
        res.writeHead(500).end('try later');
      } else {
        res.writeHead(204).end();
      }
    });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  receiverUrl = `http://127.0.0.1:${receiver.address().port}/hooks/parley`;
  server = await startServer({ vars: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_BASE_MS: '300' } });
  owner = await agentLogin(server);
  site = await siteId(server, owner.token);
});

after(async () => {
  await server?.stop();
  await new Promise((r) => receiver.close(r));
});

async function until(cond, what, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(100);
  }
}

function verify(secret, header, body) {
  const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header) ?? [];
  assert.ok(t, `signature header ${header}`);
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  return v1 === expected && Math.abs(Date.now() / 1000 - Number(t)) < 300;
}

test('signed deliveries, retried after failures, deduplicable by delivery id, logged', async () => {
  const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
    method: 'POST', token: owner.token,
    body: { url: receiverUrl, events: ['conversation.created', 'message.created', 'conversation.closed'] },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { id, secret } = created.body;
  assert.match(secret, /^whsec_/);
  // The secret is not shown again.
  const listed = await http(server.url, `/api/v1/sites/${site}/webhooks`, { token: owner.token });
  assert.equal(listed.body.webhooks[0].secret, undefined);

  failuresToSend = 2; // the first two attempts get HTTP 500
  const conv = await newConversation(server);
  const text = 'Where is my order #8812?';
  await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token: conv.token, body: { client_msg_id: msgId('w'), text },
  });
  await http(server.url, `/api/v1/conversations/${conv.conversation}/close`, { method: 'POST', token: owner.token });

  const ok = () => received.filter((r) => !r.failed);
  await until(() => ok().length >= 3, 'three successful deliveries');
  for (const r of received) assert.ok(verify(secret, r.headers['parley-signature'], r.body), 'signature verifies');
  const events = ok().map((r) => JSON.parse(r.body));
  assert.deepEqual(events.map((e) => e.event).sort(), ['conversation.closed', 'conversation.created', 'message.created']);
  const message = events.find((e) => e.event === 'message.created');
  assert.equal(message.data.text, text);
  assert.equal(message.data.conversation, conv.conversation);
  assert.equal(message.id, `${conv.conversation}:2:message.created`);
  // The failed attempts were retries of the same delivery (same id), not new deliveries.
  const ids = received.map((r) => r.headers['parley-delivery']);
  assert.equal(new Set(ids).size, 3);
  assert.equal(received.length, 5);

  const log = await http(server.url, `/api/v1/sites/${site}/webhooks/${id}/deliveries`, { token: owner.token });
  assert.equal(log.status, 200);
  assert.equal(log.body.deliveries.length, 3);
  assert.ok(log.body.deliveries.every((d) => d.status === 'delivered'));
  assert.ok(log.body.deliveries.every((d) => d.last_status === 204));
  // Delivered at last: no failure to tell.
  assert.ok(log.body.deliveries.every((d) => d.last_error === null && d.error_code === null && d.error_detail === null));
  // Every attempt the receiver saw is counted in the log: 3 deliveries, 5 attempts.
  assert.equal(log.body.deliveries.reduce((n, d) => n + d.attempts, 0), 5);
  await http(server.url, `/api/v1/sites/${site}/webhooks/${id}`, { method: 'DELETE', token: owner.token });
});

/**
 * A receiver of its own on loopback: `answer(req, body)` gives the status (or a promise of it);
 * what it saw, in the order it answered.
 */
async function startReceiver(answer) {
  const seen = [];
  const srv = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', async () => {
      const status = await answer(req, body);
      seen.push({ delivery: req.headers['parley-delivery'], body, status, at: Date.now() });
      res.writeHead(status).end();
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${srv.address().port}/hooks/parley?token=hunter2`,
    seen,
    close: async () => { srv.closeAllConnections(); await new Promise((r) => srv.close(r)); },
  };
}

const deliveriesOf = async (id) => {
  const log = await http(server.url, `/api/v1/sites/${site}/webhooks/${id}/deliveries`, { token: owner.token });
  assert.equal(log.status, 200, JSON.stringify(log.body));
  return log.body.deliveries;
};
const hookRow = async (id) => (await server.d1('SELECT enabled, failures, failing_since, disabled_reason FROM webhooks WHERE id = ?1', [id])).results[0];

test('a webhook failing for hours is switched off, with a note in the audit log; its delivery is paused, not failed', async () => {
  const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
    method: 'POST', token: owner.token, body: { url: receiverUrl, events: ['message.created'] },
  });
  const { id } = created.body;
  // It has been failing for seven hours, 19 attempts in a row: the next failure switches it off.
  await server.d1('UPDATE webhooks SET failures = 19, failing_since = ?2 WHERE id = ?1', [id, Date.now() - 7 * 3600 * 1000]);
  failuresToSend = 1000;
  const conv = await newConversation(server);
  await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token: conv.token, body: { client_msg_id: msgId('w'), text: 'hello?' },
  });
  await until(async () => {
    const row = await hookRow(id);
    return row.enabled === 0 && row.disabled_reason === 'too_many_failures';
  }, 'webhook disabled');
  failuresToSend = 0;
  const { results } = await server.d1("SELECT action, target FROM audit_log WHERE action = 'webhook_disabled'");
  assert.deepEqual(results, [{ action: 'webhook_disabled', target: id }]);
  // The delivery waits for the webhook to be switched on again.
  const [delivery] = await deliveriesOf(id);
  assert.equal(delivery.status, 'paused', JSON.stringify(delivery));
  assert.equal(delivery.attempts, 1);
});

test('a receiver answering 502 for a few seconds gets every delivery once it recovers, and the webhook stays on', async () => {
  const outageEnds = Date.now() + 2_500;
  const receiver502 = await startReceiver(() => (Date.now() < outageEnds ? 502 : 204));
  let id;
  try {
    const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
      method: 'POST', token: owner.token, body: { url: receiver502.url, events: ['message.created'] },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    id = created.body.id;
    // More deliveries than the 20 failures in a row that used to switch a webhook off.
    // Five visitors with five messages each (one visitor's burst would meet the rate limit).
    const count = 25;
    for (let c = 0; c < 5; c += 1) {
      const conv = await newConversation(server);
      for (let i = 0; i < 5; i += 1) {
        const sent = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
          method: 'POST', token: conv.token, body: { client_msg_id: msgId('o'), text: `during the outage ${c}.${i}` },
        });
        assert.equal(sent.status, 200, JSON.stringify(sent.body));
      }
    }
    const delivered = () => new Set(receiver502.seen.filter((r) => r.status === 204).map((r) => r.delivery));
    await until(() => delivered().size === count, `all ${count} deliveries delivered`, 60_000);
    assert.ok(receiver502.seen.some((r) => r.status === 502), 'the outage was seen');
    const row = await hookRow(id);
    assert.equal(row.enabled, 1, JSON.stringify(row));
    assert.equal(row.disabled_reason, null);
    await until(async () => (await hookRow(id)).failures === 0, 'the failure streak ended');
    const log = await deliveriesOf(id);
    assert.equal(log.length, count);
    assert.deepEqual(log.filter((d) => d.status !== 'delivered'), []);
    // Each delivery arrived once (receivers deduplicate anyway, but nothing was sent twice).
    assert.equal(receiver502.seen.filter((r) => r.status === 204).length, count);
  } finally {
    if (id) await http(server.url, `/api/v1/sites/${site}/webhooks/${id}`, { method: 'DELETE', token: owner.token });
    await receiver502.close();
  }
});

/** Says `text` in `conv`; the delivery id of its `message.created`. */
async function say(conv, text) {
  const sent = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token: conv.token, body: { client_msg_id: msgId('s'), text },
  });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  return `${conv.conversation}:${sent.body.seq}:message.created`;
}

test('a receiver rejecting one event (HTTP 400) gets every other one once it has refused it twice, each once, and the webhook stays on', async () => {
  const refused = `refused by the receiver ${msgId('x')}`;
  let refusedArrived = false;
  let answerRefused;
  const firstAnswer = new Promise((resolve) => { answerRefused = resolve; });
  const rx = await startReceiver((req, body) => {
    if (!body.includes(refused)) return 204;
    // Its first attempt is answered only once the other events wait behind it.
    if (!refusedArrived) {
      refusedArrived = true;
      return firstAnswer.then(() => 400);
    }
    return 400;
  });
  let id;
  try {
    const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
      method: 'POST', token: owner.token, body: { url: rx.url, events: ['message.created'] },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    id = created.body.id;
    const conv = await newConversation(server);
    const rejected = await say(conv, refused);
    await until(() => refusedArrived, 'the refused event reached the receiver');
    const others = [];
    for (let i = 0; i < 4; i += 1) others.push(await say(conv, `accepted ${i}`));
    await until(async () => (await deliveriesOf(id)).length === 5, 'the others queued behind it');
    answerRefused();

    const deliveredIds = () => rx.seen.filter((r) => r.status === 204).map((r) => r.delivery);
    // A 4xx counts like any failure (a receiver whose address or credentials went wrong
    // refuses everything, and those deliveries are kept): the others wait for the refused one's
    // retry; refused again, one of them goes as a probe, is taken, and the refused one is set
    // aside: the rest follow.
    await until(() => others.every((d) => deliveredIds().includes(d)), 'the other events delivered', 10_000)
      .catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await deliveriesOf(id))}`); });
    assert.deepEqual([...deliveredIds()].sort(), [...others].sort(), 'each delivered once');
    const order = rx.seen.map((r) => r.delivery);
    assert.ok(order.filter((d) => d === rejected).length >= 2, JSON.stringify(rx.seen.map((r) => [r.delivery, r.status])));
    // Taken deliveries clear the webhook's failures: it stays on.
    await until(async () => (await hookRow(id)).failures === 0, 'the failures cleared');
    const row = await hookRow(id);
    assert.deepEqual({ enabled: row.enabled, disabled_reason: row.disabled_reason }, { enabled: 1, disabled_reason: null });
    const refusedLine = (await deliveriesOf(id)).find((d) => d.delivery_id === rejected);
    assert.ok(refusedLine, 'the refused event is in the log');
    assert.notEqual(refusedLine.status, 'delivered');
    assert.equal(refusedLine.last_status, 400);
  } finally {
    answerRefused();
    if (id) await http(server.url, `/api/v1/sites/${site}/webhooks/${id}`, { method: 'DELETE', token: owner.token });
    await rx.close();
  }
});

test('after an outage, the waiting deliveries go as soon as one gets through, in the order they happened, each once', async () => {
  let up = false;
  const rx = await startReceiver(() => (up ? 204 : 502));
  let id;
  try {
    const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
      method: 'POST', token: owner.token, body: { url: rx.url, events: ['message.created'] },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    id = created.body.id;
    const conv = await newConversation(server);
    const during = [];
    for (let i = 0; i < 5; i += 1) during.push(await say(conv, `during the outage ${i}`));
    // The queue backs off: every one of them waits for a retry at least 15 s away.
    let waiting;
    await until(async () => {
      waiting = await deliveriesOf(id);
      return waiting.length === 5 && waiting.every((d) => d.status === 'pending' && d.next_at - Date.now() >= 15_000);
    }, 'the backlog waiting for a later retry', 60_000)
      .catch((e) => { throw new Error(`${e.message}: ${JSON.stringify(waiting)}`); });
    const retryAt = Math.min(...waiting.map((d) => d.next_at));

    up = true;
    const after = await say(conv, 'the receiver is back');
    const deliveredIds = () => rx.seen.filter((r) => r.status === 204).map((r) => r.delivery);
    await until(() => deliveredIds().length >= 6, 'everything delivered once one got through', Math.max(1_000, retryAt - Date.now() - 3_000))
      .catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await deliveriesOf(id))}`); });
    // Before the retry they were waiting for: freed by the first delivery.
    assert.ok(rx.seen.filter((r) => r.status === 204).every((r) => r.at < retryAt));
    // The one that found the receiver back goes first; the backlog follows in its order.
    assert.deepEqual(deliveredIds(), [after, ...during]);
    await until(async () => (await hookRow(id)).failures === 0, 'the failure streak ended');
    const row = await hookRow(id);
    assert.equal(row.enabled, 1, JSON.stringify(row));
    assert.ok((await deliveriesOf(id)).every((d) => d.status === 'delivered'));
  } finally {
    if (id) await http(server.url, `/api/v1/sites/${site}/webhooks/${id}`, { method: 'DELETE', token: owner.token });
    await rx.close();
  }
});

test('a delivery set aside right before the receiver goes down for everyone is not given up at its 8th attempt: it rejoins the queue and goes once the receiver is back', async () => {
  // A 1 ms retry base: a delivery's 8 attempts take about 20 s, far less than the 6 h before
  // anything may be given up.
  const quick = await startServer({ vars: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_BASE_MS: '1' } });
  let first;
  let firstRefusals = 0;
  let tookOne = false;
  let up = false;
  // Down, but after the first delivery's 6th refusal it takes one other request (the probe);
  // then down again for everyone until told.
  const rx = await startReceiver((req) => {
    if (up) return 204;
    const delivery = req.headers['parley-delivery'];
    if (delivery === first) { firstRefusals += 1; return 502; }
    if (!tookOne && firstRefusals >= 6) { tookOne = true; return 204; }
    return 502;
  });
  try {
    const admin = await agentLogin(quick);
    const quickSite = await siteId(quick, admin.token);
    const created = await http(quick.url, `/api/v1/sites/${quickSite}/webhooks`, {
      method: 'POST', token: admin.token, body: { url: rx.url, events: ['message.created'] },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const { id } = created.body;
    const log = async () => {
      const res = await http(quick.url, `/api/v1/sites/${quickSite}/webhooks/${id}/deliveries`, { token: admin.token });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.deliveries;
    };
    const line = async (delivery) => (await log()).find((d) => d.delivery_id === delivery);
    const sayOn = async (conv, text) => {
      const sent = await http(quick.url, `/api/v1/conversations/${conv.conversation}/messages`, {
        method: 'POST', token: conv.token, body: { client_msg_id: msgId('q'), text },
      });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      return `${conv.conversation}:${sent.body.seq}:message.created`;
    };
    const conv = await newConversation(quick);
    first = `${conv.conversation}:2:message.created`;
    assert.equal(await sayOn(conv, 'the first, refused'), first);
    const probe = await sayOn(conv, 'the one the receiver takes');
    await until(() => tookOne, 'the receiver took one request', 20_000);
    assert.equal(rx.seen.find((r) => r.status === 204)?.delivery, probe);
    // Past its 8th attempt, the receiver down for everyone since it took the probe: kept.
    const kept = await until(async () => {
      const l = await line(first);
      return l && (l.attempts >= 8 || l.status !== 'pending') ? l : null;
    }, 'the first delivery at its 8th attempt', 60_000);
    assert.equal(kept.status, 'pending', JSON.stringify(kept));
    const [row] = await webhookRows(quick, quickSite, 'SELECT set_aside FROM deliveries WHERE delivery_id = ?', [first]);
    assert.equal(row.set_aside, 1, 'it was set aside when the receiver took the probe');
    // Another event fails like it: the receiver fails for everyone, so it rejoins the queue...
    const third = await sayOn(conv, 'said while the receiver is down');
    await until(() => rx.seen.some((r) => r.delivery === third && r.status === 502), 'the third refused');
    // ...and once the receiver is back, the first delivered attempt frees it (its own retry
    // would be more than a minute away).
    up = true;
    const deliveredIds = () => rx.seen.filter((r) => r.status === 204).map((r) => r.delivery);
    await until(() => deliveredIds().includes(first) && deliveredIds().includes(third), 'the first and the third delivered', 15_000)
      .catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await log())}`); });
    assert.deepEqual([...deliveredIds()].sort(), [first, probe, third].sort(), 'each delivered once');
    assert.ok((await log()).every((d) => d.status === 'delivered'));
    const { results: [hook] } = await quick.d1('SELECT enabled FROM webhooks WHERE id = ?1', [id]);
    assert.equal(hook.enabled, 1);
  } finally {
    await rx.close();
    await quick.stop();
  }
});

test('a switched-off webhook keeps what it had to send, and sends it when switched on again', async () => {
  let up = false;
  const rx = await startReceiver(() => (up ? 204 : 503));
  let id;
  try {
    const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
      method: 'POST', token: owner.token, body: { url: rx.url, events: ['message.created'] },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    id = created.body.id;
    // Down for hours already: the next failure switches it off.
    await server.d1('UPDATE webhooks SET failures = 40, failing_since = ?2 WHERE id = ?1', [id, Date.now() - 7 * 3600 * 1000]);
    const conv = await newConversation(server);
    const say = async (text) => {
      const sent = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
        method: 'POST', token: conv.token, body: { client_msg_id: msgId('p'), text },
      });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      return `${conv.conversation}:${sent.body.seq}:message.created`;
    };
    const before = await say('sent before it was switched off');
    await until(async () => (await hookRow(id)).enabled === 0, 'webhook switched off');
    // Said while it is off: kept too.
    const during = await say('sent while it was off');
    await until(async () => (await deliveriesOf(id)).length === 2, 'both in the log')
      .catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await deliveriesOf(id))} ${JSON.stringify(await hookRow(id))}`); });
    up = true;
    await sleep(1_500);
    assert.deepEqual(rx.seen.filter((r) => r.status === 204), [], 'nothing is sent while it is off');
    const log = await deliveriesOf(id);
    assert.deepEqual(log.map((d) => d.status), ['paused', 'paused'], JSON.stringify(log));
    // The one tried says why it failed, as a code; the one queued while it was off was not tried.
    const failure = (d) => ({ last_status: d.last_status, last_error: d.last_error, error_code: d.error_code, error_detail: d.error_detail });
    assert.deepEqual(failure(log.find((d) => d.delivery_id === before)), { last_status: 503, last_error: 'HTTP 503', error_code: 'http_status', error_detail: null });
    assert.deepEqual(failure(log.find((d) => d.delivery_id === during)), { last_status: null, last_error: null, error_code: null, error_detail: null });

    const enabled = await http(server.url, `/api/v1/sites/${site}/webhooks/${id}/enable`, { method: 'POST', token: owner.token });
    assert.equal(enabled.status, 204);
    const deliveredIds = () => rx.seen.filter((r) => r.status === 204).map((r) => r.delivery).sort();
    await until(() => deliveredIds().length === 2, 'both delivered after switching it on');
    assert.deepEqual(deliveredIds(), [before, during].sort());
    assert.ok(rx.seen.find((r) => r.status === 204 && r.delivery === before).body.includes('sent before it was switched off'));
    await until(async () => (await deliveriesOf(id)).every((d) => d.status === 'delivered'), 'the log says delivered');
    const row = await hookRow(id);
    assert.deepEqual({ enabled: row.enabled, failures: row.failures, disabled_reason: row.disabled_reason }, { enabled: 1, failures: 0, disabled_reason: null });
  } finally {
    if (id) await http(server.url, `/api/v1/sites/${site}/webhooks/${id}`, { method: 'DELETE', token: owner.token });
    await rx.close();
  }
});

test('when the webhooks cannot be read from D1, due deliveries are left for later, not given up', async () => {
  let up = false;
  const rx = await startReceiver(() => (up ? 204 : 500));
  let id;
  let renamed = false;
  try {
    const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
      method: 'POST', token: owner.token, body: { url: rx.url, events: ['message.created'] },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    id = created.body.id;
    const conv = await newConversation(server);
    const sent = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
      method: 'POST', token: conv.token, body: { client_msg_id: msgId('d'), text: 'wait for D1' },
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    await until(() => rx.seen.length >= 1, 'the first attempt');
    const logsBefore = server.logs.length;
    // A real D1 failure for the queue's read of the webhooks: the table is not there for a while.
    await server.d1('ALTER TABLE webhooks RENAME TO webhooks_away');
    renamed = true;
    // Past its next retry, the queue has come to it while the table was away.
    const [due] = await deliveriesOf(id);
    await sleep(Math.max(0, due.next_at - Date.now()) + 1_500);
    await server.d1('ALTER TABLE webhooks_away RENAME TO webhooks');
    renamed = false;
    const [waiting] = await deliveriesOf(id);
    assert.equal(waiting.status, 'pending', JSON.stringify(waiting));
    assert.notEqual(waiting.last_error, 'webhook deleted');
    assert.ok(server.logs.slice(logsBefore).some((l) => l.includes('"webhook_hooks_unreadable"')), 'the failed read is logged');
    up = true;
    await until(async () => (await deliveriesOf(id))[0]?.status === 'delivered', 'delivered once D1 answers again', 30_000);
    assert.equal(rx.seen.filter((r) => r.status === 204).length, 1);
  } finally {
    if (renamed) await server.d1('ALTER TABLE webhooks_away RENAME TO webhooks');
    if (id) await http(server.url, `/api/v1/sites/${site}/webhooks/${id}`, { method: 'DELETE', token: owner.token });
    await rx.close();
  }
});

test('the audit log records where a webhook points, never its path or query', async () => {
  const url = `${receiverUrl}?token=s3cret-in-the-query`;
  const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
    method: 'POST', token: owner.token, body: { url, events: ['conversation.closed'] },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { results: [entry] } = await server.d1("SELECT detail FROM audit_log WHERE action = 'webhook_created' AND target = ?1", [created.body.id]);
  assert.ok(entry, 'an audit entry');
  assert.ok(!entry.detail.includes('s3cret'), entry.detail);
  assert.ok(!entry.detail.includes('/hooks/parley'), entry.detail);
  const detail = JSON.parse(entry.detail);
  assert.equal(detail.target, new URL(receiverUrl).origin);
  assert.equal(detail.site, site);
  await http(server.url, `/api/v1/sites/${site}/webhooks/${created.body.id}`, { method: 'DELETE', token: owner.token });
});

test('a target answering with a redirect is not followed: the attempt fails, the address it points to hears nothing', async () => {
  // What the redirect points at: a loopback listener standing in for an internal service.
  const reachedBehind = [];
  const behind = createServer((req, res) => {
    reachedBehind.push(`${req.method} ${req.url}`);
    req.resume();
    res.writeHead(204).end();
  });
  const listen = (srv) => new Promise((r) => srv.listen(0, '127.0.0.1', r));
  await listen(behind);
  const behindUrl = `http://127.0.0.1:${behind.address().port}/internal`;
  // The public-looking target: /r302 and /r307 answer with that status, pointing behind.
  const redirectsSent = [];
  const redirector = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const status = Number(req.url.slice(2));
      redirectsSent.push(status);
      res.writeHead(status, { location: behindUrl }).end();
    });
  });
  await listen(redirector);
  const hooks = [];
  try {
    for (const status of [302, 307]) {
      const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
        method: 'POST', token: owner.token,
        body: { url: `http://127.0.0.1:${redirector.address().port}/r${status}`, events: ['message.created'] },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      hooks.push({ id: created.body.id, status });
    }
    const conv = await newConversation(server);
    await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
      method: 'POST', token: conv.token, body: { client_msg_id: msgId('w'), text: 'redirect me' },
    });
    for (const hook of hooks) {
      const delivery = await until(async () => {
        const log = await http(server.url, `/api/v1/sites/${site}/webhooks/${hook.id}/deliveries`, { token: owner.token });
        return log.body.deliveries.find((d) => d.attempts >= 1);
      }, `first attempt of the ${hook.status} webhook recorded`);
      assert.notEqual(delivery.status, 'delivered', `HTTP ${hook.status} is not a delivery`);
      assert.equal(delivery.last_status, hook.status);
      assert.equal(delivery.last_error, `HTTP ${hook.status}: redirects are not followed`);
      assert.equal(delivery.error_code, 'redirect_refused');
      assert.equal(delivery.error_detail, null);
    }
    assert.ok(redirectsSent.includes(302) && redirectsSent.includes(307), 'both targets were asked');
    assert.deepEqual(reachedBehind, [], 'nothing reached the address behind the redirect');
  } finally {
    for (const hook of hooks) {
      await http(server.url, `/api/v1/sites/${site}/webhooks/${hook.id}`, { method: 'DELETE', token: owner.token });
    }
    for (const srv of [redirector, behind]) {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    }
  }
});

test('the delivery log gives each failure a stable code: an address refused before sending, with its reason, and a connection that fails', async () => {
  // A port nothing listens on.
  const gone = createServer();
  await new Promise((r) => gone.listen(0, '127.0.0.1', r));
  const gonePort = gone.address().port;
  await new Promise((r) => gone.close(r));
  const hooks = {};
  try {
    for (const name of ['refused', 'unreachable']) {
      const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
        method: 'POST', token: owner.token, body: { url: receiverUrl, events: ['message.created'] },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      hooks[name] = created.body.id;
    }
    // Addresses changed in D1 after they were checked: the queue checks again before each
    // attempt (a URL carrying credentials is refused even where private targets are allowed).
    await server.d1('UPDATE webhooks SET url = ?2 WHERE id = ?1', [hooks.refused, `http://user:secret@127.0.0.1:${receiver.address().port}/hooks/parley`]);
    await server.d1('UPDATE webhooks SET url = ?2 WHERE id = ?1', [hooks.unreachable, `http://127.0.0.1:${gonePort}/hooks/parley`]);
    const conv = await newConversation(server);
    const sent = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
      method: 'POST', token: conv.token, body: { client_msg_id: msgId('e'), text: 'where does this go?' },
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));

    const refused = await until(async () => (await deliveriesOf(hooks.refused)).find((d) => d.last_error), 'the refused delivery logged');
    assert.deepEqual(
      { status: refused.status, last_status: refused.last_status, last_error: refused.last_error, error_code: refused.error_code, error_detail: refused.error_detail },
      { status: 'failed', last_status: null, last_error: 'target address not allowed: credentials_in_url', error_code: 'address_refused', error_detail: 'credentials_in_url' },
    );
    const unreachable = await until(async () => (await deliveriesOf(hooks.unreachable)).find((d) => d.last_error), 'the failed connection logged');
    // The runtime's own words stay in last_error; the code does not depend on them.
    assert.equal(unreachable.error_code, 'network', JSON.stringify(unreachable));
    assert.equal(unreachable.error_detail, null);
    assert.equal(unreachable.last_status, null);
    assert.equal(unreachable.status, 'pending', 'retried, not given up');
    assert.ok(unreachable.last_error.length > 0);

    // Both codes are among those the API description lists.
    const doc = await (await fetch(`${server.url}/api/v1/openapi.json`)).json();
    const codes = doc.components.schemas.Delivery.properties.error_code.enum;
    assert.ok(codes.includes(refused.error_code) && codes.includes(unreachable.error_code), JSON.stringify(codes));
  } finally {
    for (const id of Object.values(hooks)) {
      await http(server.url, `/api/v1/sites/${site}/webhooks/${id}`, { method: 'DELETE', token: owner.token });
    }
  }
});

test('webhook settings are for admins, and targets are checked', async () => {
  const visitor = await visitorSession(server);
  const asVisitor = await http(server.url, `/api/v1/sites/${site}/webhooks`, { token: visitor.token });
  assert.equal(asVisitor.status, 403);
  const bad = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
    method: 'POST', token: owner.token, body: { url: 'javascript:alert(1)', events: ['message.created'] },
  });
  assert.equal(bad.status, 400);
  const unknownEvent = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
    method: 'POST', token: owner.token, body: { url: receiverUrl, events: ['everything'] },
  });
  assert.equal(unknownEvent.status, 400);
  const otherSite = await http(server.url, '/api/v1/sites/s_aaaaaaaaaaaaaaaaaaaaaaaaaa/webhooks', { token: owner.token });
  assert.equal(otherSite.status, 404);
});

test('visitor attributes are merged; creating a conversation twice with one request id gives one', async () => {
  const visitor = await visitorSession(server);
  const set = (attributes) => http(server.url, '/api/v1/visitor/attributes', { method: 'POST', token: visitor.token, body: { attributes } });
  assert.equal((await set({ plan: 'gold', orders: 3 })).status, 204);
  assert.equal((await set({ orders: 4, plan: null })).status, 204);
  const { results: [row] } = await server.d1('SELECT attributes FROM visitors WHERE id = ?1', [visitor.visitorId]);
  assert.deepEqual(JSON.parse(row.attributes), { orders: 4 });
  assert.equal((await set({ 'Bad Key': 1 })).status, 400);

  const body = { client_req_id: 'req-1', form: 'offline', fields: { email: 'ann@example.org' }, message: 'Please call me back' };
  const first = await http(server.url, '/api/v1/conversations', { method: 'POST', token: visitor.token, body });
  const again = await http(server.url, '/api/v1/conversations', { method: 'POST', token: visitor.token, body });
  assert.equal(first.status, 201);
  assert.equal(again.status, 200);
  assert.equal(again.body.conversation, first.body.conversation);
  const history = await http(server.url, `/api/v1/conversations/${first.body.conversation}/history`, { token: visitor.token });
  assert.deepEqual(history.body.events.map((e) => e.kind), ['created', 'message']);
  // Another visitor using the same request id gets their own conversation.
  const other = await visitorSession(server);
  const theirs = await http(server.url, '/api/v1/conversations', { method: 'POST', token: other.token, body: { client_req_id: 'req-1' } });
  assert.equal(theirs.status, 201);
  assert.notEqual(theirs.body.conversation, first.body.conversation);
});

test("an erased visitor's messages are never delivered once erased, and no delivery keeps a body it no longer needs", async () => {
  const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
    method: 'POST', token: owner.token, body: { url: receiverUrl, events: ['message.created'] },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { id } = created.body;
  failuresToSend = 1000; // the receiver is down
  const erasedText = `please forget me ${msgId('x')}`;
  const keptText = `keep this one ${msgId('k')}`;
  const gone = await newConversation(server);
  const kept = await newConversation(server);
  for (const [conv, text] of [[gone, erasedText], [kept, keptText]]) {
    const sent = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
      method: 'POST', token: conv.token, body: { client_msg_id: msgId('w'), text },
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
  }
  const tried = (text) => received.some((r) => r.failed && r.body.includes(text));
  // Both were tried and failed: they wait in the site's webhook queue for a retry.
  await until(() => tried(erasedText) && tried(keptText), 'first attempts of both messages');
  const erased = await http(server.url, `/api/v1/visitors/${gone.visitorId}`, { method: 'DELETE', token: owner.token });
  assert.equal(erased.status, 200, JSON.stringify(erased.body));
  failuresToSend = 0; // the receiver is back
  const delivered = (text) => received.some((r) => !r.failed && r.body.includes(text));
  await until(() => delivered(keptText), 'the kept message delivered once the receiver is back');
  // The erased message's retries were due at the same times as the kept one's.
  await sleep(2_000);
  assert.ok(!delivered(erasedText), 'a delivery of the erased message arrived after the erasure');

  const rows = await webhookRows(server, site, 'SELECT delivery_id, status, body FROM deliveries');
  assert.ok(rows.length > 0);
  assert.deepEqual(rows.filter((r) => r.body.includes(erasedText) || r.delivery_id.startsWith(`${gone.conversation}:`)), [],
    'the erased conversation has no delivery left, sent or not');
  assert.deepEqual(rows.filter((r) => !['pending', 'paused'].includes(r.status) && r.body !== ''), [], 'finished deliveries keep no body');
  // The delivery log still says what happened.
  const log = await http(server.url, `/api/v1/sites/${site}/webhooks/${id}/deliveries`, { token: owner.token });
  assert.equal(log.status, 200);
  const keptDelivery = log.body.deliveries.find((d) => d.delivery_id === `${kept.conversation}:2:message.created`);
  assert.equal(keptDelivery?.status, 'delivered', JSON.stringify(log.body));
  assert.ok(keptDelivery.attempts >= 2);
  assert.equal(log.body.deliveries.some((d) => d.delivery_id.startsWith(`${gone.conversation}:`)), false);
  await http(server.url, `/api/v1/sites/${site}/webhooks/${id}`, { method: 'DELETE', token: owner.token });
});

test('deleting a webhook drops its queued deliveries and their bodies at once', async () => {
  const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
    method: 'POST', token: owner.token, body: { url: receiverUrl, events: ['message.created'] },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { id } = created.body;
  failuresToSend = 1000; // the receiver is down: the delivery waits for a retry, body and all
  const text = `queued for a webhook about to go ${msgId('q')}`;
  const conv = await newConversation(server);
  const sent = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token: conv.token, body: { client_msg_id: msgId('w'), text },
  });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  await until(() => received.some((r) => r.failed && r.body.includes(text)), 'the first attempt');
  const before = await webhookRows(server, site, 'SELECT id FROM deliveries WHERE webhook_id = ?', [id]);
  assert.ok(before.length > 0);

  const deleted = await http(server.url, `/api/v1/sites/${site}/webhooks/${id}`, { method: 'DELETE', token: owner.token });
  assert.equal(deleted.status, 204);
  assert.deepEqual(await webhookRows(server, site, 'SELECT id FROM deliveries WHERE webhook_id = ?', [id]), []);
  failuresToSend = 0;
});
