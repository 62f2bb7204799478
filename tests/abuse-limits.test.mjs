// What one visitor can make the server store is bounded: page views are rate limited
// (RATE_PAGE_VIEWS), the stored visitor attributes are capped (core/src/limits.rs:
// MAX_VISITOR_ATTRIBUTES, MAX_VISITOR_ATTRIBUTES_BYTES), and a rating is one per closing of the
// conversation, taken from the visitor's message bucket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './support/server.mjs';
import { agentLogin, fullHistory, http, msgId, newConversation, visitorSession } from './support/client.mjs';

const PAGE_VIEWS_BURST = 5;
const VISITOR_MESSAGES_BURST = 3;
const MAX_ATTRIBUTES = 100;
let server;
let owner;

before(async () => {
  server = await startServer({
    vars: {
      // Bursts small enough to reach, refills too slow to matter within a test.
      RATE_PAGE_VIEWS: `${PAGE_VIEWS_BURST}/0.01`,
      RATE_VISITOR_MESSAGES: `${VISITOR_MESSAGES_BURST}/0.01`,
    },
  });
  owner = await agentLogin(server);
});

after(async () => {
  await server?.stop();
});

const pageView = (visitor, i) => http(server.url, '/api/v1/visitor/context', {
  method: 'POST', token: visitor.token, body: { page: { url: `https://shop.example/p${i}`, title: `Page ${i}` } },
});

async function storedPageViews(visitor) {
  const { results: [row] } = await server.d1('SELECT COUNT(*) AS n FROM page_views WHERE visitor_id = ?1', [visitor.visitorId]);
  return row.n;
}

test(`page views: a visitor reports ${PAGE_VIEWS_BURST} pages at once (RATE_PAGE_VIEWS), the next is 429 rate_limited with retry_after_ms and Retry-After and stores nothing; other visitors are not held back`, async () => {
  const visitor = await visitorSession(server);
  for (let i = 0; i < PAGE_VIEWS_BURST; i += 1) {
    const res = await pageView(visitor, i);
    assert.equal(res.status, 204, JSON.stringify(res.body));
  }
  const refused = await pageView(visitor, PAGE_VIEWS_BURST);
  assert.equal(refused.status, 429);
  assert.equal(refused.body.code, 'rate_limited');
  assert.ok(refused.body.retry_after_ms > 0, JSON.stringify(refused.body));
  assert.ok(Number(refused.headers.get('retry-after')) >= 1);
  assert.ok(refused.body.message);
  assert.equal(await storedPageViews(visitor), PAGE_VIEWS_BURST);

  const other = await visitorSession(server);
  assert.equal((await pageView(other, 0)).status, 204);
  assert.equal(await storedPageViews(other), 1);
});

const setAttributes = (visitor, attributes) => http(server.url, '/api/v1/visitor/attributes', {
  method: 'POST', token: visitor.token, body: { attributes },
});

async function storedAttributes(visitor) {
  const { results: [row] } = await server.d1('SELECT attributes FROM visitors WHERE id = ?1', [visitor.visitorId]);
  return JSON.parse(row.attributes);
}

function keys(from, count, value = 1) {
  return Object.fromEntries(Array.from({ length: count }, (_, i) => [`k${from + i}`, value]));
}

test(`attributes: at most ${MAX_ATTRIBUTES} keys are stored; a merge past it is 409 too_many_attributes and changes nothing; changing a stored key or removing one with null still works`, async () => {
  const visitor = await visitorSession(server);
  for (let from = 0; from < MAX_ATTRIBUTES; from += 25) {
    const res = await setAttributes(visitor, keys(from, 25));
    assert.equal(res.status, 204, JSON.stringify(res.body));
  }
  assert.equal(Object.keys(await storedAttributes(visitor)).length, MAX_ATTRIBUTES);

  const refused = await setAttributes(visitor, { k0: 2, extra: 1 });
  assert.equal(refused.status, 409);
  assert.equal(refused.body.code, 'too_many_attributes');
  assert.ok(refused.body.message);
  const kept = await storedAttributes(visitor);
  assert.equal(Object.keys(kept).length, MAX_ATTRIBUTES);
  assert.equal(kept.k0, 1);
  assert.equal(kept.extra, undefined);

  // Known keys change; a null makes room for a new one in the same request.
  assert.equal((await setAttributes(visitor, { k0: 'gold' })).status, 204);
  assert.equal((await setAttributes(visitor, { k1: null, extra: true })).status, 204);
  const now = await storedAttributes(visitor);
  assert.equal(Object.keys(now).length, MAX_ATTRIBUTES);
  assert.equal(now.k0, 'gold');
  assert.equal(now.k1, undefined);
  assert.equal(now.extra, true);
});

test('attributes: the stored text is bounded too (16 KiB): long values fill it before the key count does', async () => {
  const visitor = await visitorSession(server);
  const long = 'x'.repeat(500);
  assert.equal((await setAttributes(visitor, keys(0, 25, long))).status, 204);
  const refused = await setAttributes(visitor, keys(25, 25, long));
  assert.equal(refused.status, 409);
  assert.equal(refused.body.code, 'too_many_attributes');
  assert.equal(Object.keys(await storedAttributes(visitor)).length, 25);
  // Short values still fit.
  assert.equal((await setAttributes(visitor, keys(25, 25, 1))).status, 204);
  assert.equal(Object.keys(await storedAttributes(visitor)).length, 50);
});

const rate = (conv, body) => http(server.url, `/api/v1/conversations/${conv.conversation}/rating`, {
  method: 'POST', token: conv.token, body,
});
const close = (conv) => http(server.url, `/api/v1/conversations/${conv.conversation}/close`, { method: 'POST', token: owner.token });
const say = (conv, text) => http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
  method: 'POST', token: conv.token, body: { client_msg_id: msgId('v'), text },
});

async function ratings(conv) {
  return (await fullHistory(server, conv.conversation, owner.token)).filter((e) => e.kind === 'rated');
}

test('ratings: refused while the conversation is open (409 conversation_open); one per closing, asked again the stored one answers; a new closing takes a new one', async () => {
  const conv = await newConversation(server);
  const early = await rate(conv, { score: 5 });
  assert.equal(early.status, 409, JSON.stringify(early.body));
  assert.equal(early.body.code, 'conversation_open');
  assert.ok(early.body.message);

  assert.ok((await close(conv)).status < 300);
  const first = await rate(conv, { score: 4, comment: 'quick' });
  assert.equal(first.status, 200, JSON.stringify(first.body));
  assert.equal(first.body.kind, 'rated');
  assert.deepEqual(first.body.body, { score: 4, comment: 'quick' });
  for (const score of [1, 4]) {
    const again = await rate(conv, { score, comment: 'x'.repeat(1000) });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.seq, first.body.seq);
    assert.deepEqual(again.body.body, { score: 4, comment: 'quick' });
  }
  assert.equal((await ratings(conv)).length, 1);

  // The visitor writes again (the conversation reopens); closed again, it may be rated again.
  assert.equal((await say(conv, 'one more thing')).status, 200);
  assert.ok((await close(conv)).status < 300);
  const second = await rate(conv, { score: 5 });
  assert.equal(second.status, 200, JSON.stringify(second.body));
  assert.ok(second.body.seq > first.body.seq);
  assert.deepEqual((await ratings(conv)).map((e) => e.body.score), [4, 5]);
});

test(`ratings take a token from the visitor's message bucket: after ${VISITOR_MESSAGES_BURST} messages the rating is 429 rate_limited with retry_after_ms and stores nothing`, async () => {
  const conv = await newConversation(server);
  for (let i = 0; i < VISITOR_MESSAGES_BURST; i += 1) {
    const res = await say(conv, `question ${i}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }
  assert.ok((await close(conv)).status < 300);
  const refused = await rate(conv, { score: 3, comment: 'slow' });
  assert.equal(refused.status, 429, JSON.stringify(refused.body));
  assert.equal(refused.body.code, 'rate_limited');
  assert.ok(refused.body.retry_after_ms > 0);
  assert.ok(Number(refused.headers.get('retry-after')) >= 1);
  assert.equal((await ratings(conv)).length, 0);
});
