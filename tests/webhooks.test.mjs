// Webhooks against a local receiver: signed deliveries with a stable delivery id, retries with
// backoff after failures, a delivery log, and a webhook switched off after repeated failures.
// Also the visitor attributes endpoint and idempotent conversation creation.
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
  // Every attempt the receiver saw is counted in the log: 3 deliveries, 5 attempts.
  assert.equal(log.body.deliveries.reduce((n, d) => n + d.attempts, 0), 5);
  await http(server.url, `/api/v1/sites/${site}/webhooks/${id}`, { method: 'DELETE', token: owner.token });
});

test('a webhook that keeps failing is switched off, with a note in the audit log', async () => {
  const created = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
    method: 'POST', token: owner.token, body: { url: receiverUrl, events: ['message.created'] },
  });
  const { id } = created.body;
  // Make it fail from the start: 20 consecutive failures switch it off.
  await server.d1('UPDATE webhooks SET failures = 19 WHERE id = ?1', [id]);
  failuresToSend = 1000;
  const conv = await newConversation(server);
  await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token: conv.token, body: { client_msg_id: msgId('w'), text: 'hello?' },
  });
  await until(async () => {
    const { results: [row] } = await server.d1('SELECT enabled, disabled_reason FROM webhooks WHERE id = ?1', [id]);
    return row.enabled === 0 && row.disabled_reason === 'too_many_failures';
  }, 'webhook disabled');
  failuresToSend = 0;
  const { results } = await server.d1("SELECT action, target FROM audit_log WHERE action = 'webhook_disabled'");
  assert.deepEqual(results, [{ action: 'webhook_disabled', target: id }]);
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
      assert.match(delivery.last_error ?? '', /redirects are not followed/);
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
  assert.deepEqual(rows.filter((r) => r.status !== 'pending' && r.body !== ''), [], 'finished deliveries keep no body');
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
