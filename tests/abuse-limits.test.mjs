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

