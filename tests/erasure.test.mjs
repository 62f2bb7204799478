// Data protection: erasing a visitor removes their conversations, messages, files and page
// trail everywhere; the retention purge erases what is older than a site keeps. The attachments
// bucket is a stand-in that lists two keys a page and can refuse a listing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { startServer } from './support/server.mjs';
import { r2Keys } from './support/stored.mjs';
import { HELD_PREFIX, REFUSE_LISTING, SLOW_DELETES } from './support/r2-standin.mjs';
import { agentLogin, createAgent, fullHistory, http, msgId, newConversation, siteId, sleep, visitorSession } from './support/client.mjs';

let server;
let owner;

async function mirrored(conversation, n) {
  for (let i = 0; i < 100; i += 1) {
    const { results: [row] } = await server.d1('SELECT COUNT(*) AS n FROM messages WHERE conversation_id = ?1', [conversation]);
    if (row.n >= n) return;
    await sleep(100);
  }
  throw new Error('mirror did not catch up');
}

before(async () => {
  server = await startServer({ standIns: { ATTACHMENTS: fileURLToPath(new URL('./support/r2-standin.mjs', import.meta.url)) } });
  owner = await agentLogin(server);
});

after(async () => {
  await server?.stop();
});

test('erasing a visitor removes conversations, messages, files and page views, and is audited', async () => {
  const v = await newConversation(server);
  await http(server.url, `/api/v1/conversations/${v.conversation}/messages`, {
    method: 'POST', token: v.token, body: { client_msg_id: msgId('e'), text: 'my phone is +49 30 1234567' },
  });
  await http(server.url, '/api/v1/visitor/context', {
    method: 'POST', token: v.token, body: { page: { url: 'https://shop.example/cart', title: 'Cart' } },
  });
  const up = await fetch(`${server.url}/api/v1/conversations/${v.conversation}/files?name=note.txt`, {
    method: 'POST', headers: { authorization: `Bearer ${v.token}`, 'content-type': 'text/plain' }, body: 'private\n',
  });
  const file = (await up.json()).file;
  await http(server.url, `/api/v1/conversations/${v.conversation}/messages`, {
    method: 'POST', token: v.token, body: { client_msg_id: msgId('f'), file: file.id },
  });
  await mirrored(v.conversation, 3);
  await server.d1(
    "INSERT INTO routing_events (site_id, conversation_id, agent_id, kind, reason, created_at) SELECT site_id, id, NULL, 'missed', 'no_agent', ?2 FROM conversations WHERE id = ?1",
    [v.conversation, Date.now()],
  );

  const plain = await createAgent(server, { name: 'Plain', email: 'plain-erase@parley.local' });
  assert.equal((await http(server.url, `/api/v1/visitors/${v.visitorId}`, { method: 'DELETE', token: plain.token })).status, 403);

  const erased = await http(server.url, `/api/v1/visitors/${v.visitorId}`, { method: 'DELETE', token: owner.token });
  assert.equal(erased.status, 200, JSON.stringify(erased.body));
  assert.equal(erased.body.erased_conversations, 1);
  // Gone from the conversation's object, its files, and D1.
  const history = await http(server.url, `/api/v1/conversations/${v.conversation}/history`, { token: owner.token });
  assert.equal(history.status, 404);
  const download = await fetch(`${server.url}/api/v1/conversations/${v.conversation}/files/${file.id}`, { headers: { authorization: `Bearer ${owner.token}` } });
  assert.equal(download.status, 404);
  for (const [sql, param] of [
    ['SELECT COUNT(*) AS n FROM messages WHERE conversation_id = ?1', v.conversation],
    ['SELECT COUNT(*) AS n FROM conversations WHERE id = ?1', v.conversation],
    ['SELECT COUNT(*) AS n FROM page_views WHERE visitor_id = ?1', v.visitorId],
    ['SELECT COUNT(*) AS n FROM visitors WHERE id = ?1', v.visitorId],
    ['SELECT COUNT(*) AS n FROM routing_events WHERE conversation_id = ?1', v.conversation],
  ]) {
    const { results: [row] } = await server.d1(sql, [param]);
    assert.equal(row.n, 0, sql);
  }
  const { results } = await server.d1("SELECT target FROM audit_log WHERE action = 'visitor_erased'");
  assert.deepEqual(results, [{ target: v.visitorId }]);
  // A second erase finds nothing to erase.
  assert.equal((await http(server.url, `/api/v1/visitors/${v.visitorId}`, { method: 'DELETE', token: owner.token })).status, 404);
});

test('an erasure straight after messages leaves none of them in D1, not even those waiting for a batch', async () => {
  const v = await newConversation(server);
  await mirrored(v.conversation, 1);
  // Messages whose rows are still on their way to the site's next D1 batch when the erasure comes.
  await Promise.all(Array.from({ length: 5 }, (_, i) => http(server.url, `/api/v1/conversations/${v.conversation}/messages`, {
    method: 'POST', token: v.token, body: { client_msg_id: msgId(`late${i}`), text: `late ${i}` },
  })));
  const erased = await http(server.url, `/api/v1/visitors/${v.visitorId}`, { method: 'DELETE', token: owner.token });
  assert.equal(erased.status, 200, JSON.stringify(erased.body));
  // Past the batch window and the conversation's own one-second copy.
  await sleep(2_000);
  for (const [sql, param] of [
    ['SELECT COUNT(*) AS n FROM messages WHERE conversation_id = ?1', v.conversation],
    ['SELECT COUNT(*) AS n FROM conversations WHERE id = ?1', v.conversation],
  ]) {
    const { results: [row] } = await server.d1(sql, [param]);
    assert.equal(row.n, 0, sql);
  }
});

test('the retention purge erases conversations older than the site keeps, and only those', async () => {
  const site = await siteId(server, owner.token);
  const old = await newConversation(server);
  const fresh = await newConversation(server);
  await mirrored(old.conversation, 1);
  await mirrored(fresh.conversation, 1);
  await http(server.url, `/api/v1/sites/${site}`, { method: 'PATCH', token: owner.token, body: { retention_days: 30 } });
  const fortyDaysAgo = Date.now() - 40 * 86_400_000;
  await server.d1('UPDATE conversations SET updated_at = ?1, created_at = ?1 WHERE id = ?2', [fortyDaysAgo, old.conversation]);
  const purge = await http(server.url, '/api/v1/maintenance/purge', { method: 'POST', token: owner.token });
  assert.equal(purge.status, 200, JSON.stringify(purge.body));
  assert.equal(purge.body.erased_conversations, 1);
  assert.equal((await http(server.url, `/api/v1/conversations/${old.conversation}/history`, { token: owner.token })).status, 404);
  assert.equal((await fullHistory(server, fresh.conversation, owner.token)).length, 1);
  await http(server.url, `/api/v1/sites/${site}`, { method: 'PATCH', token: owner.token, body: { retention_days: null } });
});

const DAY = 86_400_000;

async function upload(conv, name, body) {
  const res = await fetch(`${server.url}/api/v1/conversations/${conv.conversation}/files?name=${name}`, {
    method: 'POST', headers: { authorization: `Bearer ${conv.token}`, 'content-type': 'text/plain' }, body,
  });
  assert.equal(res.status, 201, await res.text());
}

test('an erasure deletes every file of the conversation, however many pages they take to list', async () => {
  const v = await newConversation(server);
  for (let i = 0; i < 5; i += 1) await upload(v, `note${i}.txt`, `private ${i}\n`);
  const prefix = `c/${v.conversation}/`;
  assert.equal((await r2Keys(server, prefix)).length, 5);
  const erased = await http(server.url, `/api/v1/visitors/${v.visitorId}`, { method: 'DELETE', token: owner.token });
  assert.equal(erased.status, 200, JSON.stringify(erased.body));
  assert.deepEqual(await r2Keys(server, prefix), []);
});

test('an erasure whose files cannot be listed fails, keeps the conversation, and the retry erases all of it', async () => {
  const v = await newConversation(server);
  await upload(v, 'a.txt', 'private a\n');
  await upload(v, 'b.txt', `${REFUSE_LISTING}private b\n`);
  await upload(v, 'c.txt', 'private c\n');
  await mirrored(v.conversation, 1);
  const prefix = `c/${v.conversation}/`;
  const failed = await http(server.url, `/api/v1/visitors/${v.visitorId}`, { method: 'DELETE', token: owner.token });
  assert.equal(failed.status, 503, JSON.stringify(failed.body));
  // Nothing is half gone: the conversation, its files and its D1 rows are all there.
  assert.equal((await http(server.url, `/api/v1/conversations/${v.conversation}/history`, { token: owner.token })).status, 200);
  assert.equal((await r2Keys(server, prefix)).length, 3);
  const { results: [row] } = await server.d1('SELECT COUNT(*) AS n FROM conversations WHERE id = ?1', [v.conversation]);
  assert.equal(row.n, 1);
  const retried = await http(server.url, `/api/v1/visitors/${v.visitorId}`, { method: 'DELETE', token: owner.token });
  assert.equal(retried.status, 200, JSON.stringify(retried.body));
  assert.equal((await http(server.url, `/api/v1/conversations/${v.conversation}/history`, { token: owner.token })).status, 404);
  assert.deepEqual(await r2Keys(server, prefix), []);
});

test('a file uploaded while its conversation is being erased does not outlive the erasure', async () => {
  const v = await newConversation(server);
  await upload(v, 'a.txt', `${SLOW_DELETES}private a\n`);
  await mirrored(v.conversation, 1);
  const prefix = `c/${v.conversation}/`;
  const erasing = http(server.url, `/api/v1/visitors/${v.visitorId}`, { method: 'DELETE', token: owner.token });
  // Once the erasure has listed the files and waits on the bucket's deletion of a.txt, an
  // upload lands after the listing.
  for (let i = 0; (await r2Keys(server, `${HELD_PREFIX}${prefix}`)).length === 0; i += 1) {
    assert.ok(i < 200, 'the erasure never reached the deletion of the files');
    await sleep(25);
  }
  const late = await fetch(`${server.url}/api/v1/conversations/${v.conversation}/files?name=late.txt`, {
    method: 'POST', headers: { authorization: `Bearer ${owner.token}`, 'content-type': 'text/plain' }, body: 'private late\n',
  });
  const erased = await erasing;
  assert.equal(erased.status, 200, JSON.stringify(erased.body));
  assert.notEqual(late.status, 201, 'the conversation took a file while it was being erased');
  assert.equal(late.status, 404, await late.text());
  assert.deepEqual(await r2Keys(server, prefix), []);
});

/** Waits until the visitor's D1 record exists (it is written after the session is answered). */
async function recorded(visitor) {
  for (let i = 0; i < 100; i += 1) {
    const { results: [row] } = await server.d1('SELECT COUNT(*) AS n FROM visitors WHERE id = ?1', [visitor]);
    if (row.n === 1) return;
    await sleep(100);
  }
  throw new Error('visitor not recorded');
}

test('the retention purge takes up to 200 conversations of every site per run: a backlog on one site holds up no other', async (t) => {
  const demoSite = await siteId(server, owner.token);
  const backlogSite = 's_backlog0000000000000000000';
  t.after(async () => {
    await http(server.url, `/api/v1/sites/${demoSite}`, { method: 'PATCH', token: owner.token, body: { retention_days: null } });
    await server.d1('UPDATE sites SET retention_days = NULL WHERE id = ?1', [backlogSite]);
  });
  const { results: [{ team_id: team }] } = await server.d1('SELECT team_id FROM sites WHERE id = ?1', [demoSite]);
  // Site A has a backlog of 201 expired conversations (rows only: their objects answer 404, as
  // erased ones do), older than anything of the demo site.
  await server.d1(
    `INSERT INTO sites (id, team_id, site_key, name, allowed_origins, created_at, retention_days)
     VALUES (?1, ?2, 'pk_backlog', 'Backlog shop', '[]', ?3, 30)`,
    [backlogSite, team, Date.now()],
  );
  const hundredDaysAgo = Date.now() - 100 * DAY;
  await server.d1(
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 201)
     INSERT INTO conversations (id, site_id, visitor_id, status, created_at, updated_at)
     SELECT printf('c_backlog%019d', i), ?1, printf('v_backlog%019d', i), 'closed', ?2, ?2 FROM n`,
    [backlogSite, hundredDaysAgo],
  );
  // The demo site has one expired conversation.
  const old = await newConversation(server);
  await mirrored(old.conversation, 1);
  await http(server.url, `/api/v1/sites/${demoSite}`, { method: 'PATCH', token: owner.token, body: { retention_days: 30 } });
  await server.d1('UPDATE conversations SET updated_at = ?1, created_at = ?1 WHERE id = ?2', [Date.now() - 40 * DAY, old.conversation]);

  const purge = await http(server.url, '/api/v1/maintenance/purge', { method: 'POST', token: owner.token });
  assert.equal(purge.status, 200, JSON.stringify(purge.body));
  assert.equal((await http(server.url, `/api/v1/conversations/${old.conversation}/history`, { token: owner.token })).status, 404);
  const count = async (sql, params) => (await server.d1(sql, params)).results[0].n;
  assert.equal(await count('SELECT COUNT(*) AS n FROM conversations WHERE id = ?1', [old.conversation]), 0, 'the demo site got its turn');
  assert.equal(await count('SELECT COUNT(*) AS n FROM conversations WHERE site_id = ?1', [backlogSite]), 1, '200 of the backlog, the rest next run');
  assert.equal(purge.body.erased_conversations, 201);
  const again = await http(server.url, '/api/v1/maintenance/purge', { method: 'POST', token: owner.token });
  assert.equal(again.body.erased_conversations, 1);
});

test('the retention purge removes visitors nothing is left of and not seen for the retention period, and routing history of erased conversations', async (t) => {
  const site = await siteId(server, owner.token);
  t.after(() => http(server.url, `/api/v1/sites/${site}`, { method: 'PATCH', token: owner.token, body: { retention_days: null } }));
  const longAgo = Date.now() - 40 * DAY;
  // A visitor whose only conversation expires; one who never started a conversation; one seen
  // long ago whose conversation is recent; one seen recently.
  const expired = await newConversation(server);
  const silent = await visitorSession(server);
  const talking = await newConversation(server);
  const recent = await visitorSession(server);
  await mirrored(expired.conversation, 1);
  await mirrored(talking.conversation, 1);
  for (const v of [expired, silent, talking, recent]) await recorded(v.visitorId);
  await server.d1('UPDATE conversations SET updated_at = ?1, created_at = ?1 WHERE id = ?2', [longAgo, expired.conversation]);
  await server.d1('UPDATE visitors SET last_seen_at = ?1, created_at = ?1 WHERE id IN (?2, ?3, ?4)', [longAgo, expired.visitorId, silent.visitorId, talking.visitorId]);
  // Routing history: of the expiring conversation, and of one erased before it was removed with it.
  const orphan = 'c_erasedlongago000000000000';
  for (const conversation of [expired.conversation, orphan, talking.conversation]) {
    await server.d1(
      "INSERT INTO routing_events (site_id, conversation_id, agent_id, kind, reason, created_at) VALUES (?1, ?2, NULL, 'missed', 'no_agent', ?3)",
      [site, conversation, longAgo],
    );
  }
  await http(server.url, `/api/v1/sites/${site}`, { method: 'PATCH', token: owner.token, body: { retention_days: 30 } });
  const purge = await http(server.url, '/api/v1/maintenance/purge', { method: 'POST', token: owner.token });
  assert.equal(purge.status, 200, JSON.stringify(purge.body));
  const { results: [{ n: left }] } = await server.d1('SELECT COUNT(*) AS n FROM conversations WHERE id = ?1', [expired.conversation]);
  assert.equal(left, 0);
  const { results: visitors } = await server.d1(
    'SELECT id FROM visitors WHERE id IN (?1, ?2, ?3, ?4) ORDER BY id',
    [expired.visitorId, silent.visitorId, talking.visitorId, recent.visitorId],
  );
  assert.deepEqual(visitors.map((v) => v.id), [talking.visitorId, recent.visitorId].sort());
  const { results: routing } = await server.d1(
    'SELECT conversation_id FROM routing_events WHERE conversation_id IN (?1, ?2, ?3)',
    [expired.conversation, orphan, talking.conversation],
  );
  assert.deepEqual([...new Set(routing.map((r) => r.conversation_id))], [talking.conversation]);
});

test('an erased visitor\'s token does not bring them back: it renews as someone new, and starts nothing as the erased one', async () => {
  const v = await newConversation(server);
  await http(server.url, '/api/v1/visitor/identify', { method: 'POST', token: v.token, body: { id: 'shop-user-7', name: 'Ann Smith', email: 'ann@example.org' } });
  const erased = await http(server.url, `/api/v1/visitors/${v.visitorId}`, { method: 'DELETE', token: owner.token });
  assert.equal(erased.status, 200, JSON.stringify(erased.body));

  // The widget still holds the token (valid for weeks) and comes back with it.
  const created = await http(server.url, '/api/v1/conversations', { method: 'POST', token: v.token });
  assert.equal(created.status, 401, JSON.stringify(created.body));
  assert.equal(created.body.code, 'token_invalid');
  for (const [path, body] of [
    ['/api/v1/visitor/identify', { id: 'shop-user-7', name: 'Ann Smith', email: 'ann@example.org' }],
    ['/api/v1/visitor/context', { page: { url: 'https://shop.example/again', title: 'Again' } }],
    ['/api/v1/visitor/attributes', { attributes: { plan: 'gold' } }],
  ]) {
    const res = await http(server.url, path, { method: 'POST', token: v.token, body });
    assert.equal(res.status, 401, `${path}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.code, 'token_invalid');
  }
  const renewed = await http(server.url, '/api/v1/visitor/session', { method: 'POST', body: { site_key: server.siteKey, token: v.token } });
  assert.equal(renewed.status, 200, JSON.stringify(renewed.body));
  assert.notEqual(renewed.body.visitor_id, v.visitorId, 'a new visitor id');
  assert.ok([200, 201].includes((await http(server.url, '/api/v1/conversations', { method: 'POST', token: renewed.body.token })).status));
  await sleep(500);
  const { results: [row] } = await server.d1('SELECT COUNT(*) AS n FROM visitors WHERE id = ?1', [v.visitorId]);
  assert.equal(row.n, 0, 'the erased visitor\'s record is not made again');
});

test('a conversation started while its visitor is being erased is erased too, whenever the erasure\'s mark lands', async (t) => {
  const v = await visitorSession(server);
  // The erasure's mark lands between the creation's first check and its listing in D1: a
  // trigger writes it as the conversation's row goes in, and notes which conversation it was.
  await server.d1('CREATE TABLE race_seen (id TEXT)');
  await server.d1(
    `CREATE TRIGGER erase_race BEFORE INSERT ON conversations WHEN NEW.visitor_id = '${v.visitorId}'
     BEGIN
       INSERT INTO race_seen (id) VALUES (NEW.id);
       INSERT INTO erased_visitors (visitor_id, erased_at) VALUES (NEW.visitor_id, ${Date.now()});
     END`,
  );
  t.after(async () => {
    await server.d1('DROP TRIGGER IF EXISTS erase_race');
    await server.d1('DROP TABLE IF EXISTS race_seen');
  });

  const created = await http(server.url, '/api/v1/conversations', {
    method: 'POST', token: v.token, body: { form: 'offline', fields: { email: 'ann@example.org' }, message: 'call me on +49 30 1234567' },
  });
  assert.equal(created.status, 401, JSON.stringify(created.body));
  assert.equal(created.body.code, 'token_invalid');
  const { results: seen } = await server.d1('SELECT id FROM race_seen');
  assert.equal(seen.length, 1, 'the conversation was started');
  const [{ id: conversation }] = seen;
  const history = await http(server.url, `/api/v1/conversations/${conversation}/history`, { token: owner.token });
  assert.equal(history.status, 404, 'its object holds nothing');
  await sleep(300);
  for (const [sql, param] of [
    ['SELECT COUNT(*) AS n FROM conversations WHERE visitor_id = ?1', v.visitorId],
    ['SELECT COUNT(*) AS n FROM messages WHERE conversation_id = ?1', conversation],
  ]) {
    const { results: [row] } = await server.d1(sql, [param]);
    assert.equal(row.n, 0, sql);
  }
});

test('the purge erases what is left of an erased visitor: a conversation that reached D1 after their erasure', async () => {
  const v = await newConversation(server);
  await http(server.url, `/api/v1/conversations/${v.conversation}/messages`, {
    method: 'POST', token: v.token, body: { client_msg_id: msgId('late'), text: 'still here' },
  });
  await mirrored(v.conversation, 1);
  // The visitor is remembered as erased, but this conversation escaped the erasure's listing.
  await server.d1('INSERT INTO erased_visitors (visitor_id, erased_at) VALUES (?1, ?2)', [v.visitorId, Date.now()]);
  const kept = await newConversation(server);

  const purged = await http(server.url, '/api/v1/maintenance/purge', { method: 'POST', token: owner.token });
  assert.equal(purged.status, 200, JSON.stringify(purged.body));
  const history = await http(server.url, `/api/v1/conversations/${v.conversation}/history`, { token: owner.token });
  assert.equal(history.status, 404);
  for (const [sql, param] of [
    ['SELECT COUNT(*) AS n FROM conversations WHERE id = ?1', v.conversation],
    ['SELECT COUNT(*) AS n FROM messages WHERE conversation_id = ?1', v.conversation],
  ]) {
    const { results: [row] } = await server.d1(sql, [param]);
    assert.equal(row.n, 0, sql);
  }
  // Another visitor's conversation, within its site's retention, stays.
  const { results: [row] } = await server.d1('SELECT COUNT(*) AS n FROM conversations WHERE id = ?1', [kept.conversation]);
  assert.equal(row.n, 1);
});

test('the retention purge removes page views older than the site keeps, each site\'s oldest first, at most 5,000 per run', async (t) => {
  const site = await siteId(server, owner.token);
  await http(server.url, `/api/v1/sites/${site}`, { method: 'PATCH', token: owner.token, body: { retention_days: 30 } });
  t.after(() => http(server.url, `/api/v1/sites/${site}`, { method: 'PATCH', token: owner.token, body: { retention_days: null } }));
  const v = await visitorSession(server);
  const old = Date.now() - 40 * DAY;
  // 5,003 expired page views, a minute apart, and two recent ones.
  await server.d1(
    `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 5002)
     INSERT INTO page_views (visitor_id, site_id, url, created_at) SELECT ?1, ?2, 'https://shop.example/' || i, ?3 + i * 60000 FROM n`,
    [v.visitorId, site, old],
  );
  for (const url of ['https://shop.example/now', 'https://shop.example/today']) {
    await server.d1('INSERT INTO page_views (visitor_id, site_id, url, created_at) VALUES (?1, ?2, ?3, ?4)', [v.visitorId, site, url, Date.now()]);
  }
  const left = async () => (await server.d1('SELECT url FROM page_views WHERE visitor_id = ?1 ORDER BY created_at', [v.visitorId])).results.map((r) => r.url);

  assert.equal((await http(server.url, '/api/v1/maintenance/purge', { method: 'POST', token: owner.token })).status, 200);
  assert.deepEqual(await left(), ['https://shop.example/5000', 'https://shop.example/5001', 'https://shop.example/5002', 'https://shop.example/now', 'https://shop.example/today']);
  assert.equal((await http(server.url, '/api/v1/maintenance/purge', { method: 'POST', token: owner.token })).status, 200);
  assert.deepEqual(await left(), ['https://shop.example/now', 'https://shop.example/today']);
});
