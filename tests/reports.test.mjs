// Reports: figures compared with numbers computed independently here from the seeded
// conversations' own logs; time-zone days; CSV download; admins only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './support/server.mjs';
import { agentLogin, createAgent, fullHistory, http, msgId, newConversation, sleep } from './support/client.mjs';

const GENEROUS = { RATE_VISITOR_MESSAGES: '2000/200', RATE_AGENT_MESSAGES: '2000/200' };
let server;
let owner;
const seeded = [];

function nearestRank(values, q) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length, Math.max(1, Math.ceil(q * s.length))) - 1];
}

before(async () => {
  server = await startServer({ vars: GENEROUS });
  owner = await agentLogin(server);
  const say = (conv, token, text) => http(server.url, `/api/v1/conversations/${conv}/messages`, {
    method: 'POST', token, body: { client_msg_id: msgId('r'), text },
  });
  const ratings = [5, 4, 2, null];
  for (let i = 0; i < 4; i += 1) {
    const v = await newConversation(server);
    await say(v.conversation, v.token, `question ${i}`);
    await sleep(30 * (i + 1)); // different first-response times
    await http(server.url, `/api/v1/conversations/${v.conversation}/assign`, { method: 'POST', token: owner.token });
    await say(v.conversation, owner.token, `answer ${i}`);
    if (i < 3) await http(server.url, `/api/v1/conversations/${v.conversation}/close`, { method: 'POST', token: owner.token });
    if (ratings[i]) {
      const rated = await http(server.url, `/api/v1/conversations/${v.conversation}/rating`, {
        method: 'POST', token: v.token, body: { score: ratings[i], comment: 'thanks' },
      });
      assert.equal(rated.status, 200, JSON.stringify(rated.body));
    }
    seeded.push({ ...v, rating: ratings[i] });
  }
  // The mirror has everything once every conversation's last seq is in D1.
  for (const s of seeded) {
    const log = await fullHistory(server, s.conversation, owner.token);
    s.log = log;
    for (let i = 0; i < 100; i += 1) {
      const { results: [row] } = await server.d1('SELECT COUNT(*) AS n FROM messages WHERE conversation_id = ?1', [s.conversation]);
      if (row.n >= log.length) break;
      await sleep(100);
    }
  }
});

after(async () => {
  await server?.stop();
});

test('figures equal those computed from the conversations themselves', async () => {
  const res = await http(server.url, '/api/v1/reports?tz=Asia/Shanghai', { token: owner.token });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const r = res.body;
  const firstAt = (log, role) => log.find((e) => e.kind === 'message' && e.author.role === role)?.at;
  const responses = seeded.map((s) => firstAt(s.log, 'agent') - firstAt(s.log, 'visitor'));
  const resolutions = seeded.filter((s) => s.log.some((e) => e.kind === 'closed'))
    .map((s) => s.log.find((e) => e.kind === 'closed').at - s.log[0].at);
  assert.equal(r.conversations, 4);
  assert.equal(r.first_response.median_ms, nearestRank(responses, 0.5));
  assert.equal(r.first_response.p90_ms, nearestRank(responses, 0.9));
  assert.equal(r.resolution.count, 3);
  assert.equal(r.resolution.median_ms, nearestRank(resolutions, 0.5));
  const scores = seeded.map((s) => s.rating).filter(Boolean);
  assert.equal(r.satisfaction.ratings, 3);
  assert.equal(r.satisfaction.average, scores.reduce((a, b) => a + b, 0) / scores.length);
  assert.deepEqual(r.satisfaction.distribution, [0, 1, 0, 1, 1]);
  const day = new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit' })
    .format(new Date(seeded[0].log[0].at));
  assert.equal(r.per_day[day], 4);
  const hour = Number(new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Shanghai', hour: '2-digit', hourCycle: 'h23' }).format(new Date(seeded[0].log[0].at)));
  assert.equal(r.busiest_hours[hour] >= 1, true);
  const me = r.per_agent.find((a) => a.agent === owner.agentId);
  assert.equal(me.name, owner.name);
  assert.equal(me.conversations, 4);
  assert.equal(me.messages, 4);
  assert.equal(r.by_source.direct, 4);
});

test('the report downloads as CSV; only owners and admins may read it', async () => {
  const res = await fetch(`${server.url}/api/v1/reports?format=csv`, { headers: { authorization: `Bearer ${owner.token}` } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/csv/);
  const text = await res.text();
  assert.match(text, /^section,key,value\r\n/);
  assert.match(text, /\r\nsummary,conversations,4\r\n/);
  // Agents by name, with the id beside it.
  assert.ok(text.includes(`\r\nagent_conversations,${owner.name} (${owner.agentId}),4\r\n`), text);
  const agent = await createAgent(server, { name: 'Plain', email: 'plain-reports@parley.local' });
  const refused = await http(server.url, '/api/v1/reports', { token: agent.token });
  assert.equal(refused.status, 403);
  assert.equal((await http(server.url, '/api/v1/reports', { token: seeded[0].token })).status, 403);
  const bad = await http(server.url, '/api/v1/reports?from=someday', { token: owner.token });
  assert.equal(bad.status, 400);
});

test('ratings: 1 to 5 from the visitor only, once the conversation is closed', async () => {
  const s = seeded[3];
  const path = `/api/v1/conversations/${s.conversation}/rating`;
  assert.equal((await http(server.url, path, { method: 'POST', token: s.token, body: { score: 9 } })).status, 400);
  assert.equal((await http(server.url, path, { method: 'POST', token: owner.token, body: { score: 5 } })).status, 403);
  const open = await http(server.url, path, { method: 'POST', token: s.token, body: { score: 3 } });
  assert.equal(open.status, 409);
  assert.equal(open.body.code, 'conversation_open');
  await http(server.url, `/api/v1/conversations/${s.conversation}/close`, { method: 'POST', token: owner.token });
  const ok = await http(server.url, path, { method: 'POST', token: s.token, body: { score: 3 } });
  assert.equal(ok.body.kind, 'rated');
  assert.deepEqual(ok.body.body, { score: 3 });
});

test('days and hours follow the time zone across daylight-saving changes (the runtime\'s own zone data)', async () => {
  const { results: [site] } = await server.d1('SELECT id FROM sites ORDER BY created_at LIMIT 1');
  // New York: 2025-03-09 02:00 EST → 03:00 EDT, 2025-11-02 02:00 EDT → 01:00 EST (a year that
  // has passed, so nothing seeded today falls in the range).
  const instants = ['2025-03-09T06:30:00Z', '2025-03-09T07:30:00Z', '2025-11-02T05:30:00Z', '2025-11-02T06:30:00Z'];
  for (const [i, at] of instants.entries()) {
    const ms = Date.parse(at);
    await server.d1(
      "INSERT INTO conversations (id, site_id, visitor_id, status, created_at, updated_at) VALUES (?1, ?2, ?3, 'closed', ?4, ?4)",
      [`c_dst${i}_${ms}`, site.id, `v_dst${i}`, ms],
    );
  }
  const from = Date.parse('2025-03-01T00:00:00Z');
  const to = Date.parse('2025-12-01T00:00:00Z');
  const res = await http(server.url, `/api/v1/reports?tz=America/New_York&from=${from}&to=${to}`, { token: owner.token });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.timezone, 'America/New_York');
  // 01:30 EST, 03:30 EDT (the skipped hour lies between), 01:30 EDT and 01:30 EST again.
  assert.deepEqual(res.body.per_day, { '2025-03-09': 2, '2025-11-02': 2 });
  const hours = res.body.busiest_hours;
  assert.equal(hours[1], 3);
  assert.equal(hours[3], 1);
  assert.equal(hours.reduce((a, b) => a + b, 0), 4);
  // An unknown zone reads as UTC.
  const unknown = await http(server.url, `/api/v1/reports?tz=Mars/Olympus&from=${from}&to=${to}`, { token: owner.token });
  assert.equal(unknown.body.timezone, 'UTC');
  assert.equal(unknown.body.busiest_hours[6], 2);
});
