// Search over messages: full-text (trigram, so Chinese works), short words, filters, team
// isolation and masking of personal data for agents without the permission (in search and in
// the conversation itself).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './support/server.mjs';
import { agentLogin, createAgent, fullHistory, http, msgId, newConversation, sleep, visitorSession } from './support/client.mjs';

let server;
let owner;
let a;
let b;

async function say(conv, token, text) {
  const res = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token, body: { client_msg_id: msgId('s'), text },
  });
  assert.equal(res.status, 200);
}

async function search(token, params) {
  return http(server.url, `/api/v1/search?${new URLSearchParams(params)}`, { token });
}

before(async () => {
  server = await startServer();
  owner = await agentLogin(server);
  a = await newConversation(server);
  b = await newConversation(server);
  await say(a, a.token, 'My parcel never arrived, order 55123');
  await say(a, a.token, '请问退货流程是什么？我的订单号是 77001');
  await say(b, b.token, 'Can I change the delivery address? mail me at zoe@example.org');
  await say(b, owner.token, 'Sure — what is the new address?');
  await http(server.url, `/api/v1/conversations/${b.conversation}/tags`, { method: 'PUT', token: owner.token, body: { tags: ['address'] } });
  for (let i = 0; i < 100; i += 1) {
    const { results: [row] } = await server.d1("SELECT COUNT(*) AS n FROM messages WHERE kind = 'message'");
    if (row.n >= 4) break;
    await sleep(100);
  }
});

after(async () => {
  await server?.stop();
});

test('finds words and fragments, in English and Chinese', async () => {
  const parcel = await search(owner.token, { q: 'parcel' });
  assert.equal(parcel.status, 200);
  assert.deepEqual(parcel.body.results.map((r) => [r.conversation_id, r.seq]), [[a.conversation, 2]]);
  const chinese = await search(owner.token, { q: '退货流程' });
  assert.deepEqual(chinese.body.results.map((r) => r.conversation_id), [a.conversation]);
  // Two-character words are shorter than a trigram: matched by a scan.
  const short = await search(owner.token, { q: '退货' });
  assert.deepEqual(short.body.results.map((r) => r.conversation_id), [a.conversation]);
  const both = await search(owner.token, { q: 'address new' });
  assert.deepEqual(both.body.results.map((r) => r.seq), [3]);
  assert.deepEqual((await search(owner.token, { q: 'nothing-like-this' })).body.results, []);
});

test('filters by tag, site and date', async () => {
  const tagged = await search(owner.token, { q: 'address', tag: 'address' });
  assert.equal(tagged.body.results.length, 2);
  assert.ok(tagged.body.results.every((r) => r.conversation_id === b.conversation));
  const untaggedHit = await search(owner.token, { q: 'parcel', tag: 'address' });
  assert.deepEqual(untaggedHit.body.results, []);
  const old = await search(owner.token, { q: 'parcel', to: '2001-01-01' });
  assert.deepEqual(old.body.results, []);
  const { results: [site] } = await server.d1('SELECT id FROM sites LIMIT 1');
  assert.equal((await search(owner.token, { q: 'parcel', site: site.id })).body.results.length, 1);
});

test("a visitor's form answers reach agents without the permission masked (the same rule covers rating comments and translations: core's unit test)", async () => {
  const plain = await createAgent(server, { name: 'Plain Form', email: 'plain-form@parley.local' });
  const visitor = await visitorSession(server);
  const created = await http(server.url, '/api/v1/conversations', {
    method: 'POST', token: visitor.token,
    body: { form: 'prechat', fields: { name: 'Zoe', email: 'zoe.form@example.org' } },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const first = async (token) => (await fullHistory(server, created.body.conversation, token)).find((e) => e.kind === 'created');
  const masked = await first(plain.token);
  assert.equal(masked.masked, true);
  assert.deepEqual(masked.body.fields, { name: 'Zoe', email: 'z***@example.org' });
  const full = await first(owner.token);
  assert.deepEqual(full.body.fields, { name: 'Zoe', email: 'zoe.form@example.org' });
  // The visitor sees their own answers.
  assert.equal((await first(visitor.token)).body.fields.email, 'zoe.form@example.org');
});

test('agents without the permission see personal data masked; visitors cannot search', async () => {
  const plain = await createAgent(server, { name: 'Plain', email: 'plain-search@parley.local' });
  const masked = await search(plain.token, { q: 'delivery' });
  assert.match(masked.body.results[0].text, /z\*\*\*@example\.org/);
  const full = await search(owner.token, { q: 'delivery' });
  assert.match(full.body.results[0].text, /zoe@example\.org/);
  // Searching for the hidden value itself finds nothing without the permission: the hit would
  // give it away.
  assert.deepEqual((await search(plain.token, { q: 'zoe@example.org' })).body.results, []);
  assert.deepEqual((await search(plain.token, { q: 'zoe' })).body.results, []);
  assert.equal((await search(owner.token, { q: 'zoe@example.org' })).body.results.length, 1);
  const visitor = await search(a.token, { q: 'parcel' });
  assert.equal(visitor.status, 403);
  const empty = await search(owner.token, { q: '   ' });
  assert.equal(empty.status, 400);
  assert.equal(empty.body.code, 'invalid_request');
});

test('deleting a message deletes its search row without reading the whole index', async () => {
  // Many indexed messages of another conversation; the conversation deleted has one.
  const rowsReadDeleting = async (filler) => {
    await server.d1(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
       INSERT INTO messages (conversation_id, seq, kind, author_id, author_role, body, created_at)
       SELECT 'c_searchfiller000000000000', i, 'message', 'v_filler', 'visitor', json_object('text', 'filler text ' || i), 0 FROM n`,
      [filler],
    );
    await server.d1(
      `INSERT INTO messages (conversation_id, seq, kind, author_id, author_role, body, created_at)
       VALUES ('c_searchdeleted00000000000', 1, 'message', 'v_gone', 'visitor', '{"text":"soon forgotten"}', 0)`,
    );
    const { meta } = await server.d1("DELETE FROM messages WHERE conversation_id = 'c_searchdeleted00000000000'");
    await server.d1("DELETE FROM messages WHERE conversation_id = 'c_searchfiller000000000000'");
    return meta.rows_read;
  };
  const small = await rowsReadDeleting(10);
  const large = await rowsReadDeleting(2_000);
  assert.ok(large < small + 50, `rows read deleting one message: ${small} beside 10 others, ${large} beside 2,000`);
  // The index holds nothing of what was deleted, and still finds what is left.
  const { results: [{ n }] } = await server.d1("SELECT COUNT(*) AS n FROM messages_fts WHERE messages_fts MATCH '\"forgotten\" OR \"filler\"'");
  assert.equal(n, 0);
  assert.deepEqual((await search(owner.token, { q: 'parcel' })).body.results.map((r) => r.conversation_id), [a.conversation]);
});
